"""Checks for notebook 04's exercises: splitting and merging heads, a multi-head attention module, grouped-query
attention (repeating the key/value heads) and cross-attention."""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._core import CheckFailed, call_student, expect_deterministic, expect_tensor_like, fn_name, passed
from ..attention import MultiHeadAttention, merge_heads, split_heads
from ..validation import describe

__all__ = ["check_split_heads", "check_merge_heads", "check_multi_head_attention", "check_repeat_kv",
           "check_grouped_query_attention", "check_cross_attention"]

_VIEW_HINT = ("`.view` cannot follow a `.transpose` (the memory is no longer in order): use `.reshape(...)` "
              "or `.contiguous().view(...)`.")


def _call(check, fn, *args):
    """call_student, with a hint for the classic view-after-transpose error."""
    try:
        return call_student(check, fn, *args)
    except CheckFailed as failure:
        if "view size is not compatible" in failure.message:
            raise CheckFailed(check, _VIEW_HINT) from None
        raise


def _wrong_permutations(heads: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Every other order of the dims of ``heads`` (B, T, H, d), named: the reference is permute(0, 2, 1, 3)."""
    names = ("B", "T", "H", "C/H")
    return [(f"the dims came out in the order ({', '.join(names[i] for i in order)}): after .view(B, T, H, C/H) "
             f"swap only T and H, with .transpose(1, 2) (permute(0, 2, 1, 3)).", heads.permute(*order))
            for order in itertools.permutations(range(4)) if order not in ((0, 2, 1, 3), (0, 1, 2, 3))]


def check_split_heads(fn) -> None:
    """Check ``fn(x, n_heads)``: (B, T, C) -> (B, H, T, C/H)."""
    check = "check_split_heads"
    cases = [(2, 5, 12, 3), (1, 4, 8, 2), (3, 1, 6, 6), (2, 3, 4, 1)]   # (B, T, C, H)
    g = torch.Generator().manual_seed(4)
    for B, T, C, H in cases:
        x = torch.randn(B, T, C, generator=g)
        out = _call(check, fn, x.clone(), H)
        d = C // H
        expect_tensor_like(check, out, split_heads(x, H), f"split_heads(x of shape {(B, T, C)}, n_heads={H})", [
            ("you reshaped straight to (B, H, T, C/H): that scrambles tokens across heads. Reshape to "
             "(B, T, H, C/H) first, then swap T and H with .transpose(1, 2).", x.reshape(B, H, T, d)),
            ("the result has shape (B, T, H, C/H): swap the T and H dims with .transpose(1, 2).",
             x.reshape(B, T, H, d)),
        ] + _wrong_permutations(x.reshape(B, T, H, d)))
    passed(check, len(cases))


def check_merge_heads(fn) -> None:
    """Check ``fn(x)``: (B, H, T, d) -> (B, T, H*d), the inverse of split_heads."""
    check = "check_merge_heads"
    cases = [(2, 3, 5, 4), (1, 2, 4, 3), (3, 4, 1, 2), (2, 1, 3, 5)]   # (B, H, T, d)
    g = torch.Generator().manual_seed(5)
    for B, H, T, d in cases:
        x = torch.randn(B, H, T, d, generator=g)
        out = _call(check, fn, x.clone())
        expect_tensor_like(check, out, merge_heads(x), f"merge_heads(x of shape {(B, H, T, d)})", [
            ("you reshaped straight to (B, T, H*d): that scrambles tokens across heads. Swap H and T with "
             ".transpose(1, 2) first, then reshape to (B, T, H*d).", x.reshape(B, T, H * d)),
            ("the result still has shape (B, T, H, d): reshape it to (B, T, H*d) to join the heads' channels.",
             x.transpose(1, 2)),
            ("the heads' channels are interleaved: you moved H after d (e.g. permute(0, 2, 3, 1)), so channel 0 of "
             "every head comes first. Head h must own channels h*d .. (h+1)*d - 1: transpose(1, 2) then reshape.",
             x.permute(0, 2, 3, 1).reshape(B, T, H * d)),
            ("the heads come out in reverse order: head 0 owns the first d channels, head 1 the next d, ... "
             "(x.transpose(1, 2).reshape(B, T, H*d), no flip).", x.flip(1).transpose(1, 2).reshape(B, T, H * d)),
        ] if H > 1 else [])
    passed(check, len(cases))


def _mha_variant(ref: MultiHeadAttention, x, mask, scale=None, out_proj=True, mixed_split=False, mixed_merge=False,
                scale_after_softmax=False, v_from_k=False, softmax_dim=-1, return_scores=False):
    """Our module's forward pass written out, with the classic mistakes as switches."""
    B, T, C = x.shape
    H, d = ref.n_heads, ref.head_dim
    split = (lambda t: t.reshape(B, H, T, d)) if mixed_split else (lambda t: split_heads(t, H))
    q, k = split(ref.q_proj(x)), split(ref.k_proj(x))                            # (B, H, T, d)
    v = split((ref.k_proj if v_from_k else ref.v_proj)(x))
    scale = 1 / math.sqrt(d) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * (1.0 if scale_after_softmax else scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=softmax_dim)                              # (B, H, T, T)
    if scale_after_softmax:
        weights = weights * scale
    y = weights @ v                                                               # (B, H, T, d)
    y = y.reshape(B, T, C) if mixed_merge else merge_heads(y)                     # (B, T, C)
    return (ref.out_proj(y) if out_proj else y), (scores if return_scores else weights)


def check_multi_head_attention(cls) -> None:
    """Check ``cls(d_model, n_heads)`` with q_proj, k_proj, v_proj, out_proj and ``forward(x, mask=None)``.

    The student's layers get the weights of a reference module, then both run on the same inputs.
    """
    check = "check_multi_head_attention"
    name = fn_name(cls)
    cases = [(2, 5, 12, 3, None), (1, 6, 16, 4, "causal"), (3, 4, 8, 1, None), (2, 4, 8, 2, "causal")]
    g = torch.Generator().manual_seed(6)
    for B, T, C, H, mask_kind in cases:
        torch.manual_seed(len(cases) + C + H)
        ref = MultiHeadAttention(C, H).double().eval()
        student = call_student(check, cls, C, H)
        if not isinstance(student, nn.Module):
            raise CheckFailed(check, f"`{name}({C}, {H})` should build an nn.Module, but gave {describe(student)}.")
        student.double().eval()
        _copy_weights(check, name, ref, student)
        x = torch.randn(B, T, C, generator=g, dtype=torch.float64)
        mask = torch.ones(T, T, dtype=torch.bool).tril() if mask_kind == "causal" else None
        kwargs = {} if mask is None else {"mask": mask}
        result = call_student(check, student, x.clone(), **kwargs)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise CheckFailed(check, "forward should return a pair (out, weights), but it returned "
                                     f"{describe(result)}.")
        out, weights = result
        expect_deterministic(check, out, student, x.clone(), **kwargs)
        with torch.no_grad():
            out_ref, w_ref = _mha_variant(ref, x, mask)
            wrong = {
                "no_proj": _mha_variant(ref, x, mask, out_proj=False),
                "no_scale": _mha_variant(ref, x, mask, scale=1.0),
                "split": _mha_variant(ref, x, mask, mixed_split=True),
                "merge": _mha_variant(ref, x, mask, mixed_merge=True),
                "both": _mha_variant(ref, x, mask, mixed_split=True, mixed_merge=True),
                "d_model": _mha_variant(ref, x, mask, scale=1 / math.sqrt(C)),
                "after": _mha_variant(ref, x, mask, scale_after_softmax=True),
                "v_from_k": _mha_variant(ref, x, mask, v_from_k=True),
                "axis": _mha_variant(ref, x, mask, softmax_dim=-2),
                "no_mask": _mha_variant(ref, x, None),
                "scores": _mha_variant(ref, x, mask, return_scores=True),
            }
        where = f" (test: B={B}, T={T}, d_model={C}, n_heads={H}{', causal mask' if mask is not None else ''})"
        mixed = ("the heads are mixed up: split with .view(B, T, H, d).transpose(1, 2) and merge with "
                 ".transpose(1, 2).reshape(B, T, C); reshaping straight between (B, T, C) and (B, H, T, d) "
                 "scrambles tokens.")
        no_scale = "the scores are not scaled: divide q @ k.T by sqrt(head_dim) (d_model / n_heads)."
        named = [
            ("d_model", "you scaled by sqrt(d_model); each head's scores are scaled by sqrt(head_dim), with "
                        "head_dim = d_model / n_heads."),
            ("after", "you scaled after the softmax: divide the scores by sqrt(head_dim) *before* the softmax."),
            ("v_from_k", "the values were projected with k_proj: v = self.v_proj(x)."),
            ("axis", "the softmax runs over the queries (dim=-2): each query's weights over the keys should sum "
                     "to 1, so use softmax(..., dim=-1)."),
        ] + ([("no_mask", "the mask is ignored: where mask is False, set the scores to float('-inf') before the "
                          "softmax.")] if mask is not None else [])
        if H == 1:
            named = [(k, m) for k, m in named if k != "d_model"]              # the same thing with one head
        expect_tensor_like(check, weights, w_ref, "the weights (B, H, T, T)" + where, [
            (no_scale + where, wrong["no_scale"][1]), (mixed + where, wrong["split"][1]),
            ("the weights returned are the scores before the softmax: return the attention weights, "
             "softmax(scores, dim=-1), whose rows sum to 1." + where, wrong["scores"][1])]
            + [(m + where, wrong[k][1]) for k, m in named if k != "v_from_k"])
        expect_tensor_like(check, out, out_ref, "the output (B, T, C)" + where, [
            ("the output projection is missing: pass the merged heads through self.out_proj." + where,
             wrong["no_proj"][0]),
            (no_scale + where, wrong["no_scale"][0]),
            (mixed + where, wrong["merge"][0]), (mixed + where, wrong["both"][0])]
            + [(m + where, wrong[k][0]) for k, m in named])
    passed(check, len(cases))


def _copy_weights(check, name, ref, student) -> None:
    for layer in ("q_proj", "k_proj", "v_proj", "out_proj"):
        theirs = getattr(student, layer, None)
        if not isinstance(theirs, nn.Linear):
            raise CheckFailed(check, f"`{name}` should have a layer `self.{layer} = nn.Linear(d_model, d_model)`, "
                                     f"but `self.{layer}` is {describe(theirs)}.")
        ours = getattr(ref, layer)
        if theirs.weight.shape != ours.weight.shape or theirs.bias is None:
            raise CheckFailed(check, f"`self.{layer}` should be nn.Linear({ref.d_model}, {ref.d_model}) with a bias, "
                                     f"but it is {theirs}.")
        with torch.no_grad():
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)


