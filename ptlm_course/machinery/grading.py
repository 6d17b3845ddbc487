"""Batch grading of students' exercise notebooks: ``python -m ptlm_course grade SUBMISSIONS...``.

    python -m ptlm_course grade submissions/ --timeout 120 --out results.csv

Every notebook is read once, before any student code runs (links and non-regular files are refused). Each
hand-in then runs in a process of its own, on a private copy in its own temporary folder, with a pristine,
verified copy of ``ptlm_course`` to import and a time limit for the whole notebook. After its cells have run,
the grader runs the **pristine** checks of the generated exercise (``exercises/NN_topic.ipynb``) in its *own*
process: each call of a student's function or class is sent to the hand-in's process, and only data comes
back (tensors and plain Python values, loaded with ``torch.load(weights_only=True)``; a module as its
structure and weights, rebuilt here as a stand-in whose ``forward`` runs there), so nothing the notebook
patches (torch, json, builtins, import hooks, IPython) can reach the verdict. When the hand-in ends, every
process it started is killed. docs/instructors.md says exactly what is and is not guaranteed.

Isolation: as root with util-linux (``unshare``, ``setpriv``, ``prlimit``), each hand-in runs as an unused uid
in its own mount, PID, network, IPC and UTS namespaces, where the submissions and the output folder are hidden
and ``/tmp`` is its private folder (``--isolation os``). Without root, where unprivileged user namespaces work,
the same namespaces with every other mount read-only and no capabilities (``--isolation userns``). Otherwise
(``--isolation process``) it runs as the grader's user under a subreaper that kills its descendants; files of
the package, the exercises and the submissions it changes are put back.

Writes ``results.csv`` (student, exercise, check, passed, message) and a readable summary (``results.md``,
also printed), each complete or not at all, never through a link. A submission is a notebook whose file name
ends with an exercise's name, e.g. ``alice/03_attention.ipynb`` or ``alice-03_attention.ipynb``; the student
is the folder name in the first case and the prefix in the second.
"""
from __future__ import annotations

import argparse
import ast
import csv
import io
import math
import os
import pickle
import re
import secrets
import select
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

PLACEHOLDERS = ("YOUR CODE HERE", "YOUR ANSWER HERE")
NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_\w+\s*$", re.M)
CHECKS_PACKAGE = "ptlm_course.checks"
PACKAGE_DIR = Path(__file__).resolve().parents[1]      # ptlm_course/ (this file is in ptlm_course/machinery/)
# What the grader itself relies on inside the kernel: replacing any of these could fake a result, so a
# submission that assigns to them gets every check marked as failed.
MACHINERY_NAMES = {"print", "exec", "compile", "globals", "dict", "getattr", "isinstance", "__builtins__",
                   "__import__", "BaseException", "_ptlm_grade"}
MACHINERY_MODULES = {"builtins", "sys", "json", "io", "contextlib", "importlib"}


# --------------------------------------------------------------------------------------------------
# Reading the pristine exercise
# --------------------------------------------------------------------------------------------------

def normalise(source: str) -> str:
    """A cell's source without nbval markers, trailing spaces and blank lines (for comparing cells)."""
    lines = [line.rstrip() for line in NBVAL_MARKER.sub("", clean_source(source)).splitlines()]
    return "\n".join(line for line in lines if line)


def check_calls(source: str) -> list[str]:
    """The ``check_*`` functions a cell calls, if every statement of the cell is such a call; else []."""
    try:
        tree = ast.parse(normalise(source))
    except (SyntaxError, ValueError):
        return []
    names = []
    for statement in tree.body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id.startswith("check_")):
            return []
        names.append(call.func.id)
    return names


def mentions_check(source: str) -> bool:
    """Whether a cell looks like a check cell (calls some ``check_*``), even an edited one."""
    return re.search(r"\bcheck_\w+\s*\(", source) is not None


@dataclass
class CheckCell:
    index: int                 # position in the pristine exercise
    source: str                # normalised source, e.g. "check_attention(attention)"
    names: list[str]           # check functions it calls
    label: str                 # the name in the CSV, e.g. "check_attention"


@dataclass
class Exercise:
    """The pristine exercise: its cells, check cells and where each check function comes from."""
    name: str
    path: Path
    cells: list
    checks: list[CheckCell]
    modules: dict[str, str]    # check function -> module, e.g. check_attention -> ptlm_course.checks.attention

    @classmethod
    def load(cls, path: Path) -> "Exercise":
        nb = nbformat.read(path, as_version=4)
        modules, checks, seen = {}, [], {}
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                tree = ast.parse(normalise(cell.source))
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(CHECKS_PACKAGE):
                    modules.update({a.asname or a.name: node.module for a in node.names if a.name.startswith("check_")})
            names = check_calls(cell.source)
            if names:
                label = "+".join(names)
                seen[label] = seen.get(label, 0) + 1
                checks.append(CheckCell(index, normalise(cell.source), names,
                                        label if seen[label] == 1 else f"{label}#{seen[label]}"))
        if not checks:
            raise ValueError(f"{path} has no check cells (cells calling check_*): is it an exercise notebook?")
        missing = sorted({n for c in checks for n in c.names} - set(modules))
        if missing:
            raise ValueError(f"{path} calls {', '.join(missing)} without importing it from {CHECKS_PACKAGE}.")
        return cls(path.stem, path, nb.cells, checks, modules)


def load_exercises(folder: Path) -> dict[str, Exercise]:
    folder = Path(folder)
    paths = sorted(folder.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"No exercise notebooks (*.ipynb) in {str(folder)!r}: pass --exercises with the "
                                "folder of pristine exercises (generated by `make exercises`).")
    return {p.stem: Exercise.load(p) for p in paths}


# --------------------------------------------------------------------------------------------------
# What the student changed
# --------------------------------------------------------------------------------------------------

