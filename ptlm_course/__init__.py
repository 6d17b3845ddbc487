"""ptlm_course: the finished versions of what the course's notebooks build, in plain PyTorch."""
__version__ = "0.1.0"

from .runtime import budget, by_budget, get_device, seed_everything, setup_notebook

__all__ = ["__version__", "budget", "by_budget", "get_device", "seed_everything", "setup_notebook"]
