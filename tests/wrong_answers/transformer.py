"""Answers to the Transformer-block checks (notebook 05)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptlm_course.attention import MultiHeadAttention
from ptlm_course.transformer import FeedForward

from ._registry import correct, wrong

# ------------------------------------------------------------------------------------ LayerNorm


@correct("check_layer_norm")
def layer_norm_by_hand(x, weight, bias, eps=1e-5):
    mean = x.sum(-1, keepdim=True) / x.shape[-1]
    centred = x - mean
    var = (centred * centred).sum(-1, keepdim=True) / x.shape[-1]
    return weight * centred * torch.rsqrt(var + eps) + bias


@correct("check_layer_norm")
def layer_norm_var_mean(x, weight, bias, eps=1e-5):
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    return torch.addcmul(bias, (x - mean) / (var + eps).sqrt(), weight)


def _ln(x, weight, bias, eps, dim=-1, unbiased=False):
    mean = x.mean(dim, keepdim=True)
    var = x.var(dim, keepdim=True, unbiased=unbiased)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


@wrong("check_layer_norm", "unbiased")
def layer_norm_unbiased(x, weight, bias, eps=1e-5):
    return _ln(x, weight, bias, eps, unbiased=True)


@wrong("check_layer_norm", "std")
def layer_norm_torch_std(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + eps) * weight + bias


@wrong("check_layer_norm", "wrong axis")
def layer_norm_dim0(x, weight, bias, eps=1e-5):
    return _ln(x, weight, bias, eps, dim=0)


@wrong("check_layer_norm", "outside the square root")
def layer_norm_eps_outside(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / (x.var(-1, keepdim=True, unbiased=False).sqrt() + eps) * weight + bias


@wrong("check_layer_norm", "eps is not used")
def layer_norm_no_eps(x, weight, bias, eps=1e-5):
    return _ln(x, weight, bias, 0.0)


@wrong("check_layer_norm", "not centred")
def layer_norm_uncentred_var(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = (x ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


@wrong("check_layer_norm", "swapped")
def layer_norm_swapped(x, weight, bias, eps=1e-5):
    return _ln(x, bias, weight, eps)


@wrong("check_layer_norm", "scale and shift")
def layer_norm_no_affine(x, weight, bias, eps=1e-5):
    return _ln(x, 1.0, 0.0, eps)


@wrong("check_layer_norm", "mean is not subtracted")
def layer_norm_rms(x, weight, bias, eps=1e-5):
    return x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps) * weight + bias


@wrong("check_layer_norm", "all the numbers at once")
def layer_norm_global(x, weight, bias, eps=1e-5):
    return (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * weight + bias


# ------------------------------------------------------------------------------------ feed-forward


@correct("check_feed_forward")
class FFNFunctional(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


@correct("check_feed_forward")
class FFNTanhWithDropout(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.act, self.drop = nn.GELU(approximate="tanh"), nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.act(self.fc1(x))))


class _FFN(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)


@wrong("check_feed_forward", "no activation")
class FFNNoActivation(_FFN):
    def forward(self, x):
        return self.fc2(self.fc1(x))


@wrong("check_feed_forward", "relu")
class FFNReLU(_FFN):
    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@wrong("check_feed_forward", "after fc2")
class FFNActTwice(_FFN):
    def forward(self, x):
        return F.gelu(self.fc2(F.gelu(self.fc1(x))))


@wrong("check_feed_forward", "before the first linear")
class FFNActFirst(_FFN):
    def forward(self, x):
        return self.fc2(self.fc1(F.gelu(x)))


@wrong("check_feed_forward", "residual inside")
class FFNResidual(_FFN):
    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(x)))


@wrong("check_feed_forward", "dropout is always on")
class FFNDropoutAlwaysOn(_FFN):
    def forward(self, x):
        return F.dropout(self.fc2(F.gelu(self.fc1(x))), 0.1)


@wrong("check_feed_forward", "d_ff channels")
class FFNNoFc2(_FFN):
    def forward(self, x):
        return F.gelu(self.fc1(x))


@wrong("check_feed_forward", "parameter", "fc1.weight")
class FFNOtherNames(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.up, self.down = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


# ------------------------------------------------------------------------------------ pre-LN block


class _Block(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln1 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, 4 * d_model)
        self.ln2 = nn.LayerNorm(d_model)


@correct("check_transformer_block")
class BlockOneLine(_Block):
    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask=mask)[0]
        return x + self.ffn(self.ln2(x))


@correct("check_transformer_block")
class BlockNamedSteps(_Block):
    def forward(self, x, mask=None):
        h = self.ln1(x)
        attn_out, _weights = self.attn(h, h, mask)
        residual = x + attn_out
        return residual + self.ffn(self.ln2(residual))


@wrong("check_transformer_block", "post-ln")
class BlockPostLN(_Block):
    def forward(self, x, mask=None):
        x = self.ln1(x + self.attn(x, mask=mask)[0])
        return self.ln2(x + self.ffn(x))


@wrong("check_transformer_block", "attention sub-layer has no residual")
class BlockNoAttnResidual(_Block):
    def forward(self, x, mask=None):
        x = self.attn(self.ln1(x), mask=mask)[0]
        return x + self.ffn(self.ln2(x))


@wrong("check_transformer_block", "feed-forward sub-layer has no residual")
class BlockNoFFNResidual(_Block):
    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask=mask)[0]
        return self.ffn(self.ln2(x))


@wrong("check_transformer_block", "normalised x")
class BlockNormalisedSkip(_Block):
    def forward(self, x, mask=None):
        x = self.ln1(x)
        x = x + self.attn(x, mask=mask)[0]
        x = self.ln2(x)
        return x + self.ffn(x)


@wrong("check_transformer_block", "swapped")
class BlockSwappedNorms(_Block):
    def forward(self, x, mask=None):
        x = x + self.attn(self.ln2(x), mask=mask)[0]
        return x + self.ffn(self.ln1(x))


@wrong("check_transformer_block", "ignores `mask`")
class BlockNoMask(_Block):
    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x))[0]
        return x + self.ffn(self.ln2(x))


@wrong("check_transformer_block", "reads the block's input")
class BlockFFNReadsInput(_Block):
    def forward(self, x, mask=None):
        h = x + self.attn(self.ln1(x), mask=mask)[0]
        return h + self.ffn(self.ln2(x))


@wrong("check_transformer_block", "returns a pair")
class BlockAddsTuple(_Block):
    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.ffn(self.ln2(x))


@wrong("check_transformer_block", "dropout is always on")
class BlockDropoutAlwaysOn(_Block):
    def forward(self, x, mask=None):
        x = x + F.dropout(self.attn(self.ln1(x), mask=mask)[0], 0.1, training=True)
        return x + self.ffn(self.ln2(x))


@correct("check_layer_norm")
def layer_norm_via_group_norm_math(x, weight, bias, eps=1e-5):
    flat = x.reshape(-1, x.shape[-1])
    mu = flat.mean(1, keepdim=True)
    sigma2 = flat.pow(2).mean(1, keepdim=True) - mu.pow(2)
    return ((flat - mu) / (sigma2 + eps).sqrt()).reshape(x.shape) * weight + bias


# ------------------------------------------------------------------------------------ parallel block


class _Parallel(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, 4 * d_model)


@correct("check_parallel_block")
class ParallelSum(_Parallel):
    def forward(self, x, mask=None):
        h = self.ln(x)
        branches = [self.attn(h, mask=mask)[0], self.ffn(h)]
        return x + sum(branches)


@wrong("check_parallel_block", "sequential")
class ParallelSequential(_Parallel):
    def forward(self, x, mask=None):
        x = x + self.attn(self.ln(x), mask=mask)[0]
        return x + self.ffn(self.ln(x))


@wrong("check_parallel_block", "residual is missing")
class ParallelNoResidual(_Parallel):
    def forward(self, x, mask=None):
        h = self.ln(x)
        return self.attn(h, mask=mask)[0] + self.ffn(h)


@wrong("check_parallel_block", "normalised h")
class ParallelNormalisedSkip(_Parallel):
    def forward(self, x, mask=None):
        x = self.ln(x)
        return x + self.attn(x, mask=mask)[0] + self.ffn(x)


@wrong("check_parallel_block", "un-normalised")
class ParallelFFNRaw(_Parallel):
    def forward(self, x, mask=None):
        return x + self.attn(self.ln(x), mask=mask)[0] + self.ffn(x)


@wrong("check_parallel_block", "after the sum")
class ParallelPostLN(_Parallel):
    def forward(self, x, mask=None):
        return self.ln(x + self.attn(x, mask=mask)[0] + self.ffn(x))


@wrong("check_parallel_block", "ignores `mask`")
class ParallelNoMask(_Parallel):
    def forward(self, x, mask=None):
        h = self.ln(x)
        return x + self.attn(h)[0] + self.ffn(h)


# ------------------------------------------------------------------------------------ RMSNorm


@correct("check_rms_norm")
def rms_norm_functional(x, weight, eps=1e-6):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


@correct("check_rms_norm")
def rms_norm_via_norm(x, weight, eps=1e-6):
    C = x.shape[-1]
    rms = torch.sqrt(x.norm(dim=-1, keepdim=True) ** 2 / C + eps)
    return weight * (x / rms)


@wrong("check_rms_norm", "subtracted the mean")
def rms_norm_centred(x, weight, eps=1e-6):
    x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@wrong("check_rms_norm", "outside the square root")
def rms_norm_eps_outside(x, weight, eps=1e-6):
    return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * weight


@wrong("check_rms_norm", "square root is missing")
def rms_norm_no_sqrt(x, weight, eps=1e-6):
    return x / (x.pow(2).mean(-1, keepdim=True) + eps) * weight


@wrong("check_rms_norm", "wrong axis")
def rms_norm_axis0(x, weight, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + eps) * weight


@wrong("check_rms_norm", "C - 1")
def rms_norm_std(x, weight, eps=1e-6):
    return x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) / (x.shape[-1] - 1) + eps) * weight


@wrong("check_rms_norm", "learned scale")
def rms_norm_no_weight(x, weight, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


@wrong("check_rms_norm", "subtracted the mean", "layernorm")
def rms_norm_is_layer_norm(x, weight, eps=1e-6):
    return F.layer_norm(x, (x.shape[-1],), weight, None, eps)


# ------------------------------------------------------------------------------------ SwiGLU


class _SwiGLUBase(nn.Module):
    def __init__(self, d_model, d_ff, bias=False):
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)


@correct("check_swiglu")
class SwiGLUByHand(_SwiGLUBase):
    def forward(self, x):
        g = self.gate(x)
        return self.down(g * torch.sigmoid(g) * self.up(x))


@correct("check_swiglu")
class SwiGLUModuleAct(_SwiGLUBase):
    def __init__(self, d_model, d_ff):
        super().__init__(d_model, d_ff)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.down(self.up(x) * self.act(self.gate(x)))


@wrong("check_swiglu", "wrong branch")
class SwiGLUSwapped(_SwiGLUBase):
    def forward(self, x):
        return self.down(self.gate(x) * F.silu(self.up(x)))


@wrong("check_swiglu", "sigmoid")
class SwiGLUSigmoid(_SwiGLUBase):
    def forward(self, x):
        return self.down(torch.sigmoid(self.gate(x)) * self.up(x))


@wrong("check_swiglu", "gelu")
class SwiGLUGelu(_SwiGLUBase):
    def forward(self, x):
        return self.down(F.gelu(self.gate(x)) * self.up(x))


@wrong("check_swiglu", "added")
class SwiGLUSum(_SwiGLUBase):
    def forward(self, x):
        return self.down(F.silu(self.gate(x)) + self.up(x))


@wrong("check_swiglu", "biases")
class SwiGLUWithBias(_SwiGLUBase):
    def __init__(self, d_model, d_ff):
        super().__init__(d_model, d_ff, bias=True)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


@wrong("check_swiglu", "after the product")
class SwiGLUSiluAfter(_SwiGLUBase):
    def forward(self, x):
        return self.down(F.silu(self.gate(x) * self.up(x)))
