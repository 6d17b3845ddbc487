"""Checks for notebook 03's exercises: scaled dot-product attention (plain and with an additive bias), the causal
mask, the padding mask, a cached attention step."""
from __future__ import annotations

import math

import torch

from ._core import CheckFailed, call_student, expect_tensor_like, passed
from ..validation import describe

__all__ = ["check_attention", "check_biased_attention", "check_causal_mask", "check_padding_mask",
           "check_cached_attention_step"]


def _attention(q, k, v, mask=None, scale=None, softmax_dim=-1, fill=float("-inf"),
               mask_after_softmax=False, invert_mask=False, scale_after_softmax=False):
    """Reference attention, plus the classic mistakes as switches (weights and output both returned)."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * (1.0 if scale_after_softmax else scale)   # (..., T_q, T_k)
    if mask is not None and invert_mask:
        mask = ~mask
    if mask is not None and not mask_after_softmax:
        scores = scores.masked_fill(~mask, fill)
    weights = torch.softmax(scores, dim=softmax_dim)
    if scale_after_softmax:
        weights = weights * scale
    if mask is not None and mask_after_softmax:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, weights


def _attention_cases():
    """Varied shapes: no batch, batch, batch + heads, T_q != T_k; masks never empty a whole row."""
    g = torch.Generator().manual_seed(3)
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    mixed = torch.rand(2, 1, 4, 6, generator=g) > 0.5          # random mask with True and False in every row
    mixed[..., 0], mixed[..., 1] = True, False
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    lengths = torch.tensor([6, 3])
    padding = (torch.arange(6) < lengths[:, None])[:, None, None, :]  # (2, 1, 1, 6)
    return [
        ("q (4, 8), k (6, 8), v (6, 5), no mask", (randn(4, 8), randn(6, 8), randn(6, 5)), None),
        ("q (2, 3, 16), k and v (2, 3, 16) (square scores), no mask",
         (randn(2, 3, 16), randn(2, 3, 16), randn(2, 3, 16)), None),
        ("batch and heads, q (2, 3, 4, 8), k/v (2, 3, 6, 8), a random (2, 1, 4, 6) mask",
         (randn(2, 3, 4, 8), randn(2, 3, 6, 8), randn(2, 3, 6, 8)), mixed),
        ("q, k, v (3, 5, 4) with a (5, 5) causal mask", (randn(3, 5, 4), randn(3, 5, 4), randn(3, 5, 4)), causal),
        ("q (2, 2, 4, 8), k/v (2, 2, 6, 8) with a (2, 1, 1, 6) padding mask",
         (randn(2, 2, 4, 8), randn(2, 2, 6, 8), randn(2, 2, 6, 8)), padding),
    ]


def check_attention(fn) -> None:
    """Check ``fn(q, k, v, mask=None) -> (output, weights)`` against softmax(q kᵀ / sqrt(d_k)) v."""
    check = "check_attention"
    cases = _attention_cases()
    for description, (q, k, v), mask in cases:
        kwargs = {} if mask is None else {"mask": mask}
        result = call_student(check, fn, q.clone(), k.clone(), v.clone(), **kwargs)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise CheckFailed(check, f"`attention` should return a pair (output, weights), but it returned "
                                     f"{describe(result)}.")
        output, weights = result
        out_ref, w_ref = _attention(q, k, v, mask)
        d_k = q.shape[-1]
        variants = [
            ("you forgot to scale the scores: divide q @ k.T by sqrt(d_k) before the softmax.", dict(scale=1.0)),
            ("you divided the scores by d_k; divide by sqrt(d_k) instead.", dict(scale=1.0 / d_k)),
            ("the softmax runs over the wrong axis, the queries (dim=-2): each query's weights over the keys (a "
             "row, the last dim) should sum to 1, so use softmax(..., dim=-1).", dict(softmax_dim=-2)),
            ("you scaled after the softmax: divide the scores q @ k.T by sqrt(d_k) *before* the softmax, so the "
             "weights still sum to 1.", dict(scale_after_softmax=True)),
        ]
        if v.shape[-1] != d_k:
            variants.append(("you divided by sqrt(d_v), the size of the values; the scale is sqrt(d_k), the size "
                             "of the queries and keys (q.shape[-1]).", dict(scale=1 / math.sqrt(v.shape[-1]))))
        if mask is not None:
            variants += [
                ("the mask is applied after the softmax, so the remaining weights no longer sum to 1: fill the "
                 "masked scores with -inf before the softmax.", dict(mask_after_softmax=True)),
                ("masked scores were set to 0, but exp(0) = 1 still gives them weight: fill them with "
                 "float('-inf') instead.", dict(fill=0.0)),
                ("the mask polarity is inverted: True means 'may attend', so hide the positions where the mask "
                 "is False (e.g. scores.masked_fill(~mask, float('-inf'))).", dict(invert_mask=True)),
            ]
        mistakes_without_mask = ("the mask is ignored: where the mask is False, set the scores to float('-inf') "
                                 "before the softmax (scores.masked_fill(~mask, float('-inf'))).")
        mistakes = [(message, _attention(q, k, v, mask, **options)) for message, options in variants]
        if mask is not None:
            mistakes.append((mistakes_without_mask, _attention(q, k, v, None)))
        where = f" (test: {description})"
        transposed = "the returned weights are transposed: they should have shape (..., T_q, T_k), one row per query."
        expect_tensor_like(check, weights, w_ref, "the weights" + where,
                           [(m + where, w) for m, (_, w) in mistakes] + [(transposed + where, w_ref.transpose(-2, -1))])
        expect_tensor_like(check, output, out_ref, "the output (..., T_q, d_v)" + where,
                           [(m + where, o) for m, (o, _) in mistakes])
    passed(check, len(cases))


def _biased(q, k, v, bias, kind="ok"):
    """Attention with an additive bias on the scaled scores, plus the classic mistakes by name."""
    raw = q @ k.transpose(-2, -1)                                    # (..., T_q, T_k)
    root = math.sqrt(q.shape[-1])
    scaled = {"no_scale": raw, "scale_d": raw / q.shape[-1],
              "scale_v": raw / math.sqrt(v.shape[-1])}.get(kind, raw / root)
    if kind == "bias_scaled":
        scores = (raw + bias) / root
    elif kind == "no_bias":
        scores = scaled
    elif kind == "bias_subtracted":
        scores = scaled - bias
    elif kind == "bias_transposed":
        scores = scaled + bias.transpose(-2, -1)
    else:
        scores = scaled + bias
    if kind == "bias_after_softmax":
        weights = torch.softmax(raw / root, dim=-1) + bias
    else:
        weights = torch.softmax(scores, dim=-2 if kind == "softmax_queries" else -1)
    return weights @ v, weights


_BIAS_MISTAKES = {
    "no_bias": "the bias is ignored: add it to the scaled scores, softmax(q k^T / sqrt(d_k) + bias).",
    "bias_scaled": "the bias was divided by sqrt(d_k) along with the scores: scale q k^T first, then add the bias, "
                   "softmax(q k^T / sqrt(d_k) + bias).",
    "bias_after_softmax": "the bias was added after the softmax: it belongs to the scores, before the softmax, so "
                          "that the weights still sum to 1.",
    "bias_subtracted": "the bias was subtracted: it is ADDED to the scores (a penalty is a negative bias).",
    "bias_transposed": "the bias is transposed: bias[..., i, j] is for query i and key j, the same layout as the "
                       "scores (..., T_q, T_k).",
    "no_scale": "you forgot to scale the scores: divide q @ k^T by sqrt(d_k), then add the bias.",
    "scale_d": "you divided the scores by d_k; divide by sqrt(d_k) instead.",
    "scale_v": "you divided by sqrt(d_v), the size of the values; the scale is sqrt(d_k) (q.shape[-1]).",
    "softmax_queries": "the softmax runs over the wrong axis, the queries (dim=-2): each query's weights over the "
                       "keys should sum to 1, softmax(..., dim=-1).",
}


def _alibi(H: int, T: int) -> torch.Tensor:
    """ALiBi's causal bias (H, T, T): -slope_h * (i - j) for keys j <= i, -inf for later keys."""
    slopes = torch.tensor([2.0 ** (-8 * (h + 1) / H) for h in range(H)], dtype=torch.float64)
    distance = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).double()     # (T, T) i - j
    bias = -slopes[:, None, None] * distance                                        # (H, T, T)
    return bias.masked_fill(distance < 0, float("-inf"))


