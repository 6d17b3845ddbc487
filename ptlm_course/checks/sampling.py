"""Checks for the sampling exercises: top-k and top-p (nucleus) filtering, sampling the next token."""
from __future__ import annotations

import torch

from ._core import CheckFailed, call_student, expect_tensor_like, passed
from ..generation import top_p_filter
from ..validation import describe

__all__ = ["check_top_k", "check_top_p", "check_sample_next"]

VERY_NEGATIVE = -1e9  # a filtered logit at or below this counts as -inf (e.g. torch.finfo(dtype).min)


def _logits(*shape, seed: int) -> torch.Tensor:
    """Distinct random logits (no ties), float64."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


def _as_filtered(check: str, out, like: torch.Tensor, call: str) -> torch.Tensor:
    """The student's output with very negative values read as -inf."""
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(check, f"{call} should return the filtered logits as a tensor, but it returned "
                                 f"{describe(out)}.")
    if out.shape != like.shape:
        raise CheckFailed(check, f"{call} should return logits of the input's shape {tuple(like.shape)}, but the "
                                 f"result has shape {tuple(out.shape)}.")
    if not out.is_floating_point():
        raise CheckFailed(check, f"{call} should return floating-point logits, but its dtype is {out.dtype}.")
    out = out.detach().to(torch.float64)
    return out.masked_fill(out <= VERY_NEGATIVE, float("-inf"))


def _probability_mistakes(logits: torch.Tensor, keep: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Answers that filter probabilities instead of logits."""
    probs = logits.softmax(-1)
    kept = probs.masked_fill(~keep, 0.0)
    return [
        ("you returned probabilities, not logits: keep the original logits and set the others to -inf.", kept),
        ("you returned renormalised probabilities, not logits: keep the original logits and set the others to -inf "
         "(softmax renormalises later).", kept / kept.sum(-1, keepdim=True)),
        ("you returned probabilities with -inf outside, not logits: keep the original logits where they survive.",
         probs.masked_fill(~keep, float("-inf"))),
        ("the dropped logits were set to 0, but exp(0) is not 0: set them to float('-inf').",
         logits.masked_fill(~keep, 0.0)),
    ]


def _keep_top(logits: torch.Tensor, k: int) -> torch.Tensor:
    k = max(0, min(k, logits.shape[-1]))
    keep = torch.zeros_like(logits, dtype=torch.bool)
    return keep.scatter(-1, logits.topk(k, dim=-1).indices, True) if k else keep


def check_top_k(fn) -> None:
    """Check ``fn(logits (..., V), k) -> (..., V)``: the k largest logits kept, all others -inf."""
    check = "check_top_k"
    cases = [((10,), 3), ((4, 12), 5), ((2, 3, 8), 1), ((3, 6), 6), ((2, 9), 8)]
    for i, (shape, k) in enumerate(cases):
        logits = _logits(*shape, seed=i)
        call = f"top_k(logits of shape {shape}, k={k})"
        out = _as_filtered(check, call_student(check, fn, logits.clone(), k), logits, call)
        keep = _keep_top(logits, k)
        mistakes = [
            (f"{call} keeps k - 1 tokens: keep exactly the k largest (e.g. torch.topk(logits, k)).",
             logits.masked_fill(~_keep_top(logits, k - 1), float("-inf"))),
            (f"{call} keeps k + 1 tokens: keep exactly the k largest (e.g. compare with the k-th largest value, "
             f"topk(...).values[..., -1:], using <).", logits.masked_fill(~_keep_top(logits, k + 1), float("-inf"))),
            (f"{call} keeps the k smallest logits: keep the k largest.",
             logits.masked_fill(~_keep_top(-logits, k), float("-inf"))),
            (f"{call} is inverted: it drops the k largest logits instead of keeping them.",
             logits.masked_fill(keep, float("-inf"))),
        ] + [(f"{call}: {m}", w) for m, w in _probability_mistakes(logits, keep)]
        expect_tensor_like(check, out, logits.masked_fill(~keep, float("-inf")), f"{call}'s result", mistakes)
    passed(check, len(cases))


def _top_p_cases():
    """Rows built so that some top token alone exceeds p, and p never equals a cumulative sum exactly."""
    peaked = torch.tensor([[0.1, 5.0, 0.3, -1.0, 0.2, 0.0]], dtype=torch.float64)   # top prob ~0.95
    return [(_logits(8, seed=10), 0.5), (_logits(4, 10, seed=11), 0.8), (_logits(2, 3, 7, seed=12), 0.3),
            (peaked, 0.9), (_logits(3, 5, seed=13), 1.0), (_logits(2, 6, seed=14), 0.05)]


def _ascending_keep(logits: torch.Tensor, p: float) -> torch.Tensor:
    """The top-p mask built from an ascending sort (the classic forgotten descending=True)."""
    sorted_logits, order = logits.sort(-1)
    probs = sorted_logits.softmax(-1)
    return torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, probs.cumsum(-1) - probs < p)


def _strict_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Top-p that keeps only the tokens whose cumulative probability stays below p (the top one included)."""
    sorted_logits, order = logits.sort(-1, descending=True)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, sorted_logits.softmax(-1).cumsum(-1) < p)
    return logits.masked_fill(~keep, float("-inf"))