def _cross_variant(ref: MultiHeadAttention, x, context, mask, kind="ok"):
    """Cross-attention written out (queries from x, keys and values from context), with classic mistakes."""
    B, T, C = x.shape
    H, d = ref.n_heads, ref.head_dim
    source_q = context if kind in ("q_from_context", "swapped") else x
    source_kv = x if kind in ("kv_from_x", "swapped") else context
    q = split_heads(ref.q_proj(source_q), H)                                    # (B, H, T, d)
    k = split_heads(ref.k_proj(x if kind == "k_from_x" else source_kv), H)      # (B, H, S, d)
    v = split_heads(ref.v_proj(x if kind == "v_from_x" else source_kv), H)
    scores = q @ k.transpose(-2, -1) * (1.0 if kind == "no_scale" else 1 / math.sqrt(d))   # (B, H, T, S)
    if mask is not None and kind not in ("no_mask", "kv_from_x", "q_from_context", "swapped"):
        scores = scores.masked_fill(~mask, float("-inf"))
    if kind == "causal":
        scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    y = merge_heads(weights @ v)                                                 # (B, T, C)
    return (y if kind == "no_proj" else ref.out_proj(y)), weights


_CROSS_MISTAKES = {
    "kv_from_x": "the keys and values come from x: in cross-attention the queries come from x and the keys and "
                 "values from `context` (self.k_proj(context), self.v_proj(context)).",
    "k_from_x": "the keys come from x: in cross-attention the keys and the values both come from `context` "
                "(self.k_proj(context)); only the queries come from x.",
    "v_from_x": "the values come from x: in cross-attention the keys and the values both come from `context` "
                "(self.v_proj(context)); only the queries come from x.",
    "q_from_context": "the queries come from `context`: the queries come from x (one output per position of x), "
                      "the keys and values from context.",
    "swapped": "x and context are swapped: the queries come from `context` and the keys and values from x; it is "
               "the other way round (one output per position of x, attending over the context).",
    "no_mask": "the mask is ignored: it hides padded context positions; set those scores to float('-inf') "
               "before the softmax.",
    "causal": "a causal mask was applied: cross-attention may look at every context position (only the padding "
              "is hidden), so do not add a triangular mask.",
    "no_scale": "the scores are not scaled: divide q @ k.transpose(-2, -1) by sqrt(head_dim).",
    "no_proj": "the output projection is missing: pass the merged heads through self.out_proj.",
}


