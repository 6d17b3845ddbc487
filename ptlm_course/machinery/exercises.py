"""Generate exercise notebooks from solution notebooks (one source of truth).

    python -m ptlm_course.machinery.exercises solutions exercises          # write exercises/
    python -m ptlm_course.machinery.exercises solutions exercises --check  # exit 1 if exercises/ is stale

In a solution notebook the answers sit between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines
(the nbgrader convention). In code cells the block becomes ``# YOUR CODE HERE`` followed by
``raise NotImplementedError()`` at the block's indentation; in markdown cells it becomes
``YOUR ANSWER HERE``. Outputs, execution counts and nbval markers (tags ``nbval-*`` or the older
``# NBVAL_...`` comments) are removed.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
NBVAL_MARKERS = ("# NBVAL_CHECK_OUTPUT", "# NBVAL_IGNORE_OUTPUT", "# NBVAL_SKIP", "# NBVAL_RAISES_EXCEPTION")


class SolutionMarkerError(ValueError):
    """A solution block is opened and not closed, or closed without being opened."""


def clear_solutions(source: str, cell_type: str, where: str = "cell") -> tuple[str, int]:
    """Replace every solution block in one cell's source; returns (new source, number of blocks)."""
    out, blocks, inside = [], 0, False
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise SolutionMarkerError(f"{where}, line {number}: found a second `{BEGIN}` before `{END}`.")
            inside, blocks = True, blocks + 1
            indent = line[: len(line) - len(line.lstrip())]
            if cell_type == "code":
                out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
            else:
                out.append("YOUR ANSWER HERE")
        elif stripped == END:
            if not inside:
                raise SolutionMarkerError(f"{where}, line {number}: found `{END}` without a `{BEGIN}` before it.")
            inside = False
        elif not inside and not (cell_type == "code" and stripped in NBVAL_MARKERS):
            out.append(line)
    if inside:
        raise SolutionMarkerError(f"{where}: `{BEGIN}` is never closed with `{END}`.")
    return "\n".join(out), blocks


def make_exercise(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The exercise version of a solution notebook."""
    exercise = copy.deepcopy(solution)
    total = 0
    for index, cell in enumerate(exercise.cells):
        cell.source, blocks = clear_solutions(cell.source, cell.cell_type, f"{name}, cell {index}")
        total += blocks
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags", "editable", "deletable")}
        tags = [t for t in cell.metadata.get("tags", []) if not t.startswith("nbval-")]
        cell.metadata.pop("tags", None)
        if tags:
            cell.metadata["tags"] = tags
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if total == 0:
        raise SolutionMarkerError(f"{name} has no `{BEGIN}` block: is it really a solution notebook?")
    exercise.metadata = {k: v for k, v in exercise.metadata.items() if k in ("kernelspec", "language_info")}
    exercise.metadata.get("language_info", {}).pop("version", None)
    return exercise


def render(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


def generate(solutions_dir: Path, exercises_dir: Path, check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) every exercise; returns the names that differ."""
    solutions = sorted(Path(solutions_dir).glob("*.ipynb"))
    if not solutions:
        raise FileNotFoundError(f"No solution notebooks (*.ipynb) found in {solutions_dir}.")
    stale = []
    for path in solutions:
        text = render(make_exercise(nbformat.read(path, as_version=4), path.name))
        target = Path(exercises_dir) / path.name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(target.name)
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    known = {p.name for p in solutions}
    stale += [p.name + " (has no solution notebook)" for p in sorted(Path(exercises_dir).glob("*.ipynb"))
              if p.name not in known]
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate exercise notebooks from solution notebooks.")
    parser.add_argument("solutions", type=Path, nargs="?", default=Path("solutions"))
    parser.add_argument("exercises", type=Path, nargs="?", default=Path("exercises"))
    parser.add_argument("--check", action="store_true", help="only report exercises that are out of date")
    args = parser.parse_args(argv)
    stale = generate(args.solutions, args.exercises, check=args.check)
    if args.check and stale:
        print("Out of date (run `make exercises`): " + ", ".join(stale))
        return 1
    print(("Would update: " if args.check else "Updated: ") + (", ".join(stale) or "nothing") )
    return 0


if __name__ == "__main__":
    sys.exit(main())
