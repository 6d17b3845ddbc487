"""Checks for notebook 05's exercises: LayerNorm and RMSNorm by hand, the feed-forward network and its SwiGLU
variant, a pre-LN Transformer block and the parallel block."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._core import CheckFailed, call_student, expect_deterministic, expect_tensor_like, fn_name, passed
from ..transformer import FeedForward, TransformerBlock
from ..validation import describe

__all__ = ["check_layer_norm", "check_rms_norm", "check_feed_forward", "check_swiglu", "check_transformer_block",
           "check_parallel_block"]


# --- LayerNorm ----------------------------------------------------------------------------------------

def _layer_norm(x, weight, bias, eps, dim=-1, unbiased=False, eps_outside=False, affine=(True, True),
                ignore_eps=False, uncentred_var=False, swap_affine=False, no_centre=False):
    """Reference LayerNorm over ``dim``, plus the classic mistakes as switches."""
    if swap_affine:
        weight, bias = bias, weight
    mean = x.mean(dim=dim, keepdim=True)
    var = (x ** 2).mean(dim=dim, keepdim=True) if uncentred_var else x.var(dim=dim, keepdim=True, unbiased=unbiased)
    if no_centre:
        mean = torch.zeros_like(mean)
    eps = 0.0 if ignore_eps else eps
    x_hat = (x - mean) / (var.sqrt() + eps) if eps_outside else (x - mean) / torch.sqrt(var + eps)
    use_weight, use_bias = affine
    return x_hat * (weight if use_weight else 1) + (bias if use_bias else 0)


def check_layer_norm(fn) -> None:
    """Check ``fn(x, weight, bias, eps=1e-5)``: normalise each vector over the last dim, then scale and shift."""
    check = "check_layer_norm"
    g = torch.Generator().manual_seed(7)
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    # (shape of x, eps or None for the default, spread of x). A small spread with a large eps makes
    # "eps outside the sqrt" and "eps ignored" visible.
    cases = [((4, 8), None, 3.0), ((2, 3, 16), None, 1.0), ((2, 5, 6), 0.5, 0.3), ((3, 4), 0.1, 0.2)]
    for shape, eps, spread in cases:
        C = shape[-1]
        x = randn(*shape) * spread + randn(*shape[:-1], 1)       # rows with different means
        weight, bias = 1 + 0.5 * randn(C), randn(C)
        kwargs = {} if eps is None else {"eps": eps}
        eps_value = 1e-5 if eps is None else eps
        out = call_student(check, fn, x.clone(), weight.clone(), bias.clone(), **kwargs)
        where = f" (test: x of shape {shape}, eps={eps_value})"
        variant = lambda **kw: _layer_norm(x, weight, bias, eps_value, **kw)  # noqa: E731
        mistakes = [
            ("you normalised over the wrong axis: LayerNorm normalises each token's vector, i.e. the last "
             "dim: mean and variance over dim=-1 with keepdim=True.", variant(dim=0)),
            ("you normalised over all the numbers at once: LayerNorm normalises each token's vector "
             "separately, over the last dim (dim=-1, keepdim=True).", variant(dim=tuple(range(x.dim())))),
            ("you used the unbiased variance (dividing by C - 1, as x.var() and x.std() do by default): "
             "LayerNorm divides by C, so use "
             "x.var(dim=-1, unbiased=False, keepdim=True) or ((x - mean) ** 2).mean(dim=-1, keepdim=True).",
             variant(unbiased=True)),
            ("eps is added outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps.",
             variant(eps_outside=True)),
            ("eps is not used: divide by sqrt(var + eps) with the `eps` argument.", variant(ignore_eps=True)),
            ("the variance is not centred: you averaged x ** 2, but the variance is the mean of (x - mean) ** 2.",
             variant(uncentred_var=True)),
            ("the mean is not subtracted: x_hat = (x - mean) / sqrt(var + eps).", variant(no_centre=True)),
            ("the mean is not subtracted anywhere: x / sqrt(mean(x ** 2) + eps) is RMSNorm. LayerNorm centres "
             "first: x_hat = (x - mean) / sqrt(var + eps), with var the mean of (x - mean) ** 2.",
             variant(no_centre=True, uncentred_var=True)),
            ("weight and bias are swapped: x_hat * weight + bias (weight scales, bias shifts).",
             variant(swap_affine=True)),
            ("you forgot the learned scale and shift: return x_hat * weight + bias.", variant(affine=(False, False))),
            ("you forgot the learned scale: multiply by `weight` (x_hat * weight + bias).",
             variant(affine=(False, True))),
            ("you forgot the learned shift: add `bias` (x_hat * weight + bias).", variant(affine=(True, False))),
        ]
        if len(shape) == 3:
            mistakes.insert(1, ("you normalised over the wrong axis (the positions, dim=-2): LayerNorm normalises "
                                "each token's vector, over the last dim (dim=-1).", variant(dim=-2)))
        expect_tensor_like(check, out, variant(), "the output" + where, [(m + where, w) for m, w in mistakes])
    passed(check, len(cases))


# --- RMSNorm ------------------------------------------------------------------------------------------

def _rms_norm(x, weight, eps, dim=-1, centre=False, eps_outside=False, no_sqrt=False, use_weight=True,
              unbiased=False, ignore_eps=False):
    """Reference RMSNorm over ``dim``, plus the classic mistakes as switches."""
    if centre:
        x = x - x.mean(dim=dim, keepdim=True)
    n = x.shape[dim] if isinstance(dim, int) else x.numel()
    mean_square = (x ** 2).sum(dim=dim, keepdim=True) / (n - 1 if unbiased else n)
    eps = 0.0 if ignore_eps else eps
    if no_sqrt:
        scale = mean_square + eps
    else:
        scale = mean_square.sqrt() + eps if eps_outside else torch.sqrt(mean_square + eps)
    return x / scale * (weight if use_weight else 1)


def check_rms_norm(fn) -> None:
    """Check ``fn(x, weight, eps=1e-6)``: divide each vector by its root mean square over the last dim, then scale."""
    check = "check_rms_norm"
    g = torch.Generator().manual_seed(17)
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    cases = [((4, 8), None, 3.0), ((2, 3, 16), None, 1.0), ((2, 5, 6), 0.5, 0.3), ((3, 4), 0.1, 0.2)]
    for shape, eps, spread in cases:
        C = shape[-1]
        x = randn(*shape) * spread + randn(*shape[:-1], 1)               # rows with different means
        weight = 1 + 0.5 * randn(C)
        kwargs = {} if eps is None else {"eps": eps}
        eps_value = 1e-6 if eps is None else eps
        out = call_student(check, fn, x.clone(), weight.clone(), **kwargs)
        where = f" (test: x of shape {shape}, eps={eps_value})"
        variant = lambda **kw: _rms_norm(x, weight, eps_value, **kw)      # noqa: E731
        mistakes = [
            ("you subtracted the mean: that is LayerNorm. RMSNorm only rescales, x / sqrt(mean(x ** 2) + eps), "
             "with no centring (and no bias).", variant(centre=True)),
            ("you normalised over the wrong axis: RMSNorm rescales each token's vector, over the last dim "
             "(dim=-1, keepdim=True).", variant(dim=0)),
            ("you normalised over all the numbers at once: RMSNorm rescales each token's vector separately, over "
             "the last dim (dim=-1, keepdim=True).", variant(dim=tuple(range(x.dim())))),
            ("eps is added outside the square root: divide by sqrt(mean(x ** 2) + eps), not by "
             "sqrt(mean(x ** 2)) + eps.", variant(eps_outside=True)),
            ("the square root is missing: divide by the ROOT mean square, sqrt(mean(x ** 2) + eps) "
             "(torch.rsqrt multiplies by its inverse).", variant(no_sqrt=True)),
            ("eps is not used: divide by sqrt(mean(x ** 2) + eps) with the `eps` argument.", variant(ignore_eps=True)),
            ("the mean square is divided by C - 1: it is the plain mean of x ** 2 over the C channels.",
             variant(unbiased=True)),
            ("you forgot the learned scale: multiply by `weight`.", variant(use_weight=False)),
        ]
        if len(shape) == 3:
            mistakes.insert(1, ("you normalised over the wrong axis (the positions, dim=-2): RMSNorm rescales each "
                                "token's vector, over the last dim (dim=-1).", variant(dim=-2)))
        expect_tensor_like(check, out, variant(), "the output" + where, [(m + where, w) for m, w in mistakes])
    passed(check, len(cases))


# --- Feed-forward network -----------------------------------------------------------------------------

def _build(check: str, cls, *args) -> nn.Module:
    module = call_student(check, cls, *args)
    if not isinstance(module, nn.Module):
        raise CheckFailed(check, f"`{fn_name(cls)}{args}` should build an nn.Module, but gave {describe(module)}.")
    return module.double().eval()


def _copy_parameters(check: str, name: str, ref: nn.Module, student: nn.Module) -> None:
    """Give the student's layers the reference's weights, saying clearly which layer is missing or misshapen."""
    theirs = dict(student.named_parameters())
    for key, ours in ref.named_parameters():
        layer = key.rsplit(".", 1)[0]
        if key not in theirs:
            raise CheckFailed(check, f"`{name}` should have a parameter `{key}` (the layer `self.{layer}` as in "
                                     f"the reference, shape {tuple(ours.shape)}), but it has none by that name.")
        if theirs[key].shape != ours.shape:
            raise CheckFailed(check, f"`{key}` in `{name}` should have shape {tuple(ours.shape)}, but it has shape "
                                     f"{tuple(theirs[key].shape)}: check the sizes of `self.{layer}`.")
        with torch.no_grad():
            theirs[key].copy_(ours)


def _ffn_variant(ref: FeedForward, x, act=F.gelu, act_after_fc2=False, act_first=False, residual=False):
    if act_first:                                                    # GELU on the input, none in between
        return ref.fc2(ref.fc1(act(x)))
    h = ref.fc1(x)
    h = h if act is None else act(h)
    y = ref.fc2(h)
    y = act(y) if act_after_fc2 else y
    return x + y if residual else y


def check_feed_forward(cls) -> None:
    """Check ``cls(d_model, d_ff)`` with ``fc1``, ``fc2`` and ``forward(x)``: fc2(GELU(fc1(x))) at every position."""
    check = "check_feed_forward"
    name = fn_name(cls)
    cases = [(2, 5, 8, 32), (1, 3, 6, 10), (3, 1, 4, 16)]             # (B, T, d_model, d_ff)
    g = torch.Generator().manual_seed(8)
    for B, T, C, d_ff in cases:
        torch.manual_seed(C + d_ff)
        ref = FeedForward(C, d_ff).double().eval()
        student = _build(check, cls, C, d_ff)
        _copy_parameters(check, name, ref, student)
        x = torch.randn(B, T, C, generator=g, dtype=torch.float64)
        out = call_student(check, student, x.clone())
        expect_deterministic(check, out, student, x.clone())
        where = f" (test: x of shape {(B, T, C)}, d_ff={d_ff})"
        with torch.no_grad():
            tanh_gelu = _ffn_variant(ref, x, act=lambda h: F.gelu(h, approximate="tanh"))
            if isinstance(out, torch.Tensor) and out.shape == tanh_gelu.shape and torch.allclose(
                    out.detach().double(), tanh_gelu, atol=1e-5, rtol=1e-4):
                continue                                             # GPT-2's tanh GELU is fine too
            expect_tensor_like(check, out, _ffn_variant(ref, x), "the output (B, T, d_model)" + where, [
                ("there is no activation between fc1 and fc2, so the two layers collapse into one linear map: "
                 "apply GELU (nn.GELU()) to fc1's output." + where, _ffn_variant(ref, x, act=None)),
                ("you used ReLU; this exercise asks for GELU (nn.GELU() or F.gelu)." + where,
                 _ffn_variant(ref, x, act=F.relu)),
                ("the activation is also applied after fc2: the output of fc2 goes straight back into the "
                 "residual stream, so apply GELU only between fc1 and fc2." + where,
                 _ffn_variant(ref, x, act_after_fc2=True)),
                ("the output still has d_ff channels: project back to d_model with fc2." + where,
                 F.gelu(ref.fc1(x))),
                ("the activation comes before the first linear layer: GELU goes between fc1 and fc2, "
                 "fc2(GELU(fc1(x)))." + where, _ffn_variant(ref, x, act_first=True)),
                ("there is a residual inside the feed-forward network (x + ...): the block adds the residual; "
                 "the FFN itself returns only fc2(GELU(fc1(x)))." + where, _ffn_variant(ref, x, residual=True)),
            ])
    passed(check, len(cases))


# --- SwiGLU feed-forward network -----------------------------------------------------------------------

class _SwiGLU(nn.Module):
    """The reference: down(SiLU(gate(x)) * up(x)), no biases (LLaMA's feed-forward network)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=False)
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x, kind="ok"):
        gate, up = self.gate(x), self.up(x)                             # (B, T, d_ff) each
        if kind == "swapped":
            gate, up = up, gate
        act = {"gelu": F.gelu, "sigmoid": torch.sigmoid, "relu": F.relu, "none": lambda h: h}.get(kind, F.silu)
        if kind == "sum":
            return self.down(F.silu(gate) + up)
        if kind == "silu_after":
            return self.down(F.silu(gate * up))
        if kind == "no_gate":
            return self.down(F.silu(up))
        return self.down(act(gate) * up)                                # (B, T, d_model)


