"""Verifying an experiment's stated conclusion: the measured numbers, then the yes/no conclusions."""
from __future__ import annotations

from collections.abc import Mapping

from ..validation import describe, is_number
from ._core import CheckFailed, call_student


def run_experiment(check: str, experiment):
    """The student's stated results: ``experiment()`` runs the experiment and returns them (a dict is taken as is)."""
    return call_student(check, experiment) if callable(experiment) else experiment


def expect_conclusion(check: str, stated, measured: dict, conclusions: dict, rel: float = 0.05,
                      abs_tol: float = 1e-6) -> None:
    """``stated``: the student's dict. ``measured``: name -> the check's own measurement (a number);
    ``conclusions``: name -> (the right bool, why, in words)."""
    if not isinstance(stated, Mapping):
        raise CheckFailed(check, "state your results as a dict with the keys "
                                 f"{sorted(measured) + sorted(conclusions)}, "
                                 f"but got {describe(stated)}.")
    missing = [key for key in [*measured, *conclusions] if key not in stated]
    if missing:
        raise CheckFailed(check, f"your results miss the key(s) {missing}: fill in every entry of the dict.")
    for key, value in measured.items():
        got = stated[key]
        if not (is_number(got) or (not isinstance(got, bool) and hasattr(got, "item"))):
            raise CheckFailed(check, f"`{key}` should be the number you measured, but it is {describe(got)}.")
        got = float(got)
        if abs(got - value) > max(abs_tol, rel * abs(value)):
            raise CheckFailed(check, f"`{key}` = {got:.4g}, but re-running the experiment gives {value:.4g}: run the "
                                     f"experiment cell as given and copy the number it prints (or store the variable).")
    for key, (right, why) in conclusions.items():
        got = stated[key]
        if not isinstance(got, bool):
            raise CheckFailed(check, f"`{key}` should be True or False, but it is {describe(got)}.")
        if got != right:
            raise CheckFailed(check, f"`{key}` = {got}, but the measurements say {right}: {why}")
