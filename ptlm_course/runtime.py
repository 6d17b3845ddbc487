"""Where and how the course runs: the training budget, the device and the random seed."""
from __future__ import annotations

import os
import platform
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from .validation import is_int

BUDGETS = ("small", "full")
T = TypeVar("T")


def budget() -> str:
    """The training budget: ``PTLM_BUDGET`` is ``small`` (quick CI runs) or ``full`` (the default)."""
    value = os.environ.get("PTLM_BUDGET", "full").strip().lower() or "full"
    if value not in BUDGETS:
        raise ValueError(
            f"PTLM_BUDGET should be one of {', '.join(BUDGETS)}, but it is {value!r}. "
            "Unset it for the full course, or set PTLM_BUDGET=small for a quick run."
        )
    return value


def by_budget(small: T, full: T) -> T:
    """Pick the setting for the current budget, e.g. ``steps = by_budget(small=50, full=2000)``."""
    return small if budget() == "small" else full


def course_seed(default: int = 0) -> int:
    """The run's seed: ``PTLM_SEED`` when it is set (an integer), else ``default``. Rerun a notebook with
    another seed (``PTLM_SEED=3``) to see which of its numbers are luck; its assertions hold for any seed."""
    value = os.environ.get("PTLM_SEED", "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"PTLM_SEED should be an integer (e.g. PTLM_SEED=3), but it is {value!r}.") from None


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or the environment variable ``PTLM_DEVICE``) forces one, e.g. ``"cpu"``.
    On MPS, operations PyTorch has not implemented there fall back to the CPU
    (``PYTORCH_ENABLE_MPS_FALLBACK=1``, set when ``ptlm_course`` is imported before torch).
    """
    prefer = prefer or os.environ.get("PTLM_DEVICE")
    if prefer:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"Device {prefer!r} was asked for, but CUDA is not available here; use 'cpu'.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        from . import MPS_FALLBACK_ACTIVE

        if not MPS_FALLBACK_ACTIVE:
            print("Note: torch was imported before ptlm_course, so operations missing on MPS will raise "
                  "instead of falling back to the CPU. Restart and import ptlm_course first, or use "
                  "get_device('cpu').")
        return torch.device("mps")
    return torch.device("cpu")


def cache_dir(create: bool = True) -> Path:
    """Where the course keeps what it computes once and reuses (e.g. the Part 2 pretrained models).

    ``PTLM_CACHE_DIR`` if set, else ``~/.cache/ptlm-course``. Deleting it is always safe.
    """
    path = Path(os.environ.get("PTLM_CACHE_DIR") or Path.home() / ".cache" / "ptlm-course").expanduser()
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(f"The course cache folder {str(path)!r} cannot be created ({error}); set "
                          "PTLM_CACHE_DIR to a folder you can write to.") from error
    return path


def atomic_write(path, write: Callable[[Path], object], folder: bool = False) -> None:
    """Create ``path`` (a file, or a folder with ``folder=True``) by calling ``write(tmp)`` on a temporary path
    beside it, then renaming it into place: a reader, or a crash, never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    else:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)          # atomic on POSIX and Windows (same file system)
    except BaseException:
        if folder:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); returns a CPU generator seeded the same way."""
    if not is_int(seed):
        raise TypeError(f"seed should be an int, but got {type(seed).__name__} {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def environment_summary(device: torch.device | None = None) -> str:
    """One line saying what this notebook runs on."""
    from . import __version__

    device = device or get_device()
    name = device.type
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return (
        f"ptlm_course {__version__} | budget: {budget()} | device: {name} | "
        f"torch {torch.__version__} | Python {platform.python_version()} on {sys.platform}"
    )


def setup_notebook(seed: int = 0, device: str | None = None) -> torch.device:
    """Seed everything (with ``PTLM_SEED`` if set, else ``seed``), pick the device and say so: the last line
    of every notebook's set-up cell."""
    seed = course_seed(seed)
    seed_everything(seed)
    chosen = get_device(device)
    print(environment_summary(chosen) + f" | seed: {seed}")
    if budget() == "small":
        print("Small budget: training runs are shortened (unset PTLM_BUDGET for the full course).")
    return chosen