_SWIGLU_MISTAKES = {
    "swapped": "the SiLU is on the wrong branch: it goes on gate(x), and up(x) multiplies it unchanged: "
               "down(silu(gate(x)) * up(x)).",
    "sigmoid": "you gated with a sigmoid (the original GLU): SwiGLU uses SiLU, silu(h) = h * sigmoid(h) (F.silu).",
    "gelu": "you used GELU (that variant is GEGLU): SwiGLU uses SiLU (F.silu).",
    "relu": "you used ReLU (that variant is ReGLU): SwiGLU uses SiLU (F.silu).",
    "none": "there is no activation on the gate: down(silu(gate(x)) * up(x)).",
    "sum": "the two branches are added: the gate MULTIPLIES the other branch, silu(gate(x)) * up(x).",
    "silu_after": "the SiLU is applied after the product: it acts on gate(x) alone, silu(gate(x)) * up(x).",
    "no_gate": "the gate branch is missing: the output is down(silu(gate(x)) * up(x)), with two input layers.",
}


def check_swiglu(cls) -> None:
    """Check ``cls(d_model, d_ff)`` with ``gate``, ``up``, ``down`` (no biases): down(SiLU(gate(x)) * up(x))."""
    check = "check_swiglu"
    name = fn_name(cls)
    cases = [(2, 5, 8, 12), (1, 3, 6, 10), (3, 1, 4, 16)]              # (B, T, d_model, d_ff)
    g = torch.Generator().manual_seed(9)
    for B, T, C, d_ff in cases:
        torch.manual_seed(C + d_ff)
        ref = _SwiGLU(C, d_ff).double().eval()
        student = _build(check, cls, C, d_ff)
        extra = sorted(k for k, _ in student.named_parameters() if k.endswith("bias"))
        if extra:
            raise CheckFailed(check, f"`{name}` has biases ({', '.join(extra)}): SwiGLU's layers have none, "
                                     f"nn.Linear(..., bias=False).")
        _copy_parameters(check, name, ref, student)
        x = torch.randn(B, T, C, generator=g, dtype=torch.float64)
        out = call_student(check, student, x.clone())
        expect_deterministic(check, out, student, x.clone())
        where = f" (test: x of shape {(B, T, C)}, d_ff={d_ff})"
        with torch.no_grad():
            expect_tensor_like(check, out, ref(x), "the output (B, T, d_model)" + where,
                               [(m + where, ref(x, kind)) for kind, m in _SWIGLU_MISTAKES.items()])
    passed(check, len(cases))


