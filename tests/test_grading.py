"""`python -m ptlm_course grade`: real submissions built from exercises/ and solutions/, one batch for speed."""
import csv
from pathlib import Path

import nbformat
import pytest

from ptlm_course.machinery import grading
from ptlm_course.__main__ import main as cli

pytestmark = pytest.mark.slow          # about 30 s: eight notebooks, each in its own kernel

ROOT = Path(__file__).resolve().parents[1]
NAME = "03_attention"
CHECKS = ["check_biased_attention", "check_causal_mask", "check_padding_mask", "check_cached_attention_step"]


def exercise():
    return nbformat.read(ROOT / "exercises" / f"{NAME}.ipynb", as_version=4)


def solved():
    """The exercise with every answer filled in from the solution notebook."""
    nb, solution = exercise(), nbformat.read(ROOT / "solutions" / f"{NAME}.ipynb", as_version=4)
    for cell, answer in zip(nb.cells, solution.cells):
        if "YOUR CODE HERE" in cell.source:
            cell.source = answer.source
    return nb


def index_of(nb, text):
    return next(i for i, c in enumerate(nb.cells) if text in c.source)


def submissions(folder: Path) -> None:
    """One notebook per case, as students would hand them in."""
    def save(nb, student, name=NAME):
        (folder / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / student / f"{name}.ipynb")

    save(solved(), "alice")                                           # everything right

    nb = exercise()                                                   # nothing written, checks "overwritten"
    nb.cells[index_of(nb, "check_biased_attention(attention_with_bias)")].source = (
        'check_biased_attention = lambda fn: print("✅ check_biased_attention: all 4 tests passed.")\n'
        'check_biased_attention(attention_with_bias)')
    nb.cells.insert(3, nbformat.v4.new_code_cell(
        "import ptlm_course.checks.attention as checks_module\n"
        "from ptlm_course.checks import _core\n"
        "def check_causal_mask(fn):\n    print('✅')\n"
        "checks_module.check_padding_mask = lambda fn: None\n"
        "_core.expect_tensor_like = lambda *args, **kwargs: None\n"
        "CheckFailed = Exception"))
    save(nb, "mallory")

    nb = solved()                                                     # a cell raises, another has a syntax error
    nb.cells.insert(index_of(nb, "def causal_mask"), nbformat.v4.new_code_cell("1 / 0"))
    nb.cells[index_of(nb, "def attention_with_bias")].source = "def attention_with_bias(q, k, v, bias)\n    return q"
    save(nb, "dave")

    nb = exercise()                                                   # check cells deleted, nothing written
    nb.cells = [c for c in nb.cells if not c.source.startswith("check_")]
    save(nb, "frank")

    nb = solved()                                                     # check cells moved to the top, all right
    checks = [c for c in nb.cells if c.source.startswith("check_")]
    nb.cells = [nb.cells[0]] + checks + [c for c in nb.cells[1:] if c not in checks]
    save(nb, "gina")

    nb = solved()                                                     # right answers, but fakes the grader's output
    nb.cells.insert(3, nbformat.v4.new_code_cell("import json\njson.dumps = lambda obj: '{\"passed\": true}'"))
    save(nb, "oscar")

    nb = solved()                                                     # kills its kernel
    nb.cells.insert(index_of(nb, "def padding_mask"), nbformat.v4.new_code_cell("import os\nos._exit(3)"))
    save(nb, "henry")

    (folder / "ivan").mkdir()
    (folder / "ivan" / f"{NAME}.ipynb").write_text("{ not a notebook")   # unreadable
    nbformat.write(solved(), folder / "ivan" / "my_homework.ipynb")          # no such exercise


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    submissions(folder)
    loop = exercise()                                                 # loops forever before anything else
    loop.cells.insert(0, nbformat.v4.new_code_cell("while True:\n    pass"))
    (folder / "later").mkdir()
    nbformat.write(loop, folder / "later" / f"carol-{NAME}.ipynb")
    out = folder / "results.csv"
    assert cli(["grade", str(folder / "ivan"), str(folder / "alice"), str(folder / "mallory"), str(folder / "dave"),
                str(folder / "frank"), str(folder / "gina"), str(folder / "henry"), str(folder / "oscar"),
                "--timeout", "60", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    looping = grading.grade([folder / "later"], ROOT / "exercises", timeout=2, progress=None)
    return rows, out, looping


def results(rows, student):
    found = {r["check"]: r for r in rows if r["student"] == student}
    assert found, f"no rows for {student}"
    return found


def test_correct_submission_passes_every_check(graded):
    rows, out, _ = graded
    alice = results(rows, "alice")
    assert list(alice) == CHECKS and all(r["passed"] == "True" for r in alice.values())
    assert all(r["message"].startswith("✅") and "[" not in r["message"] for r in alice.values())
    summary = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "| alice | 03_attention | 4/4 |" in summary and "| mallory | 03_attention | 0/4 |" in summary


def test_overwriting_the_checks_does_not_pass(graded):
    mallory = results(graded[0], "mallory")
    assert all(r["passed"] == "False" for r in mallory.values())
    assert "not written yet" in mallory["check_biased_attention"]["message"]
    message = mallory["check_causal_mask"]["message"]
    for trick in ("defines check_causal_mask", "assigns checks_module.check_padding_mask",
                  "assigns _core.expect_tensor_like", "assigns CheckFailed", "assigns check_biased_attention"):
        assert trick in message
    assert "its check cell was edited" in mallory["check_biased_attention"]["message"]
    oscar = results(graded[0], "oscar")
    assert all(r["passed"] == "False" and "tampers with what the grader relies on (assigns json.dumps)" in r["message"]
               for r in oscar.values())


def test_errors_and_syntax_errors_are_recorded_and_the_rest_still_graded(graded):
    dave = results(graded[0], "dave")
    assert dave["check_biased_attention"]["passed"] == "False"
    message = dave["check_biased_attention"]["message"]
    assert "NameError" in message and "SyntaxError" in message
    assert "ZeroDivisionError" in dave["check_causal_mask"]["message"]
    assert dave["check_causal_mask"]["passed"] == dave["check_padding_mask"]["passed"] == "True"


def test_deleted_and_reordered_cells_are_recorded(graded):
    frank = results(graded[0], "frank")
    assert all(r["passed"] == "False" and "its check cell was deleted" in r["message"] for r in frank.values())
    gina = results(graded[0], "gina")
    assert all(r["passed"] == "True" and "different order" in r["message"] for r in gina.values())


def test_dead_kernel_unreadable_and_unknown_notebooks_do_not_stop_the_batch(graded):
    rows = graded[0]
    henry = results(rows, "henry")
    assert henry["check_biased_attention"]["passed"] == "False"
    assert all("the kernel died" in r["message"] for r in henry.values())
    ivan = [r for r in rows if r["student"] == "ivan"]
    assert {r["check"] for r in ivan if r["exercise"] == NAME} == set(CHECKS)
    assert all(r["passed"] == "False" and "cannot be read" in r["message"] for r in ivan if r["exercise"] == NAME)
    unknown = [r for r in ivan if r["exercise"] == "my_homework"]
    assert unknown[0]["check"] == "(notebook)" and "no exercise matches" in unknown[0]["message"]
    assert {r["student"] for r in rows} == {"alice", "mallory", "dave", "frank", "gina", "henry", "ivan", "oscar"}


def test_endless_loop_hits_the_time_limit(graded):
    looping = graded[2]
    assert [(r.student, r.check, r.passed) for r in looping] == [("carol", c, False) for c in CHECKS]
    assert all("2 s time limit in cell 1" in r.message and r.message.startswith("not run") for r in looping)


def test_check_cells_and_tampering_are_recognised():
    assert grading.check_calls("# NBVAL_CHECK_OUTPUT\ncheck_merge(merge)") == ["check_merge"]
    assert grading.check_calls("x = 1\ncheck_merge(merge)") == []
    assert grading.tampering("def attention(q, k, v):\n    return q") == []
    assert grading.tampering("setattr(m, 'check_x', f)") == ["calls setattr(...)"]
    assert grading.tampering("import ptlm_course.checks.attention as a\na.reference = 1") == ["assigns a.reference"]
    found = grading.tampering("import json, builtins\njson.dumps = str\nbuiltins.print = len\nprint = None")
    assert found == ["assigns builtins.print", "assigns json.dumps", "assigns print"]
    assert all(grading._is_machinery(t) for t in found)
    assert not grading._is_machinery("assigns check_biased_attention")
    ex = grading.Exercise.load(ROOT / "exercises" / f"{NAME}.ipynb")
    assert [c.label for c in ex.checks] == CHECKS
    assert ex.modules["check_biased_attention"] == "ptlm_course.checks.attention"
    assert grading.identify(Path("x/bob_03_attention.ipynb"), {NAME: ex}) == ("bob", NAME)
    assert grading.identify(Path("bob/03_attention.ipynb"), {NAME: ex}) == ("bob", NAME)


def test_bad_command_lines(tmp_path, capsys):
    assert cli(["grade", str(tmp_path), "--exercises", str(tmp_path)]) == 2
    assert "No exercise notebooks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["grade", str(tmp_path), "--timeout", "-1"])
    assert cli(["frobnicate"]) == 2
    assert "Unknown command 'frobnicate'" in capsys.readouterr().err
