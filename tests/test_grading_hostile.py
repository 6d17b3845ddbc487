"""`python -m ptlm_course grade` against a hostile class: real notebooks built from exercises/ and solutions/,
real processes, one batch per isolation mode (OS isolation needs root and util-linux; the process mode
runs everywhere)."""
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest

from ptlm_course.machinery import grading
from ptlm_course.__main__ import main as cli

pytestmark = pytest.mark.slow          # about 25 s (process mode) + 20 s (OS isolation)

ROOT = Path(__file__).resolve().parents[1]
NAME = "03_attention"
CHECKS = ["check_biased_attention", "check_causal_mask", "check_padding_mask", "check_cached_attention_step"]
VALIDATION = Path(grading.__file__).parents[1] / "validation.py"        # ptlm_course/validation.py
WRONG = {   # answers of the right shapes and dtypes but wrong values: any pass is a faked one
    "def attention_with_bias": "def attention_with_bias(q, k, v, bias):\n    weights = torch.zeros(*q.shape[:-1], "
                               "k.shape[-2], dtype=q.dtype)\n    return weights @ v, weights",
    "def causal_mask": "def causal_mask(T):\n    return torch.ones(T, T, dtype=torch.bool)",
    "def padding_mask": "def padding_mask(lengths, T):\n    return torch.ones(len(lengths), 1, 1, T, dtype=torch.bool)",
}


def exercise():
    return nbformat.read(ROOT / "exercises" / f"{NAME}.ipynb", as_version=4)


def solved(name=NAME):
    nb = nbformat.read(ROOT / "exercises" / f"{name}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    for cell, answer in zip(nb.cells, solution.cells):
        if "YOUR CODE HERE" in cell.source:
            cell.source = answer.source
    return nb


def wrong(*cheats, at_end=False):
    """The exercise with wrong answers, and cheat cells after the imports (or at the end)."""
    nb = exercise()
    for cell in nb.cells:
        for start, answer in WRONG.items():
            if cell.source.startswith(start):
                cell.source = answer
    cells = [nbformat.v4.new_code_cell(c) for c in cheats]
    nb.cells = nb.cells + cells if at_end else nb.cells[:3] + cells + nb.cells[3:]
    return nb


def save(nb, folder, student):
    (folder / student).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / student / f"{NAME}.ipynb")


CHEATS = {  # each of these gained full marks from a grader that ran the checks in the student's kernel
    "patch_allclose": "import torch\ntorch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True",
    "meta_path": '''import importlib.abc, importlib.util, sys
class Fake(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "ptlm_course.checks.attention" else None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        fake = lambda fn: print("✅ all tests passed.")
        module.__dict__.update(check_biased_attention=fake, check_causal_mask=fake, check_padding_mask=fake,
                               check_cached_attention_step=fake)
sys.meta_path.insert(0, Fake())''',
    "input_transformer": '''import re
def fake(lines):
    nonce = re.search(r"PTLM-GRADE-[0-9a-f]+:", "".join(lines))
    if nonce is None:
        return lines
    return [f"print({nonce.group(0)!r} + \'{{\\"passed\\": true, \\"message\\": \\"ok\\"}}\')\\n"]
get_ipython().input_transformers_post.append(fake)''',
    "json_vars": '''import json
real = json.dumps
vars(json)["dumps"] = lambda obj, *a, **k: (\'{"passed": true, "message": "ok"}\' if isinstance(obj, dict)
                                            and "passed" in obj else real(obj, *a, **k))''',
    "builtins_swap": '''import builtins, types
fake = types.ModuleType("builtins")
fake.__dict__.update(vars(builtins))
fake.exec = lambda *a, **k: None
globals().update(__builtins__=fake)''',
}