def _bias_cases():
    g = torch.Generator().manual_seed(13)
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    padding = torch.zeros(2, 1, 1, 6, dtype=torch.float64)
    padding[1, ..., 3:] = float("-inf")                                             # a mask written as a bias
    return [
        ("q (4, 8), k (6, 8), v (6, 5), a random (4, 6) bias",
         (randn(4, 8), randn(6, 8), randn(6, 5)), 2 * randn(4, 6)),
        ("q, k, v (3, 5, 4), a random (5, 5) bias", (randn(3, 5, 4), randn(3, 5, 4), randn(3, 5, 4)), 2 * randn(5, 5)),
        ("batch and heads, q/k/v (2, 3, 5, 8), ALiBi's causal bias (3, 5, 5)",
         (randn(2, 3, 5, 8), randn(2, 3, 5, 8), randn(2, 3, 5, 8)), _alibi(3, 5)),
        ("q (2, 2, 4, 8), k/v (2, 2, 6, 8), a (2, 1, 1, 6) padding bias of 0 and -inf",
         (randn(2, 2, 4, 8), randn(2, 2, 6, 8), randn(2, 2, 6, 8)), padding),
    ]


def check_biased_attention(fn) -> None:
    """Check ``fn(q, k, v, bias) -> (output, weights)`` against softmax(q kᵀ / sqrt(d_k) + bias) v."""
    check = "check_biased_attention"
    cases = _bias_cases()
    for description, (q, k, v), bias in cases:
        result = call_student(check, fn, q.clone(), k.clone(), v.clone(), bias.clone())
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise CheckFailed(check, f"`{getattr(fn, '__name__', 'fn')}` should return a pair (output, weights), but "
                                     f"it returned {describe(result)}.")
        output, weights = result
        out_ref, w_ref = _biased(q, k, v, bias)
        kinds = [kind for kind in _BIAS_MISTAKES
                 if not (kind == "bias_transposed" and bias.shape[-2] != bias.shape[-1])
                 and not (kind == "scale_v" and v.shape[-1] == q.shape[-1])]
        mistakes = [(_BIAS_MISTAKES[kind], _biased(q, k, v, bias, kind)) for kind in kinds]
        where = f" (test: {description})"
        expect_tensor_like(check, weights, w_ref, "the weights" + where, [(m + where, w) for m, (_, w) in mistakes])
        expect_tensor_like(check, output, out_ref, "the output (..., T_q, d_v)" + where,
                           [(m + where, o) for m, (o, _) in mistakes])
    passed(check, len(cases))


