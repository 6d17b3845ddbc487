"""A ninth held-out batch (issue 18, part A): answers that crash, where the message rests on the error and a hint,
written before running them."""
import math

import torch
import torch.nn.functional as F

from ._registry import wrong
from .attention import _MHA


@wrong("check_cached_attention_step", "dim")
def heldout9_step_cat_last_dim(q_t, k_t, v_t, k_cache, v_cache):
    keys, values = torch.cat([k_cache, k_t], dim=-1), torch.cat([v_cache, v_t], dim=-1)    # (B, H, S, 2d)?
    w = (q_t @ keys.transpose(-2, -1) / math.sqrt(q_t.shape[-1])).softmax(-1)
    return w @ values, keys, values


@wrong("check_attention", ".T")
def heldout9_attention_torch_t(q, k, v, mask=None):
    scores = q @ k.T / math.sqrt(q.shape[-1])                      # works on (T, d), not on (B, T, d)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = scores.softmax(-1)
    return w @ v, w


@wrong("check_multi_head_attention", ".T")
class Heldout9MHAMatmulT(_MHA):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        w = torch.matmul(q, k.T).div(math.sqrt(C // self.n_heads)).softmax(-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, T, C)), w


@wrong("check_causal_lm_loss", "flatten")
def heldout9_loss_3d(logits, targets):
    return F.cross_entropy(logits, targets)                         # (B, T, V) read as (N, C, d)