def detached(marker: str, out: Path) -> str:
    """A shell that detaches twice and keeps trying to add a passing row to the results."""
    loop = f"while :; do echo 'mallory,{NAME},check_biased_attention,True,x' >> {out}; sleep 0.05; done"
    return (f"import subprocess\nsubprocess.Popen(['/bin/sh', '-c', {('(' + loop + ') 2>/dev/null &')!r}, "
            f"{marker!r}], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL)")


def write_over(path: Path, text: str = "{}") -> str:
    return f"try:\n    open({str(path)!r}, 'w').write({text!r})\nexcept OSError as error:\n    print(error)"


def files(*folders) -> dict:
    return {p: p.read_bytes() for f in folders for p in sorted(Path(f).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def alive(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def run_batch(tmp: Path, isolation: str):
    """Build the class, grade it with the CLI, and return (rows, what changed, processes left, out folder)."""
    subs, out, exercises = tmp / "submissions", tmp / "out", tmp / "exercises"
    shutil.copytree(ROOT / "exercises", exercises)
    out.mkdir()
    victim = tmp / "solutions" / f"{NAME}.ipynb"                # stands for the instructor's solutions
    victim.parent.mkdir()
    shutil.copy(ROOT / "solutions" / f"{NAME}.ipynb", victim)
    marker = f"ptlm-detached-{os.getpid()}-{isolation}"
    save(solved(), subs, "alice")
    save(solved(), subs, "zoe")                                 # graded after aaron, who overwrites her notebook
    save(wrong(), subs, "zed")                                  # honest but wrong, graded after the package edit
    save(wrong(write_over(subs / "zoe" / f"{NAME}.ipynb"), write_over(exercises / f"{NAME}.ipynb")), subs, "aaron")
    save(wrong(f"import os\nos.symlink({str(victim)!r}, {str(out / 'results.csv')!r})\n"
               f"os.symlink({str(victim)!r}, {str(out / 'results.md')!r})"), subs, "linker")
    save(wrong(detached(marker, out / "results.csv")), subs, "mallory")
    # lint-clean, as test_lint may read the package while the poison is in place
    poisoned = VALIDATION.read_text() + "\n__import__('torch').allclose = lambda *a, **k: True\n"
    save(wrong(write_over(VALIDATION, poisoned)), subs, "vera")
    if isolation == "os":                                       # a classmate's notebook is out of reach
        save(wrong("import json\nnb = json.load(open(%r))\nfor cell in nb['cells']:\n"
                   "    source = ''.join(cell['source'])\n"
                   "    if source.startswith('def '):\n        exec(source, globals())"
                   % str(subs / "alice" / f"{NAME}.ipynb"), at_end=True), subs, "copycat")
    else:                                                       # the same in both modes: tested once
        for student, cheat in CHEATS.items():
            save(wrong(cheat), subs, student)
        nb = solved("04_multi_head_attention")                  # a class without the 1/sqrt(d), torch patched
        gqa = [c for c in nb.cells if "class GroupedQueryAttention" in c.source][0]
        assert " / math.sqrt(d)" in gqa.source
        gqa.source = gqa.source.replace(" / math.sqrt(d)", "")
        nb.cells.insert(3, nbformat.v4.new_code_cell(CHEATS["patch_allclose"]))
        (subs / "classy").mkdir()
        nbformat.write(nb, subs / "classy" / "04_multi_head_attention.ipynb")
        nb = solved()                                           # a comment with a lone surrogate (valid JSON)
        nb.cells[[i for i, c in enumerate(nb.cells) if c.source.startswith("def attention")][0]].source += "  # \udc80"
        (subs / "sam").mkdir()
        (subs / "sam" / f"{NAME}.ipynb").write_text(json.dumps(nb), encoding="ascii")
        odd = os.fsencode(subs) + b"/\xff\xfe-" + NAME.encode() + b".ipynb"   # a name that is not UTF-8
        with open(odd, "wb") as f:
            f.write(nbformat.writes(solved()).encode("utf-8"))
        (subs / "eve").mkdir()
        os.symlink("/etc/passwd", subs / "eve" / f"{NAME}.ipynb")
        (subs / "fifo").mkdir()
        os.mkfifo(subs / "fifo" / f"{NAME}.ipynb")
    before = files(subs, exercises, victim.parent, VALIDATION.parent)
    original = VALIDATION.read_bytes()
    try:
        assert cli(["grade", str(subs), "--timeout", "60", "--out", str(out / "results.csv"),
                    "--exercises", str(exercises), "--isolation", isolation]) == 0
    finally:
        if VALIDATION.read_bytes() != original:                 # never leave the package edited
            VALIDATION.write_bytes(original)
    left = alive(marker)
    time.sleep(0.3)                                             # a survivor would write now
    changed = sorted(str(p) for p, content in files(subs, exercises, victim.parent, VALIDATION.parent).items()
                     if before.get(p) != content)
    changed += sorted(str(p) for p in before if not p.exists())
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    for pid in left:                                            # clean up after a failing test
        os.kill(pid, 9)
    return rows, changed, left, out


def os_isolation_available() -> bool:
    try:
        return grading.detect_isolation("auto").mode == "os"
    except Exception:
        return False


@pytest.fixture(scope="module")
def os_batch(tmp_path_factory):
    if not os_isolation_available():
        pytest.skip("OS isolation needs root and util-linux (unshare, setpriv); the process mode is tested too")
    return run_batch(tmp_path_factory.mktemp("os"), "os")


@pytest.fixture(scope="module")
def process_batch(tmp_path_factory):
    return run_batch(tmp_path_factory.mktemp("process"), "process")


def marks(rows, student):
    found = {r["check"]: r for r in rows if r["student"] == student}
    assert found, f"no rows for {student}"
    return {check: r["passed"] == "True" for check, r in found.items()}, " ".join(r["message"] for r in found.values())


DAMAGE = ["mallory", "vera", "aaron", "linker", "zed"]


def test_cheats_gain_no_marks(process_batch):
    rows = process_batch[0]
    for student in [*CHEATS, *DAMAGE]:
        passed, message = marks(rows, student)
        assert list(passed) == CHECKS and not any(passed.values()), (student, message)
    assert "the weights" in marks(rows, "patch_allclose")[1]      # the grader's own comparison caught it
    passed, message = marks(rows, "classy")                       # a check of a class: decided in the grader too
    assert passed == {"check_repeat_kv": True, "check_grouped_query_attention": False,
                      "check_cross_attention": True}           # the other tasks are correct
    assert "the scores are not scaled" in message


def test_every_submission_gets_complete_records(process_batch):
    rows, _, _, out = process_batch
    assert marks(rows, "alice")[0] == dict.fromkeys(CHECKS, True)
    assert marks(rows, "sam")[0] == dict.fromkeys(CHECKS, True)             # lone surrogate in a comment
    assert marks(rows, "\\xff\\xfe")[0] == dict.fromkeys(CHECKS, True)    # non-UTF-8 file name, escaped
    students = {r["student"] for r in rows}
    assert students == {*CHEATS, *DAMAGE, "alice", "zoe", "sam", "\\xff\\xfe", "eve", "fifo", "classy"}
    text = (out / "results.md").read_text(encoding="utf-8")
    assert f"| \\xff\\xfe | 03_attention | {len(CHECKS)}/{len(CHECKS)} |" in text
    assert text.rstrip().endswith("notebooks.")
    assert f"{sum(r['passed'] == 'True' for r in rows)} of {len(rows)} checks passed" in text


def test_links_and_special_files_are_refused(process_batch):
    rows, _, _, out = process_batch
    passed, message = marks(rows, "eve")
    assert not any(passed.values()) and "symbolic link" in message
    passed, message = marks(rows, "fifo")
    assert not any(passed.values()) and "not a regular file" in message
    for name in ("results.csv", "results.md"):
        assert not (out / name).is_symlink() and "root:" not in (out / name).read_text(encoding="utf-8")


def test_process_mode_puts_back_what_a_hand_in_changes(process_batch):
    rows, changed, left, out = process_batch
    assert changed == [] and left == []         # classmates' notebooks, the exercises, the package, "solutions"
    assert "cell 4:" not in marks(rows, "mallory")[1]                       # her detached shell did start
    assert "changed files outside its folder (validation.py)" in marks(rows, "vera")[1]
    assert "changed files outside its folder" in marks(rows, "aaron")[1]
    assert "changed files outside its folder (results.csv, results.md)" in marks(rows, "linker")[1]
    assert marks(rows, "zoe")[0] == dict.fromkeys(CHECKS, True)              # aaron overwrote her file first
    assert not (out / "results.csv").is_symlink() and "x\n" not in (out / "results.csv").read_text(encoding="utf-8")


def test_os_isolation_changes_nothing_outside_the_output_folder(os_batch):
    rows, changed, left, out = os_batch
    assert changed == [] and left == []
    assert "cell 4:" not in marks(rows, "mallory")[1]                       # her detached shell did start
    for student in ["copycat", *DAMAGE]:                       # copycat could not read alice's notebook
        passed, message = marks(rows, student)
        assert list(passed) == CHECKS and not any(passed.values()), (student, message)
    assert marks(rows, "zoe")[0] == marks(rows, "alice")[0] == dict.fromkeys(CHECKS, True)
    assert "changed files" not in " ".join(r["message"] for r in rows)    # every attempt was refused by the OS
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.md"]
    assert "x\n" not in (out / "results.csv").read_text(encoding="utf-8")


def test_supervisor_kills_detached_descendants(tmp_path):
    """The subreaper on its own: a double-forked, setsid'ed grandchild is gone once the control pipe closes."""
    import subprocess

    marker = f"ptlm-supervisor-test-{os.getpid()}"
    control_read, control_write = os.pipe()
    child = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n"
             "    os._exit(0)\ntime.sleep(60)")
    supervisor = subprocess.Popen([sys.executable, "-I", "-S", str(Path(grading.__file__).with_name(
        "_grade_supervisor.py")), str(control_read), "", "--", sys.executable, "-c", child, marker],
        pass_fds=[control_read])
    os.close(control_read)
    deadline = time.monotonic() + 10
    while len(alive(marker)) < 3 and time.monotonic() < deadline:   # the supervisor, the child, the grandchild
        time.sleep(0.05)
    assert len(alive(marker)) >= 3
    os.close(control_write)
    assert supervisor.wait(timeout=15) == 0
    assert alive(marker) == []


def test_checks_in_the_grader_see_what_the_students_function_did_to_its_arguments(tmp_path):
    """Values cross the pipe, so in-place changes to a dict or a set are copied back for the check to see;
    a Counter arrives as a dict, which the check accepts."""
    exercise = grading.Exercise.load(ROOT / "exercises" / "01_tokenization.ipynb")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in [
        "from collections import Counter",
        "def count_pairs_in_words(word_freqs):\n    return Counter(p for w, f in word_freqs.items() "
        "for p in list(zip(w, w[1:])) * f)",
        "def merge_in_words(word_freqs, pair, new_id):\n    word_freqs[(new_id,)] = 1\n    return word_freqs",
        "def wordpiece_sentence(text, vocab):\n    vocab.add('##zzz')\n    return ['[UNK]']",
    ]])
    batch_package = grading.package_snapshot()
    sandbox = grading.Sandbox(grading.Isolation("process"), tmp_path, batch_package, [])
    try:
        run = grading.run_submission(nb, exercise, 60, sandbox)
    finally:
        sandbox.stop()
    outcomes = run.check_outputs
    assert outcomes["check_word_pair_counts"]["passed"], outcomes["check_word_pair_counts"]
    merged = outcomes["check_merge_words"]
    assert not merged["passed"] and "the table it was given was changed" in merged["message"]
    assert not outcomes["check_wordpiece_sentence"]["passed"]
    assert "the vocabulary was changed" in outcomes["check_wordpiece_sentence"]["message"]


