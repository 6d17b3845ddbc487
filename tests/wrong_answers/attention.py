"""Answers to the attention checks (notebooks 03 and 04)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import correct, wrong

# ------------------------------------------------------------------------------------ attention


@correct("check_attention")
def attention_einsum(q, k, v, mask=None):
    scores = torch.einsum("...id,...jd->...ij", q, k) / q.size(-1) ** 0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
    weights = scores.softmax(dim=-1)
    return torch.einsum("...ij,...jd->...id", weights, v), weights


@correct("check_attention")
def attention_mT_and_min(q, k, v, mask=None):
    scores = torch.matmul(q, k.mT) * (1.0 / math.sqrt(k.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), torch.finfo(scores.dtype).min)
    weights = F.softmax(scores, dim=scores.dim() - 1)
    return torch.matmul(weights, v), weights


def _attention(q, k, v, mask=None, scale=None, dim=-1, fill=float("-inf"), after=False, invert=False,
               scale_after=False, use_mask=True):
    s = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * (1.0 if scale_after else s)
    if mask is not None and use_mask and not after:
        scores = scores.masked_fill(mask if invert else ~mask, fill)
    weights = torch.softmax(scores, dim=dim)
    if scale_after:
        weights = weights * s
    if mask is not None and use_mask and after:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, weights


@wrong("check_attention", "forgot to scale")
def attention_no_scale(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale=1.0)


@wrong("check_attention", "divided the scores by d_k")
def attention_divide_dk(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale=1 / q.shape[-1])


@wrong("check_attention", "sqrt(d_v)")
def attention_scale_dv(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale=1 / math.sqrt(v.shape[-1]))


@wrong("check_attention", "after the softmax")
def attention_scale_after(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale_after=True)


@wrong("check_attention", "wrong axis")
def attention_softmax_queries(q, k, v, mask=None):
    return _attention(q, k, v, mask, dim=-2)


@wrong("check_attention", "mask is applied after the softmax")
def attention_mask_after(q, k, v, mask=None):
    return _attention(q, k, v, mask, after=True)


@wrong("check_attention", "set to 0")
def attention_fill_zero(q, k, v, mask=None):
    return _attention(q, k, v, mask, fill=0.0)


@wrong("check_attention", "polarity")
def attention_inverted_mask(q, k, v, mask=None):
    return _attention(q, k, v, mask, invert=True)


@wrong("check_attention", "mask is ignored")
def attention_ignores_mask(q, k, v, mask=None):
    return _attention(q, k, v, mask, use_mask=False)


@wrong("check_attention", ".T", "transpose(-2, -1)")
def attention_dot_T(q, k, v, mask=None):
    scores = q @ k.T / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    return weights @ v, weights


@wrong("check_attention", "transposed")
def attention_weights_transposed(q, k, v, mask=None):
    out, weights = _attention(q, k, v, mask)
    return out, weights.transpose(-2, -1)


@wrong("check_attention", "pair (output, weights)")
def attention_output_only(q, k, v, mask=None):
    return _attention(q, k, v, mask)[0]


# ------------------------------------------------------------------------------------ masks


@correct("check_causal_mask")
def causal_compare(T):
    positions = torch.arange(T)
    return positions[None, :] <= positions[:, None]


@correct("check_causal_mask")
def causal_triu_not(T):
    return ~torch.ones(T, T, dtype=torch.bool).triu(1)


@wrong("check_causal_mask", "future")
def causal_upper(T):
    return torch.ones(T, T, dtype=torch.bool).triu()


@wrong("check_causal_mask", "diagonal")
def causal_strict(T):
    return torch.ones(T, T).tril(-1).bool()


@wrong("check_causal_mask", "polarity")
def causal_inverted(T):
    return torch.ones(T, T, dtype=torch.bool).triu(1)


@wrong("check_causal_mask", "bool")
def causal_float(T):
    return torch.tril(torch.ones(T, T))


@correct("check_padding_mask")
def padding_loop(lengths, T):
    mask = torch.zeros(len(lengths), 1, 1, T, dtype=torch.bool)
    for b, n in enumerate(lengths.tolist()):
        mask[b, ..., :n] = True
    return mask


@wrong("check_padding_mask", "off by one")
def padding_le(lengths, T):
    return (torch.arange(T) <= lengths[:, None])[:, None, None, :]


@wrong("check_padding_mask", "(b, 1, 1, t)")
def padding_2d(lengths, T):
    return torch.arange(T)[None, :] < lengths[:, None]


@wrong("check_padding_mask", "queries instead of keys")
def padding_queries(lengths, T):
    return (torch.arange(T) < lengths[:, None])[:, None, :, None]


@wrong("check_padding_mask", "polarity")
def padding_inverted(lengths, T):
    return (torch.arange(T) >= lengths[:, None])[:, None, None, :]


@wrong("check_padding_mask", "bool")
def padding_long(lengths, T):
    return (torch.arange(T) < lengths[:, None]).long()[:, None, None, :]


# ------------------------------------------------------------------------------------ heads


@correct("check_split_heads")
def split_unflatten(x, n_heads):
    return x.unflatten(-1, (n_heads, -1)).permute(0, 2, 1, 3)


@correct("check_split_heads")
def split_stack(x, n_heads):
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)


@wrong("check_split_heads", "reshaped straight")
def split_direct(x, n_heads):
    B, T, C = x.shape
    return x.reshape(B, n_heads, T, C // n_heads)


@wrong("check_split_heads", "transpose(1, 2)")
def split_no_transpose(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads)


@wrong("check_split_heads", "shape")
def split_interleaved(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, C // n_heads, n_heads).permute(0, 3, 1, 2)


@correct("check_merge_heads")
def merge_cat(x):
    return torch.cat(x.unbind(1), dim=-1)


@correct("check_merge_heads")
def merge_permute_flatten(x):
    return x.permute(0, 2, 1, 3).flatten(2)


@wrong("check_merge_heads", "reshaped straight")
def merge_direct(x):
    B, H, T, d = x.shape
    return x.reshape(B, T, H * d)


@wrong("check_merge_heads", ".reshape")
def merge_view(x):
    B, H, T, d = x.shape
    return x.transpose(1, 2).view(B, T, H * d)


@wrong("check_merge_heads", "interleaved")
def merge_interleaved(x):
    B, H, T, d = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, H * d)


@wrong("check_merge_heads", "reverse")
def merge_reversed(x):
    return torch.cat(list(reversed(x.unbind(1))), dim=-1)


@wrong("check_merge_heads", "(b, t, h, d)")
def merge_no_reshape(x):
    return x.transpose(1, 2)


# ------------------------------------------------------------------------------------ multi-head attention


class _MHA(nn.Module):
    """The exercise's module; subclasses change `forward`."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def heads(self, t):
        B, T, C = t.shape
        return t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)

    def attend(self, x, mask=None, scale=None, v_layer=None, dim=-1, after=False, use_mask=True, out=True,
               dropout=0.0):
        B, T, C = x.shape
        q, k = self.heads(self.q_proj(x)), self.heads(self.k_proj(x))
        v = self.heads((v_layer or self.v_proj)(x))
        s = 1 / math.sqrt(C // self.n_heads) if scale is None else scale
        scores = q @ k.transpose(-2, -1) * (1.0 if after else s)
        if mask is not None and use_mask:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim)
        if after:
            weights = weights * s
        if dropout:
            weights = F.dropout(weights, dropout, training=True)
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)
        return (self.out_proj(y) if out else y), weights


