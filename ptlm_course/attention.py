"""Attention: scaled dot-product attention, masks and multi-head attention (notebooks 03 and 04).

Shapes: ``B`` batch, ``H`` heads, ``T`` query positions, ``S`` key/value positions, ``C`` model width.
Boolean masks mean **True = may attend** and broadcast to ``(B, H, T, S)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .validation import describe, expect_floating, expect_module_dtype, expect_positive_int, expect_tensor

__all__ = [
    "scaled_dot_product_attention", "causal_mask", "padding_mask",
    "split_heads", "merge_heads", "MultiHeadAttention", "KVCache", "use_fused_attention", "check_mask",
]


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                                 scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / sqrt(d_k)) v, returning ``(output, weights)``.

    q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v); leading dims broadcast.
    mask: bool, True = may attend, broadcastable to (..., T_q, T_k).
    dropout_p: dropout on the weights used for the output (training only; pass 0.0 in eval).
    scale: overrides 1/sqrt(d_k) (e.g. to show what happens without scaling).

    A query row whose mask is all False (e.g. a padding query) attends to nothing: its weights are
    all zero and its output is zero, instead of the NaN a plain softmax over all -inf would give.
    The returned weights are those before dropout: output (..., T_q, d_v), weights (..., T_q, T_k).
    """
    _check_qkv(q, k, v)
    scores_shape = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + (q.shape[-2], k.shape[-2])
    if mask is not None:
        check_mask(mask, scores_shape)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"`dropout_p` should be a probability in [0, 1), but got {describe(dropout_p)}.")
    return _attention(q, k, v, mask, dropout_p, scale)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout_p: float,
               scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`scaled_dot_product_attention` without its input checks (for callers that checked already)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale           # (..., T_q, T_k)
    if mask is not None:
        blocked = ~mask
        scores = scores.masked_fill(blocked, float("-inf"))
    weights = torch.softmax(scores, dim=-1)              # (..., T_q, T_k), rows sum to 1
    if mask is not None and _may_block_whole_rows(blocked):
        weights = weights.masked_fill(blocked, 0.0)      # fully masked rows: NaN -> 0
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights                          # (..., T_q, d_v), (..., T_q, T_k)


def _may_block_whole_rows(blocked: torch.Tensor) -> bool:
    """Whether some query may attend to nothing. Elsewhere the softmax already gives exactly 0 where the
    scores are -inf, so the NaN -> 0 fix changes nothing and can be skipped. Checked on the CPU only (on an
    accelerator the answer would make Python wait for the device)."""
    return blocked.device.type != "cpu" or bool(blocked.all(dim=-1).any())


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) bool mask, True on and below the diagonal: position t may attend to 0..t."""
    expect_positive_int(T, "T")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


_CAUSAL_MASKS: dict[torch.device, torch.Tensor] = {}


def _shared_causal_mask(T: int, device: torch.device) -> torch.Tensor:
    """``causal_mask(T, device)`` as a view of one stored mask per device (read-only: never modify it), so a
    model does not build a new (T, T) mask in every layer of every call. The top-left (T, T) corner of a
    larger lower-triangular mask is the lower-triangular (T, T) mask."""
    stored = _CAUSAL_MASKS.get(device)
    if stored is None or stored.shape[0] < T:
        stored = _CAUSAL_MASKS[device] = causal_mask(T, device)
    return stored[:T, :T]                                                      # (T, T)


def padding_mask(attention_mask_or_lengths, T: int | None = None) -> torch.Tensor:
    """(B, 1, 1, T) bool mask, True at real tokens, so padded keys get zero attention.

    Accepts a (B, T) attention mask of 1/0 or True/False (1 = real token, as in Hugging Face) or
    (B,) sequence lengths (then ``T`` defaults to the longest length).
    """
    x = attention_mask_or_lengths
    if isinstance(x, (list, tuple)):
        x = torch.tensor(x)
    if not isinstance(x, torch.Tensor) or x.dim() not in (1, 2) or x.is_floating_point():
        raise ValueError(
            "`padding_mask` expects a (B, T) attention mask of 1/0 or True/False, or (B,) integer lengths, "
            f"but got {describe(x)}."
        )
    if x.dim() == 1:                                     # lengths (B,)
        if x.dtype == torch.bool or (x.numel() and x.min() < 0):
            raise ValueError(f"Sequence lengths should be non-negative integers, but got {x.tolist()}.")
        longest = int(x.max()) if x.numel() else 0
        T = longest if T is None else T
        if longest > T:
            raise ValueError(f"A sequence length ({longest}) is longer than T = {T}.")
        keep = torch.arange(T, device=x.device) < x[:, None]   # (B, T)
    else:                                                # attention mask (B, T)
        if x.dtype != torch.bool and not ((x == 0) | (x == 1)).all():
            raise ValueError(f"An attention mask should hold only 0 and 1, but it holds {x.unique().tolist()[:6]}.")
        if T is not None and x.shape[1] != T:
            raise ValueError(f"The attention mask has shape {tuple(x.shape)}, but T = {T} was asked for.")
        keep = x.bool()
    return keep[:, None, None, :]                        # (B, 1, 1, T)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, H, T, C/H): each head gets its own slice of the channels."""
    expect_tensor(x, "x", 3, "(B, T, C)")
    expect_positive_int(n_heads, "n_heads")
    B, T, C = x.shape
    if C % n_heads:
        raise ValueError(f"The width C = {C} should be divisible by n_heads = {n_heads}, but it is not.")
    return _split_heads(x, n_heads)


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)   # (B, H, T, C/H)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, d) -> (B, T, H*d): the inverse of :func:`split_heads`."""
    expect_tensor(x, "x", 4, "(B, H, T, d)")
    return _merge_heads(x)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    B, H, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, H * d)                # (B, T, H*d)


