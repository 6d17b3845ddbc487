"""A fourth held-out batch (issue 18, part A), written after the third was fixed and before reading the checks'
messages again: the issue's mistakes and others like them, in styles the corpus did not have."""
import math
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import correct, wrong

# ------------------------------------------------------------------------------------ tokenization


@wrong("check_merge", "text")
def heldout4_merge_repr(ids, pair, new_id):
    text = str(list(ids)).replace(f"{pair[0]}, {pair[1]}", str(new_id))
    return eval(text)  # noqa: S307 - a student's shortcut


@wrong("check_wordpiece", "without its '##'")
def heldout4_wordpiece_bare_first(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        piece = None
        for end in range(len(word), start, -1):
            sub = word[start:end]
            if sub in vocab:                 # the bare piece first, then the '##' one
                piece = sub
            elif start > 0 and "##" + sub in vocab:
                piece = "##" + sub
            if piece:
                break
        if piece is None:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


# ------------------------------------------------------------------------------------ MLM masking


def _mlm(input_ids, special, vocab_size, mask_id, mask_prob, generator, special_ids):
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    u = torch.rand(input_ids.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    rnd = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    out = torch.where(chosen & (u < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(chosen & (u >= 0.8) & (u < 0.9), rnd, out)
    return out, torch.where(chosen, input_ids, -100)


@wrong("check_mlm_masking", "special tokens were chosen")
def heldout4_mask_specials_first(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = input_ids < len(special_ids)                    # assumes the special ids are 0 .. n-1
    return _mlm(input_ids, special, vocab_size, mask_id, mask_prob, generator, special_ids)


@wrong("check_mlm_masking", "80%")
def heldout4_mask_chained_index(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(special_ids))
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    out = input_ids.clone()
    u = torch.rand(input_ids.shape, generator=generator)
    out[chosen][u[chosen] < 0.8] = mask_id                    # writes into a copy: nothing changes
    return out, torch.where(chosen, input_ids, -100)


@wrong("check_mlm_masking", "generator")
def heldout4_mask_fixed_seed(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    g = torch.Generator().manual_seed(42)                      # "reproducible"
    special = torch.isin(input_ids, torch.tensor(special_ids))
    return _mlm(input_ids, special, vocab_size, mask_id, mask_prob, g, special_ids)


@correct("check_mlm_masking")
def heldout4_mask_multinomial_split(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(special_ids))
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    kind = torch.multinomial(torch.tensor([0.8, 0.1, 0.1]), input_ids.numel(), replacement=True,
                             generator=generator).view(input_ids.shape)
    ordinary = torch.tensor(sorted(set(range(vocab_size)) - set(special_ids)))
    rnd = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    out = input_ids.clone()
    out[chosen & (kind == 0)] = mask_id
    out[chosen & (kind == 1)] = rnd[chosen & (kind == 1)]
    labels = input_ids.masked_fill(~chosen, -100)
    return out, labels


# ------------------------------------------------------------------------------------ NSP, sampling


@wrong("check_nsp_pairs", "generator")
def heldout4_nsp_fixed_rng(plays, n, generator=None):
    rng = random.Random(0)
    titles = sorted(plays)
    out = []
    for _ in range(n):
        t = rng.choice(titles)
        scene = rng.choice([s for s in plays[t] if len(s) > 1])
        k = rng.randrange(len(scene) - 1)
        if rng.random() < 0.5:
            out.append((scene[k], scene[k + 1], True))
        else:
            u = rng.choice([x for x in titles if x != t])
            out.append((scene[k], rng.choice([seg for sc in plays[u] for seg in sc]), False))
    return out


@wrong("check_nsp_pairs", "first segment")
def heldout4_nsp_first_two(plays, n, generator=None):
    titles = sorted(plays)
    out = []
    for _ in range(n):
        t = titles[int(torch.randint(len(titles), (1,), generator=generator))]
        scenes = plays[t]
        scene = scenes[int(torch.randint(len(scenes), (1,), generator=generator))]
        if torch.rand(1, generator=generator) < 0.5:
            out.append((scene[0], scene[1], True))
        else:
            u = [x for x in titles if x != t][int(torch.randint(len(titles) - 1, (1,), generator=generator))]
            segs = [s for sc in plays[u] for s in sc]
            out.append((scene[0], segs[int(torch.randint(len(segs), (1,), generator=generator))], False))
    return out


@wrong("check_sample_next", "generator")
def heldout4_sample_fresh_generator(logits, generator=None):
    return torch.multinomial(logits.softmax(-1), 1, generator=torch.Generator()).squeeze(-1)


# ------------------------------------------------------------------------------------ [CLS] head


@wrong("check_cls_head", "argument is ignored")
class Heldout4HeadDefaultDropout(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.drop = nn.Dropout()                                 # p = 0.5 by default
        self.fc = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states):
        return self.fc(self.drop(hidden_states[:, 0]))


@wrong("check_cls_head", "eval mode")
class Heldout4HeadDropoutAlways(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.p = dropout
        self.fc = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states):
        return self.fc(F.dropout(hidden_states[:, 0], self.p))


@wrong("check_cls_head", "1 / (1 - p)")
class Heldout4HeadScaledDown(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.p = dropout
        self.fc = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states):
        x = hidden_states[:, 0]
        if self.training:
            x = x * (torch.rand_like(x) >= self.p) * (1 - self.p)     # scales the wrong way
        return self.fc(x)


# ------------------------------------------------------------------------------------ early stopping


@wrong("check_early_stopping", "tie")
class Heldout4StopperMaxTie:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.min_delta, self.mode = patience, min_delta, mode
        self.best, self.count = None, 0

    def update(self, value):
        score = value if self.mode == "max" else -value
        if self.best is None or score >= self.best + self.min_delta:
            self.best, self.count = score, 0
        else:
            self.count += 1
        return self.count >= self.patience


@wrong("check_early_stopping", "starts at")
class Heldout4StopperInfBothModes:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.min_delta, self.mode = patience, min_delta, mode
        self.best, self.count = float("inf"), 0

    def update(self, value):
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.count = value, 0
        else:
            self.count += 1
        return self.count >= self.patience


# ------------------------------------------------------------------------------------ freezing


@wrong("check_freeze", "weight")
def heldout4_freeze_module_weights(model, train_top_layers):
    n = len(model.bert.blocks)
    frozen = [model.bert.embeddings] + list(model.bert.blocks[:n - train_top_layers])
    model.requires_grad_(True)
    for part in frozen:
        for m in part.modules():
            if isinstance(m, (nn.Linear, nn.Embedding, nn.LayerNorm)):
                m.weight.requires_grad = False                   # the biases stay trainable


# ------------------------------------------------------------------------------------ attention


class _Heads(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def split(self, t):
        B, T, C = t.shape
        return t.reshape(B, T, self.n_heads, -1).permute(0, 2, 1, 3)


@wrong("check_multi_head_attention", "sqrt(d_model)")
class Heldout4MHAScaleC(_Heads):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(x)), self.split(self.v_proj(x))
        att = q @ k.transpose(-2, -1) / C ** 0.5
        if mask is not None:
            att = att.masked_fill(~mask, float("-inf"))
        att = att.softmax(-1)
        return self.out_proj((att @ v).permute(0, 2, 1, 3).reshape(B, T, C)), att


@wrong("check_multi_head_attention", "queries")
class Heldout4MHASoftmaxMinus2(_Heads):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(x)), self.split(self.v_proj(x))
        att = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(C // self.n_heads)
        if mask is not None:
            att = att.masked_fill(mask.logical_not(), float("-inf"))
        att = F.softmax(att, dim=-2)
        return self.out_proj(torch.einsum("bhij,bhjd->bhid", att, v).permute(0, 2, 1, 3).reshape(B, T, C)), att


@wrong("check_multi_head_attention", "transpose(-2, -1)")
class Heldout4MHATranspose12(_Heads):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(x)), self.split(self.v_proj(x))
        att = (q @ k.transpose(1, 2) / math.sqrt(C // self.n_heads)).softmax(-1)
        return self.out_proj((att @ v).permute(0, 2, 1, 3).reshape(B, T, C)), att


@wrong("check_merge_heads", "contiguous")
def heldout4_merge_view(x):
    B, H, T, D = x.shape
    return x.transpose(1, 2).view(B, T, H * D)


@wrong("check_merge_heads", "reverse")
def heldout4_merge_reversed_list(x):
    return torch.cat([x[:, h] for h in reversed(range(x.shape[1]))], dim=-1)


@correct("check_merge_heads")
def heldout4_merge_einops_style(x):
    B, H, T, D = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, H * D)


# ------------------------------------------------------------------------------------ LayerNorm


@wrong("check_layer_norm", "mean")
def heldout4_ln_rms(x, weight, bias, eps=1e-5):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight + bias


@correct("check_layer_norm")
def heldout4_ln_var_mean(x, weight, bias, eps=1e-5):
    var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * weight + bias


# ------------------------------------------------------------------------------------ top-p, -inf


@wrong("check_top_p", "-inf")
def heldout4_top_p_fill_minus_1e4(logits, p):
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    keep_sorted = probs.cumsum(-1) - probs < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, -1e4)


@wrong("check_top_k", "-inf")
def heldout4_top_k_fill_minus_100(logits, k):
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return torch.where(logits >= kth, logits, torch.full_like(logits, -100.0))
