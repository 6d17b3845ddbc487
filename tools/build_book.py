"""The course as a static website (`make book`): every lesson with its stored outputs, README (its table of
contents) as the home page and the instructors' guide, with navigation and search, readable offline.

    python tools/build_book.py build/book        # open build/book/html/index.html

Sphinx + myst-nb (`pip install -e ".[book]"`) render the committed notebooks as they are: nothing is executed.
The sources are staged in OUT/source: each lesson gets, under its title, links to its notebook, its exercise
and an "Open in Colab" badge built from ``ptlm_course.course.REPO_URL``.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ptlm_course.course import REPO_URL  # noqa: E402

BOOK = Path(__file__).resolve().parent / "book"          # conf.py and _static/
PART = re.compile(r"^\| \*\*(Part [^*]+)\*\* \|", re.M)   # "| **Part 1 · Foundations** | | |" in README's table
LESSON = re.compile(r"^\| \[`notebooks/(\w+)\.ipynb`\]", re.M)
# [`exercises/x.ipynb`](../exercises/x.ipynb)
EXERCISE_LINK = re.compile(r"\[([^\]]+)\]\(((?:\.\./)?exercises/\w+\.ipynb)\)")


def colab_url(path: str) -> str:
    """Colab's address for a notebook of the repository, e.g. notebooks/03_attention.ipynb."""
    if not REPO_URL.startswith("https://github.com/"):
        raise ValueError(f"REPO_URL should be a https://github.com/ address, but it is {REPO_URL!r}.")
    return f"https://colab.research.google.com/github/{REPO_URL.removeprefix('https://github.com/')}/blob/main/{path}"


def exercise_downloads(markdown: str) -> str:
    """Links to exercise notebooks become downloads (Sphinx would look for a page of that name)."""
    return EXERCISE_LINK.sub(lambda m: f"{{download}}`{m.group(1).strip('`')} <{m.group(2)}>`", markdown)


def lesson_links(name: str) -> str:
    """The line under a lesson's title: Colab badge, its notebook, its exercise (downloads and GitHub)."""
    links = [f"[![Open in Colab](../_static/colab-badge.svg)]({colab_url(f'notebooks/{name}.ipynb')})",
             f"notebook: {{download}}`{name}.ipynb <{name}.ipynb>` "
             f"([GitHub]({REPO_URL}/blob/main/notebooks/{name}.ipynb))"]
    if (ROOT / "exercises" / f"{name}.ipynb").exists():
        links.append(f"exercise: {{download}}`exercises/{name}.ipynb <../exercises/{name}.ipynb>` "
                     f"([GitHub]({REPO_URL}/blob/main/exercises/{name}.ipynb), "
                     f"[Colab]({colab_url(f'exercises/{name}.ipynb')}))")
    else:
        links.append("no exercise for this lesson")
    return " · ".join(links)


def stage_lesson(path: Path, target: Path) -> None:
    """Copy a lesson, its title cell first (before the set-up cell) with the links line right under
    "# NN · Topic", and exercise links turned into downloads."""
    notebook = nbformat.read(path, as_version=4)
    title = next(c for c in notebook.cells if c.cell_type == "markdown")
    notebook.cells.remove(title)
    notebook.cells.insert(0, title)
    first, _, rest = title.source.partition("\n")
    if not first.startswith("# "):
        raise ValueError(f"{path.name}: the first markdown cell should start with '# NN · Topic', not {first!r}.")
    title.source = f"{first}\n\n{lesson_links(path.stem)}\n{rest}"
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = exercise_downloads(cell.source)
    nbformat.write(notebook, target)


def home_page(readme: str, lessons: list[str]) -> str:
    """README, plus the navigation: one toctree per part of the course, then the instructors' guide."""
    readme = readme.replace("](CONTRIBUTING.md)", f"]({REPO_URL}/blob/main/CONTRIBUTING.md)")
    table = readme[readme.index("## Table of contents"):]
    parts, position = [], 0
    for match in PART.finditer(table):
        parts.append((match.group(1).strip(), match.end()))
    toctrees = []
    for i, (part, start) in enumerate(parts):
        end = parts[i + 1][1] if i + 1 < len(parts) else len(table)
        names = [n for n in LESSON.findall(table[start:end]) if n in lessons]
        toctrees.append("```{toctree}\n:hidden:\n:caption: " + part + "\n\n"
                        + "\n".join(f"notebooks/{n}" for n in names) + "\n```\n")
        position += len(names)
    if position != len(lessons):
        raise ValueError(f"README's table of contents lists {position} of the {len(lessons)} lessons.")
    toctrees.append("```{toctree}\n:hidden:\n:caption: Teaching\n\ndocs/instructors\n```\n")
    return exercise_downloads(readme) + "\n" + "\n".join(toctrees)


def stage(source: Path) -> None:
    """Write the Sphinx sources: conf.py, index.md (README), docs/instructors.md, lessons, exercises."""
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(BOOK, source)
    (source / "notebooks").mkdir()
    lessons = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in lessons:
        stage_lesson(ROOT / "notebooks" / f"{name}.ipynb", source / "notebooks" / f"{name}.ipynb")
    shutil.copytree(ROOT / "exercises", source / "exercises")          # downloads, not pages
    (source / "docs").mkdir()
    guide = (ROOT / "docs" / "instructors.md").read_text(encoding="utf-8")
    (source / "docs" / "instructors.md").write_text(guide.replace("](../README.md", "](../index.md"),
                                                    encoding="utf-8")
    (source / "index.md").write_text(home_page((ROOT / "README.md").read_text(encoding="utf-8"), lessons),
                                     encoding="utf-8")


def build(out: Path, quiet: bool = True) -> Path:
    """Stage the sources in OUT/source and build the site into OUT/html; returns the html folder."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        raise SystemExit('The website needs Sphinx and myst-nb: pip install -e ".[book]" (or `make book`).') from None
    out = Path(out).resolve()
    stage(out / "source")
    args = ["-b", "html", "-W", "--keep-going", "-d", str(out / "doctrees"), str(out / "source"), str(out / "html")]
    if build_main(args + (["-q"] if quiet else [])) != 0:
        raise SystemExit("Sphinx reported problems (above); the site in "
                         f"{out / 'html'} may be incomplete.")
    return out / "html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the course website from the stored notebook outputs.")
    parser.add_argument("out", type=Path, nargs="?", default=ROOT / "build" / "book")
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    args = parser.parse_args(argv)
    html = build(args.out, quiet=not args.verbose)
    print(f"The course website: {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