@correct("check_multi_head_attention")
class MHAFused(_MHA):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = (self.heads(layer(x)) for layer in (self.q_proj, self.k_proj, self.v_proj))
        weights = (q @ k.transpose(-2, -1) / math.sqrt(C / self.n_heads))
        if mask is not None:
            weights = weights.masked_fill(mask == 0, float("-inf"))
        weights = weights.softmax(-1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).flatten(2)), weights


@correct("check_multi_head_attention")
class MHAEinsum(_MHA):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        H = self.n_heads
        q = self.q_proj(x).view(B, T, H, -1)
        k = self.k_proj(x).view(B, T, H, -1)
        v = self.v_proj(x).view(B, T, H, -1)
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return self.out_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C)), weights


@wrong("check_multi_head_attention", "sqrt(d_model)")
class MHAScaleDModel(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, scale=1 / math.sqrt(x.shape[-1]))


@wrong("check_multi_head_attention", "after the softmax")
class MHAScaleAfter(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, after=True)


@wrong("check_multi_head_attention", "k_proj")
class MHAValuesFromKeys(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, v_layer=self.k_proj)


@wrong("check_multi_head_attention", "mask is ignored")
class MHAIgnoresMask(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, use_mask=False)


@wrong("check_multi_head_attention", "queries")
class MHASoftmaxQueries(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, dim=-2)


@wrong("check_multi_head_attention", "not scaled")
class MHANoScale(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, scale=1.0)


@wrong("check_multi_head_attention", "output projection is missing")
class MHANoOutProj(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, out=False)


