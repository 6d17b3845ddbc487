"""The code passes the linter configured in pyproject.toml ([tool.ruff]): ruff on the package, tools, tests and
benchmarks (the notebooks are checked by their own tests)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["ptlm_course", "tools", "tests", "benchmarks"]


def ruff_command() -> list[str]:
    """ruff next to this Python (a venv's bin/) or on PATH; skipped when not installed (`pip install -e ".[dev]"`)."""
    beside = Path(sys.executable).with_name("ruff")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip('ruff is not installed: pip install -e ".[dev]"')
    return [found]


def test_ruff_finds_nothing():
    result = subprocess.run([*ruff_command(), "check", "--no-cache", "--output-format", "concise", *PATHS],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ruff check {' '.join(PATHS)} failed:\n{result.stdout}{result.stderr}"


def test_ruff_reads_the_project_configuration(tmp_path):
    """A bad file is caught with the project's settings (so the test above can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    result = subprocess.run([*ruff_command(), "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                             str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "F401" in result.stdout, result.stdout + result.stderr