# --- Pre-LN Transformer block -------------------------------------------------------------------------

def _block_variant(ref: TransformerBlock, x, mask, kind: str = "pre-LN"):
    """The reference pre-LN block's forward pass written out, and the classic mistakes by name."""
    attn = lambda h: ref.attn(h, mask=mask)[0]                   # noqa: E731
    ln1, ln2, ffn = ref.ln1, ref.ln2, ref.ffn
    if kind == "pre-LN":
        h = x + attn(ln1(x))
        return h + ffn(ln2(h))
    if kind == "no attention residual":
        h = attn(ln1(x))
        return h + ffn(ln2(h))
    if kind == "no ffn residual":
        h = x + attn(ln1(x))
        return ffn(ln2(h))
    if kind == "no residuals":
        return ffn(ln2(attn(ln1(x))))
    if kind == "post-LN":
        h = ln1(x + attn(x))
        return ln2(h + ffn(h))
    if kind == "norm after add":
        h = ln1(x + attn(ln1(x)))
        return ln2(h + ffn(ln2(h)))
    if kind == "normalised skip":
        h = ln1(x)
        h = h + attn(h)
        h2 = ln2(h)
        return h2 + ffn(h2)
    if kind == "ffn residual on input":
        h = x + attn(ln1(x))
        return x + ffn(ln2(h))
    if kind == "ffn reads input":
        h = x + attn(ln1(x))
        return h + ffn(ln2(x))
    if kind == "swapped norms":
        h = x + attn(ln2(x))
        return h + ffn(ln1(h))
    if kind == "ln1 twice":
        h = x + attn(ln1(x))
        return h + ffn(ln1(h))
    if kind == "ln2 twice":
        h = x + attn(ln2(x))
        return h + ffn(ln2(h))
    if kind == "no mask":
        return _block_variant(ref, x, None)
    raise ValueError(f"unknown variant {kind!r}")


