"""A third held-out batch (issue 18, part A), written before looking at how the checks word their messages:
each listed mistake of the issue in a style the corpus did not have yet. Its first rates are in its commit."""
import math
import random
import re
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import correct, wrong
from .attention import _MHA

# ------------------------------------------------------------------------------------ BPE merge by text


@wrong("check_merge", "text")
def heldout3_merge_comma_join(ids, pair, new_id):
    text = ",".join(str(i) for i in ids)
    text = text.replace(f"{pair[0]},{pair[1]}", str(new_id))
    return [int(t) for t in text.split(",")]


@wrong("check_merge", "text")
def heldout3_merge_regex_no_boundary(ids, pair, new_id):
    text = re.sub(f"{pair[0]} {pair[1]}", str(new_id), " ".join(map(str, ids)))
    return list(map(int, text.split()))


@wrong("check_merge", "text")
def heldout3_merge_padded_join(ids, pair, new_id):
    # spaces around each id stop "12 3" matching "2 3", but back-to-back occurrences share a space
    text = " " + " ".join(map(str, ids)) + " "
    text = text.replace(f" {pair[0]} {pair[1]} ", f" {new_id} ")
    return [int(t) for t in text.split()]


@correct("check_merge")
def heldout3_merge_regex_lookaround(ids, pair, new_id):
    text = " ".join(map(str, ids))
    text = re.sub(rf"(?<!\S){pair[0]} {pair[1]}(?!\S)", str(new_id), text)
    return [int(t) for t in text.split()]


# ------------------------------------------------------------------------------------ WordPiece bare fallback


@wrong("check_wordpiece", "without its '##'")
def heldout3_wordpiece_strip_prefix(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end]
            if start and "##" + piece in vocab:
                pieces.append("##" + piece)
                break
            if piece in vocab:               # also the continuation, as a bare piece
                pieces.append(piece)
                break
        else:
            return ["[UNK]"]
        start = end
    return pieces


# ------------------------------------------------------------------------------------ MLM masking


