"""A fifth held-out batch (issue 18, part A): "others like them", mistakes across the remaining checks, written
before reading those checks' messages."""
import math
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import correct, wrong
from .attention import _MHA

# ------------------------------------------------------------------------------------ masks, heads


@wrong("check_causal_mask", "bool")
def heldout5_causal_float(T):
    return torch.tril(torch.ones(T, T))


@wrong("check_causal_mask", "polarity")
def heldout5_causal_blocked_true(T):
    return torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)       # True where attention is *blocked*


@wrong("check_padding_mask", "shape")
def heldout5_padding_2d(lengths, T):
    return torch.arange(T)[None, :] < lengths[:, None]               # (B, T), no head/query axes


@wrong("check_split_heads", "transpose(1, 2)")
def heldout5_split_transpose_1_3(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 3).transpose(2, 3)


@correct("check_split_heads")
def heldout5_split_einsum_free(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).permute(0, 2, 1, 3).contiguous()


# ------------------------------------------------------------------------------------ causal LM loss, targets


@wrong("check_causal_lm_loss", "shift")
def heldout5_loss_shifts_again(logits, targets):
    B, T, V = logits.shape
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1))


@wrong("check_causal_lm_loss", "-100")
def heldout5_loss_ignore_zero(logits, targets):
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T).clamp(min=0), ignore_index=0)


@wrong("check_causal_lm_loss", "each sequence")
def heldout5_loss_mean_of_rows(logits, targets):
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")        # (B, T)
    real = (targets != -100).float()
    return ((per_token * real).sum(1) / real.sum(1)).mean()


@wrong("check_next_token_targets", "block_size")
def heldout5_targets_short_y(ids, block_size, start):
    return ids[start:start + block_size], ids[start + 1:start + block_size]


# ------------------------------------------------------------------------------------ attention modules


@wrong("check_multi_head_attention", "out_proj")
class Heldout5MHANoOutProj(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, out=False)


@wrong("check_multi_head_attention", "softmax")
class Heldout5MHAReturnsScores(_MHA):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_heads)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        y = scores.softmax(-1) @ v
        return self.out_proj(y.transpose(1, 2).reshape(B, T, C)), scores      # the scores, not the weights


@wrong("check_cached_attention_step", "scale")
def heldout5_step_no_scale(q_t, k_t, v_t, k_cache, v_cache):
    keys, values = torch.cat([k_cache, k_t], 2), torch.cat([v_cache, v_t], 2)
    w = (q_t @ keys.transpose(-2, -1)).softmax(-1)
    return w @ values, keys, values


# ------------------------------------------------------------------------------------ LoRA


class _Lora(nn.Module):
    def __init__(self, base, rank=8, alpha=16.0, zero_b=True, freeze=True):
        super().__init__()
        self.base, self.rank, self.alpha = base, rank, alpha
        if freeze:
            for p in base.parameters():
                p.requires_grad = False
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank) if zero_b
                                   else torch.randn(base.out_features, rank) * 0.01)

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * (self.alpha / self.rank)

    def merged(self):
        layer = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(self.base.weight + self.alpha / self.rank * self.lora_B @ self.lora_A)
            if self.base.bias is not None:
                layer.bias.copy_(self.base.bias)
        return layer


@wrong("check_lora_linear", "zero")
class Heldout5LoRARandomB(_Lora):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__(base, rank, alpha, zero_b=False)


@wrong("check_lora_linear", "freeze")
class Heldout5LoRABaseTrainable(_Lora):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__(base, rank, alpha, freeze=False)


@wrong("check_lora_linear", "alpha / rank")
class Heldout5LoRAAlphaTimesRank(_Lora):
    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * (self.alpha * self.rank)


# ------------------------------------------------------------------------------------ freezing, pair counts


@wrong("check_freeze", "classifier")
def heldout5_freeze_everything_then_top(model, train_top_layers):
    model.requires_grad_(False)
    n = len(model.bert.blocks)
    for block in list(model.bert.blocks)[n - train_top_layers:]:
        block.requires_grad_(True)                      # the new head stays frozen


@wrong("check_word_pair_counts", "cross word boundaries")
def heldout5_word_pairs_joined(word_freqs):
    symbols = [s for word, freq in word_freqs.items() for _ in range(freq) for s in word]
    return Counter(zip(symbols, symbols[1:]))


# ------------------------------------------------------------------------------------ MLM, NSP


@wrong("check_mlm_masking", "-100")
def heldout5_mask_labels_zero(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(special_ids))
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    u = torch.rand(input_ids.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    rnd = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    out = torch.where(chosen & (u < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    out = torch.where(chosen & (u >= 0.8) & (u < 0.9), rnd, out)
    return out, torch.where(chosen, input_ids, 0)


@wrong("check_nsp_pairs", "true/false")
def heldout5_nsp_string_flags(plays, n, generator=None):
    titles = sorted(plays)
    out = []
    for _ in range(n):
        t = titles[int(torch.randint(len(titles), (1,), generator=generator))]
        scenes = [s for s in plays[t] if len(s) > 1]
        scene = scenes[int(torch.randint(len(scenes), (1,), generator=generator))]
        k = int(torch.randint(len(scene) - 1, (1,), generator=generator))
        if torch.rand(1, generator=generator) < 0.5:
            out.append((scene[k], scene[k + 1], "IsNext"))
        else:
            u = [x for x in titles if x != t][int(torch.randint(len(titles) - 1, (1,), generator=generator))]
            segs = [s for sc in plays[u] for s in sc]
            out.append((scene[k], segs[int(torch.randint(len(segs), (1,), generator=generator))], "NotNext"))
    return out