_BLOCK_MISTAKES = {
    "no attention residual": "the attention sub-layer has no residual connection: add its output to its input, "
                             "x = x + self.attn(self.ln1(x), ...)[0].",
    "no ffn residual": "the feed-forward sub-layer has no residual connection: x = x + self.ffn(self.ln2(x)).",
    "no residuals": "both residual connections are missing: each sub-layer's output is added to its input, "
                    "x = x + sublayer(norm(x)).",
    "post-LN": "this is a post-LN block (LayerNorm after the residual add, as in the 2017 paper); the exercise "
               "asks for pre-LN: x = x + attn(ln1(x)), then x = x + ffn(ln2(x)).",
    "norm after add": "the LayerNorm is also applied after the residual add: in a pre-LN block only the "
                      "sub-layer's input is normalised, the sum x + sublayer(ln(x)) is left as it is.",
    "normalised skip": "the residual carries the normalised x (you overwrote x with ln1(x)): keep the "
                       "un-normalised x for the skip, x = x + self.attn(self.ln1(x), ...)[0].",
    "ffn residual on input": "the feed-forward residual is added to the block's input instead of the output of the "
                             "attention sub-layer: h = x + attn(ln1(x)); return h + ffn(ln2(h)).",
    "ffn reads input": "the feed-forward sub-layer reads the block's input instead of the output of the attention "
                       "sub-layer: h = x + attn(ln1(x)); return h + ffn(ln2(h)).",
    "swapped norms": "ln1 and ln2 are swapped: ln1 goes before the attention, ln2 before the feed-forward network.",
    "ln1 twice": "ln1 normalises the input of both sub-layers: each has its own LayerNorm, ln1 before the "
                 "attention and ln2 before the feed-forward network.",
    "ln2 twice": "ln2 normalises the input of both sub-layers: each has its own LayerNorm, ln1 before the "
                 "attention and ln2 before the feed-forward network.",
    "no mask": "your block ignores `mask`: pass it on, self.attn(self.ln1(x), mask=mask).",
}


