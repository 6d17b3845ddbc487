"""The attention exercise checks accept every correct style and name each classic mistake."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptlm_course.checks import CheckFailed
from ptlm_course.checks.attention import check_attention, check_biased_attention, check_causal_mask, check_padding_mask
from ptlm_course.checks.multihead import (check_grouped_query_attention, check_merge_heads, check_multi_head_attention,
                                         check_repeat_kv, check_split_heads)


def fails_with(check, fn, message):
    with pytest.raises(CheckFailed, match=message):
        check(fn)


# --- attention --------------------------------------------------------------------------------------

def attention_matmul(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(mask == 0, float("-inf"))
    weights = F.softmax(scores, dim=-1)
    return weights @ v, weights


def attention_einsum(q, k, v, mask=None):                  # einsum, finfo.min, non-contiguous weights
    scores = torch.einsum("...qd,...kd->...kq", q, k).transpose(-1, -2) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
    weights = scores.softmax(-1)
    return torch.einsum("...qk,...kd->...qd", weights, v), weights


def attention_torch(q, k, v, mask=None):                   # PyTorch's kernel for the output
    weights = attention_matmul(q, k, v, mask)[1]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights


def with_mistake(kind):
    def attention(q, k, v, mask=None):
        scale = {"no_scale": 1.0, "d_k": 1 / q.shape[-1]}.get(kind, 1 / math.sqrt(q.shape[-1]))
        scores = q @ k.transpose(-2, -1) * scale
        if mask is not None and kind != "after":
            fill = 0.0 if kind == "zero" else float("-inf")
            scores = scores.masked_fill(mask if kind == "inverted" else ~mask, fill)
        weights = scores.softmax(-2 if kind == "axis" else -1)
        if mask is not None and kind == "after":
            weights = weights * mask
        out = weights @ v
        if kind == "transposed":
            weights = weights.transpose(-2, -1)
        if kind == "shape":
            out = out.transpose(-2, -1)
        return out, weights
    return attention


@pytest.mark.parametrize("fn", [attention_matmul, attention_einsum, attention_torch])
def test_check_attention_accepts_correct_styles(fn, capsys):
    check_attention(fn)
    assert "✅ check_attention: all 5 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("no_scale", "forgot to scale"),
    ("d_k", "divided the scores by d_k"),
    ("axis", "softmax runs over the wrong axis"),
    ("after", "mask is applied after the softmax"),
    ("zero", "masked scores were set to 0"),
    ("inverted", "mask polarity is inverted"),
    ("transposed", "weights are transposed"),
    ("shape", r"the output \(\.\.\., T_q, d_v\).*should have shape \(4, 5\), but it has shape \(5, 4\)"),
])
def test_check_attention_names_mistakes(kind, message):
    fails_with(check_attention, with_mistake(kind), message)


def test_check_attention_unwritten_and_wrong_return():
    def attention(q, k, v, mask=None):
        raise NotImplementedError()
    fails_with(check_attention, attention, "`[^`]*attention` is not written yet")
    fails_with(check_attention, lambda q, k, v, mask=None: attention_matmul(q, k, v, mask)[0],
               r"should return a pair \(output, weights\)")


# --- masks ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    lambda T: torch.tril(torch.ones(T, T)).bool(),
    lambda T: ~torch.ones(T, T, dtype=torch.bool).triu(1),
    lambda T: torch.arange(T)[:, None] >= torch.arange(T)[None, :],
])
def test_check_causal_mask_accepts(fn, capsys):
    check_causal_mask(fn)
    assert "✅ check_causal_mask" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda T: torch.ones(T, T, dtype=torch.bool).triu(1), "polarity inverted"),
    (lambda T: torch.ones(T, T, dtype=torch.bool).triu(), "see the future"),
    (lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1), "hides the diagonal"),
    (lambda T: torch.ones(T, T).tril(), "bool tensor.*float32"),
    (lambda T: torch.ones(T, dtype=torch.bool), r"should have shape \(4, 4\)"),
])
def test_check_causal_mask_names_mistakes(fn, message):
    fails_with(check_causal_mask, fn, message)


@pytest.mark.parametrize("fn", [
    lambda lengths, T: (torch.arange(T) < lengths[:, None])[:, None, None, :],
    lambda lengths, T: torch.stack([torch.arange(T) < n for n in lengths]).view(len(lengths), 1, 1, T),
    lambda lengths, T: (torch.arange(T).expand(len(lengths), T) < lengths.unsqueeze(1)).unsqueeze(1).unsqueeze(1),
])
def test_check_padding_mask_accepts(fn, capsys):
    check_padding_mask(fn)
    assert "✅ check_padding_mask" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda lengths, T: (torch.arange(T) >= lengths[:, None])[:, None, None, :], "polarity inverted"),
    (lambda lengths, T: torch.arange(T) < lengths[:, None], r"has shape \(B, T\); add two dims"),
    (lambda lengths, T: (torch.arange(T) < lengths[:, None])[:, None, :, None], "masks queries instead of keys"),
    (lambda lengths, T: (torch.arange(T) <= lengths[:, None])[:, None, None, :], "off by one"),
    (lambda lengths, T: (torch.arange(T) < lengths[:, None])[:, None, None, :].long(), "bool tensor.*int64"),
])
def test_check_padding_mask_names_mistakes(fn, message):
    fails_with(check_padding_mask, fn, message)


# --- split / merge heads --------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    lambda x, H: x.view(x.shape[0], x.shape[1], H, -1).transpose(1, 2),
    lambda x, H: torch.stack(x.chunk(H, dim=-1), dim=1),
    lambda x, H: x.reshape(*x.shape[:2], H, x.shape[-1] // H).permute(0, 2, 1, 3).contiguous(),
])
def test_check_split_heads_accepts(fn, capsys):
    check_split_heads(fn)
    assert "✅ check_split_heads: all 4 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda x, H: x.view(x.shape[0], H, x.shape[1], -1), "reshaped straight to"),
    (lambda x, H: x.view(x.shape[0], x.shape[1], H, -1), r"shape \(B, T, H, C/H\)"),
])
def test_check_split_heads_names_mistakes(fn, message):
    fails_with(check_split_heads, fn, message)


@pytest.mark.parametrize("fn", [
    lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1),
    lambda x: x.transpose(1, 2).contiguous().view(x.shape[0], x.shape[2], -1),
    lambda x: torch.cat(x.unbind(1), dim=-1),
])
def test_check_merge_heads_accepts(fn, capsys):
    check_merge_heads(fn)
    assert "✅ check_merge_heads" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda x: x.reshape(x.shape[0], x.shape[2], -1), "reshaped straight to"),
    (lambda x: x.transpose(1, 2), r"still has shape \(B, T, H, d\)"),
    (lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1), r"`.view` cannot follow a `.transpose`"),
])
def test_check_merge_heads_names_mistakes(fn, message):
    fails_with(check_merge_heads, fn, message)


def test_split_and_merge_unwritten():
    def split_heads(x, n_heads):
        raise NotImplementedError()
    fails_with(check_split_heads, split_heads, "split_heads` is not written yet")


# --- multi-head attention -------------------------------------------------------------------------

class StudentMHA(nn.Module):
    """A correct student module, with switches for the classic mistakes."""
    mistake = None

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, x, mask=None):
        B, T, C = x.shape
        H, d = self.n_heads, C // self.n_heads
        if self.mistake == "heads":
            split = lambda t: t.view(B, H, T, d)  # noqa: E731
        else:
            split = lambda t: t.view(B, T, H, d).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        scores = q @ k.transpose(-2, -1) / (1 if self.mistake == "scale" else math.sqrt(d))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        y = weights @ v
        y = y.reshape(B, T, C) if self.mistake in ("heads", "merge") else y.transpose(1, 2).reshape(B, T, C)
        return (y if self.mistake == "proj" else self.out_proj(y)), weights


class EinsumMHA(StudentMHA):
    """Correct, different style: einsum heads and PyTorch's kernel for the output."""

    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = (p(x).unflatten(-1, (self.n_heads, -1)) for p in (self.q_proj, self.k_proj, self.v_proj))
        weights = torch.einsum("bqhd,bkhd->bhqk", q, k).div(q.shape[-1] ** 0.5)
        if mask is not None:
            weights = weights.masked_fill(~mask, torch.finfo(weights.dtype).min)
        weights = weights.softmax(-1)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).flatten(2)), weights