def check_causal_mask(fn) -> None:
    """Check ``fn(T) -> (T, T)`` bool mask with True where position t may attend (positions 0..t)."""
    check = "check_causal_mask"
    sizes = (4, 7, 1)
    for T in sizes:
        mask = call_student(check, fn, T)
        expected = torch.ones(T, T, dtype=torch.bool).tril()
        if isinstance(mask, torch.Tensor) and mask.dtype != torch.bool and mask.shape == expected.shape:
            raise CheckFailed(check, f"the mask should be a bool tensor (True = may attend), but its dtype is "
                                     f"{mask.dtype}: build it with dtype=torch.bool or call .bool().")
        expect_tensor_like(check, mask, expected, f"causal_mask({T})", [
            (f"causal_mask({T}) has the polarity inverted: True should mean 'may attend' (on and below the diagonal).",
             ~expected),
            (f"causal_mask({T}) lets each position see the future: keep the lower triangle (torch.tril), "
             "not the upper one.", expected.T),
            (f"causal_mask({T}) hides the diagonal: a token may attend to itself, so the diagonal should be True.",
             expected.tril(-1)),
        ])
    passed(check, len(sizes))


def check_padding_mask(fn) -> None:
    """Check ``fn(lengths, T) -> (B, 1, 1, T)`` bool mask, True at the real (non-padded) tokens."""
    check = "check_padding_mask"
    cases = [(torch.tensor([3, 1, 4]), 4), (torch.tensor([2]), 5), (torch.tensor([1, 6]), 6)]
    for lengths, T in cases:
        mask = call_student(check, fn, lengths.clone(), T)
        keep = torch.arange(T) < lengths[:, None]             # (B, T)
        expected = keep[:, None, None, :]                     # (B, 1, 1, T)
        call = f"padding_mask({lengths.tolist()}, T={T})"
        if isinstance(mask, torch.Tensor) and mask.dtype != torch.bool and mask.numel() == expected.numel():
            raise CheckFailed(check, f"{call} should return a bool tensor (True = real token), but its dtype is "
                                     f"{mask.dtype}.")
        off_by_one = (torch.arange(T) <= lengths[:, None])[:, None, None, :]
        expect_tensor_like(check, mask, expected, call, [
            (f"{call} has the polarity inverted: True should mark real tokens (may attend), False the padding.",
             ~expected),
            (f"{call} has shape (B, T); add two dims so it broadcasts over heads and queries: (B, 1, 1, T), "
             "e.g. mask[:, None, None, :].", keep),
            (f"{call} masks queries instead of keys: the T positions belong in the last dim, (B, 1, 1, T).",
             keep[:, None, :, None]),
            (f"{call} is off by one: a sequence of length L has real tokens at positions 0..L-1 (use <, not <=).",
             off_by_one),
        ])
    passed(check, len(cases))