def tampering(source: str) -> list[str]:
    """Ways a cell tries to replace the checks: defining or assigning check_* / CheckFailed, or assigning
    to anything reached through ptlm_course.checks (or a check module imported under another name)."""
    try:
        tree = ast.parse(normalise(source))
    except (SyntaxError, ValueError):
        return []
    found = []
    check_modules = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for a in node.names if a.name.startswith(CHECKS_PACKAGE)}
    check_modules |= {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                      and (node.module or "").startswith("ptlm_course") for a in node.names
                      if a.name in ("checks", "_core") or (node.module or "").startswith(CHECKS_PACKAGE)
                      and not a.name.startswith("check_") and a.name != "CheckFailed"}

    def suspicious(name: str) -> bool:
        return name.startswith("check_") or name == "CheckFailed"

    def chain(node) -> str:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(node.id)
        return ".".join(reversed(parts))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
                suspicious(node.name) or node.name in MACHINERY_NAMES):
            found.append(f"defines {node.name}")
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name) and (suspicious(leaf.id) or leaf.id in MACHINERY_NAMES):
                    found.append(f"assigns {leaf.id}")
                elif isinstance(leaf, ast.Attribute):
                    path = chain(leaf)
                    root = path.split(".")[0]
                    if (suspicious(leaf.attr) or ".checks" in path or root in check_modules
                            or root in MACHINERY_MODULES):
                        found.append(f"assigns {path}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            found.append(f"calls {node.func.id}(...)")
    return sorted(set(found))


def _is_machinery(trick: str) -> bool:
    """Whether a finding of :func:`tampering` touches the grader's own machinery (builtins, sys, json, ...)."""
    target = trick.split(" ", 1)[1]
    return target in MACHINERY_NAMES or target.split(".")[0] in MACHINERY_MODULES


def compare_cells(exercise: Exercise, cells) -> tuple[dict[str, str], list[str]]:
    """How the submission's cells differ from the pristine exercise.

    Returns ({check label: "present" | "edited" | "deleted"}, notes about the notebook as a whole).
    """
    student_code = [(i, normalise(c.source)) for i, c in enumerate(cells) if c.cell_type == "code"]
    status, positions = {}, []
    for check in exercise.checks:
        exact = [i for i, src in student_code if src == check.source]
        if exact:
            status[check.label] = "present"
            positions.append((check.index, exact[0]))
        elif any(re.search(rf"\b{name}\s*\(", src) for _, src in student_code for name in check.names):
            status[check.label] = "edited"
        else:
            status[check.label] = "deleted"
    notes = []
    fixed = [(i, normalise(c.source)) for i, c in enumerate(exercise.cells) if c.cell_type == "code"
             and not any(p in c.source for p in PLACEHOLDERS) and not check_calls(c.source)]
    for index, source in fixed:                                 # set-up, imports, given code
        found = [i for i, src in student_code if src == source]
        if found:
            positions.append((index, found[0]))
        else:
            notes.append(f"a given code cell was changed or deleted (exercise cell {index}: "
                         f"{source.splitlines()[0][:60]!r})")
    for index, cell in enumerate(exercise.cells):               # the student's own cells, by their first line
        if cell.cell_type == "code" and any(p in cell.source for p in PLACEHOLDERS):
            first = normalise(cell.source).splitlines()[0]
            found = [i for i, src in student_code if src.splitlines()[:1] == [first]]
            if found:
                positions.append((index, found[0]))
    order = [student for _, student in sorted(positions)]
    if order != sorted(order):
        notes.append("cells are in a different order than in the exercise")
    return status, notes


# --------------------------------------------------------------------------------------------------
# Text that cannot break the results files
# --------------------------------------------------------------------------------------------------

def clean(text) -> str:
    """``text`` as valid UTF-8: bytes of a non-UTF-8 file name as ``\\xff``, lone surrogates as ``\\udc80``."""
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def clean_source(source: str) -> str:
    """A cell's source that Python can compile: lone surrogates (valid in JSON, not in UTF-8) become U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", source)


# --------------------------------------------------------------------------------------------------
# Finding and reading submissions: regular files only, read once, before any student code runs
# --------------------------------------------------------------------------------------------------

MAX_NOTEBOOK_BYTES = 50 * 2**20


@dataclass
class Submission:
    path: Path
    data: bytes | None = None          # the notebook's bytes, read when the batch starts
    refused: str | None = None         # why it is not graded (a link, not a regular file, unreadable)


def _read_regular(path: Path) -> Submission:
    """Read ``path`` without following a link; refuse links and anything that is not a regular file."""
    try:
        info = os.lstat(path)
    except OSError as error:
        return Submission(path, refused=f"the file cannot be read ({error.strerror})")
    if stat.S_ISLNK(info.st_mode):
        return Submission(path, refused="refused: the notebook is a symbolic link; only regular files are graded "
                                        "(the link was not followed)")
    if not stat.S_ISREG(info.st_mode):
        return Submission(path, refused="refused: the notebook is not a regular file (a pipe, device or socket); "
                                        "only regular files are graded")
    if info.st_size > MAX_NOTEBOOK_BYTES:
        return Submission(path, refused=f"refused: the notebook is {info.st_size / 2**20:.0f} MiB, more than the "
                                        f"{MAX_NOTEBOOK_BYTES // 2**20} MiB a notebook may have")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        return Submission(path, refused=f"the file cannot be read ({error.strerror})")
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return Submission(path, refused="refused: the notebook is not a regular file")
        return Submission(path, data=f.read(MAX_NOTEBOOK_BYTES + 1))


def _walk(folder: Path) -> list[Path]:
    """Notebooks and links under ``folder``, sorted; links to folders are listed, never entered."""
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if entry.name != ".ipynb_checkpoints":
                found += _walk(path)
        elif entry.name.endswith(".ipynb") or entry.is_symlink():
            found.append(path)
    return found


def find_submissions(paths) -> list[Path]:
    """The notebooks to grade: files given, and every ``*.ipynb`` (or link) in the folders given."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += _walk(p)                   # a folder the instructor names is entered, even through a link
        elif p.suffix == ".ipynb" or p.is_symlink():
            found.append(p)
        else:
            raise FileNotFoundError(f"{clean(p)!r} is neither a notebook (.ipynb) nor a folder of notebooks.")
    return found


# --------------------------------------------------------------------------------------------------
# The sandbox a hand-in runs in
# --------------------------------------------------------------------------------------------------

class Stopped(BaseException):
    """The hand-in's process stopped answering (time limit) or died; not an ``Exception``, so checks pass it on."""


@dataclass
class Isolation:
    """How hand-ins are isolated: ``"os"`` (root: namespaces + an unused uid) or ``"process"``."""
    mode: str
    reason: str = ""


NAMESPACES = ["--mount", "--pid", "--fork", "--net", "--ipc", "--uts", "--mount-proc", "--kill-child"]


def detect_isolation(requested: str = "auto") -> Isolation:
    """The strongest isolation this machine offers: ``os`` as root with util-linux (``unshare``, ``setpriv``,
    ``prlimit``), else ``userns`` where unprivileged user namespaces work, else ``process``."""
    if requested == "process":
        return Isolation("process", "--isolation process")
    reasons = {}
    tools = [shutil.which("unshare"), shutil.which("setpriv"), shutil.which("prlimit")]
    if None in tools:
        reasons["os"] = reasons["userns"] = "unshare, setpriv or prlimit (util-linux) is not installed"
    else:
        if os.geteuid() != 0:
            reasons["os"] = "the grader is not running as root, so it cannot switch hand-ins to an unprivileged user"
        elif requested in ("auto", "os"):
            uid = _unused_uid()
            probe = subprocess.run([tools[0], *NAMESPACES, tools[1], f"--reuid={uid}", f"--regid={uid}",
                                    "--clear-groups", "--no-new-privs", "true"], capture_output=True)
            if probe.returncode != 0:
                reasons["os"] = f"unshare/setpriv failed ({clean(probe.stderr.decode(errors='replace')).strip()})"
        if requested == "userns" or requested == "auto" and "os" in reasons:
            reasons["userns"] = _probe_userns()
    for mode in ("os", "userns"):
        if requested in ("auto", mode) and not reasons.get(mode):
            return Isolation(mode)
    if requested in ("os", "userns"):
        raise RuntimeError(f"--isolation {requested} is not available: {reasons[requested]}.")
    return Isolation("process", "; ".join(f"{mode}: {reason}" for mode, reason in reasons.items()))


def _probe_userns() -> str:
    """'' when a user namespace can hide folders and make everything else read-only here, else why not.
    The probe tries to write a folder you can write outside (the current folder or your home)."""
    name = f".ptlm-grade-probe-{secrets.token_hex(6)}"
    targets = [p / name for p in (Path.cwd(), Path.home())
               if os.access(p, os.W_OK) and Path(tempfile.gettempdir()) not in [p, *p.parents]]
    writes = " && ".join(f"! (echo > {shlex.quote(str(t))}) 2>/dev/null" for t in targets) or "true"
    root_read_only = "awk '$5 == \"/\" && $6 !~ /^ro/ { exit 1 }' /proc/self/mountinfo"
    with tempfile.TemporaryDirectory(prefix="ptlm-grade-probe-") as private:
        probe = subprocess.run(["unshare", "--user", "--map-root-user", *NAMESPACES, "sh", "-c", _USERNS_SCRIPT,
                                "sh", private, "--", "sh", "-c", f"echo > /tmp/inside && {writes} && {root_read_only}"],
                               capture_output=True)
        written = [t for t in targets if t.exists()]
        for t in written:
            t.unlink()
        if probe.returncode != 0 or written or not (Path(private) / "inside").exists():
            return f"user namespaces do not isolate here ({clean(probe.stderr.decode(errors='replace')).strip()})"
    return ""


# A Python installed under /tmp (a virtual environment in a clone there, as CI may have) would vanish when the
# hand-in's private folder becomes /tmp: bind it, read-only, to the same path inside that folder first.
_KEEP_PYTHON = r"""IFS='
'
for K in $PTLM_GRADE_KEEP; do D="$P${K#/tmp}"; mkdir -p "$D"; mount --rbind "$K" "$D"; mount -o remount,bind,ro "$D" || true; done
unset IFS"""  # noqa: E501 (a shell loop, kept on one line)


def _python_under_tmp() -> str:
    """The folders of this Python that lie under /tmp, newline-separated ('' when none)."""
    folders = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent}
    return "\n".join(sorted(str(f) for f in folders if Path("/tmp") in f.parents))


