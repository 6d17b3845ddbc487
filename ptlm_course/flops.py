"""Counting a Transformer's training FLOPs, and model FLOPs utilisation (MFU) (notebook 15, benchmarks/).

FLOPs per token of one training step (forward + backward), the PaLM convention::

    6 * N_mm + 12 * L * T * C

- ``N_mm``: the weights of every ``nn.Linear`` applied to each token: per block q, k, v, out, fc1, fc2
  (12 C^2 with d_ff = 4C), the output layer V*C (tied to the embedding, but still a matmul) and BERT's MLM
  transform C*C. A weight used on a token costs 2 FLOPs forward (multiply + add) and 4 backward (the
  gradients of the input and of the weight): 6 per weight. The per-sequence pooler / NSP / classifier
  heads are left out.
- ``12 L T C``: attention's q kᵀ and weights @ v, 2 * 2 * T * C per token and layer forward, x3 with the
  backward, counted over the full T x T even for a causal model.

Biases, LayerNorms, GELU, softmax, embedding lookups and the optimizer count as zero: the time they take is
part of what lowers the MFU = achieved FLOP/s / the FLOP/s the hardware reaches on a large dense matmul.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn

from .transformer import TransformerBlock
from .validation import describe, expect_positive_int

__all__ = ["PER_SEQUENCE_HEADS", "token_matmul_weights", "training_flops_per_token", "matmul_flops_per_second",
           "model_flops_utilisation"]

PER_SEQUENCE_HEADS = ("pooler", "nsp_head", "classifier")     # applied once per sequence, not per token


def token_matmul_weights(model: nn.Module) -> int:
    """N_mm: how many weights of ``nn.Linear`` layers each token goes through (a tied weight counts per use)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` should be a torch.nn.Module, but got {describe(model)}.")
    return sum(m.weight.numel() for name, m in model.named_modules(remove_duplicate=False)
               if isinstance(m, nn.Linear) and not set(name.split(".")) & set(PER_SEQUENCE_HEADS))


def training_flops_per_token(model: nn.Module, T: int) -> int:
    """6 * N_mm + 12 * L * T * C for a model made of :class:`TransformerBlock` s, with sequences of T tokens."""
    expect_positive_int(T, "T")
    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    if not blocks:
        raise ValueError(f"Expected a model with TransformerBlock layers (GPT, BERT), but {type(model).__name__} "
                         "has none.")
    attention = sum(12 * T * block.d_model for block in blocks)      # 12 * L * T * C
    return 6 * token_matmul_weights(model) + attention


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_second(n: int = 2048, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                            repeats: int = 10, warmup: int = 3) -> float:
    """FLOP/s of a dense (n x n) @ (n x n) matmul (2 n^3 FLOPs), the median of ``repeats`` timed runs."""
    expect_positive_int(n, "n")
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def model_flops_utilisation(tokens_per_s: float, flops_per_token: float, peak_flops_per_s: float) -> float:
    """MFU: the fraction of the hardware's FLOP/s that the model's own FLOPs use (0 .. 1)."""
    if not peak_flops_per_s > 0:
        raise ValueError(f"`peak_flops_per_s` should be positive, but got {describe(peak_flops_per_s)}.")
    return tokens_per_s * flops_per_token / peak_flops_per_s
