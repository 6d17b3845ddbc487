"""ptlm_course: the finished versions of what the course's notebooks build, in plain PyTorch."""
import os as _os
import sys as _sys

# On Apple GPUs (MPS), let operations PyTorch has not implemented there run on the CPU instead of
# stopping the notebook. PyTorch reads this when it is imported, so it is set before importing torch.
MPS_FALLBACK_ACTIVE = "torch" not in _sys.modules or _os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") == "1"
_os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

__version__ = "0.1.0"

from .runtime import budget, by_budget, get_device, seed_everything, setup_notebook  # noqa: E402

__all__ = ["__version__", "budget", "by_budget", "get_device", "seed_everything", "setup_notebook"]