# Each check test of a class (or of freeze_top) in tests/test_checks_*.py, replayed through the grader: the
# case's object is built in the hand-in's process, the check runs in the grader with stand-ins for it.
# (module, test, check, how the test builds the student's object from its first parameter)
REPLAYED = [
    ("test_checks_attention", "test_check_multi_head_attention_accepts", "check_multi_head_attention", "{}"),
    ("test_checks_attention", "test_check_multi_head_attention_names_mistakes", "check_multi_head_attention",
     "student_with({})"),
    ("test_checks_transformer", "test_correct_feed_forwards_pass", "check_feed_forward", "{}"),
    ("test_checks_transformer", "test_feed_forward_mistakes_are_named", "check_feed_forward", "{}"),
    ("test_checks_transformer", "test_correct_blocks_pass", "check_transformer_block", "{}"),
    ("test_checks_transformer", "test_block_mistakes_are_named", "check_transformer_block", "block_with({})"),
    ("test_checks_finetuning", "test_cls_head_accepts_correct_heads", "check_cls_head", "{}"),
    ("test_checks_finetuning", "test_cls_head_names_mistakes", "check_cls_head", "cls_head({})"),
    ("test_checks_finetuning", "test_freeze_accepts_correct_functions", "check_freeze", "{}"),
    ("test_checks_finetuning", "test_freeze_names_mistakes", "check_freeze", "freeze_mistake({})"),
    ("test_checks_finetuning", "test_lora_check_accepts_correct_classes", "check_lora_linear", "{}"),
    ("test_checks_finetuning", "test_lora_check_names_mistakes", "check_lora_linear", "lora_mistake({})"),
    ("test_checks_finetuning", "test_early_stopping_check_accepts_correct_classes", "check_early_stopping", "{}"),
    ("test_checks_finetuning", "test_early_stopping_check_names_mistakes", "check_early_stopping",
     "stopper_mistake({})"),
]


