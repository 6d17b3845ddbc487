"""A sixth held-out batch (issue 18, part A): label alignment (no answers in the corpus yet), the GPT forward pass,
the Transformer block and more styles of the issue's mistakes, written before reading those checks' messages."""
import math
import random
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import correct, wrong
from .transformer import _Block

# ------------------------------------------------------------------------------------ label alignment


@correct("check_align_labels")
def heldout6_align_flat(word_pieces, word_labels):
    labels = [-100]
    for pieces, label in zip(word_pieces, word_labels):
        labels += [label] + [-100] * (len(pieces) - 1)
    return labels + [-100]


@correct("check_align_labels")
def heldout6_align_word_ids(word_pieces, word_labels):
    word_ids = [None] + [w for w, pieces in enumerate(word_pieces) for _ in pieces] + [None]
    out, previous = [], None
    for w in word_ids:
        out.append(-100 if w is None or w == previous else word_labels[w])
        previous = w
    return out


@wrong("check_align_labels", "every piece")
def heldout6_align_repeat(word_pieces, word_labels):
    return [-100] + [label for pieces, label in zip(word_pieces, word_labels) for _ in pieces] + [-100]


@wrong("check_align_labels", "-100")
def heldout6_align_zero_fill(word_pieces, word_labels):
    labels = [0]
    for pieces, label in zip(word_pieces, word_labels):
        labels += [label] + [0] * (len(pieces) - 1)
    return labels + [0]


@wrong("check_align_labels", "[SEP]")
def heldout6_align_no_sep(word_pieces, word_labels):
    labels = [-100]
    for pieces, label in zip(word_pieces, word_labels):
        labels += [label] + [-100] * (len(pieces) - 1)
    return labels


@wrong("check_align_labels", "word_ids")
def heldout6_align_same_word_twice(word_pieces, word_labels):
    # word_ids() style, but the "new word" test compares labels, not word ids: a word after a word with the
    # same label is taken for a continuation
    out, previous = [-100], None
    for pieces, label in zip(word_pieces, word_labels):
        for i, _ in enumerate(pieces):
            out.append(label if i == 0 and label != previous else -100)
        previous = label
    return out + [-100]


# ------------------------------------------------------------------------------------ GPT forward


@wrong("check_gpt_forward", "position")
def heldout6_gpt_positions_from_one(model, input_ids):
    T = input_ids.shape[1]
    x = model.wte(input_ids) + model.wpe(torch.arange(1, T + 1) % model.wpe.num_embeddings)
    for block in model.blocks:
        x = block(x)
    return model.lm_head(model.ln_f(x))


@wrong("check_gpt_forward", "ln_f")
def heldout6_gpt_ln_f_each_block(model, input_ids):
    x = model.wte(input_ids) + model.wpe(torch.arange(input_ids.shape[1]))
    for block in model.blocks:
        x = model.ln_f(block(x))
    return model.lm_head(x)


@wrong("check_gpt_forward", "logits")
def heldout6_gpt_log_softmax(model, input_ids):
    x = model.wte(input_ids) + model.wpe(torch.arange(input_ids.shape[1]))
    for block in model.blocks:
        x = block(x)
    return F.log_softmax(model.lm_head(model.ln_f(x)), dim=-1)


# ------------------------------------------------------------------------------------ Transformer block


@wrong("check_transformer_block", "post-ln")
class Heldout6BlockNormAfterAdd(_Block):
    def forward(self, x, mask=None):
        x = self.ln1(x + self.attn(x, mask=mask)[0])
        return self.ln2(x + self.ffn(x))


@wrong("check_transformer_block", "ln2")
class Heldout6BlockOneNorm(_Block):
    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask=mask)[0]
        return x + self.ffn(self.ln1(x))


@wrong("check_transformer_block", "residual")
class Heldout6BlockResidualFromNormed(_Block):
    def forward(self, x, mask=None):
        h = self.ln1(x)
        h = h + self.attn(h, mask=mask)[0]
        h2 = self.ln2(h)
        return h2 + self.ffn(h2)


# ------------------------------------------------------------------------------------ the mistakes again


@wrong("check_merge", "text")
def heldout6_merge_join_no_space(ids, pair, new_id):
    text = "-".join(map(str, ids)).replace(f"{pair[0]}-{pair[1]}", str(new_id))
    return [int(t) for t in text.split("-")] if text else []


