"""Denoising objectives for pretraining an encoder–decoder (Part 5): the decoder writes what the noise hid.

The encoder reads a corrupted text; the decoder writes what was hidden.

- **Span corruption** (T5): about ``noise_density`` of the tokens, in spans of ``mean_span_length`` on average, are
  cut out; each span becomes one *sentinel* id in the input, and the target lists every sentinel followed by the
  tokens it replaced (then a final sentinel). Exactly ``round(n * noise_density)`` tokens are hidden.
- **Text infilling** (BART): spans with Poisson(``poisson_lambda``) lengths are each replaced by a single
  ``[MASK]`` (a length-0 span inserts one), until about ``mask_ratio`` of the tokens are hidden; the target is the
  whole original text, so the decoder must also tell how many tokens each ``[MASK]`` stood for.

Both work on one sequence (a list of ids) and draw every random number from ``generator``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .validation import describe, is_int, is_number

__all__ = ["random_partition", "span_corruption", "text_infilling"]


def random_partition(total: int, parts: int, generator: torch.Generator | None = None) -> list[int]:
    """``parts`` positive integers that sum to ``total``, uniformly among all such splits."""
    if not (is_int(total) and is_int(parts)) or parts < 1 or total < parts:
        raise ValueError(f"Cannot split {describe(total)} into {describe(parts)} positive parts: "
                         f"expected integers with 1 <= parts <= total.")
    cuts = (torch.randperm(total - 1, generator=generator)[:parts - 1] + 1).sort().values.tolist()
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def span_corruption(ids: Sequence[int], sentinels: Sequence[int], noise_density: float = 0.15,
                    mean_span_length: float = 3.0, generator: torch.Generator | None = None
                    ) -> tuple[list[int], list[int]]:
    """T5's objective: (input ids with each hidden span replaced by a sentinel, target ids).

    ``sentinels`` are the ids to use in order (T5: <extra_id_0>, <extra_id_1>, ...); the target is
    ``s0 span0 s1 span1 ... s_k`` with ``k`` the number of spans.
    """
    ids = _check_ids(ids)
    _check_fraction(noise_density, "noise_density")
    if not is_number(mean_span_length) or mean_span_length < 1:
        raise ValueError(f"`mean_span_length` should be a number >= 1, but got {describe(mean_span_length)}.")
    n = len(ids)
    if n < 2:
        raise ValueError(f"`ids` should hold at least 2 tokens (one hidden, one kept), but it has {n}.")
    n_noise = min(max(1, round(n * noise_density)), n - 1)
    n_spans = max(1, min(round(n_noise / mean_span_length), n_noise, n - n_noise))
    if len(sentinels) < n_spans + 1:
        raise ValueError(f"{n_spans} spans need {n_spans + 1} sentinel ids, but `sentinels` holds {len(sentinels)}.")
    noise = random_partition(n_noise, n_spans, generator)
    kept = random_partition(n - n_noise, n_spans, generator)
    inputs, target, start = [], [], 0
    for i, (keep, hide) in enumerate(zip(kept, noise)):       # a kept run, then a hidden span
        inputs += ids[start:start + keep] + [sentinels[i]]
        target += [sentinels[i]] + ids[start + keep:start + keep + hide]
        start += keep + hide
    return inputs, target + [sentinels[n_spans]]


def text_infilling(ids: Sequence[int], mask_id: int, mask_ratio: float = 0.3, poisson_lambda: float = 3.0,
                   generator: torch.Generator | None = None) -> tuple[list[int], list[int]]:
    """BART's objective: (input ids with spans collapsed to one ``mask_id`` each, the original ids)."""
    ids = _check_ids(ids)
    _check_fraction(mask_ratio, "mask_ratio")
    if not is_number(poisson_lambda) or poisson_lambda <= 0:
        raise ValueError(f"`poisson_lambda` should be a number > 0, but got {describe(poisson_lambda)}.")
    n = len(ids)
    budget = round(n * mask_ratio)                            # tokens to hide
    hidden = [False] * n
    inserts = set()                                           # positions before which a length-0 span adds a mask
    for _ in range(4 * n + 10):                               # bounded: overlapping draws are skipped
        if budget <= 0:
            break
        rate = torch.tensor([float(poisson_lambda)])
        length = min(int(torch.poisson(rate, generator=generator).item()), budget)
        start = int(torch.randint(n + 1 - max(length, 1) + (length == 0), (1,), generator=generator))
        if length == 0:
            inserts.add(start)
            continue
        if any(hidden[start:start + length]):
            continue
        hidden[start:start + length] = [True] * length
        budget -= length
    noised = []
    for i in range(n + 1):
        if i in inserts:
            noised.append(mask_id)
        if i == n:
            break
        if not hidden[i]:
            noised.append(ids[i])
        elif i == 0 or not hidden[i - 1]:
            noised.append(mask_id)                            # a hidden span's first token: one mask
    return noised, list(ids)


def _check_ids(ids) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1 or ids.is_floating_point():
            raise ValueError(f"`ids` should be one sequence of integer ids (a list or a 1-D tensor), but got "
                             f"{describe(ids)}.")
        return ids.tolist()
    if not isinstance(ids, (list, tuple)) or not all(is_int(i) for i in ids):
        raise ValueError(f"`ids` should be one sequence of integer ids (a list or a 1-D tensor), but got "
                         f"{describe(ids)}.")
    return list(ids)


def _check_fraction(value, name: str) -> None:
    if not is_number(value) or not 0 < value < 1:
        raise ValueError(f"`{name}` should be a fraction in (0, 1), but got {describe(value)}.")
