"""Budget knob, device choice, seeding and the friendly validation helpers."""
from pathlib import Path

import pytest
import torch

from ptlm_course import budget, by_budget, get_device, seed_everything, setup_notebook
from ptlm_course.checks import CheckFailed
from ptlm_course.checks._core import call_student, expect_equal, expect_tensor_like
from ptlm_course.validation import expect_ids_in_vocab, expect_positive_int, expect_tensor


def test_budget_default_is_full(monkeypatch):
    monkeypatch.delenv("PTLM_BUDGET", raising=False)
    assert budget() == "full"
    assert by_budget(small=1, full=2) == 2


def test_budget_small(monkeypatch):
    monkeypatch.setenv("PTLM_BUDGET", " Small ")
    assert budget() == "small"
    assert by_budget(small=1, full=2) == 1


def test_unknown_budget_is_explained(monkeypatch):
    monkeypatch.setenv("PTLM_BUDGET", "tiny")
    with pytest.raises(ValueError, match=r"PTLM_BUDGET should be one of small, full, but it is 'tiny'"):
        budget()


def test_device_is_cpu_here_or_forced(monkeypatch):
    monkeypatch.setenv("PTLM_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.delenv("PTLM_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert get_device().type == expected


def test_asking_for_missing_cuda_is_explained():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_device("cuda")


def test_seed_gives_same_numbers():
    seed_everything(123)
    a = torch.randn(5)
    seed_everything(123)
    assert torch.equal(a, torch.randn(5))
    seed_everything(124)
    assert not torch.equal(a, torch.randn(5))


def test_seed_must_be_int():
    with pytest.raises(TypeError, match="seed should be an int"):
        seed_everything(1.5)


def test_ptlm_seed_overrides_the_notebook_seed(capsys, monkeypatch):
    from ptlm_course.runtime import course_seed
    monkeypatch.delenv("PTLM_SEED", raising=False)
    assert course_seed() == 0 and course_seed(5) == 5
    monkeypatch.setenv("PTLM_SEED", "7")
    assert course_seed() == 7
    setup_notebook(seed=0)
    assert "seed: 7" in capsys.readouterr().out
    after_setup = torch.rand(3)
    seed_everything(7)
    assert torch.equal(after_setup, torch.rand(3))                     # seeded with 7, not 0
    monkeypatch.setenv("PTLM_SEED", "seven")
    with pytest.raises(ValueError, match="PTLM_SEED should be an integer.*'seven'"):
        course_seed()


def test_setup_notebook_reports(capsys, monkeypatch):
    monkeypatch.setenv("PTLM_BUDGET", "small")
    monkeypatch.delenv("PTLM_SEED", raising=False)
    device = setup_notebook(seed=3)
    out = capsys.readouterr().out
    assert isinstance(device, torch.device)
    assert "budget: small" in out and "seed: 3" in out and f"device: {device.type}" in out


def test_expect_tensor_messages():
    with pytest.raises(TypeError, match=r"`x` should be a torch.Tensor \(B, T, C\), but got list"):
        expect_tensor([1, 2], "x", 3, "(B, T, C)")
    with pytest.raises(ValueError, match=r"should have 3 dimensions \(B, T, C\), but got shape \(2, 4\)"):
        expect_tensor(torch.zeros(2, 4), "x", 3, "(B, T, C)")
    assert expect_tensor(torch.zeros(1, 2, 3), "x", 3).shape == (1, 2, 3)


def test_expect_ids_in_vocab():
    with pytest.raises(ValueError, match=r"token ids in \[0, 9\] .* but it contains \[10, -1\]"):
        expect_ids_in_vocab(torch.tensor([1, 10, -1]), 10)
    with pytest.raises(TypeError, match="integer token ids"):
        expect_ids_in_vocab(torch.tensor([1.0]), 10)
    with pytest.raises(ValueError, match="positive integer"):
        expect_positive_int(0, "n_heads")


def test_check_core_explains():
    def todo(x):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="not written yet"):
        call_student("check_demo", todo, 1)
    with pytest.raises(CheckFailed, match=r"raised ZeroDivisionError"):
        call_student("check_demo", lambda x: 1 / 0, 1)
    reference = torch.arange(6.0).reshape(2, 3)
    with pytest.raises(CheckFailed, match="no scaling"):
        expect_tensor_like("check_demo", reference * 2, reference, "the output", [("no scaling", reference * 2)])
    with pytest.raises(CheckFailed, match=r"should have shape \(2, 3\), but it has shape \(3, 2\)"):
        expect_tensor_like("check_demo", reference.T, reference, "the output")
    with pytest.raises(CheckFailed, match=r"at index \(1, 2\) it is 6"):
        expect_tensor_like("check_demo", reference + torch.tensor([[0, 0, 0], [0, 0, 1.0]]), reference, "the output")
    expect_tensor_like("check_demo", reference + 1e-7, reference, "the output")
    with pytest.raises(CheckFailed, match=r"should be \[1, 2\], but it is \[2, 1\]"):
        expect_equal("check_demo", [2, 1], [1, 2], "the list")
    assert CheckFailed("check_demo", "oops")._render_traceback_() == ["❌ check_demo failed: oops"]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from ptlm_course.runtime import cache_dir

    monkeypatch.setenv("PTLM_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache" and (tmp_path / "cache").is_dir()
    monkeypatch.delenv("PTLM_CACHE_DIR")
    assert cache_dir(create=False) == Path.home() / ".cache" / "ptlm-course"


def test_unwritable_cache_dir_is_explained(monkeypatch, tmp_path):
    from ptlm_course.runtime import cache_dir

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PTLM_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(OSError, match="PTLM_CACHE_DIR"):
        cache_dir()


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    from ptlm_course.runtime import atomic_write
    target = tmp_path / "sub" / "file.txt"
    atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"

    def half_then_crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash")
    with pytest.raises(RuntimeError, match="crash"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]

    folder = tmp_path / "entry"
    atomic_write(folder, lambda tmp: (tmp / "a.txt").write_text("a"), folder=True)
    assert (folder / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError, match="crash"):
        atomic_write(tmp_path / "other", lambda tmp: half_then_crash(tmp / "b.txt"), folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry", "sub"]
