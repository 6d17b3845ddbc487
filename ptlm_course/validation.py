"""Friendly input checks: each error says what was expected and what came instead."""
from __future__ import annotations

from typing import Sequence

import torch


def describe(x) -> str:
    """A short description of a value for error messages, e.g. ``tensor of shape (2, 5) float32``."""
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} {str(x.dtype).replace('torch.', '')}"
    if isinstance(x, (list, tuple)) and len(x) > 6:
        return f"{type(x).__name__} of length {len(x)}"
    return f"{type(x).__name__} {x!r}"


def is_int(x) -> bool:
    """True for a Python int, False for a bool (which Python counts as an int) and everything else."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x) -> bool:
    """True for a Python int or float, False for a bool and everything else."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def expect_tensor(x, name: str, ndim: int | Sequence[int] | None = None, layout: str = "") -> torch.Tensor:
    """Check that ``x`` is a tensor with ``ndim`` dimensions; ``layout`` names them, e.g. ``"(B, T, C)"``."""
    what = f" {layout}" if layout else ""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`{name}` should be a torch.Tensor{what}, but got {describe(x)}.")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and x.dim() not in allowed:
        dims = " or ".join(str(d) for d in allowed)
        raise ValueError(
            f"`{name}` should have {dims} dimensions{what}, but got shape {tuple(x.shape)} ({x.dim()} dimensions)."
        )
    return x


def expect_floating(x: torch.Tensor, name: str) -> torch.Tensor:
    if not x.is_floating_point():
        raise TypeError(f"`{name}` should hold floating-point numbers, but its dtype is {x.dtype}.")
    return x


def expect_module_dtype(x: torch.Tensor, module, name: str) -> torch.Tensor:
    """Check that ``x`` has the dtype of ``module``'s weights (autocast, which mixes dtypes itself, is allowed)."""
    weight = next(module.parameters(), None)
    if weight is None or x.dtype == weight.dtype or torch.is_autocast_enabled(x.device.type):
        return x
    raise TypeError(f"`{name}` should have the dtype of the module's weights, {weight.dtype}, but its dtype is "
                    f"{x.dtype}: convert the input (`{name}.to({weight.dtype})`) or the module "
                    f"(`module.to({x.dtype})`).")


def expect_size(x: torch.Tensor, name: str, dim: int, size: int, meaning: str) -> None:
    """Check one dimension, e.g. ``expect_size(x, "x", -1, 64, "d_model")``."""
    if x.shape[dim] != size:
        raise ValueError(
            f"`{name}` should have {meaning} = {size} in dimension {dim}, "
            f"but got shape {tuple(x.shape)} (size {x.shape[dim]} there)."
        )


def expect_ids_in_vocab(ids: torch.Tensor, vocab_size: int, name: str = "ids") -> torch.Tensor:
    """Check integer token ids lie in ``[0, vocab_size)``."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"`{name}` should be a tensor of integer token ids, but got {describe(ids)}.")
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"`{name}` should hold integer token ids (torch.long), but its dtype is {ids.dtype}.")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)]
        raise ValueError(
            f"`{name}` should hold token ids in [0, {vocab_size - 1}] (vocabulary size {vocab_size}), "
            f"but it contains {bad[:5].tolist()}{'...' if bad.numel() > 5 else ''}."
        )
    return ids


def expect_positive_int(value, name: str) -> int:
    if not is_int(value) or value <= 0:
        raise ValueError(f"`{name}` should be a positive integer, but got {describe(value)}.")
    return value


def expect_class_labels(labels, shape: tuple, name: str, n_classes: int, layout: str) -> None:
    """Integer class labels of ``shape`` in [0, n_classes), -100 allowed (= ignore)."""
    expect_tensor(labels, name, len(shape), layout)
    if tuple(labels.shape) != shape:
        raise ValueError(f"`{name}` should have shape {layout} = {shape}, but got {describe(labels)}.")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"`{name}` should hold integer class ids (torch.long), but its dtype is {labels.dtype}.")
    bad = labels[((labels < 0) | (labels >= n_classes)) & (labels != -100)]
    if bad.numel():
        raise ValueError(f"`{name}` should hold ids in [0, {n_classes - 1}] (or -100 = ignore), "
                         f"but it contains {bad[:5].tolist()}.")