def check_top_p(fn) -> None:
    """Check ``fn(logits (..., V), p) -> (..., V)``: keep the fewest most likely tokens whose probabilities
    add up to >= p (the token that crosses p included, the top token always), the others -inf."""
    check = "check_top_p"
    cases = _top_p_cases()
    for logits, p in cases:
        call = f"top_p(logits of shape {tuple(logits.shape)}, p={p})"
        out = _as_filtered(check, call_student(check, fn, logits.clone(), p), logits, call)
        expected = top_p_filter(logits, p)
        keep = expected > float("-inf")
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        cumulative = probs.cumsum(-1)
        if (out == float("-inf")).all(-1).any():
            if all(torch.equal(_as_filtered(check, call_student(check, fn, x.clone(), q), x, call), _strict_top_p(x, q))
                   for x, q in cases if q < 1.0):                # p = 1 leaves the last token to rounding
                raise CheckFailed(check, f"{call} drops the token that crosses p, and with it every token in some row "
                                         f"(its top token alone exceeds p): keep tokens while the probability mass "
                                         f"*before* them is below p (cumsum - prob < p); the top token always stays.")
            raise CheckFailed(check, f"{call} drops every token in some row: the most likely token must always be "
                                     f"kept, even when its probability alone exceeds p.")
        no_crossing = (cumulative < p) | (torch.arange(logits.shape[-1]) == 0)     # drops the crossing token
        keep_sorted = keep.gather(-1, order)                                         # the right mask, sorted
        mistakes = [
            (f"{call} drops the token that crosses p: keep tokens while the probability mass *before* them is "
             f"below p (cumsum - prob < p), so the kept mass reaches p.",
             logits.masked_fill(~torch.zeros_like(keep).scatter(-1, order, no_crossing), float("-inf"))),
            (f"{call} returns the logits in sorted order: scatter the mask (or the values) back to the original "
             f"vocabulary positions.", sorted_logits.masked_fill(~keep_sorted, float("-inf"))),
            (f"{call} applies the sorted mask to the unsorted logits: un-sort the mask first "
             f"(mask.scatter(-1, sorted_indices, sorted_mask)).", logits.masked_fill(~keep_sorted, float("-inf"))),
            (f"{call} keeps the least likely tokens: sort in descending order.",
             logits.masked_fill(~top_p_filter(-logits, p).gt(float("-inf")), float("-inf"))),
            (f"{call} keeps the least likely tokens: sort in descending order (sort(..., descending=True)).",
             logits.masked_fill(~_ascending_keep(logits, p), float("-inf"))),
        ] + [(f"{call}: {m}", w) for m, w in _probability_mistakes(logits, keep)]
        expect_tensor_like(check, out, expected, f"{call}'s result", mistakes)
    passed(check, len(cases))