class MultiHeadAttention(nn.Module):
    """Multi-head attention: project to queries/keys/values, attend in each head, merge, project out.

    Self-attention when ``context`` is None; cross-attention (queries from ``x``, keys and values
    from ``context``) otherwise.

    For fast generation, pass a :class:`KVCache` as ``kv_cache``: the keys and values of earlier
    positions are kept there, so ``x`` only needs to hold the new positions.

    ``fused=True`` (or setting ``module.fused = True`` later, e.g. with :func:`use_fused_attention`)
    calls PyTorch's ``F.scaled_dot_product_attention`` instead of our readable function: same outputs,
    faster, but the weights are never materialised, so ``forward`` returns ``None`` for them.

    ``check_inputs``: whether ``forward`` checks ``x``, ``context`` and ``mask`` (types, shapes, dtypes) and
    raises a clear error. True for a layer called on its own; a model that checks its inputs where they enter
    (a :class:`~ptlm_course.transformer.TransformerBlock`, GPT, BERT) sets it to False in its layers, so the
    checks run once per call of the model, not once per layer.
    """

    check_inputs = True

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True,
                 fused: bool = False):
        super().__init__()
        expect_positive_int(d_model, "d_model")
        expect_positive_int(n_heads, "n_heads")
        if d_model % n_heads:
            raise ValueError(
                f"d_model should be divisible by n_heads so that each head gets d_model / n_heads channels, "
                f"but got d_model = {d_model} and n_heads = {n_heads}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` should be a probability in [0, 1), but got {describe(dropout)}.")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout, self.fused = dropout, bool(fused)
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, causal: bool = False,
                kv_cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, C), context: (B, S, C) or None; returns out (B, T, C) and weights (B, H, T, S).

        With a ``kv_cache`` holding S_past earlier positions (self-attention only), the keys and values
        of ``x`` are appended to it and the queries attend over all S_past + T of them.
        With ``self.fused`` the weights are not computed and None is returned in their place.
        """
        if self.check_inputs:
            self._check_inputs(x, context)
        B, T, C = x.shape
        context = x if context is None else context
        S = context.shape[1]
        past = _check_kv_cache(kv_cache, context is x, B, self.n_heads)   # S_past, 0 without a cache
        if mask is not None and self.check_inputs:
            check_mask(mask, (B, self.n_heads, T, past + S))
        only_causal = causal and not past and mask is None     # lets PyTorch's kernel skip the masked blocks
        if causal:
            if S != T:
                raise ValueError(f"causal=True needs as many keys as queries, but got T = {T} queries "
                                 f"and S = {S} keys (cross-attention is usually not causal).")
            allowed = _shared_causal_mask(T, x.device)           # (T, T)
            if past:                                             # the cached positions all come earlier
                allowed = torch.cat([allowed.new_ones(T, past), allowed], dim=1)   # (T, S_past + T)
            mask = allowed if mask is None else mask & allowed

        q = _split_heads(self.q_proj(x), self.n_heads)         # (B, H, T, d)
        k = _split_heads(self.k_proj(context), self.n_heads)   # (B, H, S, d)
        v = _split_heads(self.v_proj(context), self.n_heads)   # (B, H, S, d)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)                       # (B, H, S_past + S, d)
        dropout_p = self.dropout if self.training else 0.0
        if self.fused:                                         # PyTorch's kernel: no weights to return
            y, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=None if only_causal else mask,
                                                        dropout_p=dropout_p, is_causal=only_causal), None
        else:
            y, weights = _attention(q, k, v, mask, dropout_p, None)   # (B, H, T, d), (B, H, T, S)
        return self.out_proj(_merge_heads(y)), weights         # (B, T, C), (B, H, T, S)

    def _check_inputs(self, x, context) -> None:
        expect_tensor(x, "x", 3, "(B, T, C)")
        expect_floating(x, "x")
        expect_module_dtype(x, self, "x")
        B, T, C = x.shape
        if C != self.d_model:
            raise ValueError(f"`x` should have d_model = {self.d_model} channels (last dim), "
                             f"but got shape {tuple(x.shape)}.")
        if context is not None:
            expect_tensor(context, "context", 3, "(B, S, C)")
            expect_module_dtype(context, self, "context")
            if context.shape[0] != B or context.shape[2] != C:
                raise ValueError(f"`context` should have shape (B, S, C) = ({B}, S, {C}) to match `x`, "
                                 f"but got shape {tuple(context.shape)}.")

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, head_dim={self.head_dim}, dropout={self.dropout}"
                + (", fused=True" if self.fused else ""))


def use_fused_attention(model: nn.Module, fused: bool = True) -> nn.Module:
    """Switch every :class:`MultiHeadAttention` inside ``model`` to PyTorch's fused kernel (or back).

    Faster training; the attention weights are then not available (``TransformerBlock.attn_weights`` is None).
    """
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.fused = bool(fused)
    return model


class KVCache:
    """The keys and values one self-attention layer has computed so far: ``k``, ``v`` (B, H, S_past, d).

    During generation each step appends the new token's key and value instead of recomputing all of them.
    """

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """S_past, the number of cached positions."""
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add k, v (B, H, T, d) after the cached positions; return all of them (B, H, S_past + T, d)."""
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def __repr__(self) -> str:
        return f"KVCache(length={self.length})"


