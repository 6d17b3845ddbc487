"""Every notebook follows the course's structure and can run offline on Colab."""
import re
import sys
from pathlib import Path

import nbformat
import pytest

from ptlm_course.course import REPO_URL, SETUP_CELL

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ALL = LESSONS + sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "exercises").glob("*.ipynb"))
NETWORK = re.compile(r"urlopen|urllib\.request|requests\.(get|post)|wget |curl |https?://|hf_hub|snapshot_download")


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_lessons_are_numbered_from_00():
    numbers = [p.name[:3] for p in LESSONS]
    assert numbers == [f"{i:02d}_" for i in range(len(LESSONS))], numbers
    assert len(LESSONS) >= 6


def test_repository_url_named_once_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["urls"]["Repository"] == REPO_URL


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_first_cell_is_the_shared_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert code_cells(nb)[0].source == SETUP_CELL, "the first code cell must be ptlm_course.course.SETUP_CELL"


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_nothing_is_fetched_from_the_internet(path):
    nb = nbformat.read(path, as_version=4)
    for cell in code_cells(nb)[1:]:
        assert not NETWORK.search(cell.source), f"network access in a cell:\n{cell.source}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_structure(path):
    nb = nbformat.read(path, as_version=4)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown[0].startswith(f"# {path.name[:2]} · "), "the first markdown cell is the title '# NN · Topic'"
    text = "\n".join(markdown)
    assert re.search(r"learning goals", text, re.I), "state the learning goals"
    assert re.search(r"^#+ Recap", text, re.M), "end with a '## Recap'"
    exercise = ROOT / "exercises" / path.name
    if exercise.exists():
        assert f"exercises/{path.name}" in text, f"point to exercises/{path.name}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lessons_are_stored_with_outputs_of_a_full_run(path):
    nb = nbformat.read(path, as_version=4)
    for cell in code_cells(nb):
        assert cell.execution_count is not None, f"cell not executed:\n{cell.source[:200]}"
        assert not [o for o in cell.outputs if o.output_type == "error"], f"stored error in:\n{cell.source[:200]}"
    outputs = "".join(o.get("text", "") for c in code_cells(nb) for o in c.outputs)
    assert "budget: full" in outputs, "stored outputs must come from a PTLM_BUDGET=full run"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_training_notebooks_assert_their_results(path):
    nb = nbformat.read(path, as_version=4)
    sources = [c.source for c in code_cells(nb)]
    trains = [i for i, s in enumerate(sources) if "by_budget(" in s]
    if trains:
        assert any("assert" in s for s in sources[trains[-1]:]), "a training notebook ends with a results check"


def test_readme_lists_every_notebook():
    readme = (ROOT / "README.md").read_text()
    for path in LESSONS:
        assert f"notebooks/{path.name}" in readme, f"README's table of contents misses {path.name}"


def _readme_folder(readme: str, folder: str) -> str:
    """The lines of README's package map under ``  folder/`` (indented deeper), joined."""
    lines = readme.split(f"\n  {folder}/", 1)[1].split("\n")[1:]
    inside = []
    for line in lines:
        if not line.startswith("    "):
            break
        inside.append(line)
    return "\n" + "\n".join(inside)


def test_readme_describes_every_package_module():
    """README's map of the package names each module, so a new one is never left out of it: the top-level
    modules, then each module inside machinery/ and widgets/, listed under their folder."""
    readme = (ROOT / "README.md").read_text()
    for module in sorted((ROOT / "ptlm_course").glob("*.py")):
        if module.name not in ("__init__.py", "__main__.py"):
            assert f"\n  {module.name} " in readme, f"README's package layout does not describe {module.name}"
    for folder in ("machinery", "widgets"):
        assert f"\n  {folder}/" in readme, f"README's package layout has no {folder}/ folder"
        described = _readme_folder(readme, folder)
        for module in sorted((ROOT / "ptlm_course" / folder).glob("*.py")):
            if module.name != "__init__.py":
                assert f"\n    {module.name} " in described, \
                    f"README's package layout does not describe {folder}/{module.name} under {folder}/"


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_name_their_kernel(path):
    """Without a kernelspec JupyterLab (and Colab) ask the student to pick a kernel before anything runs."""
    kernelspec = nbformat.read(path, as_version=4).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3" and kernelspec.get("language") == "python", kernelspec
