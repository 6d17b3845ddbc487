"""Checks for exercises/21_choosing_an_architecture.ipynb: a decoder-only training batch for a
source -> target task (``source [SEP] target [SEP]``, the loss on the target only, padding ignored)."""
from __future__ import annotations

import torch

from ..restoration import prompted_example
from ._core import CheckFailed, call_student, passed

__all__ = ["check_prompted_batch"]

SEP, PAD, IGNORE = 3, 0, -100


def _batch(pairs, sep=SEP, pad=PAD, prompt_loss=False, unshifted=False, shifted_twice=False, no_final_sep=False,
           pad_in_loss=False, first_target_masked=False, left_pad=False, whole_sequence=False):
    """The reference with one classic mistake switched on (all off: ``restoration.prompted_example``, padded)."""
    rows = []
    for source, target in pairs:
        sequence = source + [sep] + target + ([] if no_final_sep else [sep])
        inputs = sequence if whole_sequence else sequence[:-1]
        if unshifted:
            next_tokens = sequence[:-1]
        elif shifted_twice:
            next_tokens = sequence[2:] + [IGNORE]
        else:
            next_tokens = sequence[1:]
        if whole_sequence:
            next_tokens = next_tokens + [IGNORE]
        n_prompt = 0 if prompt_loss else len(source) + (1 if first_target_masked else 0)
        rows.append((inputs, [IGNORE] * n_prompt + next_tokens[n_prompt:]))
    width = max(len(x) for x, _ in rows)
    filler = pad if pad_in_loss else IGNORE
    if left_pad:
        return ([[pad] * (width - len(x)) + x for x, _ in rows], [[filler] * (width - len(y)) + y for _, y in rows])
    return [x + [pad] * (width - len(x)) for x, _ in rows], [y + [filler] * (width - len(y)) for _, y in rows]


_MISTAKES = [
    ("the loss covers the prompt: the targets of the source positions should be -100 (the source is given, "
     "not to be learned); only the target's tokens and its final [SEP] count.", {"prompt_loss": True}),
    ("the targets are not shifted: at each position the target is the token that comes *after* it "
     "(targets[t] = sequence[t + 1]), not the token the model reads there.", {"unshifted": True}),
    ("the targets are shifted twice: targets[t] should be sequence[t + 1], the very next token, but yours is "
     "sequence[t + 2]. (Shift once: inputs = sequence[:-1], next tokens = sequence[1:].)", {"shifted_twice": True}),
    ("[SEP] is missing from the end of the target: the sequence is source [SEP] target [SEP], and the model "
     "must learn to write that last [SEP], or generation never stops.", {"no_final_sep": True}),
    ("the padding is counted in the loss: the targets of padded positions should be -100, not the [PAD] id.",
     {"pad_in_loss": True}),
    ("the first target token is masked out: the position that reads the prompt's [SEP] must predict the "
     "target's first token, so only the len(source) positions before it get -100.", {"first_target_masked": True}),
    ("the rows are padded on the left: the course GPT has learned positions and no padding mask, so padding "
     "goes at the end, where no real token ever attends to it.", {"left_pad": True}),
    ("the inputs hold the whole sequence, final [SEP] included: the input is the sequence without its last "
     "token (nothing comes after the last [SEP] to predict).", {"whole_sequence": True}),
]


def _cases():
    g = torch.Generator().manual_seed(21)
    out = []
    for n_rows in (1, 3, 5):
        pairs = []
        for _ in range(n_rows):
            n_source = int(torch.randint(2, 9, (1,), generator=g))
            source = torch.randint(5, 400, (n_source,), generator=g).tolist()
            marks = torch.randint(400, 410, (int(torch.randint(0, 3, (1,), generator=g)),), generator=g).tolist()
            out_ids = source[:]
            for k, mark in enumerate(marks):
                out_ids.insert(min(len(out_ids), 2 * k + 2), mark)
            pairs.append((source, out_ids))
        out.append(pairs)
    return out


def _as_rows(part):
    if isinstance(part, torch.Tensor):
        return part.tolist() if part.dim() == 2 else None
    if isinstance(part, (list, tuple)) and all(isinstance(row, (list, tuple, torch.Tensor)) for row in part):
        return [[int(v) for v in row] for row in part]
    return None


def check_prompted_batch(fn) -> None:
    """Check ``fn(pairs, sep_id, pad_id) -> (inputs, targets)``: two (B, T) tensors (or lists of rows)."""
    check = "check_prompted_batch"
    cases = _cases()
    for pairs in cases:
        expected = _batch(pairs)
        one = [prompted_example(s, t, SEP) for s, t in pairs]
        assert all(x == row[:len(x)] and y == yr[:len(y)] for (x, y), row, yr in zip(one, *expected)), \
            "the check's reference disagrees with ptlm_course.restoration.prompted_example"
        call = f"fn({len(pairs)} (source, target) pairs, sep_id={SEP}, pad_id={PAD})"
        out = call_student(check, fn, [(list(s), list(t)) for s, t in pairs], SEP, PAD)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise CheckFailed(check, f"{call} should return two (B, T) tensors (inputs, targets), but returned "
                                     f"{type(out).__name__}.")
        got = tuple(_as_rows(part) for part in out)
        if got[0] is None or got[1] is None:
            raise CheckFailed(check, f"{call} should return two (B, T) tensors (inputs, targets), but returned "
                                     f"{type(out[0]).__name__} and {type(out[1]).__name__}.")
        if got == expected:
            continue
        for text, flag in _MISTAKES:
            if got == _batch(pairs, **flag):
                raise CheckFailed(check, f"{call}: {text}")
        inputs, targets = got
        shape = (len(expected[0]), len(expected[0][0]))
        for name, rows in (("inputs", inputs), ("targets", targets)):
            if len(rows) != shape[0] or any(len(r) != shape[1] for r in rows):
                raise CheckFailed(check, f"{call}: {name} should be one row per pair, padded to the longest row "
                                         f"(shape {shape}: source + [SEP] + target, the last [SEP] left out), but "
                                         f"the rows have lengths {[len(r) for r in rows]}.")
        which, row = next((name, i) for name, g_rows, e_rows in (("inputs", inputs, expected[0]),
                                                                 ("targets", targets, expected[1]))
                          for i, (a, b) in enumerate(zip(g_rows, e_rows)) if a != b)
        got_row = (inputs if which == "inputs" else targets)[row]
        want_row = (expected[0] if which == "inputs" else expected[1])[row]
        raise CheckFailed(check, f"{call}: row {row} of {which} is {got_row}, expected {want_row}.")
    passed(check, len(cases))
