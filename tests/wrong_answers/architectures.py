"""Answers to the check of notebook 21 (a decoder-only training batch: source [SEP] target [SEP], the loss on
the target only, padding at the end and out of the loss)."""
import torch

from ._registry import correct, wrong


@correct("check_prompted_batch")
def batch_with_lists(pairs, sep_id, pad_id):
    rows = []
    for source, target in pairs:
        sequence = source + [sep_id] + target + [sep_id]
        rows.append((sequence[:-1], [-100] * len(source) + sequence[len(source) + 1:]))
    width = max(len(x) for x, _ in rows)
    inputs = torch.tensor([x + [pad_id] * (width - len(x)) for x, _ in rows])
    targets = torch.tensor([y + [-100] * (width - len(y)) for _, y in rows])
    return inputs, targets


@correct("check_prompted_batch")
def batch_with_tensors(pairs, sep_id, pad_id):
    seqs = [torch.tensor(s + [sep_id] + t + [sep_id]) for s, t in pairs]
    width = max(len(s) for s in seqs) - 1
    inputs = torch.full((len(seqs), width), pad_id)
    targets = torch.full((len(seqs), width), -100)
    for i, ((source, _), seq) in enumerate(zip(pairs, seqs)):
        inputs[i, :len(seq) - 1] = seq[:-1]
        targets[i, :len(seq) - 1] = seq[1:]
        targets[i, :len(source)] = -100
    return inputs, targets


@correct("check_prompted_batch")
def batch_with_pad_sequence(pairs, sep_id, pad_id):
    xs, ys = [], []
    for source, target in pairs:
        xs.append(torch.tensor(source + [sep_id] + target))
        ys.append(torch.tensor([-100] * len(source) + target + [sep_id]))
    pad = torch.nn.utils.rnn.pad_sequence
    return pad(xs, batch_first=True, padding_value=pad_id), pad(ys, batch_first=True, padding_value=-100)


def _rows(pairs, sep_id, pad_id, make):
    rows = [make(s, t) for s, t in pairs]
    width = max(len(x) for x, _ in rows)
    return ([x + [pad_id] * (width - len(x)) for x, _ in rows], [y + [-100] * (width - len(y)) for _, y in rows])


@wrong("check_prompted_batch", "loss covers the prompt")
def batch_loss_on_prompt(pairs, sep_id, pad_id):
    def make(s, t):
        seq = s + [sep_id] + t + [sep_id]
        return seq[:-1], seq[1:]
    return _rows(pairs, sep_id, pad_id, make)


@wrong("check_prompted_batch", "not shifted")
def batch_not_shifted(pairs, sep_id, pad_id):
    def make(s, t):
        seq = s + [sep_id] + t + [sep_id]
        return seq[:-1], [-100] * len(s) + seq[len(s):-1]
    return _rows(pairs, sep_id, pad_id, make)


@wrong("check_prompted_batch", "shifted twice")
def batch_shifted_twice(pairs, sep_id, pad_id):
    def make(s, t):
        seq = s + [sep_id] + t + [sep_id]
        nxt = seq[1:]
        nxt = nxt[1:] + [-100]                    # shifted again "to predict the next token"
        return seq[:-1], [-100] * len(s) + nxt[len(s):]
    return _rows(pairs, sep_id, pad_id, make)


@wrong("check_prompted_batch", "[SEP] is missing")
def batch_no_final_sep(pairs, sep_id, pad_id):
    def make(s, t):
        seq = s + [sep_id] + t
        return seq[:-1], [-100] * len(s) + seq[len(s) + 1:]
    return _rows(pairs, sep_id, pad_id, make)


@wrong("check_prompted_batch", "padding is counted")
def batch_pad_in_loss(pairs, sep_id, pad_id):
    rows = []
    for s, t in pairs:
        seq = s + [sep_id] + t + [sep_id]
        rows.append((seq[:-1], [-100] * len(s) + seq[len(s) + 1:]))
    width = max(len(x) for x, _ in rows)
    return ([x + [pad_id] * (width - len(x)) for x, _ in rows], [y + [pad_id] * (width - len(y)) for _, y in rows])


@wrong("check_prompted_batch", "first target token is masked")
def batch_masks_sep_position(pairs, sep_id, pad_id):
    def make(s, t):
        seq = s + [sep_id] + t + [sep_id]
        n = len(s) + 1                             # "source [SEP]" is the prompt, so mask it all
        return seq[:-1], [-100] * n + seq[n + 1:]
    return _rows(pairs, sep_id, pad_id, make)


@wrong("check_prompted_batch", "padded on the left")
def batch_left_padded(pairs, sep_id, pad_id):
    rows = []
    for s, t in pairs:
        seq = s + [sep_id] + t + [sep_id]
        rows.append((seq[:-1], [-100] * len(s) + seq[len(s) + 1:]))
    width = max(len(x) for x, _ in rows)
    return ([[pad_id] * (width - len(x)) + x for x, _ in rows], [[-100] * (width - len(y)) + y for _, y in rows])


@wrong("check_prompted_batch", "whole sequence")
def batch_whole_sequence(pairs, sep_id, pad_id):
    def make(s, t):
        seq = s + [sep_id] + t + [sep_id]
        return seq, [-100] * len(s) + seq[len(s) + 1:] + [-100]
    return _rows(pairs, sep_id, pad_id, make)


@wrong("check_prompted_batch", "padded to the longest row")
def batch_not_padded(pairs, sep_id, pad_id):
    xs, ys = [], []
    for s, t in pairs:
        seq = s + [sep_id] + t + [sep_id]
        xs.append(seq[:-1])
        ys.append([-100] * len(s) + seq[len(s) + 1:])
    return xs, ys


@wrong("check_prompted_batch", "two (B, T) tensors")
def batch_inputs_only(pairs, sep_id, pad_id):
    return torch.nn.utils.rnn.pad_sequence([torch.tensor(s + [sep_id] + t) for s, t in pairs], batch_first=True,
                                           padding_value=pad_id)


@wrong("check_prompted_batch", "source + [SEP] + target")
def batch_target_without_marks(pairs, sep_id, pad_id):
    def make(s, t):
        seq = s + [sep_id] + s + [sep_id]          # the source written twice: the target forgotten
        return seq[:-1], [-100] * len(s) + seq[len(s) + 1:]
    return _rows(pairs, sep_id, pad_id, make)