def check_cross_attention(cls) -> None:
    """Check ``cls(d_model, n_heads)`` with q_proj, k_proj, v_proj, out_proj and ``forward(x, context, mask=None)
    -> (out (B, T, C), weights (B, H, T, S))``: queries from x, keys and values from context."""
    check = "check_cross_attention"
    name = fn_name(cls)
    # (B, T, S, C, H); T = S first, so that mixing x and context up shows as wrong values, not a shape error
    cases = [(2, 4, 4, 8, 2), (2, 3, 5, 12, 3), (3, 2, 6, 8, 1)]
    g = torch.Generator().manual_seed(12)
    for B, T, S, C, H in cases:
        torch.manual_seed(C + H + S)
        ref = MultiHeadAttention(C, H).double().eval()
        student = call_student(check, cls, C, H)
        if not isinstance(student, nn.Module):
            raise CheckFailed(check, f"`{name}({C}, {H})` should build an nn.Module, but gave {describe(student)}.")
        student.double().eval()
        _copy_weights(check, name, ref, student)
        x = torch.randn(B, T, C, generator=g, dtype=torch.float64)
        context = torch.randn(B, S, C, generator=g, dtype=torch.float64) * 1.5 + 0.5
        lengths = torch.tensor([S, max(1, S - 2), max(1, S - 3)])[:B]
        mask = (torch.arange(S) < lengths[:, None])[:, None, None, :]           # (B, 1, 1, S) padding mask
        result = call_student(check, student, x.clone(), context.clone(), mask=mask)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise CheckFailed(check, "forward should return a pair (out, weights), but it returned "
                                     f"{describe(result)}.")
        out, weights = result
        expect_deterministic(check, out, student, x.clone(), context.clone(), mask=mask)
        where = f" (test: x (B={B}, T={T}, C={C}), context with S={S} positions and a padding mask, n_heads={H})"
        with torch.no_grad():
            expected = _cross_variant(ref, x, context, mask)
            wrong = {}
            for kind in _CROSS_MISTAKES:
                try:
                    wrong[kind] = _cross_variant(ref, x, context, mask, kind)
                except RuntimeError:                        # keys from x and values from context need T = S
                    continue
        kinds = [k for k in wrong if not (k == "causal" and T > S)]
        expect_tensor_like(check, weights, expected[1], "the weights (B, H, T, S)" + where,
                           [(_CROSS_MISTAKES[k] + where, wrong[k][1]) for k in kinds if k != "no_proj"])
        expect_tensor_like(check, out, expected[0], "the output (B, T, C)" + where,
                           [(_CROSS_MISTAKES[k] + where, wrong[k][0]) for k in kinds])
    passed(check, len(cases))