# The same without root, in a user namespace (the hand-in keeps the grader's uid): every mount is made
# read-only, so the hand-in can write only its private folder (its /tmp) and private scratch space, and it
# runs without capabilities, so it cannot undo any of it.
_USERNS_SCRIPT = r"""set -e
P="$1"; shift
mount --bind "$P" "$P"
$KEEP_PYTHON
while [ "$1" != "--" ]; do mount -t tmpfs -o size=16k,mode=0755,ro ptlm-hidden "$1"; shift; done; shift
awk '{ split($0, parts, " - "); split(parts[2], fs, " "); if (fs[2] !~ /^ptlm-/) print $5 }' /proc/self/mountinfo |
  sort -r | while read -r point; do [ "$point" = "$P" ] || mount -o remount,bind,ro "$point" 2>/dev/null || true; done
mount --rbind "$P" /tmp
for d in /var/tmp /dev/shm /run/lock; do [ -d "$d" ] && mount -t tmpfs -o size=64m,mode=1777 ptlm-scratch "$d"; done
cd /tmp
exec setpriv --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
"""


# Mounts made in the hand-in's own mount namespace, as root, before switching to the unprivileged uid:
# the instructor's folders disappear behind empty tmpfs, shared scratch folders become private, and the
# hand-in's private folder becomes /tmp, its working directory and HOME.
_OS_SCRIPT = r"""set -e
P="$1"; U="$2"; shift 2
$KEEP_PYTHON
while [ "$1" != "--" ]; do mount -t tmpfs -o size=64k,mode=0755 ptlm-hidden "$1"; shift; done; shift
for d in /var/tmp /dev/shm /run/lock; do [ -d "$d" ] && mount -t tmpfs -o size=64m,mode=1777 ptlm-scratch "$d"; done
mount --rbind "$P" /tmp
cd /tmp
exec prlimit --nproc=512:512 -- \
    setpriv --reuid="$U" --regid="$U" --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
"""

_USERNS_SCRIPT = _USERNS_SCRIPT.replace("$KEEP_PYTHON", _KEEP_PYTHON)
_OS_SCRIPT = _OS_SCRIPT.replace("$KEEP_PYTHON", _KEEP_PYTHON)


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
            if re.search(r"^State:\s+Z", status, re.M):
                continue                                   # already dead, waiting to be reaped
            if uids and uid in (int(uids.group(1)), int(uids.group(2))):
                found.append(int(entry))
    return found


def _processes_with_token(token: str) -> list[int]:
    needle = f"PTLM_GRADE_TOKEN={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _kill_all(find, rounds: int = 100) -> None:
    for _ in range(rounds):
        pids = find()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


