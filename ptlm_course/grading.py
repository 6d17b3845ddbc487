"""Batch grading of students' exercise notebooks: ``python -m ptlm_course grade SUBMISSIONS...``.

Each submission runs in its own kernel (nbclient) with a time limit for the whole notebook. The result of a
check is never taken from the student's copy of the check cell: after the student's cells have run, the grader
runs the **pristine** check cells of the generated exercise (``exercises/NN_topic.ipynb``, same name) against
the student's functions, with the checks and the rest of ``ptlm_course`` imported afresh, so a submission that
edits, deletes or overwrites check cells, or redefines ``check_*`` / ``CheckFailed`` / patches
``ptlm_course.checks``, gains nothing. What the student changed (check cells edited or deleted, cells
reordered, checks redefined, cells that raised or have syntax errors, a time-out) is recorded in the message.

    python -m ptlm_course grade submissions/ --timeout 120 --out results.csv

Writes ``results.csv`` (student, exercise, check, passed, message) and a readable summary
(``results.md``, also printed). A submission is a notebook whose file name ends with an exercise's name,
e.g. ``alice/03_attention.ipynb`` or ``alice-03_attention.ipynb``; the student is the folder name in the
first case and the prefix in the second.

Limits: the grader runs untrusted code with your rights. It defends against the usual ways of faking a check,
not against deliberate tampering with Python itself (e.g. patching ``torch``); run it in a container or a
throw-away account.
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

PLACEHOLDERS = ("YOUR CODE HERE", "YOUR ANSWER HERE")
NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_\w+\s*$", re.M)
CHECKS_PACKAGE = "ptlm_course.checks"
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
    lines = [line.rstrip() for line in NBVAL_MARKER.sub("", source).splitlines()]
    return "\n".join(line for line in lines if line)


def check_calls(source: str) -> list[str]:
    """The ``check_*`` functions a cell calls, if every statement of the cell is such a call; else []."""
    try:
        tree = ast.parse(normalise(source))
    except SyntaxError:
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
            except SyntaxError:
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
    except SyntaxError:
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
# Running one submission
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


def _grader_cell(check: CheckCell, modules: dict[str, str], nonce: str) -> str:
    """Code that runs one pristine check cell with freshly imported checks and reports with ``nonce``."""
    imports = {name: modules[name] for name in check.names}
    return f"""
def _ptlm_grade():
    import contextlib as _contextlib, importlib as _importlib, io as _io, json as _json, sys as _sys
    for _name in [n for n in list(_sys.modules) if n == "ptlm_course" or n.startswith("ptlm_course.")]:
        del _sys.modules[_name]                          # fresh checks: whatever the notebook patched is gone
    _core = _importlib.import_module("ptlm_course.checks._core")
    _namespace = dict(globals())                          # the student's functions
    _namespace["CheckFailed"] = _core.CheckFailed
    for _check, _module in {imports!r}.items():
        _namespace[_check] = getattr(_importlib.import_module(_module), _check)
    _printed = _io.StringIO()
    try:
        with _contextlib.redirect_stdout(_printed):
            exec(compile({check.source!r}, "<check cell>", "exec"), _namespace)
        _result = {{"passed": True, "message": _printed.getvalue().strip()}}
    except _core.CheckFailed as _error:
        _result = {{"passed": False, "message": _error.message}}
    except BaseException as _error:
        _result = {{"passed": False, "message": f"the check could not run: {{type(_error).__name__}}: {{_error}}"}}
    print({nonce!r} + _json.dumps(_result))
