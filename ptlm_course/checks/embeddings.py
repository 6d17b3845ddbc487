"""Checks for exercises/02_embeddings_and_positions.ipynb: a sinusoidal layout, and an experiment on word order."""
from __future__ import annotations

import torch

from ..attention import MultiHeadAttention
from ..embeddings import sinusoidal_table
from ..validation import is_number
from ._core import CheckFailed, call_student, expect_tensor_like, passed
from ._experiments import expect_conclusion, run_experiment

__all__ = ["check_sinusoidal_halves", "order_experiment_setup", "check_order_gap", "check_order_experiment"]


def _halves(max_len, d_model, cos_first=False, i_over_d=False, start=0, base=10000.0, sin_only=False):
    """[sin | cos] halves: column i and column d/2 + i share the frequency 1 / base^(2i/d)."""
    position = torch.arange(start, start + max_len, dtype=torch.float64)[:, None]        # (L, 1)
    i = torch.arange(d_model // 2, dtype=torch.float64)                                   # (d/2,)
    exponent = i / d_model if i_over_d else 2 * i / d_model
    angle = position * base ** -exponent                                                  # (L, d/2)
    sin, cos = torch.sin(angle), torch.cos(angle)
    if sin_only:
        cos = sin
    return torch.cat([cos, sin] if cos_first else [sin, cos], dim=-1)                     # (L, d)


_HALVES_MISTAKES = [
    ("this is the interleaved layout of the lesson (sin in even columns, cos in odd ones); the task asks for "
     "halves: all the sines first, PE[:, :d/2], then all the cosines, PE[:, d/2:].",
     lambda L, d: sinusoidal_table(L, d).double()),
    ("the halves are swapped: the sines come first (PE[:, :d/2]), the cosines second.",
     lambda L, d: _halves(L, d, cos_first=True)),
    ("the frequencies use i / d_model; the exponent is 2i / d_model (the pair index i runs over d/2 pairs).",
     lambda L, d: _halves(L, d, i_over_d=True)),
    ("the positions start at 1: the first position is 0 (torch.arange(max_len)).",
     lambda L, d: _halves(L, d, start=1)),
    ("both halves hold sines: the second half is cos(pos * frequency).",
     lambda L, d: _halves(L, d, sin_only=True)),
]


def check_sinusoidal_halves(fn) -> None:
    """Check ``fn(max_len, d_model) -> (max_len, d_model)``: PE[p, i] = sin(p w_i), PE[p, d/2 + i] = cos(p w_i),
    w_i = 10000^(-2i/d)."""
    check = "check_sinusoidal_halves"
    cases = [(6, 8), (50, 16), (3, 2), (20, 64)]
    for L, d in cases:
        out = call_student(check, fn, L, d)
        call = f"fn(max_len={L}, d_model={d})"
        if isinstance(out, torch.Tensor) and out.shape == (d, L) and L != d:
            raise CheckFailed(check, f"{call} has shape {(d, L)}: rows are positions, so the shape is (max_len, "
                                     "d_model).")
        expect_tensor_like(check, out, _halves(L, d), call, [(f"{call}: {m}", w(L, d)) for m, w in _HALVES_MISTAKES],
                           atol=1e-4, rtol=1e-4)
    passed(check, len(cases))


# --- the experiment: does attention notice word order? --------------------------------------------------

def order_experiment_setup():
    """The experiment's fixed ingredients: (layer, x (1, 10, 32), perm (10,), pe (10, 32))."""
    torch.manual_seed(0)
    layer = MultiHeadAttention(32, 4).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 10, 32, generator=g)
    perm = torch.randperm(10, generator=g)
    return layer, x, perm, sinusoidal_table(10, 32)


def _order_gap(layer, x, perm, pe=None, kind="ok"):
    """max |f(x[:, perm]) - f(x)[:, perm]| with f(x) = layer(x + pe); positions belong to slots, not tokens."""
    add = (lambda h: h) if pe is None else (lambda h: h + pe)
    with torch.no_grad():
        out = layer(add(x))[0]                                                  # (B, T, C)
        if kind == "pe_moves_with_tokens":
            out_permuted = layer(add(x)[:, perm])[0]
        else:
            out_permuted = layer(add(x[:, perm]))[0]
        reference = out if kind == "not_permuted" else out[:, perm]
        diff = (out_permuted - reference).abs()
        return float(diff.mean() if kind == "mean" else diff.max())


_GAP_MISTAKES = {
    "not_permuted": "you compared f(x[:, perm]) with f(x) itself; permuting the input permutes the output rows, "
                    "so compare with f(x)[:, perm].",
    "pe_moves_with_tokens": "the positions were added before permuting, so they moved with the tokens: positions "
                            "belong to the slots, so permute x first, then add pe.",
    "mean": "you returned the mean difference; the task asks for the largest one (.max()).",
}


def check_order_gap(fn) -> None:
    """Check ``fn(layer, x, perm, pe=None) -> float``: max |f(x[:, perm]) - f(x)[:, perm]|, f(x) = layer(x + pe)[0]."""
    check = "check_order_gap"
    torch.manual_seed(3)
    layer = MultiHeadAttention(16, 2).eval()
    g = torch.Generator().manual_seed(3)
    n_tests = 0
    for T in (5, 8):
        x = torch.randn(2, T, 16, generator=g)
        perm = torch.randperm(T, generator=g)
        for pe in (None, sinusoidal_table(T, 16)):
            got = call_student(check, fn, layer, x.clone(), perm.clone(), pe)
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            if not is_number(got):
                raise CheckFailed(check, f"the gap should be one number (a float), but it is {type(got).__name__}.")
            want = _order_gap(layer, x, perm, pe)
            where = f" (test: x of shape {(2, T, 16)}, {'with' if pe is not None else 'without'} positions)"
            if abs(got - want) <= 1e-5 + 1e-3 * abs(want):
                n_tests += 1
                continue
            for kind, message in _GAP_MISTAKES.items():
                wrong = _order_gap(layer, x, perm, pe, kind)
                if abs(got - wrong) <= 1e-5 + 1e-3 * abs(wrong):
                    raise CheckFailed(check, message + where)
            raise CheckFailed(check, f"the gap is {got:.4g}, but it should be {want:.4g}" + where + ".")
    passed(check, n_tests)


def check_order_experiment(experiment) -> None:
    """Check the stated results of the word-order experiment against a re-run of it."""
    check = "check_order_experiment"
    results = run_experiment(check, experiment)            # first: an unwritten one fails fast
    layer, x, perm, pe = order_experiment_setup()
    without, with_pe = _order_gap(layer, x, perm), _order_gap(layer, x, perm, pe)
    expect_conclusion(check, results, {"gap_without_positions": without, "gap_with_positions": with_pe}, {
        "attention_alone_ignores_order": (without < 1e-4, "without positions, shuffling the tokens only shuffles the "
                                          "outputs (the gap is at rounding level), so attention alone cannot tell "
                                          "the order."),
        "positions_make_it_order_aware": (with_pe > 1e-2, "with positions added, the shuffled sentence gives "
                                          "different outputs, not just shuffled ones."),
    }, abs_tol=1e-5)
    passed(check, 4)
