"""Turn nbval's comment markers into cell tags, so students never see them: ``python tools/nbval_tags.py NB...``.

A code cell whose source has a line ``# NBVAL_CHECK_OUTPUT`` (or ``# NBVAL_IGNORE_OUTPUT``, ``# NBVAL_SKIP``,
``# NBVAL_RAISES_EXCEPTION``) loses that line and gets the tag nbval reads instead (``nbval-check-output``,
...): nbval treats both the same way, so CI compares and ignores exactly the same cells. Outputs are kept.
``--check`` only reports the notebooks that still hold comment markers (exit code 1).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

MARKERS = ("NBVAL_CHECK_OUTPUT", "NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP", "NBVAL_RAISES_EXCEPTION")
MARKER_LINE = re.compile(r"^\s*#\s*(" + "|".join(MARKERS) + r")\s*$")


def tag_of(marker: str) -> str:
    """nbval's tag for a comment marker: NBVAL_CHECK_OUTPUT -> nbval-check-output."""
    return marker.lower().replace("_", "-")


def convert_cell(cell) -> bool:
    """Move one code cell's marker comments into its tags; returns whether the cell changed."""
    if cell.cell_type != "code":
        return False
    lines = cell.source.splitlines()
    found = [m.group(1) for m in map(MARKER_LINE.match, lines) if m]
    if not found:
        return False
    cell.source = "\n".join(line for line in lines if not MARKER_LINE.match(line))
    tags = list(cell.metadata.get("tags", []))
    tags += [tag_of(marker) for marker in found if tag_of(marker) not in tags]
    cell.metadata["tags"] = tags
    return True


def convert(notebook: nbformat.NotebookNode) -> int:
    """Convert every cell in place; returns the number of cells changed."""
    return sum(convert_cell(cell) for cell in notebook.cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Move nbval comment markers into cell tags.")
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only list notebooks that still hold markers")
    args = parser.parse_args(argv)
    pending = []
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"expected .ipynb files, but got {path}")
        notebook = nbformat.read(path, as_version=4)
        changed = convert(notebook)
        if changed:
            pending.append(path)
            if not args.check:
                nbformat.write(notebook, path)
        print(f"{path}: {changed} cell(s) {'to convert' if args.check else 'converted'}")
    return 1 if args.check and pending else 0


if __name__ == "__main__":
    sys.exit(main())