def check_transformer_block(cls) -> None:
    """Check a pre-LN block ``cls(d_model, n_heads)`` with ``attn``, ``ln1``, ``ln2``, ``ffn`` (``fc1``, ``fc2``)
    and ``forward(x, mask=None) -> (B, T, C)``.

    The student's layers get the weights of a reference :class:`TransformerBlock`, then both run on the
    same inputs (in eval mode, so dropout is off).
    """
    check = "check_transformer_block"
    name = fn_name(cls)
    cases = [(2, 5, 16, 4, None), (1, 6, 8, 2, "causal"), (3, 4, 12, 3, "padding"), (2, 3, 8, 1, None)]
    g = torch.Generator().manual_seed(9)
    for B, T, C, H, mask_kind in cases:
        torch.manual_seed(C + H)
        ref = TransformerBlock(C, H).double().eval()
        with torch.no_grad():                                     # distinct LayerNorms, so swaps show up
            for norm in (ref.ln1, ref.ln2):
                norm.weight.uniform_(0.5, 1.5, generator=g)
                norm.bias.uniform_(-0.5, 0.5, generator=g)
        student = _build(check, cls, C, H)
        _copy_parameters(check, name, ref, student)
        x = 2 * torch.randn(B, T, C, generator=g, dtype=torch.float64) + 1
        if mask_kind == "causal":
            mask = torch.ones(T, T, dtype=torch.bool).tril()                       # (T, T)
        elif mask_kind == "padding":
            mask = (torch.arange(T) < torch.tensor([T, 2, 3])[:, None])[:, None, None, :]   # (B, 1, 1, T)
        else:
            mask = None
        kwargs = {} if mask is None else {"mask": mask}
        try:
            out = call_student(check, student, x.clone(), **kwargs)
        except CheckFailed as failure:
            if "tuple" in failure.message:
                raise CheckFailed(check, "self.attn(...) returns a pair (out, weights): add only `out` to the "
                                         "residual, e.g. self.attn(self.ln1(x), mask=mask)[0].") from None
            raise
        expect_deterministic(check, out, student, x.clone(), **kwargs)
        where = f" (test: B={B}, T={T}, d_model={C}, n_heads={H}{f', {mask_kind} mask' if mask_kind else ''})"
        with torch.no_grad():
            tanh_ref = TransformerBlock(C, H, activation="gelu_tanh").double().eval()
            tanh_ref.load_state_dict(ref.state_dict())
            tanh_expected = _block_variant(tanh_ref, x, mask)
            if isinstance(out, torch.Tensor) and out.shape == x.shape and torch.allclose(
                    out.detach().double(), tanh_expected, atol=1e-5, rtol=1e-4):
                continue                                          # an FFN with GPT-2's tanh GELU is fine too
            kinds = [k for k in _BLOCK_MISTAKES if k != "no mask" or mask is not None]
            expect_tensor_like(check, out, _block_variant(ref, x, mask), "the output (B, T, C)" + where,
                               [(_BLOCK_MISTAKES[k] + where, _block_variant(ref, x, mask, k)) for k in kinds])
    passed(check, len(cases))


