"""Checks for exercises/17_question_answering.ipynb: the span-decoding rule for a whole batch."""
from __future__ import annotations

import torch

from ..qa import best_spans
from ._core import CheckFailed, call_student, expect_tensor_like, passed

__all__ = ["check_decode_batch"]


def _spans(start, end, context, max_len, threshold, end_before_start=False, no_limit=False, limit_plus_one=False,
           no_null=False, no_threshold=False, exclusive_end=False, any_position=False, cls_start_only=False):
    """The reference rule with one classic mistake switched on (all off = :func:`ptlm_course.qa.best_spans`)."""
    B, T = start.shape
    s, e = torch.arange(T)[:, None], torch.arange(T)[None, :]
    allowed = torch.ones(T, T, dtype=torch.bool) if end_before_start else s <= e
    if not no_limit:
        allowed = allowed & ((e <= s + max_len) if limit_plus_one else (e < s + max_len))
    ctx = torch.ones_like(context, dtype=torch.bool) if any_position else context.bool()
    allowed = allowed & ctx[:, :, None] & ctx[:, None, :]                          # (B, T, T)
    scores = (start[:, :, None] + end[:, None, :]).masked_fill(~allowed, float("-inf"))
    best, flat = scores.flatten(1).max(dim=1)                                      # (B,)
    spans = torch.stack([flat // T, flat % T + int(exclusive_end)], dim=1)         # (B, 2)
    if no_null:
        return spans
    null = start[:, 0] if cls_start_only else start[:, 0] + end[:, 0]
    no_answer = (null - best > (0.0 if no_threshold else threshold)) | torch.isinf(best)
    return spans.masked_fill(no_answer[:, None], 0)


_MISTAKES = [
    ("some spans end before they start (e < s): allow only s <= e, an answer cannot end before its first token.",
     {"end_before_start": True}),
    ("the spans are longer than max_answer_length: keep e < s + max_answer_length (e - s + 1 tokens at most).",
     {"no_limit": True}),
    ("the length limit is off by one: a span from s to e has e - s + 1 tokens, so allow e < s + max_answer_length "
     "(not e <= s + max_answer_length).", {"limit_plus_one": True}),
    ("the 'no answer' case is ignored: when start[0] + end[0] (the [CLS] score) beats the best span's score by "
     "more than null_threshold, return (0, 0).", {"no_null": True}),
    ("null_threshold is ignored: predict 'no answer' only when the [CLS] score minus the best span's score is "
     "larger than null_threshold (not larger than 0).", {"no_threshold": True}),
    ("the end is off by one: return the position of the answer's last token (inclusive), not one past it.",
     {"exclusive_end": True}),
    ("spans outside the context are allowed (the question, [CLS], [SEP] or padding): both s and e must be "
     "positions where context_mask is 1.", {"any_position": True}),
    ("the 'no answer' score should be start[0] + end[0], the [CLS] position's start and end scores together.",
     {"cls_start_only": True}),
]


def _case(seed: int, B: int, T: int, first: int, last: int):
    g = torch.Generator().manual_seed(seed)
    start, end = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)       # (B, T)
    start[:, 0] += 1.0                                                                # 'no answer' sometimes wins
    end[:, 0] += 1.0
    context = torch.zeros(B, T, dtype=torch.long)
    context[:, first:last] = 1
    context[: B // 4, last - 3:] = 0                                                   # some rows shorter (padding)
    return start, end, context


def _name_a_broken_rule(check: str, call: str, out: torch.Tensor, mistakes, context, max_len) -> None:
    """Name the mistake: first one of the classic variants exactly, else the first rule some span breaks."""
    for text, wrong in mistakes:
        if torch.equal(out, wrong):
            raise CheckFailed(check, text)
    s, e = out[:, 0], out[:, 1]
    answered = (s != 0) | (e != 0)
    rules = [(answered & (e < s), _MISTAKES[0][0]), (answered & (e - s + 1 > max_len), _MISTAKES[1][0])]
    if out.min() >= 0 and out.max() < context.shape[1]:
        inside = context.gather(1, out.clamp(min=0)).bool().all(dim=1)                 # (B,)
        rules.append((answered & ~inside, _MISTAKES[6][0]))
    for broken, text in rules:
        if broken.any():
            row = int(broken.nonzero()[0])
            raise CheckFailed(check, f"{call}: row {row} gives ({int(s[row])}, {int(e[row])}): {text}")


def check_decode_batch(fn) -> None:
    """Check ``fn(start_logits, end_logits, context_mask, max_answer_length, null_threshold) -> (B, 2)``."""
    check = "check_decode_batch"
    cases = [(0, 64, 16, 5, 15, 3, 0.0), (1, 48, 12, 3, 11, 1, 0.5), (2, 40, 24, 6, 23, 5, -0.5),
             (3, 64, 20, 4, 19, 2, 1.0)]
    for seed, B, T, first, last, max_len, threshold in cases:
        start, end, context = _case(seed, B, T, first, last)
        call = (f"fn(start_logits {tuple(start.shape)}, end_logits, context_mask, max_answer_length={max_len}, "
                f"null_threshold={threshold})")
        out = call_student(check, fn, start.clone(), end.clone(), context.clone(), max_len, threshold)
        expected = _spans(start, end, context, max_len, threshold)
        assert torch.equal(expected, best_spans(start, end, context, max_len, threshold))   # the reference
        if isinstance(out, (list, tuple)):
            out = torch.tensor(out)
        if isinstance(out, torch.Tensor) and out.shape == (2, B):
            raise CheckFailed(check, f"{call} has shape (2, {B}): return one row (start, end) per question, "
                                     f"shape (B, 2).")
        mistakes = [(f"{call}: {text}", _spans(start, end, context, max_len, threshold, **flag))
                    for text, flag in _MISTAKES]
        if isinstance(out, torch.Tensor) and out.shape == expected.shape and not torch.equal(out, expected):
            _name_a_broken_rule(check, call, out.long(), mistakes, context, max_len)
        expect_tensor_like(check, out, expected, call, mistakes, atol=0, rtol=0)
    passed(check, len(cases))