def test_checks_of_classes_decided_in_the_grader_agree_with_the_check_tests(tmp_path):
    import importlib
    import re
    import types

    from ptlm_course.checks import finetuning, multihead, transformer

    modules = {"check_multi_head_attention": multihead.__name__, "check_feed_forward": transformer.__name__,
               "check_transformer_block": transformer.__name__}
    modules.update({name: finetuning.__name__ for name in finetuning.__all__})
    cells, cases = [f"import sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})"], []
    for module, test, check, build in REPLAYED:
        params = getattr(importlib.import_module(module), test).pytestmark[0].args[1]
        cells.append(f"import {module}")
        for i, param in enumerate(params):
            name = f"case_{len(cases)}"
            made = "_first" if build == "{}" else f"{module}.{build.format('_first')}"
            cells.append(f"_p = {module}.{test}.pytestmark[0].args[1][{i}]\n"
                         f"_first = _p[0] if isinstance(_p, tuple) else _p\n{name} = {made}")
            cases.append((name, check, param[1] if isinstance(param, tuple) else None))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    exercise = types.SimpleNamespace(checks=[], modules=modules)
    sandbox = grading.Sandbox(grading.Isolation("process"), tmp_path, grading.package_snapshot(), [])
    outcomes = {}
    try:
        run = grading.run_submission(nb, exercise, 120, sandbox)
        assert run.errors == [] and run.stopped is None, (run.errors, run.stopped)
        session = grading.Session(sandbox, time.monotonic() + 120)
        for name, check, _ in cases:
            cell = grading.CheckCell(0, f"{check}({name})", [check], check)
            outcomes[name] = grading.check_in_grader(cell, exercise, session)
    finally:
        sandbox.stop()
    assert len(cases) > 50
    for name, check, message in cases:
        outcome = outcomes[name]
        if message is None:
            assert outcome["passed"], (name, check, outcome)
        else:
            assert not outcome["passed"] and re.search(message, outcome["message"]), (name, check, message, outcome)