# --- A parallel block (GPT-J / PaLM style) ------------------------------------------------------------

def _parallel_variant(ref: TransformerBlock, x, mask, kind="ok"):
    """x + attn(ln(x)) + ffn(ln(x)) with one shared LayerNorm (ref.ln1), plus the classic mistakes."""
    attn = lambda h, m=mask: ref.attn(h, mask=m)[0]               # noqa: E731
    h = ref.ln1(x)
    if kind == "sequential":                                      # the pre-LN block: ffn reads x + attn(...)
        y = x + attn(h)
        return y + ref.ffn(ref.ln1(y))
    if kind == "no_residual":
        return attn(h) + ref.ffn(h)
    if kind == "normalised_skip":
        return h + attn(h) + ref.ffn(h)
    if kind == "ffn_raw":
        return x + attn(h) + ref.ffn(x)
    if kind == "attn_raw":
        return x + attn(x) + ref.ffn(h)
    if kind == "norm_after":
        return ref.ln1(x + attn(x) + ref.ffn(x))
    if kind == "no_mask":
        return x + attn(h, None) + ref.ffn(h)
    return x + attn(h) + ref.ffn(h)


_PARALLEL_MISTAKES = {
    "sequential": "this is the sequential pre-LN block (the feed-forward reads x + attn(...)): in a parallel block "
                  "both sub-layers read the same h = self.ln(x), and both outputs are added to x.",
    "no_residual": "the residual is missing: return x + attn(h) + ffn(h), not only the two sub-layers.",
    "normalised_skip": "the residual carries the normalised h: add the sub-layers to the original x, "
                       "x + attn(h) + ffn(h) with h = self.ln(x).",
    "ffn_raw": "the feed-forward network reads the un-normalised x: it reads h = self.ln(x), like the attention.",
    "attn_raw": "the attention reads the un-normalised x: it reads h = self.ln(x), like the feed-forward network.",
    "norm_after": "the LayerNorm is applied after the sum (post-LN): normalise the sub-layers' input, "
                  "h = self.ln(x), and leave x + attn(h) + ffn(h) as it is.",
    "no_mask": "your block ignores `mask`: pass it on, self.attn(h, mask=mask).",
}


