"""A seventh held-out batch (issue 18, part A): correct answers in styles the checks changed by this part must
keep accepting, and a last round of wrong ones, written before running them."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import correct, wrong

# ------------------------------------------------------------------------------------ correct styles


@correct("check_merge")
def heldout7_merge_tuple_window(ids, pair, new_id):
    out, i, pair = [], 0, tuple(pair)
    while i < len(ids):
        if tuple(ids[i:i + 2]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


@correct("check_mlm_masking")
def heldout7_mask_fixed_count_per_row(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    """Original BERT style: exactly round(mask_prob * n) ordinary tokens per sequence."""
    special = torch.isin(input_ids, torch.tensor(special_ids))
    chosen = torch.zeros_like(special)
    for row in range(input_ids.shape[0]):
        eligible = (~special[row]).nonzero().flatten()
        n = int(round(mask_prob * len(eligible)))
        pick = eligible[torch.randperm(len(eligible), generator=generator)[:n]]
        chosen[row, pick] = True
    u = torch.rand(input_ids.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    rnd = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    out = input_ids.clone()
    out[chosen & (u < 0.8)] = mask_id
    swap = chosen & (u >= 0.8) & (u < 0.9)
    out[swap] = rnd[swap]
    return out, torch.where(chosen, input_ids, torch.tensor(-100))


@correct("check_top_p")
def heldout7_top_p_shifted_cumsum(logits, p):
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove = cum > p
    remove[..., 1:] = remove[..., :-1].clone()          # keep the token that crosses p
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


@correct("check_early_stopping")
class Heldout7StopperCounter:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best, self.since_best = None, 0

    def _improves(self, value):
        if self.best is None:
            return True
        if self.mode == "min":
            return self.best - value > self.min_delta
        return value - self.best > self.min_delta

    def update(self, value):
        if self._improves(value):
            self.best, self.since_best = value, 0
        else:
            self.since_best += 1
        return self.since_best >= self.patience


@correct("check_cls_head")
class Heldout7HeadManualDropout(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.p = dropout
        self.linear = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states):
        cls = hidden_states[:, 0]                                        # (B, C)
        if self.training and self.p > 0:
            keep = torch.rand_like(cls) >= self.p
            cls = cls * keep / (1 - self.p)
        return self.linear(cls)


@correct("check_attention")
def heldout7_attention_baddbmm_style(q, k, v, mask=None):
    d = q.shape[-1]
    scores = torch.matmul(q / math.sqrt(d), k.transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(~mask.bool(), float("-inf"))
    w = torch.softmax(scores, -1)
    return torch.matmul(w, v), w


@correct("check_layer_norm")
def heldout7_ln_std(x, weight, bias, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    sigma2 = (x - mu).pow(2).mean(-1, keepdim=True)
    return weight * (x - mu) / (sigma2 + eps).sqrt() + bias


# ------------------------------------------------------------------------------------ wrong ones


@wrong("check_top_p", "crosses p")
def heldout7_top_p_no_shift(logits, p):
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    remove = sorted_logits.softmax(-1).cumsum(-1) > p
    remove[..., 0] = False                              # the top token kept, but the crossing one dropped
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


@wrong("check_cls_head", "rescaled")
class Heldout7HeadManualNoRescale(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.p = dropout
        self.linear = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states):
        cls = hidden_states[:, 0]
        if self.training and self.p > 0:
            cls = cls.masked_fill(torch.rand_like(cls) < self.p, 0.0)
        return self.linear(cls)


@wrong("check_early_stopping", "tie")
class Heldout7StopperNonNegativeGain(Heldout7StopperCounter):
    def _improves(self, value):
        if self.best is None:
            return True
        gain = self.best - value if self.mode == "min" else value - self.best
        return gain >= self.min_delta                   # a gain of exactly min_delta (or 0) counts


@wrong("check_layer_norm", "unbiased")
def heldout7_ln_std_default(x, weight, bias, eps=1e-5):
    return weight * (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) + bias


@wrong("check_attention", "sqrt(d_v)")
def heldout7_attention_scale_value_dim(q, k, v, mask=None):
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(v.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask.bool(), float("-inf"))
    w = torch.softmax(scores, -1)
    return torch.matmul(w, v), w


@wrong("check_attention", "queries")
def heldout7_attention_softmax_dim_minus2(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask.bool(), float("-inf"))
    w = F.softmax(scores, dim=-2)
    return w @ v, w


@wrong("check_mlm_masking", "whole rows")
def heldout7_mask_row_coin(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(special_ids))
    rows = torch.rand(input_ids.shape[0], 1, generator=generator) < mask_prob          # a coin per sequence
    chosen = rows & ~special
    u = torch.rand(input_ids.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    rnd = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    out = torch.where(chosen & (u < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(chosen & (u >= 0.8) & (u < 0.9), rnd, out)
    return out, torch.where(chosen, input_ids, -100)