@wrong("check_mlm_masking", "special")
def heldout3_mask_randint_from_one(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    labels = input_ids.clone()
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for s in special_ids:
        special |= input_ids == s
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    labels[~chosen] = -100
    out = input_ids.clone()
    u = torch.rand(input_ids.shape, generator=generator)
    out[chosen & (u < 0.8)] = mask_id
    rnd = chosen & (u >= 0.8) & (u < 0.9)
    out[rnd] = torch.randint(1, vocab_size, (int(rnd.sum()),), generator=generator)   # skips only [PAD]=0
    return out, labels


@wrong("check_mlm_masking", "mask_prob", "ignored")
def heldout3_mask_bernoulli_fixed(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(special_ids))
    chosen = torch.bernoulli(torch.full(input_ids.shape, 0.15), generator=generator).bool() & ~special
    u = torch.rand(input_ids.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    rnd_ids = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    out = torch.where(chosen & (u < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(chosen & (u >= 0.8) & (u < 0.9), rnd_ids, out)
    return out, torch.where(chosen, input_ids, -100)


@wrong("check_mlm_masking", "generator", "ignored")
def heldout3_mask_python_random(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    out, labels = input_ids.clone(), torch.full_like(input_ids, -100)
    ordinary = [i for i in range(vocab_size) if i not in special_ids]
    for pos in range(input_ids.numel()):
        token = int(input_ids.view(-1)[pos])
        if token in special_ids or random.random() >= mask_prob:
            continue
        labels.view(-1)[pos] = token
        r = random.random()
        if r < 0.8:
            out.view(-1)[pos] = mask_id
        elif r < 0.9:
            out.view(-1)[pos] = random.choice(ordinary)
    return out, labels


@wrong("check_mlm_masking", "generator", "ignored")
def heldout3_mask_generator_for_choice_only(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15,
                                            generator=None):
    special = torch.isin(input_ids, torch.tensor(special_ids))
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    u = torch.rand(input_ids.shape)                                   # forgot the generator here
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    rnd_ids = ordinary[torch.randint(len(ordinary), input_ids.shape)]
    out = torch.where(chosen & (u < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(chosen & (u >= 0.8) & (u < 0.9), rnd_ids, out)
    return out, torch.where(chosen, input_ids, -100)


@wrong("check_mlm_masking", "every row")
def heldout3_mask_columns(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(special_ids))
    cols = torch.rand(1, input_ids.shape[1], generator=generator) < mask_prob         # same positions every row
    chosen = cols.expand_as(input_ids) & ~special
    u = torch.rand(input_ids.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    rnd_ids = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    out = torch.where(chosen & (u < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(chosen & (u >= 0.8) & (u < 0.9), rnd_ids, out)
    return out, torch.where(chosen, input_ids, -100)


# ------------------------------------------------------------------------------------ NSP pairs, sampling


def _nsp_pair(plays, g, a_index):
    titles = sorted(plays)
    title = titles[int(torch.randint(len(titles), (1,), generator=g))]
    scenes = [s for s in plays[title] if len(s) > 1]
    scene = scenes[int(torch.randint(len(scenes), (1,), generator=g))]
    k = a_index(len(scene), g)
    if torch.rand(1, generator=g).item() < 0.5:
        return scene[k], scene[k + 1], True
    other = [t for t in titles if t != title][int(torch.randint(len(titles) - 1, (1,), generator=g))]
    segments = [seg for sc in plays[other] for seg in sc]
    return scene[k], segments[int(torch.randint(len(segments), (1,), generator=g))], False


@wrong("check_nsp_pairs", "first segment")
def heldout3_nsp_scene_start(plays, n, generator=None):
    return [_nsp_pair(plays, generator, lambda m, g: 0) for _ in range(n)]


@wrong("check_nsp_pairs", "never")
def heldout3_nsp_off_by_one_range(plays, n, generator=None):
    # A drawn from range(len(scene) - 2): the last segment that has a next one is never A
    return [_nsp_pair(plays, generator, lambda m, g: int(torch.randint(max(m - 2, 1), (1,), generator=g)))
            for _ in range(n)]


@wrong("check_nsp_pairs", "generator")
def heldout3_nsp_unseeded_python_random(plays, n, generator=None):
    out = []
    titles = list(plays)
    for _ in range(n):
        title = random.choice(titles)
        scene = random.choice([s for s in plays[title] if len(s) > 1])
        k = random.randrange(len(scene) - 1)
        if random.random() < 0.5:
            out.append((scene[k], scene[k + 1], True))
        else:
            other = random.choice([t for t in titles if t != title])
            out.append((scene[k], random.choice([x for sc in plays[other] for x in sc]), False))
    return out


@correct("check_nsp_pairs")
def heldout3_nsp_uniform_over_candidates(plays, n, generator=None):
    candidates = [(t, s, k) for t, scenes in plays.items() for s, sc in enumerate(scenes) for k in range(len(sc) - 1)]
    out = []
    for _ in range(n):
        t, s, k = candidates[int(torch.randint(len(candidates), (1,), generator=generator))]
        if torch.rand(1, generator=generator).item() < 0.5:
            out.append((plays[t][s][k], plays[t][s][k + 1], True))
        else:
            others = [x for u, scenes in plays.items() if u != t for sc in scenes for x in sc]
            out.append((plays[t][s][k], others[int(torch.randint(len(others), (1,), generator=generator))], False))
    return out


@wrong("check_sample_next", "generator")
def heldout3_sample_no_generator(logits, generator=None):
    return torch.multinomial(logits.softmax(-1), 1).squeeze(-1)


@wrong("check_sample_next", "generator")
def heldout3_sample_reseeds(logits, generator=None):
    torch.manual_seed(0)                                   # "so that it is reproducible"
    return torch.multinomial(logits.softmax(-1), 1).squeeze(-1)


# ------------------------------------------------------------------------------------ [CLS] head dropout


class _Head(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.p = dropout
        self.classifier = nn.Linear(d_model, num_labels)


@wrong("check_cls_head", "argument is ignored")
class Heldout3HeadFunctionalFixedP(_Head):
    def forward(self, hidden_states):
        return self.classifier(F.dropout(hidden_states[:, 0], 0.1, training=self.training))


@wrong("check_cls_head", "rescaled")
class Heldout3HeadMaskNoRescale(_Head):
    def forward(self, hidden_states):
        cls = hidden_states[:, 0]
        if self.training:
            cls = cls * (torch.rand_like(cls) > self.p)
        return self.classifier(cls)


@wrong("check_cls_head", "rescaled")
class Heldout3HeadBernoulliNoRescale(_Head):
    def forward(self, hidden_states):
        cls = hidden_states[:, 0, :]
        if self.training:
            cls = cls * torch.bernoulli(torch.full_like(cls, 1 - self.p))
        return self.classifier(cls)


# ------------------------------------------------------------------------------------ early stopping


class _Stop:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best, self.bad_epochs = None, 0


@wrong("check_early_stopping", "tie")
class Heldout3StopperNotWorse(_Stop):
    def update(self, value):
        if self.best is None:
            self.best = value
            return False
        worse = value > self.best - self.min_delta if self.mode == "min" else value < self.best + self.min_delta
        if worse:
            self.bad_epochs += 1
        else:
            self.best, self.bad_epochs = value, 0
        return self.bad_epochs >= self.patience


@wrong("check_early_stopping", "never updated")
class Heldout3StopperFirstValue(_Stop):
    def update(self, value):
        if self.best is None:
            self.best = value
        improved = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        return self.bad_epochs >= self.patience


@wrong("check_early_stopping", "starts at 0")
class Heldout3StopperZeroStart(_Stop):
    def __init__(self, patience, mode="min", min_delta=0.0):
        super().__init__(patience, mode, min_delta)
        self.best = 0.0

    def update(self, value):
        improved = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


# ------------------------------------------------------------------------------------ wrong diagnoses


@wrong("check_next_token_targets", "one position late")
def heldout3_targets_start_plus_one(ids, block_size, start):
    start += 1                                                   # "the first target needs a token before it"
    return ids[start:start + block_size], ids[start + 1:start + block_size + 1]


@wrong("check_pair_counts", "first pair is missing")
def heldout3_pairs_zip_from_one(ids):
    return Counter(zip(ids[1:], ids[2:]))


@wrong("check_freeze", "only the `weight` parameters")
def heldout3_freeze_weight_in_name(model, train_top_layers):
    n = len(model.bert.blocks)
    for name, p in model.named_parameters():
        if "weight" not in name:
            continue
        trainable = name.startswith("classifier") or any(name.startswith(f"bert.blocks.{i}.")
                                                         for i in range(n - train_top_layers, n))
        p.requires_grad = trainable


# ------------------------------------------------------------------------------------ attention mistakes


@wrong("check_attention", "sqrt(d_v)")
def heldout3_attention_scale_by_v(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / v.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(mask == 0, float("-inf"))
    w = scores.softmax(-1)
    return w @ v, w


@wrong("check_attention", "after the softmax")
def heldout3_attention_divide_weights(q, k, v, mask=None):
    scores = torch.matmul(q, k.transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e9)
    w = F.softmax(scores, dim=-1) / math.sqrt(q.size(-1))
    return w @ v, w


@wrong("check_attention", ".T")
def heldout3_attention_dot_T(q, k, v, mask=None):
    scores = q @ k.T / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = scores.softmax(-1)
    return w @ v, w


@wrong("check_multi_head_attention", "sqrt(d_model)")
class Heldout3MHAScaleModel(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, scale=x.shape[-1] ** -0.5)


@wrong("check_multi_head_attention", "k_proj")
class Heldout3MHAVFromK(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, v_layer=self.k_proj)


@wrong("check_multi_head_attention", "mask")
class Heldout3MHANoMask(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, None)


@wrong("check_multi_head_attention", "queries")
class Heldout3MHASoftmaxDim2(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, dim=2)


@wrong("check_multi_head_attention", "dropout is always on")
class Heldout3MHADropout(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, dropout=0.1)


@wrong("check_multi_head_attention", "after the softmax")
class Heldout3MHAScaleAfter(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, after=True)


@wrong("check_multi_head_attention", ".T")
class Heldout3MHADotT(_MHA):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        w = (q @ k.T / math.sqrt(C // self.n_heads)).softmax(-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, T, C)), w


# ------------------------------------------------------------------------------------ merge_heads


@wrong("check_merge_heads", "interleaved")
def heldout3_merge_permute_last(x):
    B, H, T, D = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, H * D)


@wrong("check_merge_heads", "reverse")
def heldout3_merge_flip(x):
    return torch.cat(x.flip(1).unbind(1), dim=-1)


# ------------------------------------------------------------------------------------ LayerNorm, feed-forward


@wrong("check_layer_norm", "centred")
def heldout3_ln_var_uncentred(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = x.pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


@wrong("check_layer_norm", "swapped")
def heldout3_ln_swap(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return bias * (x - mean) / (var + eps).sqrt() + weight


class _FF(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)


@wrong("check_feed_forward", "before the first linear")
class Heldout3FFNSequentialOrder(_FF):
    def forward(self, x):
        for layer in (nn.GELU(), self.fc1, self.fc2):
            x = layer(x)
        return x


@wrong("check_feed_forward", "residual inside")
class Heldout3FFNResidualNamed(_FF):
    def forward(self, x):
        residual = x
        h = F.gelu(self.fc1(x))
        return self.fc2(h) + residual


# ------------------------------------------------------------------------------------ top-p and -inf


@wrong("check_top_p", "crosses p")
def heldout3_top_p_strict(logits, p):
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    drop = probs.cumsum(-1) > p                                   # drops the token that crosses p
    return logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
