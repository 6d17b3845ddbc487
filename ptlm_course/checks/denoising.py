"""Checks for exercises/19_seq2seq_pretraining.ipynb: T5's span corruption, given where the spans are."""
from __future__ import annotations

import torch

from ..denoising import random_partition, span_corruption
from ._core import CheckFailed, call_student, passed

__all__ = ["check_corrupt_spans"]

SENTINELS = list(range(900, 920))          # ids far from the texts' ids, so a sentinel is never mistaken for a token


def _corrupt(ids, kept, hidden, sentinels, no_final=False, sentinel_after=False, one_sentinel=False,
             hide_first=False, keep_hidden=False, whole_target=False):
    """The reference with one classic mistake switched on (all off: the same as ``span_corruption``)."""
    inputs, target, start = [], [], 0
    for i, (keep, hide) in enumerate(zip(kept, hidden)):
        s = sentinels[0] if one_sentinel else sentinels[i]
        if hide_first:                                          # span, then run
            span, run = ids[start:start + hide], ids[start + hide:start + hide + keep]
            inputs += [s] + run
        else:                                                   # run, then span
            run, span = ids[start:start + keep], ids[start + keep:start + keep + hide]
            inputs += run + [s] + (span if keep_hidden else [])
        target += (span + [s]) if sentinel_after else ([s] + span)
        start += keep + hide
    final = sentinels[0] if one_sentinel else sentinels[len(kept)]
    if whole_target:
        target = list(ids)
    elif not no_final:
        target = target + [final]
    return inputs, target


_MISTAKES = [
    ("the target does not end with one more sentinel (the one after the last span): T5's target is "
     "s0 span0 s1 span1 ... s_k, k the number of spans.", {"no_final": True}),
    ("in the target each sentinel comes after its span: write the sentinel first, then the tokens it stands for "
     "(s0 span0 s1 span1 ...), so the decoder knows which gap it is filling.", {"sentinel_after": True}),
    ("every span gets the same sentinel: use sentinels[0] for the first span, sentinels[1] for the second, ... "
     "so that each gap in the input has its own id.", {"one_sentinel": True}),
    ("the spans come first: each step is a kept run of kept[i] tokens, then a hidden span of hidden[i] tokens.",
     {"hide_first": True}),
    ("the hidden tokens are still in the input: a span is *replaced* by its sentinel, its tokens only appear in "
     "the target.", {"keep_hidden": True}),
    ("the target is the whole text (that is BART's text infilling): T5's target lists only the hidden spans, "
     "each after its sentinel.", {"whole_target": True}),
]


def _case(seed: int, n: int, density: float, mean_span: float):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 800, (n,), generator=g).tolist()
    n_noise = min(max(1, round(n * density)), n - 1)
    n_spans = max(1, min(round(n_noise / mean_span), n_noise, n - n_noise))
    state = g.get_state()
    hidden, kept = random_partition(n_noise, n_spans, g), random_partition(n - n_noise, n_spans, g)
    g.set_state(state)
    reference = span_corruption(ids, SENTINELS, density, mean_span, generator=g)   # the package, same draws
    return ids, kept, hidden, reference


def check_corrupt_spans(fn) -> None:
    """Check ``fn(ids, kept, hidden, sentinels) -> (inputs, target)``, two lists of ids."""
    check = "check_corrupt_spans"
    cases = [(0, 20, 0.15, 3.0), (1, 40, 0.3, 3.0), (2, 12, 0.25, 1.0), (3, 64, 0.15, 3.0), (4, 9, 0.5, 2.0)]
    for seed, n, density, mean_span in cases:
        ids, kept, hidden, reference = _case(seed, n, density, mean_span)
        expected = _corrupt(ids, kept, hidden, SENTINELS)
        assert expected == reference, "the check's reference disagrees with ptlm_course.denoising"
        call = f"fn(ids of {n} tokens, kept={kept}, hidden={hidden}, sentinels)"
        out = call_student(check, fn, list(ids), list(kept), list(hidden), list(SENTINELS))
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise CheckFailed(check, f"{call} should return two lists (inputs, target), but returned "
                                     f"{type(out).__name__}.")
        got = tuple([int(x) for x in part] if isinstance(part, (list, tuple, torch.Tensor)) else part
                    for part in out)
        if got == expected:
            continue
        for text, flag in _MISTAKES:
            if got == _corrupt(ids, kept, hidden, SENTINELS, **flag):
                raise CheckFailed(check, f"{call}: {text}")
        inputs, target = got
        if not isinstance(inputs, list) or not isinstance(target, list):
            raise CheckFailed(check, f"{call} should return lists of ids, but returned {type(inputs).__name__} "
                                     f"and {type(target).__name__}.")
        n_sentinels = len(kept)
        if sum(i in SENTINELS for i in inputs) != n_sentinels:
            raise CheckFailed(check, f"{call}: the input holds {sum(i in SENTINELS for i in inputs)} sentinels; "
                                     f"expected one per hidden span ({n_sentinels}).")
        if len(inputs) + len(target) != n + 2 * n_sentinels + 1:
            raise CheckFailed(check, f"{call}: input and target together hold {len(inputs) + len(target)} ids; "
                                     f"every token should appear once (in the input if kept, in the target if "
                                     f"hidden) plus {n_sentinels} sentinels in the input and {n_sentinels + 1} in "
                                     f"the target: {n + 2 * n_sentinels + 1}.")
        which = "inputs" if got[0] != expected[0] else "target"
        raise CheckFailed(check, f"{call}: {which} is {got[0] if which == 'inputs' else got[1]}, expected "
                                 f"{expected[0] if which == 'inputs' else expected[1]}.")
    passed(check, len(cases))