# --- grouped-query attention ------------------------------------------------------------------------------

def _repeat_variant(x: torch.Tensor, n_rep: int, kind: str = "ok") -> torch.Tensor:
    """(B, H_kv, T, d) -> (B, H_kv * n_rep, T, d), each key/value head repeated n_rep times in a row."""
    if kind == "tiled":
        return x.repeat(1, n_rep, 1, 1)                     # kv heads 0, 1, 0, 1: the wrong pairing
    return x.repeat_interleave(n_rep, dim=1)


def check_repeat_kv(fn) -> None:
    """Check ``fn(x (B, H_kv, T, d), n_rep) -> (B, H_kv * n_rep, T, d)``: kv head j serves query heads
    j * n_rep .. (j + 1) * n_rep - 1."""
    check = "check_repeat_kv"
    g = torch.Generator().manual_seed(21)
    cases = [(2, 2, 3, 4, 2), (1, 3, 5, 2, 4), (2, 4, 2, 3, 1), (1, 1, 4, 2, 3)]   # (B, H_kv, T, d, n_rep)
    for B, H_kv, T, d, n_rep in cases:
        x = torch.randn(B, H_kv, T, d, generator=g)
        out = call_student(check, fn, x.clone(), n_rep)
        where = f" (test: x of shape {(B, H_kv, T, d)}, n_rep={n_rep})"
        mistakes = [("the key/value heads were tiled (0, 1, 0, 1, ...): query heads 0 .. n_rep - 1 share kv head 0, "
                     "so each kv head must be repeated n_rep times IN A ROW (0, 0, 1, 1, ...): "
                     "x.repeat_interleave(n_rep, dim=1), not x.repeat(...)." + where,
                     _repeat_variant(x, n_rep, "tiled")),
                    ("the positions were repeated instead of the heads: repeat along dim 1 (the heads), not dim 2."
                     + where, x.repeat_interleave(n_rep, dim=2)),
                    ("the head dimension d was repeated: repeat along dim 1 (the heads), not the last dim."
                     + where, x.repeat_interleave(n_rep, dim=3))]
        expect_tensor_like(check, out, _repeat_variant(x, n_rep), "the repeated heads" + where,
                           [(m, w) for m, w in mistakes if not torch.equal(w, _repeat_variant(x, n_rep))])
    passed(check, len(cases))