def check_sample_next(fn) -> None:
    """Check ``fn(logits (B, V), generator=g) -> (B,) or (B, 1)`` token ids drawn from softmax(logits).

    Tested statistically: on many identical rows the sampled frequencies match softmax(logits), tokens at
    -inf are never drawn, and the answer is not the argmax every time.
    """
    check = "check_sample_next"
    base = torch.tensor([2.0, 1.0, 0.0, float("-inf"), 1.5, -1.0], dtype=torch.float64)
    B = 6000
    logits = base.expand(B, -1).clone()
    out = call_student(check, fn, logits.clone(), generator=torch.Generator().manual_seed(0))
    call = f"sample_next(logits of shape {tuple(logits.shape)})"
    if not isinstance(out, torch.Tensor) or out.shape not in ((B,), (B, 1)):
        raise CheckFailed(check, f"{call} should return token ids of shape (B,) or (B, 1) = ({B}, 1), but it "
                                 f"returned {describe(out)}.")
    if out.is_floating_point() or out.dtype == torch.bool:
        raise CheckFailed(check, f"{call} should return integer token ids, but their dtype is {out.dtype}.")
    ids = out.reshape(B)
    if ((ids < 0) | (ids >= len(base))).any():
        raise CheckFailed(check, f"{call} returned ids outside [0, {len(base) - 1}]: sample a position along the "
                                 f"last dimension (the vocabulary).")
    if (ids == 3).any():
        raise CheckFailed(check, f"{call} drew a token whose logit is -inf: sample from softmax(logits), where such "
                                 f"tokens have probability 0.")
    counts = torch.bincount(ids, minlength=len(base)).double()
    if counts[0] == B:
        raise CheckFailed(check, f"{call} always returns the most likely token: that is greedy decoding; draw from "
                                 f"the distribution with torch.multinomial(softmax(logits), 1).")
    expected = base.softmax(-1)
    sd = (expected * (1 - expected) / B).sqrt()
    freq = counts / B
    if ((freq - expected).abs() > 5 * sd + 1e-12).any():
        flat = (base.isfinite()).double() / base.isfinite().sum()
        if ((freq - flat).abs() < 0.03).all():
            raise CheckFailed(check, f"{call} draws every allowed token equally often: sample in proportion to "
                                     f"softmax(logits), not uniformly.")
        raw = base.clamp(min=0) / base.clamp(min=0).sum()
        if ((freq - raw).abs() < 0.03).all():
            raise CheckFailed(check, f"{call} samples in proportion to the raw logits: turn them into probabilities "
                                     f"with softmax first.")
        shown = ", ".join(f"{f:.3f}" for f in freq.tolist())
        want = ", ".join(f"{e:.3f}" for e in expected.tolist())
        raise CheckFailed(check, f"{call} draws tokens with frequencies [{shown}], but softmax(logits) gives "
                                 f"[{want}].")
    again = call_student(check, fn, logits.clone(), generator=torch.Generator().manual_seed(0))
    if not (isinstance(again, torch.Tensor) and again.shape == out.shape and torch.equal(again, out)):
        raise CheckFailed(check, f"two calls of {call} with the same seed gave different tokens: the `generator` is "
                                 f"ignored. Pass it on: torch.multinomial(probs, 1, generator=generator).")
    other = call_student(check, fn, logits.clone(), generator=torch.Generator().manual_seed(1))
    if isinstance(other, torch.Tensor) and other.shape == out.shape and torch.equal(other, out):
        raise CheckFailed(check, f"two calls of {call} with different seeds gave the same tokens: draw them with "
                                 f"the `generator` you are given.")
    passed(check, 4)  # valid ids, -inf never drawn, frequencies follow softmax(logits), generator