def student_with(mistake):
    return type(f"MHA_{mistake}", (StudentMHA,), {"mistake": mistake})


@pytest.mark.parametrize("cls", [StudentMHA, EinsumMHA])
def test_check_multi_head_attention_accepts(cls, capsys):
    check_multi_head_attention(cls)
    assert "✅ check_multi_head_attention: all 4 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("mistake, message", [
    ("proj", "output projection is missing"),
    ("scale", "scores are not scaled"),
    ("heads", "heads are mixed up"),
    ("merge", "heads are mixed up"),
])
def test_check_multi_head_attention_names_mistakes(mistake, message):
    fails_with(check_multi_head_attention, student_with(mistake), message)


def test_check_multi_head_attention_layers_and_unwritten():
    class NoLayers(nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            self.qkv = nn.Linear(d_model, 3 * d_model)
    fails_with(check_multi_head_attention, NoLayers, r"should have a layer `self.q_proj = nn.Linear")

    class Unwritten(StudentMHA):
        def forward(self, x, mask=None):
            raise NotImplementedError()
    fails_with(check_multi_head_attention, Unwritten, "is not written yet")


# --- hints for errors whose cause is in the code ------------------------------------------------------

def attention_dot_T(q, k, v, mask=None):
    weights = (q @ k.T / math.sqrt(q.shape[-1])).softmax(-1)
    return weights @ v, weights


def attention_transpose_1_2(q, k, v, mask=None):
    weights = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(-1)
    return weights @ v, weights


def test_dot_T_is_named_every_time():
    """PyTorch warns about `.T` on a 3+-dim tensor once per process; the hint comes from the code as well."""
    for _ in range(2):
        fails_with(check_attention, attention_dot_T, r"Hint: `\.T` on a tensor with more than 2 dims")


def test_transpose_1_2_in_a_product_is_named():
    fails_with(check_attention, attention_transpose_1_2, r"Hint: `\.transpose\(1, 2\)` in a product .* "
                                                         r"`k\.transpose\(-2, -1\)`")


def test_no_source_hint_for_other_errors():
    from ptlm_course.checks._core import _hint

    def uses_dot_T(x):
        return x.T

    assert _hint(ValueError("not a shape error"), [], uses_dot_T) == ""       # only RuntimeErrors get it
    assert _hint(RuntimeError("size mismatch"), [], attention_matmul) == ""   # no `.T` in the code
    assert "`.T`" in _hint(RuntimeError("size mismatch"), [], uses_dot_T)


# --- attention with an additive bias (exercise 03) -------------------------------------------------------

def biased(kind="ok"):
    def fn(q, k, v, bias):
        scores = q @ k.transpose(-2, -1)
        scores = (scores + bias) / math.sqrt(q.shape[-1]) if kind == "scaled_bias" else \
            scores / math.sqrt(q.shape[-1]) + (0 if kind == "no_bias" else bias)
        weights = torch.softmax(scores, dim=-1)
        return weights @ v, weights
    return fn


def test_biased_attention_check_accepts_a_correct_answer(capsys):
    check_biased_attention(biased())
    assert "✅ check_biased_attention: all 4 tests passed." in capsys.readouterr().out


def test_biased_attention_check_accepts_pytorchs_sdpa_output(capsys):
    def fn(q, k, v, bias):
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias, dim=-1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias), weights
    check_biased_attention(fn)
    assert "✅ check_biased_attention" in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [("scaled_bias", "divided by sqrt\\(d_k\\) along with the scores"),
                                           ("no_bias", "the bias is ignored")])
