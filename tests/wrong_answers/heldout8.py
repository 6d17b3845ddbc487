"""An eighth held-out batch (issue 18, part A): the step, cross-attention, parallel-block, gradient and position
checks, and the issue's mistakes once more, written before running them."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import wrong
from .attention import _MHA
from .transformer import _Parallel

# ------------------------------------------------------------------------------------ KV-cached step


@wrong("check_cached_attention_step", "cache")
def heldout8_step_returns_old_cache(q_t, k_t, v_t, k_cache, v_cache):
    keys, values = torch.cat([k_cache, k_t], dim=2), torch.cat([v_cache, v_t], dim=2)
    w = (q_t @ keys.transpose(-2, -1) / math.sqrt(q_t.shape[-1])).softmax(-1)
    return w @ values, k_cache, v_cache                      # the caches are not extended


@wrong("check_cached_attention_step", "causal")
def heldout8_step_causal_mask(q_t, k_t, v_t, k_cache, v_cache):
    keys, values = torch.cat([k_cache, k_t], dim=2), torch.cat([v_cache, v_t], dim=2)
    scores = q_t @ keys.transpose(-2, -1) / math.sqrt(q_t.shape[-1])           # (B, H, 1, S)
    S = scores.shape[-1]
    scores = scores.masked_fill(~torch.ones(1, S, dtype=torch.bool).tril(), float("-inf"))   # a (1, S) tril
    return scores.softmax(-1) @ values, keys, values


# ------------------------------------------------------------------------------------ cross-attention


@wrong("check_cross_attention", "context")
class Heldout8CrossKeysFromX(_MHA):
    def forward(self, x, context, mask=None):
        B, T, C = x.shape
        q, k, v = self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(context))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_heads)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = scores.softmax(-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, T, C)), w


@wrong("check_cross_attention", "mask")
class Heldout8CrossNoMask(_MHA):
    def forward(self, x, context, mask=None):
        B, T, C = x.shape
        q = self.heads(self.q_proj(x))
        k, v = self.heads(self.k_proj(context)), self.heads(self.v_proj(context))
        w = (q @ k.transpose(-2, -1) / math.sqrt(C // self.n_heads)).softmax(-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, T, C)), w


# ------------------------------------------------------------------------------------ parallel block


@wrong("check_parallel_block", "residual")
class Heldout8ParallelNoSkip(_Parallel):
    def forward(self, x, mask=None):
        h = self.ln(x)
        return self.attn(h, mask=mask)[0] + self.ffn(h)


@wrong("check_parallel_block", "mask")
class Heldout8ParallelNoMask(_Parallel):
    def forward(self, x, mask=None):
        h = self.ln(x)
        return x + self.attn(h)[0] + self.ffn(h)


# ------------------------------------------------------------------------------------ gradients, positions


@wrong("check_combine_gradients", "plain mean")
def heldout8_combine_stack_mean(shard_grads, shard_sizes):
    return torch.stack(list(shard_grads)).mean(0)


@wrong("check_combine_gradients", "not divided")
def heldout8_combine_weighted_sum(shard_grads, shard_sizes):
    return sum(n * g for n, g in zip(shard_sizes, shard_grads))


@wrong("check_sinusoidal_halves", "interleaved")
def heldout8_halves_even_odd(max_len, d_model):
    pe = torch.zeros(max_len, d_model)
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


# ------------------------------------------------------------------------------------ the mistakes, again


@wrong("check_multi_head_attention", "sqrt(d_model)")
class Heldout8MHAScaleByEmbed(_MHA):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(self.q_proj.in_features)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = scores.softmax(-1)
        return self.out_proj(torch.einsum("bhqk,bhkd->bqhd", w, v).reshape(B, T, C)), w


@wrong("check_multi_head_attention", "dropout is always on")
class Heldout8MHADropoutModuleAlwaysTrain(_MHA):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        self.drop = nn.Dropout(0.1)

    def forward(self, x, mask=None):
        self.drop.train()                                     # "make sure dropout is on"
        B, T, C = x.shape
        q, k, v = self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_heads)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = self.drop(scores.softmax(-1))
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, T, C)), w


@wrong("check_merge_heads", "interleaved")
def heldout8_merge_heads_last(x):
    B, H, T, D = x.shape
    return torch.stack(x.unbind(1), dim=-1).reshape(B, T, D * H)       # (B, T, D, H) flattened


@wrong("check_feed_forward", "before the first linear")
class Heldout8FFNActOnInput(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        x = F.gelu(x)
        return self.fc2(self.fc1(x))


@wrong("check_layer_norm", "centred")
def heldout8_ln_var_from_sq_mean(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = torch.mean(x * x, dim=-1, keepdim=True)            # forgot "- mean ** 2"
    return weight * (x - mean) * torch.rsqrt(var + eps) + bias


@wrong("check_next_token_targets", "one position late")
def heldout8_targets_from_next(ids, block_size, start):
    chunk = ids[start + 1:start + block_size + 2]
    return chunk[:-1], chunk[1:]