@wrong("check_pair_counts", "first pair is missing")
def heldout6_pairs_while_from_one(ids):
    counts, i = {}, 1
    while i + 1 < len(ids):
        counts[ids[i], ids[i + 1]] = counts.get((ids[i], ids[i + 1]), 0) + 1
        i += 1
    return counts


@wrong("check_word_pair_counts", "frequencies")
def heldout6_word_pairs_set_of_words(word_freqs):
    counts = Counter()
    for word in word_freqs:
        counts.update(zip(word, word[1:]))
    return dict(counts)


@wrong("check_mlm_masking", "mask_prob")
def heldout6_mask_exact_count_fixed_rate(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(special_ids))
    scores = torch.rand(input_ids.shape, generator=generator).masked_fill(special, 2.0)
    n = int(0.15 * (~special).sum())                          # exactly 15% of the ordinary tokens, whatever mask_prob
    chosen = torch.zeros(input_ids.numel(), dtype=torch.bool)
    chosen[scores.view(-1).argsort()[:n]] = True
    chosen = chosen.view(input_ids.shape)
    u = torch.rand(input_ids.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    rnd = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    out = torch.where(chosen & (u < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(chosen & (u >= 0.8) & (u < 0.9), rnd, out)
    return out, torch.where(chosen, input_ids, -100)


@wrong("check_mlm_masking", "special")
def heldout6_mask_random_any_id(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(special_ids))
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    u = torch.rand(input_ids.shape, generator=generator)
    rnd = torch.randint(vocab_size, input_ids.shape, generator=generator)       # may draw [CLS], [MASK], ...
    out = torch.where(chosen & (u < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(chosen & (u >= 0.8) & (u < 0.9), rnd, out)
    return out, torch.where(chosen, input_ids, -100)


@wrong("check_nsp_pairs", "generator")
def heldout6_nsp_global_torch_rng(plays, n, generator=None):
    titles = sorted(plays)
    out = []
    for _ in range(n):
        t = titles[torch.randint(len(titles), (1,)).item()]
        scenes = [s for s in plays[t] if len(s) > 1]
        scene = scenes[torch.randint(len(scenes), (1,)).item()]
        k = torch.randint(len(scene) - 1, (1,)).item()
        if torch.rand(1).item() < 0.5:
            out.append((scene[k], scene[k + 1], True))
        else:
            u = random.Random(k).choice([x for x in titles if x != t])
            segs = [s for sc in plays[u] for s in sc]
            out.append((scene[k], segs[torch.randint(len(segs), (1,)).item()], False))
    return out


@wrong("check_sample_next", "generator")
def heldout6_sample_gumbel_no_generator(logits, generator=None):
    gumbel = -torch.log(-torch.log(torch.rand_like(logits)))
    return (logits + gumbel).argmax(-1)


@correct("check_sample_next")
def heldout6_sample_gumbel(logits, generator=None):
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp(1e-12, 1 - 1e-12)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


class _Head(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_labels)


@wrong("check_cls_head", "logits")
class Heldout6HeadDropoutOnLogits(_Head):
    def forward(self, hidden_states):
        return self.dropout(self.classifier(hidden_states[:, 0]))


@wrong("check_early_stopping", "tie")
class Heldout6StopperHistoryMin:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.values = []

    def update(self, value):
        self.values.append(value if self.mode == "min" else -value)
        best_at, best = 0, self.values[0]
        for i, v in enumerate(self.values):
            if v <= best - self.min_delta:                 # a tie moves the best forward
                best_at, best = i, v
        return len(self.values) - 1 - best_at >= self.patience


@wrong("check_freeze", "weight")
def heldout6_freeze_named_weight(model, train_top_layers):
    n = len(model.bert.blocks)
    keep = tuple(f"bert.blocks.{i}." for i in range(n - train_top_layers, n)) + ("classifier",)
    for name, p in model.named_parameters():
        if name.endswith(".weight"):
            p.requires_grad_(name.startswith(keep))


@wrong("check_attention", "mask")
def heldout6_attention_mask_multiply(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores * mask                         # zeroes the masked scores instead of -inf
    w = scores.softmax(-1)
    return w @ v, w


@wrong("check_layer_norm", "swapped")
def heldout6_ln_functional_swapped(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], bias, weight, eps)


@wrong("check_feed_forward", "relu")
class Heldout6FFNSequentialReLU(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