def test_isolation_without_root_falls_back_and_says_why(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    chosen = grading.detect_isolation("auto")
    assert chosen.mode in ("userns", "process")
    assert chosen.mode == "userns" or "os: the grader is not running as root" in chosen.reason
    with pytest.raises(RuntimeError, match="--isolation os is not available: the grader is not running as root"):
        grading.detect_isolation("os")
    assert grading.detect_isolation("process").mode == "process"


def sandbox_modes():
    modes = []
    for mode in ("os", "userns"):
        try:
            modes.append(grading.detect_isolation(mode).mode)
        except RuntimeError:
            pass
    return modes


@pytest.mark.parametrize("mode", ["os", "userns"])
def test_namespaces_hide_named_folders_keep_the_rest_read_only_and_end_every_process(mode, tmp_path):
    """A folder outside /tmp (here inside the repository) that the hand-in could otherwise read is empty for
    it; it cannot write the repository (os: an unprivileged uid; userns: read-only mounts) nor start more than
    512 processes (os); a process it detaches is gone when it ends."""
    if mode not in sandbox_modes():
        pytest.skip(f"--isolation {mode} is not available here (os needs root; userns, user namespaces)")
    secret = ROOT / "tests" / f".grading-probe-{os.getpid()}"
    secret.mkdir(mode=0o755)
    marker = f"ptlm-probe-{os.getpid()}-{mode}"
    try:
        (secret / "classmate.ipynb").write_text("{}")
        os.chmod(secret / "classmate.ipynb", 0o644)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            "import os, resource, subprocess\ndef probe(folder, target, marker):\n"
            "    subprocess.Popen(['/bin/sh', '-c', 'sleep 60; true', marker], start_new_session=True)\n"
            "    try:\n        open(target, 'a').close()\n        wrote = True\n    except OSError:\n"
            "        wrote = False\n"
            "    seen = os.listdir(folder) if os.path.isdir(folder) else []    # a clone under /tmp: not there at all\n"
            "    return seen, os.getuid(), wrote, resource.getrlimit(resource.RLIMIT_NPROC)")])
        exercise = grading.Exercise.load(ROOT / "exercises" / f"{NAME}.ipynb")
        exercise.checks = []
        sandbox = grading.Sandbox(grading.detect_isolation(mode), tmp_path, grading.package_snapshot(), [secret])
        try:
            run = grading.run_submission(nb, exercise, 60, sandbox)
            assert run.errors == [] and run.stopped is None
            session = grading.Session(sandbox, time.monotonic() + 60)
            listed, uid, wrote, nproc = session.call({"name": "probe"}, [str(secret), str(VALIDATION), marker], {})
            deadline = time.monotonic() + 5
            while not alive(marker) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert alive(marker), (listed, uid, wrote)                        # it started, detached
        finally:
            sandbox.stop()
        assert listed == [] and wrote is False and alive(marker) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == []            # its private folder is gone
        if mode == "os":
            assert uid not in (0, os.getuid()) and nproc == (512, 512)
    finally:
        shutil.rmtree(secret)


def test_a_sandbox_that_cannot_start_says_why(tmp_path):
    if not os_isolation_available():
        pytest.skip("OS isolation needs root and util-linux (unshare, setpriv)")
    exercise = grading.Exercise.load(ROOT / "exercises" / f"{NAME}.ipynb")
    sandbox = grading.Sandbox(grading.detect_isolation("os"), tmp_path, grading.package_snapshot(),
                              [tmp_path / "no-such-folder"])
    try:
        run = grading.run_submission(nbformat.v4.new_notebook(), exercise, 10, sandbox)
    finally:
        sandbox.stop()
    assert run.stopped.startswith("stopped: the notebook's process could not start (mount: ")
    assert "no-such-folder" in run.stopped
