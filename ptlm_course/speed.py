"""Trading compute for memory, and measuring memory (notebook 15).

**Activation checkpointing.** Backward needs the activations each layer computed in the forward pass, so
normally all of them stay in memory until backward reaches them: memory grows with layers x batch x length.
With checkpointing, a Transformer block keeps only its *input*; backward runs the block's forward again to
get the rest back. Same loss, same gradients; about one extra forward pass of compute; much less memory.

    enable_activation_checkpointing(model)      # every TransformerBlock inside model
    peak, _ = peak_memory(lambda: model(x, y)[1].backward(), device)

**Peak memory.** On CUDA, PyTorch's allocator keeps statistics (``torch.cuda.max_memory_allocated``). On the
CPU it keeps none, so :class:`TensorMemoryTracker` counts it: every tensor storage created while it is active
adds its bytes when created and subtracts them when freed; the peak of that running sum is the same quantity
as the CUDA statistic (without the allocator's rounding). Process-level figures (RSS) would mix in the
Python interpreter, the libraries and malloc's caching, so they are not used.
"""
from __future__ import annotations

import gc
import types
import weakref
from typing import Callable

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.checkpoint import checkpoint

from .transformer import TransformerBlock
from .validation import describe

__all__ = ["enable_activation_checkpointing", "disable_activation_checkpointing", "TensorMemoryTracker",
           "peak_memory"]


# --------------------------------------------------------------------------------------------------
# Activation checkpointing
# --------------------------------------------------------------------------------------------------

def _checkpointed_forward(self: TransformerBlock, x: torch.Tensor, mask: torch.Tensor | None = None,
                          kv_cache=None) -> torch.Tensor:
    """The block's own forward, wrapped in ``torch.utils.checkpoint`` while training with gradients."""
    block_forward = type(self).forward
    if kv_cache is not None or not (self.training and torch.is_grad_enabled()):
        return block_forward(self, x, mask, kv_cache)     # generation / evaluation: nothing to save for backward
    # use_reentrant=False: PyTorch's recommended implementation (works with inputs that need no grad,
    # keyword arguments and torch.compile); dropout masks are replayed identically in the recomputation.
    return checkpoint(block_forward, self, x, mask, None, use_reentrant=False)


def enable_activation_checkpointing(model: nn.Module) -> nn.Module:
    """Recompute every :class:`TransformerBlock` of ``model`` in backward instead of storing its activations.

    Changes no weight and no state_dict key, only how forward runs while training. Returns ``model``.
    """
    blocks = _blocks(model)
    for block in blocks:
        block.forward = types.MethodType(_checkpointed_forward, block)   # this instance only
    return model


def disable_activation_checkpointing(model: nn.Module) -> nn.Module:
    """Undo :func:`enable_activation_checkpointing`. Returns ``model``."""
    for block in _blocks(model):
        block.__dict__.pop("forward", None)
    return model


def _blocks(model: nn.Module) -> list[TransformerBlock]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` should be a torch.nn.Module, but got {describe(model)}.")
    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    if not blocks:
        raise ValueError(f"Activation checkpointing wraps TransformerBlock layers, but {type(model).__name__} "
                         "has none.")
    return blocks


# --------------------------------------------------------------------------------------------------
# Measuring memory
# --------------------------------------------------------------------------------------------------

class TensorMemoryTracker(TorchDispatchMode):
    """Counts the bytes of tensor storages created inside ``with TensorMemoryTracker() as tracker:``.

    ``tracker.peak``: the most bytes alive at once (of those created inside); ``tracker.live``: still alive.
    Every PyTorch operation passes through ``__torch_dispatch__``; each new storage it returns is counted, and a
    ``weakref.finalize`` subtracts it again when PyTorch frees it. Backward's operations are counted too.
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._alive: set[tuple[str, int]] = set()          # (device, address) of the storages counted

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._count(t.untyped_storage(), str(t.device))
        return out

    def _count(self, storage, device: str) -> None:
        key = (device, storage.data_ptr())
        if storage.nbytes() == 0 or key in self._alive:   # a view of a counted storage, or empty
            return
        self._alive.add(key)
        self.live += storage.nbytes()
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, storage.nbytes())

    def _free(self, key: tuple[str, int], nbytes: int) -> None:
        self._alive.discard(key)
        self.live -= nbytes

    def __exit__(self, *exc):
        gc.collect()                                        # storages kept only by reference cycles
        return super().__exit__(*exc)


def peak_memory(fn: Callable, device: torch.device | str = "cpu") -> tuple[int, object]:
    """``(peak bytes, fn())``: the most memory that tensors created by ``fn()`` held at once.

    CUDA: the allocator's peak above what was allocated before. Elsewhere: a :class:`TensorMemoryTracker`
    (slower: every operation passes through Python).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before, result
    with TensorMemoryTracker() as tracker:
        result = fn()
    return tracker.peak, result