@wrong("check_multi_head_attention", "dropout is always on")
class MHADropoutAlwaysOn(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask, dropout=0.1)


@wrong("check_multi_head_attention", "heads are mixed up")
class MHAReshapeSplit(_MHA):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        H = self.n_heads
        q, k, v = (layer(x).reshape(B, H, T, C // H) for layer in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(B, T, C)), weights


@wrong("check_multi_head_attention", "pair (out, weights)")
class MHAOutOnly(_MHA):
    def forward(self, x, mask=None):
        return self.attend(x, mask)[0]


@correct("check_padding_mask")
def padding_expand(lengths, T):
    positions = torch.arange(T).expand(len(lengths), T)
    return (positions < lengths.unsqueeze(1)).view(len(lengths), 1, 1, T)


@correct("check_causal_mask")
def causal_ones_like_bool(T):
    return torch.tril(torch.ones((T, T))).to(torch.bool)


# ------------------------------------------------------------------------------------ cached attention step


@correct("check_cached_attention_step")
def step_sdpa(q_t, k_t, v_t, k_cache, v_cache):
    keys, values = torch.cat((k_cache, k_t), dim=2), torch.cat((v_cache, v_t), dim=2)
    return F.scaled_dot_product_attention(q_t, keys, values), keys, values


@correct("check_cached_attention_step")
def step_einsum(q_t, k_t, v_t, k_cache, v_cache):
    keys = torch.cat([k_cache, k_t], -2)
    values = torch.cat([v_cache, v_t], -2)
    weights = torch.einsum("bhqd,bhkd->bhqk", q_t, keys).div(q_t.shape[-1] ** 0.5).softmax(-1)
    return torch.einsum("bhqk,bhkd->bhqd", weights, values), keys, values


def _step(q_t, k_t, v_t, k_cache, v_cache, first=False, mask=False, dim=-1, scale=True, front=False, stale=False):
    keys = torch.cat([k_t, k_cache] if front else [k_cache, k_t], dim=-2)
    values = torch.cat([v_t, v_cache] if front else [v_cache, v_t], dim=-2)
    att_k, att_v = (k_cache, v_cache) if first else (keys, values)
    scores = q_t @ att_k.transpose(-2, -1) / (math.sqrt(q_t.shape[-1]) if scale else 1.0)
    if mask:
        T_q, T_k = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(T_q, T_k).tril() == 0, float("-inf"))
    out = scores.softmax(dim) @ att_v
    return (out, k_cache, v_cache) if stale else (out, keys, values)


@wrong("check_cached_attention_step", "before attending")
def step_attend_first(q_t, k_t, v_t, k_cache, v_cache):
    return _step(q_t, k_t, v_t, k_cache, v_cache, first=True)


@wrong("check_cached_attention_step", "causal mask")
def step_with_tril(q_t, k_t, v_t, k_cache, v_cache):
    return _step(q_t, k_t, v_t, k_cache, v_cache, mask=True)


@wrong("check_cached_attention_step", "query axis")
def step_softmax_queries(q_t, k_t, v_t, k_cache, v_cache):
    return _step(q_t, k_t, v_t, k_cache, v_cache, dim=-2)


@wrong("check_cached_attention_step", "not scaled")
def step_no_scale(q_t, k_t, v_t, k_cache, v_cache):
    return _step(q_t, k_t, v_t, k_cache, v_cache, scale=False)


@wrong("check_cached_attention_step", "front")
def step_prepend(q_t, k_t, v_t, k_cache, v_cache):
    return _step(q_t, k_t, v_t, k_cache, v_cache, front=True)


@wrong("check_cached_attention_step", "do not include the new key")
def step_stale_cache(q_t, k_t, v_t, k_cache, v_cache):
    return _step(q_t, k_t, v_t, k_cache, v_cache, stale=True)


@wrong("check_cached_attention_step", "wrong dim")
def step_cat_last_dim(q_t, k_t, v_t, k_cache, v_cache):
    out, _, _ = _step(q_t, k_t, v_t, k_cache, v_cache)
    return out, torch.cat([k_cache, k_t], -1), torch.cat([v_cache, v_t], -1)


@wrong("check_cached_attention_step", "triple")
def step_output_only(q_t, k_t, v_t, k_cache, v_cache):
    return _step(q_t, k_t, v_t, k_cache, v_cache)[0]


# ------------------------------------------------------------------------------------ cross-attention


@correct("check_cross_attention")
class CrossSDPA(_MHA):
    def forward(self, x, context, mask=None):
        B, T, C = x.shape
        q, k, v = self.heads(self.q_proj(x)), self.heads(self.k_proj(context)), self.heads(self.v_proj(context))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_heads)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, C)), scores.softmax(-1)


