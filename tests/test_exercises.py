"""Exercises are generated from solutions, and as shipped they fail their checks kindly."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ptlm_course.machinery.exercises import SolutionMarkerError, clear_solutions, generate, make_exercise

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))


def is_check_cell(cell) -> bool:
    return cell.cell_type == "code" and any(line.lstrip().startswith("check_") for line in cell.source.splitlines())


def test_required_exercises_exist():
    numbers = {p.name[:2] for p in SOLUTIONS}
    assert {"01", "02", "03", "04", "05", "06", "15", "16"} <= numbers, \
        f"solution notebooks found: {[p.name for p in SOLUTIONS]}"


def test_exercises_are_generated_from_solutions():
    stale = generate(ROOT / "solutions", ROOT / "exercises", check=True)
    assert not stale, f"exercises/ differs from what `make exercises` generates: {stale}"


def test_clear_solutions_in_code_keeps_indentation():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n# NBVAL_CHECK_OUTPUT\nprint(1)"
    cleared, blocks = clear_solutions(source, "code")
    assert blocks == 1
    assert cleared == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(1)"


def test_clear_solutions_in_markdown():
    cleared, blocks = clear_solutions("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", "markdown")
    assert (cleared, blocks) == ("Why?\nYOUR ANSWER HERE", 1)


@pytest.mark.parametrize("source, problem", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "second"),
])
def test_unbalanced_markers_are_reported(source, problem):
    with pytest.raises(SolutionMarkerError, match=problem):
        clear_solutions(source, "code", "demo.ipynb, cell 3")


def test_notebook_without_solutions_is_rejected():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(SolutionMarkerError, match="no `### BEGIN SOLUTION`"):
        make_exercise(nb, "plain.ipynb")


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_checks_are_guarded_and_pass(path):
    nb = nbformat.read(path, as_version=4)
    checks = [c for c in nb.cells if is_check_cell(c)]
    assert checks, f"{path.name} has no check cell"
    for cell in checks:
        assert "nbval-check-output" in cell.metadata.get("tags", []), f"check cell not guarded by nbval:\n{cell.source}"
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert "✅" in text, f"{path.name}: stored output of a check cell does not show a pass:\n{cell.source}"


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_shipped_exercise_fails_only_in_checks_with_friendly_messages(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "exercises ship without outputs"
    assert "BEGIN SOLUTION" not in nbformat.writes(nb)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    n_checks = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if is_check_cell(cell):
            n_checks += 1
            assert len(errors) == 1, f"check cell did not fail:\n{cell.source}"
            error = errors[0]
            assert error.ename == "CheckFailed", f"check crashed with {error.ename}: {error.evalue}"
            assert "not written yet" in error.evalue
            assert len(error.traceback) == 1 and error.traceback[0].startswith("❌"), error.traceback
        else:
            assert not errors, f"a non-check cell failed ({errors[0].ename}: {errors[0].evalue}):\n{cell.source}"
    assert n_checks > 0


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_exercise_says_run_all_stops_at_the_first_failing_check(path):
    nb = nbformat.read(path, as_version=4)
    intro = next(c for c in nb.cells if c.cell_type == "markdown")
    assert "Run All stops at the first check that fails, by design" in intro.source
