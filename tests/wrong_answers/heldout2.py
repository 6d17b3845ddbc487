"""A second held-out batch, written after the first one was measured (its first rates are in its commit)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import wrong
from .attention import _MHA
from .transformer import _Parallel


@wrong("check_top_p", "sorted order")
def heldout2_top_p_sorted_values(logits, p):
    values, _ = torch.sort(logits, dim=-1, descending=True)
    probs = F.softmax(values, dim=-1)
    cut = torch.cumsum(probs, -1) - probs >= p
    return values.masked_fill(cut, float("-inf"))


@wrong("check_top_p", "least likely")
def heldout2_top_p_ascending_cumsum(logits, p):
    values, order = torch.sort(logits, dim=-1)
    probs = values.softmax(-1)
    keep = probs.cumsum(-1) - probs < p
    return logits.masked_fill(~torch.zeros_like(keep).scatter(-1, order, keep), float("-inf"))


@wrong("check_causal_lm_loss", "probabilities")
def heldout2_loss_nll_on_probs(logits, targets):
    probs = logits.softmax(-1)
    return F.nll_loss(probs.flatten(0, 1), targets.flatten())


@wrong("check_next_token_targets", "same as x")
def heldout2_targets_no_shift(ids, block_size, start):
    window = ids[start:start + block_size]
    return window, window.clone()


@wrong("check_freeze", "bottom")
def heldout2_freeze_bottom_loop(model, train_top_layers):
    for p in model.parameters():
        p.requires_grad_(True)
    for p in model.bert.embeddings.parameters():
        p.requires_grad_(False)
    for i, block in enumerate(model.bert.blocks):
        block.requires_grad_(i < train_top_layers)


@wrong("check_early_stopping", "not reset")
class Heldout2StopperCountsAll:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best, self.bad = None, 0

    def update(self, value):
        better = self.best is None or (value < self.best - self.min_delta if self.mode == "min"
                                       else value > self.best + self.min_delta)
        if better:
            self.best = value
        else:
            self.bad += 1
        return self.bad >= self.patience


@wrong("check_lora_linear", "alpha alone")
class Heldout2LoRAAlpha(nn.Module):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__()
        self.base, self.alpha, self.rank = base, alpha, rank
        base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) * 0.1)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + self.alpha * (x @ self.lora_A.T @ self.lora_B.T)


@wrong("check_wordpiece", "'##' prefix is missing")
def heldout2_wordpiece_plain_lookup(word, vocab):
    pieces, i = [], 0
    while i < len(word):
        j = len(word)
        while j > i and word[i:j] not in vocab:
            j -= 1
        if j == i:
            return ["[UNK]"]
        pieces.append(word[i:j])
        i = j
    return pieces


@wrong("check_merge", "only the first occurrence")
def heldout2_merge_index(ids, pair, new_id):
    ids = list(ids)
    for i in range(len(ids) - 1):
        if ids[i] == pair[0] and ids[i + 1] == pair[1]:
            return ids[:i] + [new_id] + ids[i + 2:]
    return ids


@wrong("check_cross_attention", "queries come from `context`")
class Heldout2CrossSwapped(_MHA):
    def forward(self, x, context, mask=None):
        B, S, C = context.shape
        q = self.heads(self.q_proj(context))
        k, v = self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        w = (q @ k.transpose(-2, -1) / math.sqrt(C // self.n_heads)).softmax(-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, S, C)), w


@wrong("check_parallel_block", "attention reads the un-normalised x")
class Heldout2ParallelAttnRaw(_Parallel):
    def forward(self, x, mask=None):
        return x + self.attn(x, mask=mask)[0] + self.ffn(self.ln(x))


@wrong("check_gpt_forward", "final layernorm")
def heldout2_gpt_ln_before_blocks(model, input_ids):
    x = model.ln_f(model.wte(input_ids) + model.wpe(torch.arange(input_ids.shape[1])))
    for block in model.blocks:
        x = block(x)
    return model.lm_head(x)


@wrong("check_word_pair_counts", "frequencies are ignored")
def heldout2_word_pairs_len_weight(word_freqs):
    counts = {}
    for word in word_freqs:
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + 1
    return counts


@wrong("check_sinusoidal_halves", "interleaved")
def heldout2_halves_interleave_loop(max_len, d_model):
    pe = torch.zeros(max_len, d_model)
    for pos in range(max_len):
        for i in range(0, d_model, 2):
            pe[pos, i] = math.sin(pos / 10000 ** (i / d_model))
            pe[pos, i + 1] = math.cos(pos / 10000 ** (i / d_model))
    return pe


@wrong("check_cached_attention_step", "query axis")
def heldout2_step_softmax_dim2(q_t, k_t, v_t, k_cache, v_cache):
    k_all, v_all = torch.cat([k_cache, k_t], 2), torch.cat([v_cache, v_t], 2)
    w = torch.softmax(q_t @ k_all.transpose(2, 3) / math.sqrt(q_t.size(-1)), dim=2)
    return w @ v_all, k_all, v_all


@wrong("check_combine_gradients", "not divided")
def heldout2_combine_forgot_total(shard_grads, shard_sizes):
    out = torch.zeros_like(shard_grads[0])
    for n, g in zip(shard_sizes, shard_grads):
        out += n * g
    return out


@wrong("check_checkpointed_flops", "without checkpointing")
def heldout2_flops_six(model, T):
    N = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return 6 * N + 12 * len(model.blocks) * T * model.config.d_model