def _gqa_reference(student_layers: dict, x, mask, n_heads: int, n_kv: int, kind: str = "ok"):
    """Grouped-query attention with the given layers; PyTorch's SDPA (enable_gqa) gives the output."""
    B, T, C = x.shape
    d = C // n_heads
    q = student_layers["q_proj"](x).view(B, T, n_heads, d).transpose(1, 2)            # (B, H, T, d)
    k = student_layers["k_proj"](x).view(B, T, n_kv, d).transpose(1, 2)               # (B, H_kv, T, d)
    v = student_layers["v_proj"](x).view(B, T, n_kv, d).transpose(1, 2)
    if kind == "ok":
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)  # (B, H, T, d)
        k_all, v_all = k.repeat_interleave(n_heads // n_kv, 1), v.repeat_interleave(n_heads // n_kv, 1)
    else:
        k_all, v_all = (_repeat_variant(t, n_heads // n_kv, "tiled" if kind == "tiled" else "ok") for t in (k, v))
        out = None
    scale = {"scale_C": math.sqrt(C), "no_scale": 1.0}.get(kind, math.sqrt(d))
    scores = q @ k_all.transpose(-2, -1) / scale                                        # (B, H, T, T)
    if mask is not None and kind != "no_mask":
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    if out is None:
        out = weights @ v_all
    return student_layers["out_proj"](out.transpose(1, 2).reshape(B, T, C)), weights


_GQA_MISTAKES = {
    "tiled": "the key/value heads were tiled (0, 1, 0, 1, ...) instead of repeated in a row (0, 0, 1, 1, ...): query "
             "head h reads kv head h // n_rep, so use repeat_kv (repeat_interleave along the heads).",
    "scale_C": "the scores are divided by sqrt(d_model); the scale is sqrt(d), the size of one head.",
    "no_scale": "the scores are not scaled: divide q @ k^T by sqrt(d), d the size of one head.",
    "no_mask": "the mask is ignored: fill the scores with -inf where the mask is False, before the softmax.",
}


def check_grouped_query_attention(cls) -> None:
    """Check ``cls(d_model, n_heads, n_kv_heads)`` with q_proj (C -> C), k_proj and v_proj (C -> n_kv_heads * d),
    out_proj (C -> C) and ``forward(x, mask=None) -> (out (B, T, C), weights (B, H, T, T))``."""
    check = "check_grouped_query_attention"
    name = fn_name(cls)
    cases = [(2, 5, 8, 4, 2), (1, 4, 12, 6, 3), (2, 3, 8, 2, 2), (1, 4, 8, 4, 1)]   # (B, T, C, H, H_kv)
    g = torch.Generator().manual_seed(22)
    for B, T, C, H, H_kv in cases:
        d = C // H
        student = call_student(check, cls, C, H, H_kv)
        if not isinstance(student, nn.Module):
            raise CheckFailed(check, f"`{name}({C}, {H}, {H_kv})` should build an nn.Module, but gave "
                                     f"{describe(student)}.")
        student.double().eval()
        sizes = {"q_proj": (C, C), "k_proj": (H_kv * d, C), "v_proj": (H_kv * d, C), "out_proj": (C, C)}
        layers = {}
        for layer, shape in sizes.items():
            theirs = getattr(student, layer, None)
            if not isinstance(theirs, nn.Linear):
                raise CheckFailed(check, f"`{name}` should have a layer `self.{layer}` (an nn.Linear), but "
                                         f"`self.{layer}` is {describe(theirs)}.")
            if tuple(theirs.weight.shape) != shape:
                hint = (" Keys and values have only n_kv_heads heads: k_proj and v_proj map d_model to "
                        "n_kv_heads * d." if layer in ("k_proj", "v_proj") else "")
                raise CheckFailed(check, f"`self.{layer}` should map {shape[1]} to {shape[0]} channels, but it is "
                                         f"{theirs}.{hint} (test: d_model={C}, n_heads={H}, n_kv_heads={H_kv})")
            layers[layer] = theirs
        x = torch.randn(B, T, C, generator=g, dtype=torch.float64)
        mask = torch.ones(T, T, dtype=torch.bool).tril()                          # causal, broadcast to (B, H, T, T)
        result = call_student(check, student, x.clone(), mask=mask)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise CheckFailed(check, "forward should return a pair (out, weights), but it returned "
                                     f"{describe(result)}.")
        out, weights = result
        expect_deterministic(check, out, student, x.clone(), mask=mask)
        where = f" (test: x (B={B}, T={T}, C={C}), a causal mask, n_heads={H}, n_kv_heads={H_kv})"
        with torch.no_grad():
            expected = _gqa_reference(layers, x, mask, H, H_kv)
            wrong = {kind: _gqa_reference(layers, x, mask, H, H_kv, kind) for kind in _GQA_MISTAKES}
        kinds = [k for k in wrong if not (k == "tiled" and H_kv in (1, H))]
        expect_tensor_like(check, weights, expected[1], "the weights (B, H, T, T)" + where,
                           [(_GQA_MISTAKES[k] + where, wrong[k][1]) for k in kinds])
        expect_tensor_like(check, out, expected[0], "the output (B, T, C)" + where,
                           [(_GQA_MISTAKES[k] + where, wrong[k][0]) for k in kinds])
    passed(check, len(cases))
