"""tools/nbval_tags.py moves nbval's comment markers into cell tags without changing what CI checks."""
import copy
import importlib.util
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import find_comment_markers, find_metadata_tags

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("nbval_tags", ROOT / "tools" / "nbval_tags.py")
nbval_tags = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nbval_tags)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))
# Lessons being rewritten elsewhere; they get `python tools/nbval_tags.py notebooks/NN_*.ipynb` when merged.
NOT_YET_CONVERTED: set[str] = set()          # every notebook carries tags now


def nbval_options(cell) -> dict:
    """What nbval does with a cell, computed the way nbval's collector does it."""
    options = defaultdict(bool, find_metadata_tags(cell.metadata))
    options.update(dict(find_comment_markers(cell.source)))
    return dict(options)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_conversion_keeps_what_nbval_checks(path):
    notebook = nbformat.read(path, as_version=4)
    converted = copy.deepcopy(notebook)
    nbval_tags.convert(converted)
    before = [nbval_options(c) for c in notebook.cells if c.cell_type == "code"]
    after = [nbval_options(c) for c in converted.cells if c.cell_type == "code"]
    assert after == before
    assert not any(nbval_tags.MARKER_LINE.match(line) for c in converted.cells for line in c.source.splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_students_see_no_nbval_comments(path):
    name = f"{path.parent.name}/{path.name}"
    if name in NOT_YET_CONVERTED:
        return
    notebook = nbformat.read(path, as_version=4)
    assert nbval_tags.convert(notebook) == 0, f"run `python tools/nbval_tags.py {name}`"


def test_convert_a_cell():
    cell = nbformat.v4.new_code_cell("x = 1\n# NBVAL_CHECK_OUTPUT\nprint(x)", metadata={"tags": ["keep-me"]})
    assert nbval_tags.convert_cell(cell)
    assert cell.source == "x = 1\nprint(x)"
    assert cell.metadata["tags"] == ["keep-me", "nbval-check-output"]
    assert nbval_options(cell) == {"check": True}
    assert not nbval_tags.convert_cell(cell)                      # a second run changes nothing
    ignored = nbformat.v4.new_code_cell("#  NBVAL_IGNORE_OUTPUT\nwidget()")
    nbval_tags.convert_cell(ignored)
    assert (ignored.source, nbval_options(ignored)) == ("widget()", {"check": False})
    markdown = nbformat.v4.new_markdown_cell("# NBVAL_SKIP")       # only code cells carry markers
    assert not nbval_tags.convert_cell(markdown) and markdown.source == "# NBVAL_SKIP"


def test_command_line_check_mode(tmp_path, capsys):
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("# NBVAL_SKIP\n1")]), path)
    assert nbval_tags.main([str(path), "--check"]) == 1 and "1 cell(s) to convert" in capsys.readouterr().out
    assert nbval_tags.main([str(path)]) == 0
    assert nbval_tags.main([str(path), "--check"]) == 0
    assert nbformat.read(path, as_version=4).cells[0].metadata["tags"] == ["nbval-skip"]
    with pytest.raises(SystemExit):
        nbval_tags.main([str(tmp_path / "missing.ipynb")])