_ptlm_grade()
del _ptlm_grade
"""


def _error_text(cell) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            value = output.get("evalue", "")
            return f"{output.get('ename', 'Error')}: {value}" if value else output.get("ename", "Error")
    return None


def run_submission(nb, exercise: Exercise, timeout: float, workdir: Path) -> Run:
    """Execute the student's cells, then the pristine check cells, in one fresh kernel, within ``timeout`` s."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    run = Run()
    nonce = f"PTLM-GRADE-{secrets.token_hex(8)}:"
    cells = [c for c in nb.cells if c.cell_type == "code"]
    extra = [nbformat.v4.new_code_cell(_grader_cell(check, exercise.modules, nonce)) for check in exercise.checks]
    to_run = nbformat.v4.new_notebook(cells=cells + extra, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    client = NotebookClient(to_run, timeout=max(1, int(timeout)), allow_errors=True, interrupt_on_timeout=False,
                            kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    deadline, index = time.monotonic() + timeout, 0
    try:
        with client.setup_kernel(env=_kernel_env()):
            deadline = time.monotonic() + timeout                 # the kernel's start-up does not count
            for index, cell in enumerate(to_run.cells):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CellTimeoutError("time limit")
                client.timeout = max(1, int(remaining + 0.999))
                client.execute_cell(cell, index)
                if index < len(cells):
                    error = _error_text(cell)
                    if error and not mentions_check(cell.source):      # the student's own check cells don't count
                        run.errors.append(f"cell {_student_number(nb, cells[index])}: {_short(error)}")
                else:
                    run.check_outputs[exercise.checks[index - len(cells)].label] = _parse_result(cell, nonce)
    except CellTimeoutError:
        where = (f"cell {_student_number(nb, cells[index])}" if index < len(cells)
                 else exercise.checks[index - len(cells)].label)
        run.stopped = f"stopped: the notebook ran past its {timeout:g} s time limit in {where} (an endless loop?)"
    except DeadKernelError:
        run.stopped = "stopped: the kernel died (the notebook exited Python or crashed it)"
    except Exception as error:                                      # never stop the batch
        run.stopped = f"stopped: the notebook could not be run ({type(error).__name__}: {_short(str(error))})"
    return run


def _student_number(nb, cell) -> int:
    """1-based position among all of the submission's cells (as the student sees it)."""
    for i, c in enumerate(nb.cells, start=1):
        if c is cell:
            return i
    return 0


def _parse_result(cell, nonce: str) -> dict:
    for output in cell.get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith(nonce):
                try:
                    result = json.loads(line[len(nonce):])
                except json.JSONDecodeError:
                    break
                if isinstance(result, dict) and result.get("passed") in (True, False):
                    return {"passed": result["passed"], "message": str(result.get("message", ""))}
    error = _error_text(cell)
    reason = _short(error) if error else "no output"
    return {"passed": False, "message": f"the check did not report a result ({reason})"}


def _kernel_env() -> dict:
    import os

    # One thread per kernel: the checks use tiny tensors, and a class's notebooks then grade predictably
    # on a shared machine. Small budget and no widgets: nobody looks at the plots.
    return {**os.environ, "MPLBACKEND": "Agg", "PTLM_BUDGET": os.environ.get("PTLM_BUDGET", "small"),
            "PTLM_WIDGETS": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def _short(text: str, limit: int = 200) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip().replace("\n", " ")
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


def find_submissions(paths) -> list[Path]:
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.suffix == ".ipynb":
            found.append(p)
        else:
            raise FileNotFoundError(f"{str(p)!r} is neither a notebook (.ipynb) nor a folder of notebooks.")
    return found


def _snapshot_checks() -> dict[Path, bytes]:
    """The checks' source files, to notice (and undo) a submission that rewrites them on disk."""
    import ptlm_course.checks as checks

    return {p: p.read_bytes() for p in Path(checks.__file__).parent.glob("*.py")}


def grade_one(path: Path, exercises: dict[str, Exercise], timeout: float) -> list[Result]:
    student, name = identify(path, exercises)
    if name is None:
        return [Result(student, path.stem, "(notebook)", False,
                       f"no exercise matches this file name; expected a name ending with one of "
                       f"{', '.join(sorted(exercises))}")]
    exercise = exercises[name]
    try:
        nb = nbformat.read(path, as_version=4)
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
        notes.append("tries to replace the checks (" + "; ".join(tricks) + "): ignored, the checks run from a "
                     "fresh import")
    before = _snapshot_checks()
    run = run_submission(nb, exercise, timeout, path.parent)
    after = _snapshot_checks()
    if after != before:
        for p, content in before.items():
            p.write_bytes(content)                      # put the real checks back for the next submission
        notes.append("rewrote the checks' files on disk (restored; every check counted as failed)")
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
        if machinery or "rewrote the checks' files" in " ".join(notes):
            passed = False
        details = [n for n in [cell_note] + notes if n]
        if details:
            message = f"{message} [{'; '.join(details)}]"
        results.append(Result(student, name, check.label, bool(passed), message))
    return results


def grade(paths, exercises_dir: Path, timeout: float = 120, progress=print) -> list[Result]:
    """Grade every submission (files or folders of notebooks); a failure of one never stops the others."""
    exercises = load_exercises(exercises_dir)
    results = []
    for path in find_submissions(paths):
        started = time.perf_counter()
        rows = grade_one(path, exercises, timeout)
        results += rows
        if progress:
            passed = sum(r.passed for r in rows)
            progress(f"{path}: {passed}/{len(rows)} checks passed ({time.perf_counter() - started:.1f} s)")
    return results


def write_csv(results: list[Result], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "exercise", "check", "passed", "message"])
        for r in results:
            writer.writerow([r.student, r.exercise, r.check, r.passed, r.message])


def summary(results: list[Result]) -> str:
    """A readable report: one table row per student and exercise, then the failed checks."""
    by_notebook: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        by_notebook.setdefault((r.student, r.exercise), []).append(r)
    lines = ["# Grading summary", "", "| student | exercise | passed | checks |", "|---|---|---|---|"]
    for (student, exercise), rows in sorted(by_notebook.items()):
        marks = " ".join(("✅ " if r.passed else "❌ ") + r.check for r in rows)
        lines.append(f"| {student} | {exercise} | {sum(r.passed for r in rows)}/{len(rows)} | {marks} |")
    failed = [r for r in results if not r.passed]
    if failed:
        lines += ["", "## What failed", ""]
        lines += [f"- **{r.student}**, {r.exercise}, {r.check}: {r.message}" for r in failed]
    total = len(results)
    lines += ["", f"{sum(r.passed for r in results)} of {total} checks passed over {len(by_notebook)} notebooks."]
    return "\n".join(lines) + "\n"


def default_exercises_dir() -> Path:
    """``exercises/`` in the current folder, else next to the package (a repository checkout)."""
    here = Path("exercises")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[1] / "exercises"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptlm_course grade", description=(
        "Run students' exercise notebooks, each in its own kernel with a time limit, and collect every check."))
    parser.add_argument("submissions", nargs="+",
                        help="notebooks or folders of notebooks (e.g. alice/03_attention.ipynb)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per notebook (default 120)")
    parser.add_argument("--out", default="results.csv", help="CSV to write (default results.csv); the summary "
                                                              "goes next to it with the suffix .md")
    parser.add_argument("--exercises", default=None, help="folder of pristine exercises (default ./exercises)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout should be a positive number of seconds, but got {args.timeout:g}")
    try:
        results = grade(args.submissions, Path(args.exercises) if args.exercises else default_exercises_dir(),
                        args.timeout, progress=lambda line: print(line, file=sys.stderr))
    except (FileNotFoundError, ValueError) as error:
        print(f"grade: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write_csv(results, out)
    text = summary(results)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)
    print(f"Wrote {out} and {out.with_suffix('.md')}.")
    return 0