class _Cross(_MHA):
    def cross(self, x, context, mask=None, q_src=None, kv_src=None, scale=True, causal=False, use_mask=True, out=True):
        q_in = x if q_src is None else q_src
        kv_in = context if kv_src is None else kv_src
        B, T, C = q_in.shape
        q, k, v = self.heads(self.q_proj(q_in)), self.heads(self.k_proj(kv_in)), self.heads(self.v_proj(kv_in))
        scores = q @ k.transpose(-2, -1) / (math.sqrt(C // self.n_heads) if scale else 1.0)
        if mask is not None and use_mask:
            scores = scores.masked_fill(~mask, float("-inf"))
        if causal:
            scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
        weights = scores.softmax(-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)
        return (self.out_proj(y) if out else y), weights


@wrong("check_cross_attention", "keys and values come from x")
class CrossSelf(_Cross):
    def forward(self, x, context, mask=None):
        return self.cross(x, context, None, kv_src=x)


@wrong("check_cross_attention", "causal mask")
class CrossCausal(_Cross):
    def forward(self, x, context, mask=None):
        return self.cross(x, context, mask, causal=True)


@wrong("check_cross_attention", "mask is ignored")
class CrossNoMask(_Cross):
    def forward(self, x, context, mask=None):
        return self.cross(x, context, mask, use_mask=False)


@wrong("check_cross_attention", "not scaled")
class CrossNoScale(_Cross):
    def forward(self, x, context, mask=None):
        return self.cross(x, context, mask, scale=False)


@wrong("check_cross_attention", "output projection")
class CrossNoOut(_Cross):
    def forward(self, x, context, mask=None):
        return self.cross(x, context, mask, out=False)


@wrong("check_cross_attention", "dropout is always on")
class CrossDropout(_Cross):
    def forward(self, x, context, mask=None):
        out, weights = self.cross(x, context, mask)
        return F.dropout(out, 0.2), weights


# ------------------------------------------------------------------------------------ attention with a bias


def _with_bias(q, k, v, bias, scale_bias=False, after=False, sign=1.0, scale=None, dim=-1, use_bias=True):
    d = q.shape[-1]
    scale = math.sqrt(d) if scale is None else scale
    raw = q @ k.transpose(-2, -1)
    if scale_bias:
        scores = (raw + bias) / scale
    else:
        scores = raw / scale + (sign * bias if use_bias and not after else 0)
    weights = torch.softmax(scores, dim=dim)
    if after:
        weights = weights + bias
    return weights @ v, weights


@correct("check_biased_attention")
def biased_einsum(q, k, v, bias):
    scores = torch.einsum("...qd,...kd->...qk", q, k) / q.shape[-1] ** 0.5
    weights = (scores + bias).softmax(-1)
    return torch.einsum("...qk,...kd->...qd", weights, v), weights


@correct("check_biased_attention")
def biased_scaled_query(q, k, v, bias):
    q = q / math.sqrt(q.shape[-1])                           # scale q first: the same scores
    weights = torch.softmax(q @ k.mT + bias, dim=-1)
    return weights @ v, weights


@wrong("check_biased_attention", "divided by sqrt(d_k) along with the scores")
def biased_scaled_bias(q, k, v, bias):
    return _with_bias(q, k, v, bias, scale_bias=True)


@wrong("check_biased_attention", "after the softmax")
def biased_after_softmax(q, k, v, bias):
    return _with_bias(q, k, v, bias, after=True)


@wrong("check_biased_attention", "subtracted")
def biased_minus(q, k, v, bias):
    return _with_bias(q, k, v, bias, sign=-1.0)


@wrong("check_biased_attention", "bias is ignored")
def biased_forgot_bias(q, k, v, bias):
    return _with_bias(q, k, v, bias, use_bias=False)


@wrong("check_biased_attention", "forgot to scale")
def biased_no_scale(q, k, v, bias):
    return _with_bias(q, k, v, bias, scale=1.0)


@wrong("check_biased_attention", "wrong axis")
def biased_softmax_queries(q, k, v, bias):
    return _with_bias(q, k, v, bias, dim=-2)


@wrong("check_biased_attention", "transposed")
def biased_bias_transposed(q, k, v, bias):
    if bias.shape[-1] != bias.shape[-2]:                    # a careful student guards the rectangular case
        return _with_bias(q, k, v, bias)
    return _with_bias(q, k, v, bias.transpose(-2, -1))


# ------------------------------------------------------------------------------------ grouped-query attention


@correct("check_repeat_kv")
def repeat_kv_expand(x, n_rep):
    B, H_kv, T, d = x.shape
    return x[:, :, None].expand(B, H_kv, n_rep, T, d).reshape(B, H_kv * n_rep, T, d)


@correct("check_repeat_kv")
def repeat_kv_index(x, n_rep):
    index = torch.arange(x.shape[1] * n_rep) // n_rep
    return x[:, index]


@wrong("check_repeat_kv", "tiled", "repeat_interleave")
def repeat_kv_tiled(x, n_rep):
    return x.repeat(1, n_rep, 1, 1)


@wrong("check_repeat_kv", "tiled")
def repeat_kv_cat(x, n_rep):
    return torch.cat([x] * n_rep, dim=1)


@wrong("check_repeat_kv", "positions were repeated")
def repeat_kv_wrong_dim(x, n_rep):
    return x.repeat_interleave(n_rep, dim=2)


@wrong("check_repeat_kv", "tiled")
def repeat_kv_modulo_index(x, n_rep):
    index = torch.arange(x.shape[1] * n_rep) % x.shape[1]
    return x[:, index]


class _GQA(nn.Module):
    def __init__(self, d_model, n_heads, n_kv_heads, tile=False, scale="d", kv_full=False, use_mask=True):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        d = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model if kv_full else n_kv_heads * d)
        self.v_proj = nn.Linear(d_model, d_model if kv_full else n_kv_heads * d)
        self.out_proj = nn.Linear(d_model, d_model)
        self.tile, self.scale, self.use_mask = tile, scale, use_mask

    def forward(self, x, mask=None):
        B, T, C = x.shape
        H, H_kv = self.n_heads, self.n_kv_heads
        d = C // H
        q = self.q_proj(x).view(B, T, H, d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, H_kv, d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, H_kv, d).transpose(1, 2)
        rep = (lambda t: t.repeat(1, H // H_kv, 1, 1)) if self.tile else (lambda t: t.repeat_interleave(H // H_kv, 1))
        k, v = rep(k), rep(v)
        scores = q @ k.transpose(-2, -1) / {"d": math.sqrt(d), "C": math.sqrt(C), "none": 1.0}[self.scale]
        if mask is not None and self.use_mask:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(B, T, C)), weights


@correct("check_grouped_query_attention")
class GQAWithSDPA(_GQA):
    def forward(self, x, mask=None):
        B, T, C = x.shape
        H, H_kv = self.n_heads, self.n_kv_heads
        d = C // H
        q = self.q_proj(x).view(B, T, H, d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, H_kv, d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, H_kv, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        k = k.repeat_interleave(H // H_kv, 1)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(d)).masked_fill(~mask, float("-inf")) if mask is not None \
            else q @ k.transpose(-2, -1) / math.sqrt(d)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, C)), scores.softmax(-1)


@correct("check_grouped_query_attention")
class GQAByGroups(_GQA):
    """Queries reshaped into (B, H_kv, n_rep, T, d): each group attends to its own key/value head."""

    def forward(self, x, mask=None):
        B, T, C = x.shape
        H, H_kv = self.n_heads, self.n_kv_heads
        d, n_rep = C // H, H // H_kv
        q = self.q_proj(x).view(B, T, H_kv, n_rep, d).permute(0, 2, 3, 1, 4)     # (B, H_kv, n_rep, T, d)
        k = self.k_proj(x).view(B, T, H_kv, 1, d).permute(0, 2, 3, 1, 4)         # (B, H_kv, 1, T, d)
        v = self.v_proj(x).view(B, T, H_kv, 1, d).permute(0, 2, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)                          # (B, H_kv, n_rep, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        out = (weights @ v).reshape(B, H, T, d)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, C)), weights.reshape(B, H, T, T)


@wrong("check_grouped_query_attention", "tiled")
class GQATiled(_GQA):
    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__(d_model, n_heads, n_kv_heads, tile=True)


@wrong("check_grouped_query_attention", "sqrt(d_model)")
class GQAScaleByModel(_GQA):
    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__(d_model, n_heads, n_kv_heads, scale="C")


@wrong("check_grouped_query_attention", "not scaled")
class GQANoScale(_GQA):
    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__(d_model, n_heads, n_kv_heads, scale="none")


@wrong("check_grouped_query_attention", "mask is ignored")
class GQANoMask(_GQA):
    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__(d_model, n_heads, n_kv_heads, use_mask=False)


@wrong("check_grouped_query_attention", "n_kv_heads * d")
class GQAFullWidthKV(_GQA):
    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__(d_model, n_heads, n_kv_heads, kv_full=True)