def check_parallel_block(cls) -> None:
    """Check a parallel block ``cls(d_model, n_heads)`` with ``attn``, ``ln``, ``ffn`` (``fc1``, ``fc2``) and
    ``forward(x, mask=None) = x + attn(ln(x)) + ffn(ln(x))`` (GPT-J and PaLM use this layout)."""
    check = "check_parallel_block"
    name = fn_name(cls)
    cases = [(2, 5, 16, 4, None), (1, 6, 8, 2, "causal"), (3, 4, 12, 3, "padding")]
    g = torch.Generator().manual_seed(13)
    for B, T, C, H, mask_kind in cases:
        torch.manual_seed(C + H + 1)
        ref = TransformerBlock(C, H).double().eval()
        with torch.no_grad():
            ref.ln1.weight.uniform_(0.5, 1.5, generator=g)
            ref.ln1.bias.uniform_(-0.5, 0.5, generator=g)
        student = _build(check, cls, C, H)
        theirs = dict(student.named_parameters())
        mapping = {key.replace("ln1.", "ln."): value for key, value in ref.named_parameters()
                   if not key.startswith("ln2.")}
        for key, value in mapping.items():
            if key not in theirs:
                raise CheckFailed(check, f"`{name}` should have a parameter `{key}` (the layers `self.attn`, "
                                         "`self.ln`, "
                                         f"`self.ffn` of the exercise), but it has none by that name.")
            if theirs[key].shape != value.shape:
                raise CheckFailed(check, f"`{key}` in `{name}` should have shape {tuple(value.shape)}, but it has "
                                         f"{tuple(theirs[key].shape)}.")
            with torch.no_grad():
                theirs[key].copy_(value)
        x = 2 * torch.randn(B, T, C, generator=g, dtype=torch.float64) + 1
        if mask_kind == "causal":
            mask = torch.ones(T, T, dtype=torch.bool).tril()
        elif mask_kind == "padding":
            mask = (torch.arange(T) < torch.tensor([T, 2, 3])[:, None])[:, None, None, :]
        else:
            mask = None
        kwargs = {} if mask is None else {"mask": mask}
        try:
            out = call_student(check, student, x.clone(), **kwargs)
        except CheckFailed as failure:
            if "tuple" in failure.message:
                raise CheckFailed(check, "self.attn(...) returns a pair (out, weights): add only `out`, "
                                         "e.g. self.attn(h, mask=mask)[0].") from None
            raise
        expect_deterministic(check, out, student, x.clone(), **kwargs)
        where = f" (test: B={B}, T={T}, d_model={C}, n_heads={H}{f', {mask_kind} mask' if mask_kind else ''})"
        with torch.no_grad():
            kinds = [k for k in _PARALLEL_MISTAKES if k != "no_mask" or mask is not None]
            expect_tensor_like(check, out, _parallel_variant(ref, x, mask), "the output (B, T, C)" + where,
                               [(_PARALLEL_MISTAKES[k] + where, _parallel_variant(ref, x, mask, k)) for k in kinds])
    passed(check, len(cases))
