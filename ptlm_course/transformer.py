"""The Transformer block: feed-forward network, LayerNorm, residual connections (notebook 05).

Shapes: ``B`` batch, ``T`` positions, ``C`` model width (``d_model``), ``H`` heads.
Boolean masks mean **True = may attend** and broadcast to ``(B, H, T, T)``.

Two ways to place the LayerNorms::

    pre-LN  (GPT-2 and most modern models)   x = x + attn(ln1(x));   x = x + ffn(ln2(x))
    post-LN (the original 2017 Transformer)  x = ln1(x + attn(x));   x = ln2(x + ffn(x))
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .attention import KVCache, MultiHeadAttention, check_mask
from .validation import (describe, expect_floating, expect_module_dtype, expect_positive_int, expect_size,
                         expect_tensor, is_number)

__all__ = ["ACTIVATIONS", "make_activation", "FeedForward", "TransformerBlock"]

ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


def make_activation(name: str) -> nn.Module:
    """``"gelu"`` (exact, as in BERT), ``"gelu_tanh"`` (the tanh approximation, as in GPT-2) or ``"relu"``."""
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"`activation` should be one of {', '.join(map(repr, ACTIVATIONS))}, but got {describe(name)}.")


def _expect_probability(p, name: str) -> float:
    if not is_number(p) or not 0.0 <= p < 1.0:
        raise ValueError(f"`{name}` should be a probability in [0, 1), but got {describe(p)}.")
    return float(p)


class FeedForward(nn.Module):
    """Position-wise feed-forward network: fc1 (C -> d_ff), activation, dropout, fc2 (d_ff -> C).

    The same two-layer MLP is applied to every position on its own; ``d_ff`` defaults to 4 * d_model.
    ``check_inputs``: as in :class:`~ptlm_course.attention.MultiHeadAttention` (False inside a block).
    """

    check_inputs = True

    def __init__(self, d_model: int, d_ff: int | None = None, dropout: float = 0.0,
                 activation: str = "gelu", bias: bool = True):
        super().__init__()
        expect_positive_int(d_model, "d_model")
        d_ff = 4 * d_model if d_ff is None else expect_positive_int(d_ff, "d_ff")
        self.d_model, self.d_ff, self.activation_name = d_model, d_ff, activation
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.act = make_activation(activation)
        self.dropout = nn.Dropout(_expect_probability(dropout, "dropout"))
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., C) -> (..., C)."""
        if self.check_inputs:
            expect_tensor(x, "x", layout="(..., C)")
            expect_floating(x, "x")
            expect_module_dtype(x, self, "x")
            if x.dim() == 0:
                raise ValueError("`x` should have at least one dimension (..., C), but got a 0-dimensional tensor.")
            expect_size(x, "x", -1, self.d_model, "d_model")
        h = self.dropout(self.act(self.fc1(x)))   # (..., d_ff)
        return self.fc2(h)                         # (..., C)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_ff={self.d_ff}, activation={self.activation_name!r}"


class TransformerBlock(nn.Module):
    """One Transformer layer: self-attention and a feed-forward network, each with a residual connection
    and a LayerNorm (before the sub-layer with ``norm_first=True``, after the residual add otherwise).

    ``causal=False`` gives an encoder block (every position sees every other, as in BERT);
    ``causal=True`` a decoder block (position t sees 0..t, as in GPT). Dropout is applied inside the
    attention (on the weights), inside the feed-forward network (on the hidden layer) and on each
    residual branch before it is added, as in ``torch.nn.TransformerEncoderLayer``. ``dropout`` sets all
    three; ``attention_dropout`` and ``ffn_dropout`` override the first two (GPT-2 and BERT use
    ``ffn_dropout=0.0``: they drop out only the feed-forward output).

    After each call, ``attn_weights`` holds the attention weights (B, H, T, S), detached, for plotting
    (S = T, or S_past + T with a cache); None when the attention is fused (``attn.fused``).
    ``kv_cache`` (an ``attention.KVCache``) is passed on to the self-attention for fast generation.

    The block checks its input once (``check_inputs``, as in ``MultiHeadAttention``); its attention and
    feed-forward layers do not check again. GPT and BERT check their inputs themselves and switch it off.
    """

    check_inputs = True

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, causal: bool = False, activation: str = "gelu",
                 layer_norm_eps: float = 1e-5, bias: bool = True,
                 attention_dropout: float | None = None, ffn_dropout: float | None = None):
        super().__init__()
        dropout = _expect_probability(dropout, "dropout")
        attention_dropout = (dropout if attention_dropout is None
                             else _expect_probability(attention_dropout, "attention_dropout"))
        ffn_dropout = dropout if ffn_dropout is None else _expect_probability(ffn_dropout, "ffn_dropout")
        self.d_model, self.norm_first, self.causal = d_model, bool(norm_first), bool(causal)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=attention_dropout, bias=bias)
        self.ln1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.ffn = FeedForward(d_model, d_ff, dropout=ffn_dropout, activation=activation, bias=bias)
        self.ln2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)   # on the attention branch
        self.dropout2 = nn.Dropout(dropout)   # on the feed-forward branch
        self.attn.check_inputs = self.ffn.check_inputs = False     # forward checks x and mask once
        self.attn_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, kv_cache=None) -> torch.Tensor:
        """x: (B, T, C); mask: bool, True = may attend, e.g. ``padding_mask(...)`` (B, 1, 1, T). -> (B, T, C)."""
        if self.check_inputs:
            self._check_inputs(x, mask, kv_cache)
        if self.norm_first:
            x = x + self.dropout1(self._self_attention(self.ln1(x), mask, kv_cache))   # (B, T, C)
            x = x + self.dropout2(self.ffn(self.ln2(x)))                     # (B, T, C)
        else:
            x = self.ln1(x + self.dropout1(self._self_attention(x, mask, kv_cache)))
            x = self.ln2(x + self.dropout2(self.ffn(x)))
        return x

    def _check_inputs(self, x, mask, kv_cache) -> None:
        expect_tensor(x, "x", 3, "(B, T, C)")
        expect_floating(x, "x")
        expect_module_dtype(x, self, "x")
        expect_size(x, "x", -1, self.d_model, "d_model")
        if mask is not None:
            B, T, _ = x.shape
            past = kv_cache.length if isinstance(kv_cache, KVCache) else 0
            check_mask(mask, (B, self.attn.n_heads, T, past + T))

    def _self_attention(self, x: torch.Tensor, mask: torch.Tensor | None, kv_cache=None) -> torch.Tensor:
        out, weights = self.attn(x, mask=mask, causal=self.causal, kv_cache=kv_cache)   # (B, T, C), (B, H, T, S)
        self.attn_weights = None if weights is None else weights.detach()
        return out

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}, causal={self.causal}"
