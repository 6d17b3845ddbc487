"""LoRA, low-rank adaptation (Part 3): fine-tune a big Linear layer through a small trainable update.

A frozen weight ``W`` (out, in) gets a trainable low-rank correction ``B @ A`` with ``A`` (r, in) and
``B`` (out, r), ``r`` much smaller than ``in`` and ``out``:

    y = x W^T + b  +  (alpha / r) * x A^T B^T

``B`` starts at zero, so the adapted model starts as exactly the pretrained one; ``A`` starts random so
that gradients reach ``B``. After training, ``W + (alpha / r) B A`` is one plain matrix again
(:func:`merge_lora`): inference costs nothing extra.

    names = apply_lora(model, targets=("q_proj", "v_proj"), rank=8)   # wrap, freeze the rest
    ...train...
    merge_lora(model)                                                  # back to plain nn.Linear layers
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from .validation import describe, is_int, is_number

__all__ = ["LoRALinear", "apply_lora", "merge_lora"]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``scaling * B @ A``, ``scaling = alpha / rank``.

    ``lora_A`` (rank, in) starts random (like an nn.Linear weight), ``lora_B`` (out, rank) starts at zero.
    ``dropout`` applies to the input of the low-rank branch only.
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear layer, but got {describe(base)}.")
        if not is_int(rank) or rank <= 0:
            raise ValueError(f"`rank` should be a positive integer, but got {describe(rank)}.")
        if not is_number(alpha) or alpha <= 0:
            raise ValueError(f"`alpha` should be a positive number, but got {describe(alpha)}.")
        if not is_number(dropout) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` should be a probability in [0, 1), but got {describe(dropout)}.")
        self.base = base
        self.base.requires_grad_(False)                          # the pretrained weights stay as they are
        self.rank, self.alpha, self.scaling = rank, float(alpha), alpha / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=w.device, dtype=w.dtype))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))   # nn.Linear's own initialisation
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out)."""
        update = self.dropout(x) @ self.lora_A.T @ self.lora_B.T   # (..., r) then (..., out)
        return self.base(x) + self.scaling * update

    def delta_weight(self) -> torch.Tensor:
        """The update the adapter adds to the weight: scaling * B @ A, (out, in)."""
        return self.scaling * self.lora_B @ self.lora_A

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A new plain nn.Linear computing the same function (in eval mode): weight W + scaling * B @ A."""
        base = self.base
        linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        linear.weight.copy_(base.weight + self.delta_weight())
        if base.bias is not None:
            linear.bias.copy_(base.bias)
        return linear

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}"


def _matches(name: str, patterns: Sequence[str]) -> bool:
    """``blocks.0.attn.q_proj`` matches ``q_proj``, ``attn.q_proj`` and the full name."""
    return any(name == p or name.endswith("." + p) for p in patterns)


def _as_names(value, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise TypeError(f"`{what}` should be a tuple of module names, e.g. ('q_proj', 'v_proj'), "
                        f"but got {describe(value)}.")
    return tuple(value)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def apply_lora(model: nn.Module, targets: Sequence[str] = ("q_proj", "v_proj"), rank: int = 8,
               alpha: float = 16.0, dropout: float = 0.0, train_also: Sequence[str] = ("classifier",)) -> list[str]:
    """Wrap every ``nn.Linear`` whose name ends with one of ``targets`` in a :class:`LoRALinear`, in place.

    Freezes every parameter except the adapters' ``lora_A``/``lora_B`` and the modules named in
    ``train_also`` (a new classification head must learn; pass ``()`` for none). Returns the names of the
    wrapped modules. Our attention layers name their projections ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``;
    the feed-forward layers ``fc1``, ``fc2``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` should be a torch.nn.Module, but got {describe(model)}.")
    targets, train_also = _as_names(targets, "targets"), _as_names(train_also, "train_also")
    chosen = [(name, m) for name, m in model.named_modules() if name and _matches(name, targets)]
    if not chosen:
        linears = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"No module of the model matches targets {targets}; its nn.Linear layers are named "
                         f"{linears}.")
    for name, m in chosen:
        if isinstance(m, LoRALinear):
            raise ValueError(f"{name!r} already has LoRA: apply_lora was called twice on this model.")
        if not isinstance(m, nn.Linear):
            raise TypeError(f"LoRA applies to nn.Linear layers, but the target {name!r} is a {type(m).__name__}.")
    extra = [(name, m) for name, m in model.named_modules() if name and _matches(name, train_also)]
    missing = [t for t in train_also if not any(_matches(name, (t,)) for name, _ in extra)]
    if missing:
        raise ValueError(f"`train_also` names {missing}, but the model has no such module "
                         f"(its top-level modules: {[n for n, _ in model.named_children()]}); pass train_also=() "
                         "to train only the adapters.")
    model.requires_grad_(False)                                     # freeze everything ...
    for name, m in chosen:
        _set_submodule(model, name, LoRALinear(m, rank, alpha, dropout))   # ... the adapters are trainable
    for _, m in extra:
        m.requires_grad_(True)                                      # ... and so is e.g. the new head
    return [name for name, _ in chosen]


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` in ``model`` by its merged plain ``nn.Linear``, in place; return the
    model (or the merged Linear if ``model`` itself is a LoRALinear). The merged layers stay frozen."""
    if isinstance(model, LoRALinear):
        return model.merged().requires_grad_(False)
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` should be a torch.nn.Module, but got {describe(model)}.")
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    if not names:
        raise ValueError("The model has no LoRALinear layer to merge: call apply_lora(model, ...) first.")
    for name in names:
        _set_submodule(model, name, model.get_submodule(name).merged().requires_grad_(False))
    return model