def test_biased_attention_check_names_mistakes(kind, message):
    with pytest.raises(CheckFailed, match=message):
        check_biased_attention(biased(kind))


# --- grouped-query attention (exercise 04) ---------------------------------------------------------------

def test_repeat_kv_check_accepts_repeat_interleave_and_names_tiling(capsys):
    check_repeat_kv(lambda x, n_rep: x.repeat_interleave(n_rep, dim=1))
    assert "✅ check_repeat_kv" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="tiled"):
        check_repeat_kv(lambda x, n_rep: x.repeat(1, n_rep, 1, 1))


def gqa(tiled=False):
    class GQA(nn.Module):
        def __init__(self, d_model, n_heads, n_kv_heads):
            super().__init__()
            self.H, self.H_kv, d = n_heads, n_kv_heads, d_model // n_heads
            self.q_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
            self.k_proj, self.v_proj = nn.Linear(d_model, n_kv_heads * d), nn.Linear(d_model, n_kv_heads * d)

        def forward(self, x, mask=None):
            B, T, C = x.shape
            d, n_rep = C // self.H, self.H // self.H_kv
            q = self.q_proj(x).view(B, T, self.H, d).transpose(1, 2)
            k, v = (p(x).view(B, T, self.H_kv, d).transpose(1, 2) for p in (self.k_proj, self.v_proj))
            k, v = ((t.repeat(1, n_rep, 1, 1) if tiled else t.repeat_interleave(n_rep, 1)) for t in (k, v))
            scores = (q @ k.transpose(-2, -1) / math.sqrt(d)).masked_fill(~mask, float("-inf"))
            weights = scores.softmax(-1)
            return self.out_proj((weights @ v).transpose(1, 2).reshape(B, T, C)), weights
    return GQA


def test_grouped_query_attention_check_agrees_with_sdpa(capsys):
    check_grouped_query_attention(gqa())
    assert "✅ check_grouped_query_attention: all 4 tests passed." in capsys.readouterr().out


def test_grouped_query_attention_check_names_tiled_heads():
    with pytest.raises(CheckFailed, match="tiled"):
        check_grouped_query_attention(gqa(tiled=True))
