"""The machinery behind the exercise checks.

A check calls the student's function on varied inputs, compares with the reference and, when
something is off, raises :class:`CheckFailed` with a plain-words explanation. Where the wrong
answer matches a known mistake (no scaling, wrong axis, ...), the message names that mistake.
"""
from __future__ import annotations

import inspect
import re
import warnings
from typing import Callable, Iterable

import torch

from ..validation import describe


class CheckFailed(AssertionError):
    """A check found a mistake. Notebooks show only the friendly message, not a traceback."""

    def __init__(self, check: str, message: str):
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message

    def _render_traceback_(self):  # IPython calls this instead of printing the traceback
        return [f"❌ {self.check} failed: {self.message}"]


def fn_name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def call_student(check: str, fn: Callable, *args, **kwargs):
    """Call the student's code, turning exceptions into friendly failures."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(
            check, f"`{fn_name(fn)}` is not written yet: replace `raise NotImplementedError()` with your code."
        ) from None
    except CheckFailed:
        raise
    except Exception as error:  # noqa: BLE001 - every student error becomes a message
        inputs = ", ".join([describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()])
        hint = _hint(error, caught, fn)
        raise CheckFailed(
            check, f"`{fn_name(fn)}` raised {type(error).__name__}: {error}\n   (called with {inputs}){hint}"
        ) from None


_DOT_T = ("\n   Hint: `.T` on a tensor with more than 2 dims reverses *all* its dims (batch and heads too); "
          "transpose the last two with `.transpose(-2, -1)` (or `.mT`).")


_TRANSPOSE_1_2 = ("\n   Hint: `.transpose(1, 2)` in a product swaps dims 1 and 2, the last two only for 3-dim tensors: "
                  "on keys of shape (B, H, T, d) it mixes heads and positions, and a 2-dim tensor has no dim 2. "
                  "Transpose the last two dims, `k.transpose(-2, -1)`, whatever the number of dims.")


def _hint(error: Exception, caught, fn=None) -> str:
    """A plain-words hint for errors whose cause is a classic mistake."""
    if any("x.T" in str(w.message) for w in caught) or "x.T" in str(error):
        return _DOT_T
    if not isinstance(error, (RuntimeError, IndexError)):                  # shape errors
        return ""
    source = _source(fn)
    # PyTorch warns about `.T` on a 3+-dim tensor only once per process: look for it in the code as well
    if re.search(r"\.T\b(?!\w)", source):
        return _DOT_T
    if re.search(r"(@|matmul\()\s*\w+\.transpose\(\s*1\s*,\s*2\s*\)", source):
        return _TRANSPOSE_1_2
    return ""


def _source(fn) -> str:
    """The source of a function, method, class or module instance ('' when Python cannot find it)."""
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isclass(fn) else type(fn)
    try:
        return inspect.getsource(target)
    except (OSError, TypeError):
        return ""


def expect_tensor_like(check: str, actual, expected: torch.Tensor, what: str,
                       mistakes: Iterable[tuple[str, torch.Tensor]] = (),
                       atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Compare the student's tensor with the reference; name a known mistake when one matches."""
    if not isinstance(actual, torch.Tensor):
        raise CheckFailed(check, f"{what} should be a torch.Tensor, but it is {describe(actual)}.")
    actual = actual.detach()
    mistakes = list(mistakes)
    if actual.shape != expected.shape:
        for explanation, wrong in mistakes:
            if wrong.shape == actual.shape and _close(actual, wrong, atol, rtol):
                raise CheckFailed(check, explanation)
        raise CheckFailed(
            check, f"{what} should have shape {tuple(expected.shape)}, but it has shape {tuple(actual.shape)}."
        )
    if actual.dtype == torch.bool or expected.dtype == torch.bool:
        if actual.dtype != expected.dtype:
            raise CheckFailed(check, f"{what} should have dtype {expected.dtype}, but it has dtype {actual.dtype}.")
        if not torch.equal(actual, expected):
            for explanation, wrong in mistakes:
                if wrong.shape == actual.shape and torch.equal(actual, wrong):
                    raise CheckFailed(check, explanation)
            wrong_at = (actual != expected).nonzero()[0].tolist()
            raise CheckFailed(check, f"{what} is wrong at index {tuple(wrong_at)}: expected {expected.tolist()}, "
                                     f"got {actual.tolist()}." if expected.numel() <= 36 else
                              f"{what} is wrong at index {tuple(wrong_at)}.")
        return
    if not actual.is_floating_point() and expected.is_floating_point():
        raise CheckFailed(check, f"{what} should hold floating-point numbers, but its dtype is {actual.dtype}.")
    if _close(actual, expected, atol, rtol):
        return
    for explanation, wrong in mistakes:
        if wrong.shape == actual.shape and _close(actual, wrong, atol, rtol):
            raise CheckFailed(check, explanation)
    if torch.isnan(actual).any() and not torch.isnan(expected).any():
        raise CheckFailed(check, f"{what} contains NaN values (a 0/0 or inf - inf somewhere?).")
    infinities = _infinity_mismatch(actual.to(torch.float64), expected.to(torch.float64))
    if infinities:
        raise CheckFailed(check, f"{what} has the right shape but wrong values: {infinities}.")
    where, largest = _largest_difference(actual.to(torch.float64), expected.to(torch.float64))
    raise CheckFailed(
        check,
        f"{what} has the right shape but wrong values: at index {where} it is {actual[where].item():.5g}, "
        f"the reference gives {expected[where].item():.5g} (largest difference {largest}).",
    )