# --- one step of attention with a key/value cache ---------------------------------------------------

def _cached_step(q_t, k_t, v_t, k_cache, v_cache, kind="ok"):
    """Reference step (and its classic mistakes): append the new key/value, attend the one query to all."""
    if kind == "attend_first":                                    # attends before appending
        keys, values = k_cache, v_cache
    elif kind == "prepend":
        keys, values = torch.cat([k_t, k_cache], dim=-2), torch.cat([v_t, v_cache], dim=-2)
    else:
        keys, values = torch.cat([k_cache, k_t], dim=-2), torch.cat([v_cache, v_t], dim=-2)   # (B, H, t+1, d)
    scale = 1.0 if kind == "no_scale" else 1 / math.sqrt(q_t.shape[-1])
    scores = q_t @ keys.transpose(-2, -1) * scale                                             # (B, H, 1, t+1)
    if kind == "tril":                                            # a (1, t+1) causal mask keeps only key 0
        scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    weights = torch.softmax(scores, dim=-2 if kind == "query_axis" else -1)
    out = weights @ values                                                                    # (B, H, 1, d)
    if kind == "attend_first":
        keys, values = torch.cat([k_cache, k_t], dim=-2), torch.cat([v_cache, v_t], dim=-2)
    return out, keys, values


_STEP_MISTAKES = {
    "tril": "a causal mask was applied to the step's (1, t+1) scores, which hides every key but the first: the "
            "one new query comes last, so it may attend to everything in the cache, no mask needed.",
    "attend_first": "the new token does not see itself: append k_t and v_t to the caches before attending "
                    "(the query at position t may attend to positions 0..t).",
    "query_axis": "the softmax runs over the query axis (dim=-2), which has size 1 here, so every weight is 1: "
                  "normalise over the keys, dim=-1.",
    "no_scale": "the scores are not scaled: divide q_t @ keys.transpose(-2, -1) by sqrt(d).",
    "prepend": "the new key/value was put at the front of the cache: append it at the end "
               "(torch.cat([k_cache, k_t], dim=-2)), so position t stays at index t.",
    "stale_cache": "the returned caches do not include the new key/value: return torch.cat([k_cache, k_t], dim=-2) "
                   "(and the same for v), so the next step sees this token.",
}