class Sandbox:
    """One hand-in's process, started in its own private folder and ended with everything it started."""

    def __init__(self, isolation: Isolation, staging: Path, package: dict[str, bytes], hidden: list[Path]):
        self.isolation, self.token = isolation, secrets.token_hex(12)
        self.folder = staging / f"hand-in-{self.token}"
        self.folder.mkdir(mode=0o700)
        self.uid = _unused_uid() if isolation.mode == "os" else None
        root = str(self.folder) if isolation.mode == "process" else "/tmp"   # the folder as the hand-in sees it
        self.package_file = f"{root}/.ptlm-package/ptlm_course/__init__.py"
        _write_package(self.folder / ".ptlm-package", package)
        if self.uid is not None:
            os.chown(self.folder, self.uid, self.uid)
        to_runner, self.to_runner = os.pipe()
        self.from_runner, from_child = os.pipe()
        runner = [sys.executable, "-m", "ptlm_course.machinery._grade_runner", str(to_runner), str(from_child)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": root, "TMPDIR": root,
               "PYTHONPATH": f"{root}/.ptlm-package", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
               "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{root}/.config/matplotlib", "IPYTHONDIR": f"{root}/.ipython",
               "PTLM_CACHE_DIR": f"{root}/.cache/ptlm-course", "PTLM_WIDGETS": "0",
               "PTLM_BUDGET": os.environ.get("PTLM_BUDGET", "small"),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PTLM_GRADE_TOKEN": self.token,
               "PTLM_GRADE_KEEP": _python_under_tmp()}
        fds = [to_runner, from_child]
        if isolation.mode == "os":
            hide = [str(h) for h in hidden]
            command = ["unshare", "--mount", "--pid", "--fork", "--net", "--ipc", "--uts", "--mount-proc",
                       "--kill-child", "sh", "-c", _OS_SCRIPT, "sh", str(self.folder), str(self.uid), *hide, "--",
                       *runner]
            cwd, self.control = "/", None
        elif isolation.mode == "userns":
            command = ["unshare", "--user", "--map-root-user", *NAMESPACES, "sh", "-c", _USERNS_SCRIPT, "sh",
                       str(self.folder), *[str(h) for h in hidden], "--", *runner]
            cwd, self.control = "/", None
        else:
            control_read, self.control = os.pipe()
            supervisor = str(Path(__file__).with_name("_grade_supervisor.py"))
            command = [sys.executable, "-I", "-S", supervisor, str(control_read), f"{to_runner},{from_child}", "--",
                       *runner]
            fds.append(control_read)
            cwd = str(self.folder)
        self.process = subprocess.Popen(command, cwd=cwd, env=env, pass_fds=fds, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        self.stderr = bytearray()                     # its last 2 KB, to explain a sandbox that fails to start
        threading.Thread(target=self._drain, daemon=True).start()
        for fd in fds:
            os.close(fd)
        os.set_blocking(self.to_runner, False)

    def _drain(self) -> None:
        for chunk in iter(lambda: self.process.stderr.read1(4096), b""):
            self.stderr[:] = (self.stderr + chunk)[-2048:]

    def last_error(self) -> str:
        lines = bytes(self.stderr).decode("utf-8", "replace").strip().splitlines()
        return _short(" ".join(line.strip() for line in lines[-2:])) if lines else "no message"

    # -- talking to the runner --------------------------------------------------------------------------
    def send(self, obj, deadline: float) -> None:
        data = pickle.dumps(obj)
        view = memoryview(struct.pack(">Q", len(data)) + data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Stopped("time")
            _, writable, _ = select.select([], [self.to_runner], [], remaining)
            if writable:
                try:
                    view = view[os.write(self.to_runner, view):]
                except (BrokenPipeError, OSError):
                    raise Stopped("died") from None

    def _read(self, n: int, deadline: float) -> bytes:
        chunks, left = [], n
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Stopped("time")
            readable, _, _ = select.select([self.from_runner], [], [], remaining)
            if readable:
                chunk = os.read(self.from_runner, min(left, 1 << 20))
                if not chunk:
                    raise Stopped("died")
                chunks.append(chunk)
                left -= len(chunk)
        return b"".join(chunks)

    def receive(self, deadline: float):
        """The runner's next message, loaded as data only (tensors and plain values, never code)."""
        import torch

        (n,) = struct.unpack(">Q", self._read(8, deadline))
        if n > MAX_MESSAGE_BYTES:
            raise Stopped("died")
        data = self._read(n, deadline)
        try:
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception:
            raise Stopped("garbled") from None

    def stop(self) -> None:
        """End the hand-in's process and every process it started, then delete its folder."""
        for fd in (self.to_runner, self.from_runner):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.control is not None:
            os.close(self.control)                    # the supervisor kills every descendant, then exits
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)   # os: unshare's --kill-child ends the namespace
            except ProcessLookupError:
                pass
            self.process.kill()
        self.process.wait()
        _kill_all(lambda: _processes_of(self.uid) if self.uid is not None else _processes_with_token(self.token))
        shutil.rmtree(self.folder, ignore_errors=True)


MAX_MESSAGE_BYTES = 256 * 2**20


def _unused_uid() -> int:
    """A uid with no account and no process: files it can write are only those the grader gives it.
    Chosen among the uids this (maybe containerised) root can switch to, above the usual accounts."""
    import pwd

    ranges = [(0, 2**32 - 1)]
    try:
        rows = [line.split() for line in Path("/proc/self/uid_map").read_text().splitlines()]
        ranges = [(int(r[0]), int(r[0]) + int(r[2])) for r in rows if len(r) == 3] or ranges
    except OSError:
        pass
    low, high = max(ranges, key=lambda r: r[1] - r[0])
    low = max(low, min(200_000, (low + high) // 2), 1)
    high = min(high, low + 1_000_000_000)
    while True:
        uid = low + secrets.randbelow(max(1, high - low))
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if not _processes_of(uid):
                return uid


def package_snapshot() -> dict[str, bytes]:
    """Every source file of the installed ``ptlm_course``, read once when the batch starts."""
    return {str(p.relative_to(PACKAGE_DIR)): p.read_bytes() for p in sorted(PACKAGE_DIR.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".json", ".txt", ".typed")}


def _write_package(folder: Path, package: dict[str, bytes]) -> None:
    """A pristine copy of the package for one hand-in, verified byte for byte after writing."""
    for relative, content in package.items():
        target = folder / "ptlm_course" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    for relative, content in package.items():
        if (folder / "ptlm_course" / relative).read_bytes() != content:
            raise RuntimeError(f"the copy of ptlm_course/{relative} differs from the original")


# --------------------------------------------------------------------------------------------------
# Running one submission: its cells in the sandbox, the checks in the grader's own process
# --------------------------------------------------------------------------------------------------

@dataclass
class Result:
    student: str
    exercise: str
    check: str
    passed: bool
    message: str


@dataclass
class Run:
    """What happened when the student's cells ran."""
    errors: list[str] = field(default_factory=list)      # "cell 4: NameError: ..."
    stopped: str | None = None                            # why the run stopped early (time limit, dead kernel)
    check_outputs: dict[str, dict] = field(default_factory=dict)


class Opaque:
    """Stands for a value the student's function returned that cannot cross to the grader (an object)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


_ERRORS: dict[str, type] = {}


def _student_error(name: str, message: str) -> Exception:
    """The student's exception, re-created by name (never by unpickling) for the check's message."""
    if name == "NotImplementedError":
        return NotImplementedError(message)
    if name == "AttributeError":
        return AttributeError(message)
    name = name if re.fullmatch(r"[A-Za-z_]\w{0,60}", str(name)) else "Exception"
    if name not in _ERRORS:
        _ERRORS[name] = type(name, (Exception,), {"__module__": "student"})
    return _ERRORS[name](message)


def module_state(module) -> dict:
    """A module's weights (with requires_grad), buffers and train/eval flags, as the runner reads them."""
    return {"params": {n: (p.detach(), bool(p.requires_grad)) for n, p in module.named_parameters()},
            "buffers": {n: b.detach() for n, b in module.named_buffers()},
            "training": {n: bool(m.training) for n, m in module.named_modules()}}


def _apply_state(module, state, flags: bool = False) -> None:
    """Load a state sent by the runner into a module of the grader's (weights, requires_grad, flags)."""
    import torch

    if not isinstance(state, dict):
        return
    params, modules = dict(module.named_parameters()), dict(module.named_modules())
    for name, entry in (state.get("params") or {}).items():
        if name in params and isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], torch.Tensor):
            params[name].data = entry[0]
            params[name].requires_grad_(bool(entry[1]))
    for name, flag in (state.get("training") or {}).items():
        if name in modules and isinstance(flag, bool):
            modules[name].training = flag
    for name, values in (state.get("flags") or {}).items() if flags else ():
        if name in modules and isinstance(values, dict):
            for key, value in values.items():
                if (isinstance(key, str) and key.isidentifier() and not key.startswith("_")
                        and not hasattr(type(modules[name]), key) and type(value) in (bool, int, float, str)):
                    setattr(modules[name], key, value)


def _built_in(kind: str, spec: list, budget: list):
    """One of the torch.nn layers the runner reported, rebuilt as the real class. ``budget``: how many
    more weights the stand-ins of this module may hold (a hand-in cannot make the grader allocate more)."""
    import torch.nn as nn

    def size(n, cap=10**6):
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= cap:
            raise Stopped("garbled")
        return n

    def spend(n):
        budget[0] -= n
        return budget[0] >= 0

    if kind == "Linear" and spend(size(spec[0]) * size(spec[1])):
        return nn.Linear(spec[0], spec[1], bias=bool(spec[2]))
    if kind == "LayerNorm" and isinstance(spec[0], list) and len(spec[0]) <= 4 and spend(
            math.prod(size(n) for n in spec[0])):
        shape = list(spec[0])
        layer = nn.LayerNorm(shape, eps=float(spec[1]), elementwise_affine=bool(spec[2]))
        if layer.elementwise_affine and not spec[3]:
            layer.bias = None
        return layer
    if kind == "Embedding" and spend(size(spec[0]) * size(spec[1])):
        return nn.Embedding(spec[0], spec[1], padding_idx=spec[2] if isinstance(spec[2], int) else None)
    if kind == "Dropout":
        return nn.Dropout(float(spec[0]))
    if kind == "GELU":
        return nn.GELU(approximate=spec[0] if spec[0] in ("none", "tanh") else "none")
    if kind in ("ReLU", "Tanh", "Identity"):
        return getattr(nn, kind)()
    raise Stopped("garbled")


def _remote_module_class():
    """nn.Module standing for one of the student's modules: its structure and weights live here (the checks
    read and change them), its ``forward`` runs in the hand-in's process with those weights."""
    import torch.nn as nn

    class RemoteModule(nn.Module):
        def __init__(self, session, oid: int, path: str, class_name: str):
            super().__init__()
            self.__dict__["_remote"] = (session, oid, path, class_name)

        def forward(self, *args, **kwargs):
            session, oid, path, _ = self.__dict__["_remote"]
            return session.call({"ref": {"id": oid, "path": path}}, args, kwargs)

        def _get_name(self) -> str:
            return self.__dict__["_remote"][3]

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                remote = self.__dict__.get("_remote")
                if remote is None or name.startswith("__"):
                    raise
                return remote[0].attribute(remote[1], remote[2], name)

    return RemoteModule


class RemoteObject:
    """Stands for any other object of the student's (e.g. an EarlyStopping): attributes and calls go to it."""

    def __init__(self, session, oid: int, type_name: str):
        self.__dict__.update(_session=session, _oid=oid, _type=type_name)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._session.attribute(self._oid, "", name)

    def __call__(self, *args, **kwargs):
        return self._session.call({"ref": {"id": self._oid, "path": ""}}, args, kwargs)

    def __repr__(self) -> str:
        return f"<{self._type} object>"


def _copy_back(local, new) -> None:
    """Mirror the student's in-place changes to an argument, so the checks still see them."""
    import torch
    import torch.nn as nn

    from ._grade_runner import STATE

    if isinstance(local, list) and isinstance(new, list):
        local[:] = new
    elif isinstance(local, dict) and isinstance(new, dict):
        local.clear()
        local.update(new)
    elif isinstance(local, set) and isinstance(new, set):
        local.clear()
        local.update(new)
    elif isinstance(local, torch.Tensor) and isinstance(new, torch.Tensor):
        if new.shape == local.shape and new.dtype == local.dtype:
            with torch.no_grad():
                local.copy_(new)
    elif isinstance(local, nn.Module) and isinstance(new, dict) and STATE in new:
        _apply_state(local, new[STATE], flags=True)


class Session:
    """A hand-in's running process, as seen by the grader; the student's objects stand in as proxies."""

    def __init__(self, sandbox: Sandbox, deadline: float):
        import weakref

        self.sandbox, self.deadline = sandbox, deadline
        self.modules = weakref.WeakValueDictionary()      # id -> the grader's stand-in of a student's module

    def request(self, **request):
        self.sandbox.send(request, self.deadline)
        reply = self.sandbox.receive(self.deadline)
        if not isinstance(reply, dict):
            raise Stopped("garbled")
        states = reply.get("states")
        for oid, state in (states.items() if isinstance(states, dict) else ()):
            module = self.modules.get(oid) if isinstance(oid, int) else None
            if module is not None:                    # what the call did to the student's modules
                _apply_state(module, state)
        return reply

    def _sync(self) -> dict:
        """The current state of every stand-in module, so the student's objects compute with it."""
        return {oid: module_state(module) for oid, module in list(self.modules.items())}

    def _pack(self, value):
        import torch

        from ._grade_runner import GENERATOR, REF

        if isinstance(value, torch.Generator):
            return {GENERATOR: value.get_state()}
        remote = getattr(value, "__dict__", {}).get("_remote") if not isinstance(value, type) else None
        if isinstance(remote, tuple):
            return {REF: {"id": remote[1], "path": remote[2]}}
        if isinstance(value, RemoteObject):
            return {REF: {"id": value._oid, "path": ""}}
        return value

    def call(self, target: dict, args, kwargs):
        """Call the student's function (``{"name": ...}``) or object; returns what it returned, as data."""
        import torch
        import torch.nn as nn

        from ._grade_runner import GENERATOR

        reply = self.request(op="call", **target, args=[self._pack(a) for a in args],
                             kwargs={k: self._pack(v) for k, v in kwargs.items()}, sync=self._sync())
        if "raised" in reply:
            raise _student_error(reply.get("raised"), str(reply.get("message", "")))
        if "ok" not in reply:
            raise Stopped("garbled")
        after, after_kw = reply.get("args", []), reply.get("kwargs", {})
        for local, new in [*zip(args, after), *((kwargs[k], after_kw.get(k)) for k in kwargs)]:
            if isinstance(local, torch.Generator):
                if isinstance(new, dict) and isinstance(new.get(GENERATOR), torch.Tensor):
                    try:
                        local.set_state(new[GENERATOR])
                    except (RuntimeError, TypeError):
                        pass
            elif "_remote" not in getattr(local, "__dict__", {}):
                _copy_back(local, self.restore(new))
        modules = [a for a in [*args, *kwargs.values()] if isinstance(a, nn.Module)]
        return self.restore(reply["ok"], modules)

    def attribute(self, oid: int, path: str, name: str):
        reply = self.request(op="getattr", ref={"id": oid, "path": path}, attribute=name, sync=self._sync())
        if "raised" in reply:
            raise _student_error(reply.get("raised"), str(reply.get("message", "")))
        if "ok" not in reply:
            raise Stopped("garbled")
        return self.restore(reply["ok"])

    def restore(self, value, arguments=()):
        """Turn the runner's markers back into values: modules -> stand-ins, objects -> references,
        sets -> sets, anything it could not send -> Opaque."""
        from ._grade_runner import MODULE, OBJECT, SET, STATE, UNSUPPORTED

        if isinstance(value, dict) and len(value) == 1:
            (key, inner), = value.items()
            if key == UNSUPPORTED:
                return Opaque(str(inner)[:80])
            if key == SET and isinstance(inner, list):
                try:
                    return set(self.restore(v) for v in inner)
                except TypeError:
                    return Opaque("set")
            if key == MODULE and isinstance(inner, dict):
                return self.stand_in(inner, list(arguments))
            if key == OBJECT and isinstance(inner, dict) and isinstance(inner.get("id"), int):
                return RemoteObject(self, inner["id"], str(inner.get("type"))[:80])
            if key == STATE:
                return value
        if isinstance(value, dict):
            return {k: self.restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.restore(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.restore(v) for v in value)
        return value

    def stand_in(self, description: dict, arguments: list):
        """Rebuild a student's module here: torch.nn layers as themselves, the student's classes as
        RemoteModule, modules the grader passed in as those very objects; then load its weights."""
        import torch
        import torch.nn as nn

        oid, tree, state = description.get("id"), description.get("tree"), description.get("state")
        if not (isinstance(oid, int) and isinstance(tree, list) and 0 < len(tree) <= 10_000):
            raise Stopped("garbled")
        remote_module = _remote_module_class()
        nodes, given, budget = {}, [], [5 * 10**7]
        for entry in tree:
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                    and isinstance(entry[2], list) and re.fullmatch(r"(\w+(\.\w+)*)?", entry[0])):
                raise Stopped("garbled")
            name, kind, spec = entry
            if any(name.startswith(g + ".") for g in given):
                continue                                    # inside a module the grader passed in
            if kind == "argument":
                if not (spec and isinstance(spec[0], int) and 0 <= spec[0] < len(arguments)):
                    raise Stopped("garbled")
                node = arguments[spec[0]]
                given.append(name)
            elif kind == "Module":
                node = remote_module(self, oid, name, str(spec[0] if spec else "Module")[:80])
            else:
                node = _built_in(str(kind), spec, budget)
            parent, _, leaf = name.rpartition(".")
            if name and parent not in nodes:
                raise Stopped("garbled")
            if name:
                nodes[parent]._modules[leaf] = node        # not add_module: no attribute look-up here
            nodes[name] = node
        root = nodes.get("")
        if root is None or not isinstance(state, dict):
            raise Stopped("garbled")
        for name, entry in (state.get("params") or {}).items():
            owner, _, leaf = name.rpartition(".")
            if owner in nodes and leaf and isinstance(entry, tuple) and len(entry) == 2 \
                    and isinstance(entry[0], torch.Tensor):
                nodes[owner]._parameters[leaf] = nn.Parameter(entry[0], requires_grad=bool(entry[1]))
        for name, value in (state.get("buffers") or {}).items():
            owner, _, leaf = name.rpartition(".")
            if owner in nodes and leaf and isinstance(value, torch.Tensor):
                nodes[owner]._buffers[leaf] = value
        _apply_state(root, {"training": state.get("training")})
        for name, values in (state.get("flags") or {}).items():       # the student's plain attributes
            node = nodes.get(name)
            if isinstance(node, remote_module) and isinstance(values, dict):
                for key, value in values.items():
                    if (isinstance(key, str) and key.isidentifier() and not key.startswith("_")
                            and not hasattr(remote_module, key) and type(value) in (bool, int, float, str)):
                        node.__dict__[key] = value
        if isinstance(root, remote_module):
            self.modules[oid] = root
        return root


class StudentFunction:
    """Calls the student's function (or class) in the hand-in's process; only data comes back."""

    def __init__(self, session: Session, name: str):
        self.session, self.__name__, self.__qualname__ = session, name, name

    def __call__(self, *args, **kwargs):
        return self.session.call({"name": self.__name__}, args, kwargs)

    def __repr__(self) -> str:
        return f"<function {self.__name__}>"


def check_in_grader(check: CheckCell, exercise: Exercise, session: Session) -> dict:
    """Run a pristine check in the grader's process: the student's functions and classes are called in the
    hand-in's process, their modules and objects stand in here (see :class:`Session`)."""
    import contextlib
    import importlib

    from ..checks._core import CheckFailed

    printed = io.StringIO()
    try:
        for statement in ast.parse(check.source).body:
            call = statement.value
            if call.keywords:
                return {"passed": False, "message": "the check could not run: the grader passes only names and "
                                                    "constants to a check"}
            arguments = []
            for arg in call.args:
                if isinstance(arg, ast.Constant):
                    arguments.append(arg.value)
                    continue
                if not isinstance(arg, ast.Name):
                    return {"passed": False, "message": "the check could not run: the grader passes only names "
                                                        "and constants to a check"}
                if session.request(op="kind", name=arg.id).get("kind") == "missing":
                    return {"passed": False,
                            "message": f"the check could not run: NameError: name {arg.id!r} is not defined"}
                arguments.append(StudentFunction(session, arg.id))
            function = getattr(importlib.import_module(exercise.modules[call.func.id]), call.func.id)
            with contextlib.redirect_stdout(printed):
                function(*arguments)
        return {"passed": True, "message": printed.getvalue().strip()}
    except CheckFailed as error:
        return {"passed": False, "message": error.message}
    except Exception as error:                        # noqa: BLE001 - the check itself broke: a failure
        return {"passed": False, "message": f"the check could not run: {type(error).__name__}: {error}"}


def run_submission(nb, exercise: Exercise, timeout: float, sandbox: Sandbox) -> Run:
    """Run the student's cells in ``sandbox``, then every pristine check, within ``timeout`` seconds."""
    run = Run()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    where = "start-up"
    try:
        ready = sandbox.receive(time.monotonic() + STARTUP_SECONDS)
        if not (isinstance(ready, dict) and ready.get("ready")):
            raise Stopped("garbled")
        if ready.get("package") != sandbox.package_file:      # checked before any student code runs
            raise RuntimeError(f"the hand-in's Python imported ptlm_course from {ready.get('package')!r}, not from "
                               f"its pristine copy {sandbox.package_file!r}")
        session = Session(sandbox, time.monotonic() + timeout)   # the start-up does not count
        sandbox.send({"cells": [clean_source(c.source) for c in cells]}, session.deadline)
        for index, cell in enumerate(cells):
            where = f"cell {_student_number(nb, cell)}"
            reply = sandbox.receive(session.deadline)
            if not (isinstance(reply, dict) and reply.get("cell") == index):
                raise Stopped("garbled")
            error = reply.get("error")
            if isinstance(error, str) and not mentions_check(cell.source):  # the student's check cells don't count
                run.errors.append(f"{where}: {_short(error)}")
        for check in exercise.checks:
            where = check.label
            run.check_outputs[check.label] = check_in_grader(check, exercise, session)
    except Stopped as stop:
        reason = str(stop)
        if where == "start-up":
            time.sleep(0.2)                           # let its last words arrive
            run.stopped = f"stopped: the notebook's process could not start ({sandbox.last_error()})"
        elif reason == "time":
            run.stopped = f"stopped: the notebook ran past its {timeout:g} s time limit in {where} (an endless loop?)"
        elif reason == "died":
            run.stopped = f"stopped: the kernel died in {where} (the notebook exited Python or crashed it)"
        else:
            run.stopped = f"stopped: the notebook's process sent the grader garbage in {where}"
    return run


STARTUP_SECONDS = 120


def _student_number(nb, cell) -> int:
    """1-based position among all of the submission's cells (as the student sees it)."""
    for i, c in enumerate(nb.cells, start=1):
        if c is cell:
            return i
    return 0


def _short(text: str, limit: int = 200) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --------------------------------------------------------------------------------------------------
# Many submissions
# --------------------------------------------------------------------------------------------------

def identify(path: Path, exercises: dict[str, Exercise]) -> tuple[str, str | None]:
    """(student, exercise name or None) from a submission's path."""
    stem = path.stem
    for name in sorted(exercises, key=len, reverse=True):
        if stem == name:
            return path.parent.name or "student", name
        if stem.endswith(name):
            student = stem[: -len(name)].rstrip("-_. ") or path.parent.name
            return student, name
    return path.parent.name or stem, None


def _tree_snapshot(folder: Path) -> dict[Path, bytes]:
    """The files under ``folder`` (not following links), to notice and undo changes a hand-in makes."""
    found = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = Path(root) / name
            try:
                if path.is_file() and not path.is_symlink():
                    found[path] = path.read_bytes()
            except OSError:
                pass
    return found


def _restore_tree(before: dict[Path, bytes]) -> list[str]:
    """Put back every file of ``before`` that changed or vanished; the names of those files."""
    changed = []
    for path, content in before.items():
        try:
            same = not path.is_symlink() and path.read_bytes() == content
        except OSError:
            same = False
        if not same:
            changed.append(path.name)
            try:
                if path.is_symlink() or path.exists() and not path.is_file():
                    path.unlink()
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            except OSError:
                pass
    return changed


@dataclass
class Batch:
    """What every hand-in of one run shares: the pristine exercises and package, the sandbox settings."""
    exercises: dict[str, Exercise]
    timeout: float
    isolation: Isolation
    staging: Path
    package: dict[str, bytes]
    hidden: list[Path]
    guarded: list[Path]                    # folders whose files are put back if a hand-in changes them
    originals: dict[Path, bytes] = field(default_factory=dict)   # the notebooks as read (likewise)
    results_files: list[Path] = field(default_factory=list)       # --out and its .md: never a link


def grade_one(submission: Submission, batch: Batch) -> list[Result]:
    path, exercises = submission.path, batch.exercises
    student, name = identify(path, exercises)
    if submission.refused:
        labels = [c.label for c in exercises[name].checks] if name else ["(notebook)"]
        return [Result(student, name or path.stem, label, False, submission.refused) for label in labels]
    if name is None:
        return [Result(student, path.stem, "(notebook)", False,
                       f"no exercise matches this file name; expected a name ending with one of "
                       f"{', '.join(sorted(exercises))}")]
    exercise = exercises[name]
    try:
        nb = nbformat.reads(submission.data.decode("utf-8", "surrogateescape"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
        for cell in nb.cells:
            if not isinstance(cell.get("source"), str) or cell.get("cell_type") not in ("code", "markdown", "raw"):
                raise ValueError("a cell without a source text or a known type")
    except Exception as error:
        return [Result(student, name, c.label, False, f"the notebook cannot be read ({_short(str(error))})")
                for c in exercise.checks]
    status, notes = compare_cells(exercise, nb.cells)
    tricks = sorted({t for c in nb.cells if c.cell_type == "code" for t in tampering(c.source)})
    machinery = [t for t in tricks if _is_machinery(t)]
    if machinery:
        notes.append("tampers with what the grader relies on (" + "; ".join(machinery) + "): every check counted "
                     "as failed")
    elif tricks:
        notes.append("tries to replace the checks (" + "; ".join(tricks) + "): ignored, the checks run in the "
                     "grader")
    before = {p: c for folder in batch.guarded for p, c in _tree_snapshot(folder).items()} | batch.originals
    sandbox = Sandbox(batch.isolation, batch.staging, batch.package, batch.hidden)
    try:
        run = run_submission(nb, exercise, batch.timeout, sandbox)
    finally:
        sandbox.stop()
    changed = _restore_tree(before)
    for path in batch.results_files:
        if path.is_symlink():                         # a link where the results go: removed, never followed
            path.unlink()
            changed.append(path.name)
    if changed:
        notes.append(f"changed files outside its folder ({', '.join(sorted(set(changed))[:5])}): restored; every "
                     "check counted as failed")
    notes += run.errors
    if run.stopped:
        notes.append(run.stopped)
    results = []
    for check in exercise.checks:
        outcome = run.check_outputs.get(check.label)
        cell_note = {"edited": "its check cell was edited (the original check was run)",
                     "deleted": "its check cell was deleted (the original check was run)"}.get(status[check.label])
        if outcome is None:
            passed, message = False, "not run: " + (run.stopped or "the notebook stopped before the checks")
        else:
            passed, message = outcome["passed"], outcome["message"]
        if machinery or changed:
            passed = False
        details = [n for n in [cell_note] + notes if n]
        if details:
            message = f"{message} [{'; '.join(details)}]"
        results.append(Result(student, name, check.label, bool(passed), message))
    return results


def _hidden_folders(paths, out: Path | None, keep: list[Path]) -> list[Path]:
    """Folders to hide from hand-ins (the submissions, the output): never one holding Python or the package."""
    folders = []
    for p in map(Path, paths):
        p = p.resolve()
        folders.append(p if p.is_dir() else p.parent)
    if out is not None:
        folders.append(out.resolve())
    keep = [k.resolve() for k in keep]
    hidden = []
    for folder in folders:
        if folder == Path("/") or any(k == folder or folder in k.parents for k in keep):
            continue
        if folder.is_dir() and folder not in hidden:
            hidden.append(folder)
    return hidden


def grade(paths, exercises_dir: Path, timeout: float = 120, progress=print, isolation: str = "auto",
          out: Path | None = None) -> list[Result]:
    """Grade every submission (files or folders of notebooks); a failure of one never stops the others.

    Every notebook is read before any student code runs, and every one of them gets its rows.
    """
    import importlib

    exercises = load_exercises(exercises_dir)
    for module in sorted({m for e in exercises.values() for m in e.modules.values()} | {"ptlm_course.bert"}):
        importlib.import_module(module)               # the checks the grader runs, imported before any hand-in
    submissions = [_read_regular(p) for p in find_submissions(paths)]
    chosen = detect_isolation(isolation)
    if progress:
        progress(f"isolation: {chosen.mode}" + (f" ({chosen.reason})" if chosen.reason else ""))
    keep = [Path(sys.prefix), Path(sys.executable).parent, Path(tempfile.gettempdir())]
    staging = Path(tempfile.mkdtemp(prefix="ptlm-grade-"))
    try:
        batch = Batch(exercises, timeout, chosen, staging, package_snapshot(),
                      _hidden_folders(paths, out and out.parent, keep) if chosen.mode != "process" else [],
                      [PACKAGE_DIR, Path(exercises_dir).resolve()],
                      {s.path: s.data for s in submissions if s.data is not None},
                      [] if out is None else [out.parent.resolve() / out.name,
                                              out.parent.resolve() / out.with_suffix(".md").name])
        results = []
        for submission in submissions:
            started = time.perf_counter()
            try:
                rows = grade_one(submission, batch)
            except Exception as error:                # never lose a student: record the grader's own failure
                student, name = identify(submission.path, exercises)
                rows = [Result(student, name or submission.path.stem, "(notebook)", False,
                               f"the grader could not grade this notebook ({type(error).__name__}: "
                               f"{_short(str(error))})")]
            results += rows
            if progress:
                passed = sum(r.passed for r in rows)
                progress(clean(f"{submission.path}: {passed}/{len(rows)} checks passed "
                               f"({time.perf_counter() - started:.1f} s)"))
        return results
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Writing the results: complete files, replaced atomically, never through a link
# --------------------------------------------------------------------------------------------------

def csv_text(results: list[Result]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["student", "exercise", "check", "passed", "message"])
    for r in results:
        writer.writerow([clean(r.student), clean(r.exercise), clean(r.check), r.passed, clean(r.message)])
    return buffer.getvalue()


def write_csv(results: list[Result], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        write_file(folder, path.name, csv_text(results))
    finally:
        os.close(folder)


def write_file(folder_fd: int, name: str, text: str) -> None:
    """Write ``name`` in the folder ``folder_fd`` as a new file, then rename it over the old name.

    A link at ``name`` is replaced, never followed, and a reader sees either the old file or the new one.
    """
    temporary = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=folder_fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=folder_fd)
        except OSError:
            pass
        raise


def summary(results: list[Result]) -> str:
    """A readable report: one table row per student and exercise, then the failed checks."""
    by_notebook: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        by_notebook.setdefault((clean(r.student), clean(r.exercise)), []).append(r)
    lines = ["# Grading summary", "", "| student | exercise | passed | checks |", "|---|---|---|---|"]
    for (student, exercise), rows in sorted(by_notebook.items()):
        marks = " ".join(("✅ " if r.passed else "❌ ") + clean(r.check) for r in rows)
        lines.append(f"| {student} | {exercise} | {sum(r.passed for r in rows)}/{len(rows)} | {marks} |")
    failed = [r for r in results if not r.passed]
    if failed:
        lines += ["", "## What failed", ""]
        lines += [f"- **{clean(r.student)}**, {clean(r.exercise)}, {clean(r.check)}: {clean(r.message)}"
                  for r in failed]
    total = len(results)
    lines += ["", f"{sum(r.passed for r in results)} of {total} checks passed over {len(by_notebook)} notebooks."]
    return "\n".join(lines) + "\n"


def default_exercises_dir() -> Path:
    """``exercises/`` in the current folder, else next to the package (a repository checkout)."""
    here = Path("exercises")
    if here.is_dir():
        return here
    return PACKAGE_DIR.parent / "exercises"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptlm_course grade", description=(
        "Run students' exercise notebooks, each in its own sandboxed process with a time limit, and collect "
        "every check."))
    parser.add_argument("submissions", nargs="+",
                        help="notebooks or folders of notebooks (e.g. alice/03_attention.ipynb)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per notebook (default 120)")
    parser.add_argument("--out", default="results.csv", help="CSV to write (default results.csv); the summary "
                                                              "goes next to it with the suffix .md")
    parser.add_argument("--exercises", default=None, help="folder of pristine exercises (default ./exercises)")
    parser.add_argument("--isolation", choices=["auto", "os", "userns", "process"], default="auto",
                        help="os: namespaces and an unused uid (needs root and util-linux); userns: namespaces "
                             "and a read-only file system as your user (needs unprivileged user namespaces); "
                             "process: a private folder and a process reaper only; auto (default): the first "
                             "that works")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout should be a positive number of seconds, but got {args.timeout:g}")
    out = Path(args.out)
    if out.name in ("", ".", "..") or out.suffix == ".md":
        parser.error(f"--out should name a .csv file, but got {clean(args.out)!r}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        folder = os.open(out.parent, os.O_RDONLY | os.O_DIRECTORY)   # kept open: the folder can't be swapped
    except OSError as error:
        print(f"grade: cannot write to the folder of --out {clean(args.out)!r}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        try:
            results = grade(args.submissions, Path(args.exercises) if args.exercises else default_exercises_dir(),
                            args.timeout, progress=lambda line: print(clean(line), file=sys.stderr),
                            isolation=args.isolation, out=out)
        except (FileNotFoundError, ValueError, RuntimeError) as error:
            print(clean(f"grade: {error}"), file=sys.stderr)
            return 2
        text = summary(results)
        write_file(folder, out.name, csv_text(results))
        write_file(folder, out.with_suffix(".md").name, text)
    finally:
        os.close(folder)
    sys.stdout.write(text)
    print(clean(f"Wrote {out} and {out.with_suffix('.md')}."))
    return 0