def _check_kv_cache(kv_cache, self_attention: bool, B: int, H: int) -> int:
    """A cache only makes sense for self-attention, with the same batch and heads; returns S_past."""
    if kv_cache is None:
        return 0
    if not isinstance(kv_cache, KVCache):
        raise TypeError(f"`kv_cache` should be a KVCache, but got {describe(kv_cache)}.")
    if not self_attention:
        raise ValueError("`kv_cache` works with self-attention only, but `context` was given (cross-attention).")
    if kv_cache.k is not None and kv_cache.k.shape[:2] != (B, H):
        raise ValueError(f"The cache holds (B, H) = {tuple(kv_cache.k.shape[:2])} (keys of shape "
                         f"{tuple(kv_cache.k.shape)}), but this call has (B, H) = ({B}, {H}).")
    return kv_cache.length


def _check_qkv(q, k, v) -> None:
    for name, t, layout in (("q", q, "(..., T_q, d_k)"), ("k", k, "(..., T_k, d_k)"), ("v", v, "(..., T_k, d_v)")):
        expect_tensor(t, name, layout=layout)
        if t.dim() < 2:
            raise ValueError(f"`{name}` should have at least 2 dimensions {layout}, but got shape {tuple(t.shape)}.")
        expect_floating(t, name)
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k and v should share one dtype, but got {q.dtype}, {k.dtype} and {v.dtype}.")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k should have the same d_k (last dim) to take dot products, but got "
                         f"q {tuple(q.shape)} (d_k = {q.shape[-1]}) and k {tuple(k.shape)} (d_k = {k.shape[-1]}).")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v should have the same number of positions T_k (dim -2), but got "
                         f"k {tuple(k.shape)} (T_k = {k.shape[-2]}) and v {tuple(v.shape)} (T_k = {v.shape[-2]}).")
    for a, b, names in ((q, k, "q and k"), (k, v, "k and v")):
        try:
            torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except RuntimeError:
            raise ValueError(f"The leading (batch/head) dims of {names} should match or broadcast, but got "
                             f"{tuple(a.shape)} and {tuple(b.shape)}.") from None


def check_mask(mask, scores_shape: Sequence[int]) -> torch.Tensor:
    """A mask must be bool (True = may attend) and broadcast to the scores' shape (..., T_q, T_k)."""
    scores_shape = tuple(scores_shape)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"`mask` should be a bool tensor (True = may attend), but got {describe(mask)}.")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"`mask` should be a bool tensor with True = may attend, but its dtype is {mask.dtype}. "
            "For a 0/1 mask (1 = attend) pass `mask.bool()`; additive 0/-inf float masks are not accepted."
        )
    try:
        fits = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"`mask` should broadcast to the attention scores' shape (..., T_q, T_k) = {scores_shape}, "
            f"but it has shape {tuple(mask.shape)}. A padding mask from a (B, T) attention mask needs shape "
            "(B, 1, 1, T): use `padding_mask(...)`."
        )
    return mask