def _infinity_mismatch(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """'' when the infinities sit in the same places in both tensors, else where one has them and the other not."""
    parts = []
    for value, name in ((float("-inf"), "-inf"), (float("inf"), "+inf")):
        found, wanted = actual == value, expected == value
        for spots, says, other, their in ((found & ~wanted, f"it is {name}", "the reference is finite",
                                           ("the reference gives", expected)),
                                          (wanted & ~found, f"it is not {name}", f"the reference has {name}",
                                           ("it gives", actual))):
            places = spots.nonzero().tolist()
            if places:
                first = tuple(places[0])
                count = f"{len(places)} position{'s' * (len(places) > 1)}"
                where = ", ".join(str(tuple(i)) for i in places[:4]) + (", ..." if len(places) > 4 else "")
                parts.append(f"{says} at {count} where {other} (index {where}; "
                             f"{their[0]} {their[1][first].item():.5g} at {first})")
    return "; ".join(parts)


def _largest_difference(actual: torch.Tensor, expected: torch.Tensor) -> tuple[tuple, str]:
    """Where the two tensors differ most, and by how much; equal infinities count as no difference,
    an infinity against a finite number (or NaN against a number) as the largest one."""
    same = (actual == expected) | (torch.isnan(actual) & torch.isnan(expected))
    diff = (actual - expected).abs().nan_to_num(nan=float("inf"), posinf=float("inf"))
    diff = diff.masked_fill(same, 0.0)
    where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    largest = diff.max().item()
    return where, ("infinite: one is ±inf where the other is finite" if largest == float("inf") else f"{largest:.3g}")


def expect_deterministic(check: str, first, module, *args, **kwargs) -> None:
    """A module in eval mode gives the same output twice; if not, dropout (or other noise) is always on."""
    again = call_student(check, module, *args, **kwargs)
    first, again = (r[0] if isinstance(r, (tuple, list)) and r else r for r in (first, again))
    if isinstance(first, torch.Tensor) and isinstance(again, torch.Tensor) and first.shape == again.shape \
            and not torch.allclose(first.detach(), again.detach(), equal_nan=True):
        raise CheckFailed(check, "two calls in eval mode give different outputs: dropout is always on. Use "
                                 "nn.Dropout, or F.dropout(..., training=self.training), so that model.eval() "
                                 "switches it off.")


def expect_equal(check: str, actual, expected, what: str,
                 mistakes: Iterable[tuple[str, object]] = ()) -> None:
    """Compare plain Python values (ids, lists, dicts) exactly."""
    if actual == expected:
        return
    for explanation, wrong in mistakes:
        if actual == wrong:
            raise CheckFailed(check, explanation)
    raise CheckFailed(check, f"{what} should be {_short(expected)}, but it is {_short(actual)}.")


def passed(check: str, n_tests: int) -> None:
    print(f"✅ {check}: all {n_tests} tests passed.")


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    if a.dtype == torch.bool or b.dtype == torch.bool:
        return a.dtype == b.dtype and torch.equal(a, b)
    return torch.allclose(a.to(torch.float64), b.to(torch.float64), atol=atol, rtol=rtol, equal_nan=False)


def _short(value, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."
