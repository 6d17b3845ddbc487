"""The Transformer-block exercise checks accept every correct style and name each classic mistake."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptlm_course.attention import MultiHeadAttention
from ptlm_course.checks import CheckFailed
from ptlm_course.checks.transformer import (check_feed_forward, check_layer_norm, check_rms_norm, check_swiglu,
                                             check_transformer_block)
from ptlm_course.transformer import FeedForward


def fails_with(check, fn, message):
    with pytest.raises(CheckFailed, match=message):
        check(fn)


# --- layer_norm -------------------------------------------------------------------------------------

def ln_manual(x, weight, bias, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def ln_rsqrt(x, weight, bias, eps=1e-5):                   # var_mean, rsqrt, addcmul
    var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
    return torch.addcmul(bias, (x - mean) * torch.rsqrt(var + eps), weight)


def ln_torch(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


@pytest.mark.parametrize("fn", [ln_manual, ln_rsqrt, ln_torch])
def test_correct_layer_norms_pass(fn, capsys):
    check_layer_norm(fn)
    assert "✅ check_layer_norm: all 4 tests passed." in capsys.readouterr().out


def ln_mistake(dim=-1, unbiased=False, eps_outside=False, use_eps=True, weight_on=True, bias_on=True):
    def layer_norm(x, weight, bias, eps=1e-5):
        mean = x.mean(dim=dim, keepdim=True)
        std = x.var(dim=dim, keepdim=True, unbiased=unbiased)
        e = eps if use_eps else 0.0
        x_hat = (x - mean) / (std.sqrt() + e) if eps_outside else (x - mean) / (std + e).sqrt()
        return x_hat * (weight if weight_on else 1) + (bias if bias_on else 0)
    return layer_norm


@pytest.mark.parametrize("fn, message", [
    (ln_mistake(dim=0), "wrong axis"),
    (ln_mistake(dim=-2), "wrong axis"),
    (ln_mistake(dim=(0, 1)), "all the numbers at once"),
    (ln_mistake(unbiased=True), "unbiased variance"),
    (ln_mistake(eps_outside=True), "outside the square root"),
    (ln_mistake(use_eps=False), "eps is not used"),
    (ln_mistake(weight_on=False, bias_on=False), "forgot the learned scale and shift"),
    (ln_mistake(weight_on=False), "forgot the learned scale:"),
    (ln_mistake(bias_on=False), "forgot the learned shift"),
], ids=["axis0", "axis-2", "all", "unbiased", "eps-outside", "no-eps", "no-affine", "no-weight", "no-bias"])
def test_layer_norm_mistakes_are_named(fn, message):
    fails_with(check_layer_norm, fn, message)


def test_layer_norm_unwritten_or_wrong_shape():
    def layer_norm(x, weight, bias, eps=1e-5):
        raise NotImplementedError()
    fails_with(check_layer_norm, layer_norm, r"`.*layer_norm` is not written yet")
    fails_with(check_layer_norm, lambda x, w, b, eps=1e-5: ln_manual(x, w, b, eps).mean(-1), "should have shape")
    fails_with(check_layer_norm, lambda x, w, b, eps=1e-5: ln_manual(x, w, b, eps) * 1.01, "wrong values")


# --- feed-forward -------------------------------------------------------------------------------------

class FFNModules(nn.Module):                                  # GELU as a module, dropout that eval() turns off
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.act, self.drop = nn.GELU(), nn.Dropout(0.5)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


def ffn_class(act=F.gelu, act_after=False, fc2=True):
    class Student(nn.Module):
        def __init__(self, d_model, d_ff):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

        def forward(self, x):
            h = self.fc1(x) if act is None else act(self.fc1(x))
            if not fc2:
                return h
            y = self.fc2(h)
            return act(y) if act_after else y
    return Student


@pytest.mark.parametrize("cls", [FFNModules, ffn_class(), ffn_class(act=lambda h: F.gelu(h, approximate="tanh")),
                                 lambda d_model, d_ff: FeedForward(d_model, d_ff, dropout=0.2)],
                         ids=["modules", "functional", "tanh-gelu", "package"])
def test_correct_feed_forwards_pass(cls, capsys):
    check_feed_forward(cls)
    assert "✅ check_feed_forward: all 3 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("cls, message", [
    (ffn_class(act=None), "no activation between fc1 and fc2"),
    (ffn_class(act=F.relu), "you used ReLU"),
    (ffn_class(act_after=True), "also applied after fc2"),
    (ffn_class(fc2=False), "still has d_ff channels"),
], ids=["linear", "relu", "act-after", "no-fc2"])
def test_feed_forward_mistakes_are_named(cls, message):
    fails_with(check_feed_forward, cls, message)


def test_feed_forward_layers_are_checked_and_unwritten_is_friendly():
    class Unwritten(nn.Module):
        def __init__(self, d_model, d_ff):
            super().__init__()
            raise NotImplementedError()
    fails_with(check_feed_forward, Unwritten, "`.*Unwritten` is not written yet")

    class Misnamed(FFNModules):
        def __init__(self, d_model, d_ff):
            super().__init__(d_model, d_ff)
            self.linear1 = self.fc1
            del self.fc1
    fails_with(check_feed_forward, Misnamed, r"parameter `fc1.weight`")
    fails_with(check_feed_forward, lambda d_model, d_ff: FFNModules(d_model, 2 * d_model),
               r"`fc1.weight` .* should have shape \(32, 8\), but it has shape \(16, 8\)")


# --- transformer block --------------------------------------------------------------------------------

class Block(nn.Module):
    """The layers the exercise gives; subclasses write forward."""

    def __init__(self, d_model, n_heads, activation="gelu"):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, activation=activation)


class PreLN(Block):
    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask=mask)[0]
        return x + self.ffn(self.ln2(x))


class PreLNSpelledOut(Block):                                 # intermediate names, tuple unpacking, dropout layers
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        self.drop = nn.Dropout(0.3)

    def forward(self, x, mask=None):
        normed = self.ln1(x)
        attended, _weights = self.attn(normed, normed, mask)
        residual = x + self.drop(attended)
        return residual + self.drop(self.ffn(self.ln2(residual)))


class PreLNTanh(PreLN):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads, activation="gelu_tanh")


@pytest.mark.parametrize("cls", [PreLN, PreLNSpelledOut, PreLNTanh])
def test_correct_blocks_pass(cls, capsys):
    check_transformer_block(cls)
    assert "✅ check_transformer_block: all 4 tests passed." in capsys.readouterr().out


def block_with(body):
    return type("StudentBlock", (Block,), {"forward": lambda self, x, mask=None: body(self, x, mask)})


def attn(self, h, mask):
    return self.attn(h, mask=mask)[0]


def normalised_skip(self, x, mask):
    x = self.ln1(x)
    x = x + attn(self, x, mask)
    x = self.ln2(x)
    return x + self.ffn(x)


def ffn_on_input(self, x, mask):
    h = x + attn(self, self.ln1(x), mask)
    return h + self.ffn(self.ln2(x))


@pytest.mark.parametrize("body, message", [
    (lambda s, x, m: (lambda h: h + s.ffn(s.ln2(h)))(attn(s, s.ln1(x), m)), "attention sub-layer has no residual"),
    (lambda s, x, m: s.ffn(s.ln2(x + attn(s, s.ln1(x), m))), "feed-forward sub-layer has no residual"),
    (lambda s, x, m: s.ffn(s.ln2(attn(s, s.ln1(x), m))), "both residual connections are missing"),
    (lambda s, x, m: (lambda h: s.ln2(h + s.ffn(h)))(s.ln1(x + attn(s, x, m))), "post-LN block"),
    (lambda s, x, m: (lambda h: s.ln2(h + s.ffn(s.ln2(h))))(s.ln1(x + attn(s, s.ln1(x), m))),
     "also applied after the residual add"),
    (normalised_skip, "residual carries the normalised x"),
    (lambda s, x, m: x + s.ffn(s.ln2(x + attn(s, s.ln1(x), m))), "residual is added to the block's input"),
    (ffn_on_input, "feed-forward sub-layer reads the block's input"),
    (lambda s, x, m: (lambda h: h + s.ffn(s.ln1(h)))(x + attn(s, s.ln2(x), m)), "ln1 and ln2 are swapped"),
    (lambda s, x, m: (lambda h: h + s.ffn(s.ln2(h)))(x + attn(s, s.ln1(x), None)), "ignores `mask`"),
    (lambda s, x, m: x + s.attn(s.ln1(x), mask=m), r"returns a pair \(out, weights\)"),
], ids=["no-attn-res", "no-ffn-res", "no-res", "post-LN", "norm-after-add", "normalised-skip",
        "ffn-res-on-input", "ffn-reads-input", "swapped-norms", "no-mask", "tuple"])
def test_block_mistakes_are_named(body, message):
    fails_with(check_transformer_block, block_with(body), message)


def test_block_unwritten_misnamed_and_wrong_output():
    def unwritten(self, x, mask):
        raise NotImplementedError()
    fails_with(check_transformer_block, block_with(unwritten), "`StudentBlock` is not written yet")

    class Misnamed(PreLN):
        def __init__(self, d_model, n_heads):
            super().__init__(d_model, n_heads)
            self.norm1 = self.ln1
            del self.ln1
    fails_with(check_transformer_block, Misnamed, r"parameter `ln1.weight`")
    fails_with(check_transformer_block, block_with(lambda s, x, m: (PreLN.forward(s, x, m), None)),
               "should be a torch.Tensor")
    fails_with(check_transformer_block, block_with(lambda s, x, m: 1.001 * PreLN.forward(s, x, m)), "wrong values")


# --- RMSNorm and SwiGLU (exercise 05) --------------------------------------------------------------------

def test_rms_norm_check_accepts_pytorchs_rms_norm(capsys):
    check_rms_norm(lambda x, weight, eps=1e-6: F.rms_norm(x, (x.shape[-1],), weight, eps))
    assert "✅ check_rms_norm" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda x, w, eps=1e-6: F.layer_norm(x, (x.shape[-1],), w, None, eps), "you subtracted the mean"),
    (lambda x, w, eps=1e-6: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w, "outside the square root"),
    (lambda x, w, eps=1e-6: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps), "forgot the learned scale"),
])
def test_rms_norm_check_names_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_rms_norm(fn)


def swiglu(act=F.silu, combine=lambda a, b: a * b, bias=False):
    class SwiGLU(nn.Module):
        def __init__(self, d_model, d_ff):
            super().__init__()
            self.gate = nn.Linear(d_model, d_ff, bias=bias)
            self.up = nn.Linear(d_model, d_ff, bias=bias)
            self.down = nn.Linear(d_ff, d_model, bias=bias)

        def forward(self, x):
            return self.down(combine(act(self.gate(x)), self.up(x)))
    return SwiGLU


def test_swiglu_check_accepts_a_correct_module(capsys):
    check_swiglu(swiglu())
    assert "✅ check_swiglu" in capsys.readouterr().out


@pytest.mark.parametrize("module, message", [
    (swiglu(act=torch.sigmoid), "sigmoid"),
    (swiglu(combine=lambda a, b: a + b), "the two branches are added"),
    (swiglu(bias=True), "has biases"),
])
def test_swiglu_check_names_mistakes(module, message):
    with pytest.raises(CheckFailed, match=message):
        check_swiglu(module)