def check_cached_attention_step(fn) -> None:
    """Check ``fn(q_t, k_t, v_t, k_cache, v_cache) -> (out_t, k_cache, v_cache)``: one generation step.

    The student's step runs T times from empty caches; its outputs must equal the rows of full causal
    attention, and the final caches the full keys and values.
    """
    check = "check_cached_attention_step"
    g = torch.Generator().manual_seed(11)
    cases = [(2, 3, 5, 8), (1, 2, 4, 4), (3, 1, 6, 2)]                       # (B, H, T, d)
    for B, H, T, d in cases:
        q, k, v = (torch.randn(B, H, T, d, generator=g, dtype=torch.float64) for _ in range(3))
        full, _ = _attention(q, k, v, torch.ones(T, T, dtype=torch.bool).tril())   # (B, H, T, d) the reference
        kinds = [kind for kind in _STEP_MISTAKES if kind not in ("prepend", "stale_cache")]   # those change out_t
        caches = {kind: (k[..., :0, :], v[..., :0, :]) for kind in kinds}
        k_cache, v_cache = k[..., :0, :].clone(), v[..., :0, :].clone()
        steps = []                                                  # (t, out_t, new caches, expected by kind)
        for t in range(T):
            q_t, k_t, v_t = q[..., t:t + 1, :], k[..., t:t + 1, :], v[..., t:t + 1, :]     # (B, H, 1, d)
            expected = {}
            for kind, (kc, vc) in caches.items():
                out, kc, vc = _cached_step(q_t, k_t, v_t, kc, vc, kind)
                expected[kind] = out
                caches[kind] = (kc, vc)
            try:
                result = call_student(check, fn, q_t.clone(), k_t.clone(), v_t.clone(), k_cache, v_cache)
            except CheckFailed as failure:
                if "Sizes of tensors must match" in failure.message:
                    raise CheckFailed(check, "torch.cat failed: the new key/value was concatenated along the wrong "
                                             "dim. The positions are dim -2 of (B, H, t, d): "
                                             "torch.cat([k_cache, k_t], dim=-2).") from None
                raise
            if not (isinstance(result, (tuple, list)) and len(result) == 3):
                raise CheckFailed(check, f"the step should return a triple (out_t, k_cache, v_cache), but it returned "
                                         f"{describe(result)}.")
            steps.append((t, *result, expected))
            k_cache, v_cache = result[1], result[2]
            if not isinstance(k_cache, torch.Tensor) or not isinstance(v_cache, torch.Tensor):
                break
        # the mistake that explains the most steps comes first (two mistakes can agree at one step)
        def explained(kind):
            return sum(isinstance(out_t, torch.Tensor) and out_t.shape == exp[kind].shape
                       and torch.allclose(out_t.detach().double(), exp[kind], atol=1e-5, rtol=1e-4)
                       for _, out_t, _, _, exp in steps)
        ordered = sorted(kinds, key=explained, reverse=True)
        for t, out_t, new_k, new_v, expected in steps:
            where = f" (test: B={B}, H={H}, T={T}, d={d}, step t={t} with {t} cached positions)"
            expect_tensor_like(check, out_t, full[..., t:t + 1, :], "out_t (B, H, 1, d)" + where,
                               [(_STEP_MISTAKES[kind] + where, expected[kind]) for kind in ordered])
            for name, got, want in (("k_cache", new_k, k), ("v_cache", new_v, v)):
                if isinstance(got, torch.Tensor) and got.dim() == 4 and got.shape[-1] != d:
                    raise CheckFailed(check, f"the returned {name} has shape {tuple(got.shape)}: the new key/value was "
                                             "concatenated along the wrong dim. The positions are dim -2 of "
                                             "(B, H, t, d): torch.cat([k_cache, k_t], dim=-2)." + where)
                expect_tensor_like(check, got, want[..., :t + 1, :], f"the returned {name} (B, H, t+1, d)" + where, [
                    (_STEP_MISTAKES["stale_cache"] + where, want[..., :t, :]),
                    (_STEP_MISTAKES["prepend"] + where, torch.cat([want[..., t:t + 1, :], want[..., :t, :]], -2))])
    passed(check, len(cases))
