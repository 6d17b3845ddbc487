"""Answers to the check of notebook 17 (the span-decoding rule for a batch, with the null threshold)."""
import torch

from ._registry import correct, wrong


def _pairs(start, end, max_len):
    """(B, T, T) span scores and the (T, T) mask of s <= e < s + max_len."""
    T = start.shape[1]
    s, e = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return start[:, :, None] + end[:, None, :], (s <= e) & (e < s + max_len)


@correct("check_decode_batch")
def decode_triu(start, end, context, max_len, threshold):
    T = start.shape[1]
    band = torch.ones(T, T).triu().tril(max_len - 1).bool()                      # s <= e < s + max_len
    ctx = context.bool()
    scores = (start[:, :, None] + end[:, None, :]).masked_fill(~(band & ctx[:, :, None] & ctx[:, None, :]),
                                                               float("-inf"))
    best = scores.view(len(start), -1).max(dim=1)
    spans = torch.stack([best.indices // T, best.indices % T], dim=1)
    null = start[:, 0] + end[:, 0] - best.values > threshold
    spans[null] = 0
    return spans


@correct("check_decode_batch")
def decode_loops(start, end, context, max_len, threshold):
    out = []
    for b in range(start.shape[0]):
        positions = [i for i in range(start.shape[1]) if context[b, i]]
        best, best_score = (0, 0), -float("inf")
        for s in positions:
            for e in positions:
                if s <= e < s + max_len and start[b, s] + end[b, e] > best_score:
                    best, best_score = (s, e), (start[b, s] + end[b, e]).item()
        if (start[b, 0] + end[b, 0]).item() - best_score > threshold:
            best = (0, 0)
        out.append(list(best))
    return torch.tensor(out)


@correct("check_decode_batch")
def decode_list_of_pairs(start, end, context, max_len, threshold):
    scores, band = _pairs(start, end, max_len)
    ctx = context.bool()
    scores = scores.masked_fill(~(band & ctx[:, :, None] & ctx[:, None, :]), float("-inf"))
    answers = []
    for row, null in zip(scores, start[:, 0] + end[:, 0]):
        k = int(row.argmax())
        s, e = divmod(k, row.shape[1])
        answers.append((0, 0) if null - row.max() > threshold else (s, e))
    return answers


def _masked(start, end, context, max_len, band=None):
    scores, default = _pairs(start, end, max_len)
    band = default if band is None else band
    ctx = context.bool()
    return scores.masked_fill(~(band & ctx[:, :, None] & ctx[:, None, :]), float("-inf"))


def _finish(scores, start, end, threshold, null_score=None):
    T = scores.shape[-1]
    best, k = scores.flatten(1).max(dim=1)
    spans = torch.stack([k // T, k % T], dim=1)
    null = start[:, 0] + end[:, 0] if null_score is None else null_score
    return spans.masked_fill((null - best > threshold)[:, None], 0)


@wrong("check_decode_batch", "end before", "s <= e")
def decode_no_order(start, end, context, max_len, threshold):
    T = start.shape[1]
    s, e = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return _finish(_masked(start, end, context, max_len, band=(e - s).abs() < max_len), start, end, threshold)


@wrong("check_decode_batch", "end before")
def decode_abs_only(start, end, context, max_len, threshold):
    ctx = context.bool()
    scores = (start[:, :, None] + end[:, None, :]).masked_fill(~(ctx[:, :, None] & ctx[:, None, :]), float("-inf"))
    return _finish(scores, start, end, threshold)


@wrong("check_decode_batch", "longer than max_answer_length")
def decode_no_limit(start, end, context, max_len, threshold):
    T = start.shape[1]
    return _finish(_masked(start, end, context, max_len, band=torch.ones(T, T).triu().bool()), start, end, threshold)


@wrong("check_decode_batch", "off by one", "e - s + 1")
def decode_limit_inclusive(start, end, context, max_len, threshold):
    T = start.shape[1]
    s, e = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return _finish(_masked(start, end, context, max_len, band=(s <= e) & (e - s <= max_len)), start, end, threshold)


@wrong("check_decode_batch", "'no answer' case is ignored")
def decode_never_null(start, end, context, max_len, threshold):
    scores = _masked(start, end, context, max_len)
    T = scores.shape[-1]
    k = scores.flatten(1).argmax(dim=1)
    return torch.stack([k // T, k % T], dim=1)


@wrong("check_decode_batch", "null_threshold is ignored")
def decode_threshold_zero(start, end, context, max_len, threshold):
    return _finish(_masked(start, end, context, max_len), start, end, 0.0)


@wrong("check_decode_batch", "inclusive")
def decode_exclusive_end(start, end, context, max_len, threshold):
    spans = _finish(_masked(start, end, context, max_len), start, end, threshold)
    answered = spans[:, 0] > 0
    spans[answered, 1] += 1
    return spans


@wrong("check_decode_batch", "outside the context")
def decode_everywhere(start, end, context, max_len, threshold):
    return _finish(_masked(start, end, torch.ones_like(context), max_len), start, end, threshold)


@wrong("check_decode_batch", "start[0] + end[0]")
def decode_null_start_only(start, end, context, max_len, threshold):
    return _finish(_masked(start, end, context, max_len), start, end, threshold, null_score=start[:, 0])


@wrong("check_decode_batch", "shape (B, 2)")
def decode_transposed(start, end, context, max_len, threshold):
    return _finish(_masked(start, end, context, max_len), start, end, threshold).T
