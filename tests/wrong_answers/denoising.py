"""Answers to the check of notebook 19 (T5's span corruption, given the kept runs and hidden spans)."""
from ._registry import correct, wrong


@correct("check_corrupt_spans")
def corrupt_with_cursor(ids, kept, hidden, sentinels):
    inputs, target, pos = [], [], 0
    for i in range(len(kept)):
        inputs.extend(ids[pos:pos + kept[i]])
        pos += kept[i]
        inputs.append(sentinels[i])
        target.append(sentinels[i])
        target.extend(ids[pos:pos + hidden[i]])
        pos += hidden[i]
    target.append(sentinels[len(kept)])
    return inputs, target


@correct("check_corrupt_spans")
def corrupt_with_mask(ids, kept, hidden, sentinels):
    is_hidden = []
    for k, h in zip(kept, hidden):
        is_hidden += [False] * k + [True] * h
    inputs, target, span = [], [], -1
    for i, (token, hide) in enumerate(zip(ids, is_hidden)):
        starts = hide and (i == 0 or not is_hidden[i - 1])
        span += starts
        if not hide:
            inputs.append(token)
            continue
        if starts:
            inputs.append(sentinels[span])
            target.append(sentinels[span])
        target.append(token)
    return inputs, target + [sentinels[span + 1]]


def _steps(ids, kept, hidden):
    pos = 0
    for i, (k, h) in enumerate(zip(kept, hidden)):
        yield i, ids[pos:pos + k], ids[pos + k:pos + k + h]
        pos += k + h


@wrong("check_corrupt_spans", "one more sentinel")
def corrupt_no_final_sentinel(ids, kept, hidden, sentinels):
    inputs, target = [], []
    for i, run, span in _steps(ids, kept, hidden):
        inputs += run + [sentinels[i]]
        target += [sentinels[i]] + span
    return inputs, target


@wrong("check_corrupt_spans", "after its span")
def corrupt_sentinel_after(ids, kept, hidden, sentinels):
    inputs, target = [], []
    for i, run, span in _steps(ids, kept, hidden):
        inputs += run + [sentinels[i]]
        target += span + [sentinels[i]]
    return inputs, target + [sentinels[len(kept)]]


@wrong("check_corrupt_spans", "same sentinel")
def corrupt_one_sentinel(ids, kept, hidden, sentinels):
    inputs, target = [], []
    for _, run, span in _steps(ids, kept, hidden):
        inputs += run + [sentinels[0]]
        target += [sentinels[0]] + span
    return inputs, target + [sentinels[0]]


@wrong("check_corrupt_spans", "spans come first")
def corrupt_hide_first(ids, kept, hidden, sentinels):
    inputs, target, pos = [], [], 0
    for i, (k, h) in enumerate(zip(kept, hidden)):
        target += [sentinels[i]] + ids[pos:pos + h]
        inputs += [sentinels[i]] + ids[pos + h:pos + h + k]
        pos += k + h
    return inputs, target + [sentinels[len(kept)]]


@wrong("check_corrupt_spans", "still in the input")
def corrupt_insert_sentinels(ids, kept, hidden, sentinels):
    inputs, target = [], []
    for i, run, span in _steps(ids, kept, hidden):
        inputs += run + [sentinels[i]] + span
        target += [sentinels[i]] + span
    return inputs, target + [sentinels[len(kept)]]


@wrong("check_corrupt_spans", "whole text")
def corrupt_bart_target(ids, kept, hidden, sentinels):
    inputs = []
    for i, run, _ in _steps(ids, kept, hidden):
        inputs += run + [sentinels[i]]
    return inputs, list(ids)


@wrong("check_corrupt_spans", "one per hidden span")
def corrupt_sentinel_per_token(ids, kept, hidden, sentinels):
    inputs, target, j = [], [], 0
    for _, run, span in _steps(ids, kept, hidden):
        inputs += run + [sentinels[j + t] for t in range(len(span))]
        for token in span:
            target += [sentinels[j], token]
            j += 1
    return inputs, target + [sentinels[j]]


@wrong("check_corrupt_spans", "every token should appear once")
def corrupt_off_by_one_run(ids, kept, hidden, sentinels):
    inputs, target, pos = [], [], 0
    for i, (k, h) in enumerate(zip(kept, hidden)):
        inputs += ids[pos:pos + k - 1] + [sentinels[i]]
        target += [sentinels[i]] + ids[pos + k:pos + k + h]
        pos += k + h
    return inputs, target + [sentinels[len(kept)]]


@wrong("check_corrupt_spans", "two lists")
def corrupt_returns_input_only(ids, kept, hidden, sentinels):
    inputs = []
    for i, run, _ in _steps(ids, kept, hidden):
        inputs += run + [sentinels[i]]
    return inputs
