"""Checks for exercises/16_data_parallel.ipynb: combining the gradients of unequal shards, and an experiment."""
from __future__ import annotations

import torch

from ..gpt import GPT, GPTConfig
from ._core import CheckFailed, call_student, expect_tensor_like, passed
from ._experiments import expect_conclusion, run_experiment
from ..validation import describe

__all__ = ["check_combine_gradients", "unequal_shards_setup", "shard_gradients", "check_unequal_shards_experiment"]


def _combine(grads, sizes, kind="ok"):
    g = torch.stack(list(grads))                                            # (N, P)
    n = torch.tensor(sizes, dtype=g.dtype)[:, None]                         # (N, 1)
    if kind == "plain_mean":
        return g.mean(0)
    if kind == "sum":
        return g.sum(0)
    if kind == "weighted_sum":
        return (n * g).sum(0)
    if kind == "inverse":
        return (g / n).sum(0) / (1 / n).sum()
    if kind == "divide_by_n_workers":
        return (n * g).sum(0) / len(sizes)
    return (n * g).sum(0) / n.sum()


_COMBINE_MISTAKES = {
    "plain_mean": "you took the plain mean of the shards' gradients: with unequal shards each one is a mean over a "
                  "different number of examples, so weight each by its size, sum(n_r * g_r) / sum(n_r).",
    "sum": "you summed the gradients: weight each by its shard size and divide by the total, sum(n_r * g_r) / "
           "sum(n_r).",
    "weighted_sum": "the weighted sum is not divided by the total number of examples: sum(n_r * g_r) / sum(n_r).",
    "inverse": "the weights are inverted: a shard with more examples counts more, weight n_r, not 1 / n_r.",
    "divide_by_n_workers": "you divided by the number of workers; divide the weighted sum by the number of examples, "
                           "sum(n_r).",
}


def check_combine_gradients(fn) -> None:
    """Check ``fn(shard_grads, shard_sizes) -> (P,)``: the full batch's gradient from the shards' mean-loss
    gradients, sum(n_r g_r) / sum(n_r)."""
    check = "check_combine_gradients"
    g = torch.Generator().manual_seed(16)
    cases = [[4, 3, 3], [2, 2], [5, 1, 2, 4], [7]]
    for sizes in cases:
        grads = [torch.randn(6, generator=g, dtype=torch.float64) for _ in sizes]
        given = [t.clone() for t in grads]
        got = call_student(check, fn, given, list(sizes))
        if any(not torch.equal(a, b) for a, b in zip(given, grads)):
            raise CheckFailed(check, "the shards' gradients were changed in place: build a new tensor.")
        where = f" (test: {len(sizes)} shards of sizes {sizes})"
        if isinstance(got, (list, tuple)):
            raise CheckFailed(check, f"return one tensor (the combined gradient), not {describe(got)}." + where)
        expect_tensor_like(check, got, _combine(grads, sizes), "the combined gradient" + where,
                           [(m + where, _combine(grads, sizes, k)) for k, m in _COMBINE_MISTAKES.items()])
    passed(check, len(cases))


def unequal_shards_setup():
    """The experiment's fixed ingredients: a tiny GPT and a batch of 10 sequences, split over 3 workers."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, block_size=16, n_layers=2, n_heads=2, d_model=32, dropout=0.0))
    ids = torch.randint(0, 30, (10, 17), generator=torch.Generator().manual_seed(0))
    return model, (ids[:, :-1], ids[:, 1:]), 3


def shard_gradients(model, batch, n_workers):
    """(full-batch gradient, [each shard's gradient], [shard sizes]); shards are torch.tensor_split's pieces."""
    def gradient(x, y):
        model.zero_grad(set_to_none=True)
        model(x, y)[1].backward()                                           # the mean loss over the shard
        return torch.cat([p.grad.flatten() for p in model.parameters()])
    x, y = batch
    pieces = list(zip(torch.tensor_split(x, n_workers), torch.tensor_split(y, n_workers)))
    return gradient(x, y), [gradient(*piece) for piece in pieces], [len(px) for px, _ in pieces]


def check_unequal_shards_experiment(experiment) -> None:
    """Check the stated results of the unequal-shards experiment against a re-run of it."""
    check = "check_unequal_shards_experiment"
    results = run_experiment(check, experiment)            # first: an unwritten one fails fast
    model, batch, n_workers = unequal_shards_setup()
    full, grads, sizes = shard_gradients(model, batch, n_workers)
    gap_plain = float((torch.stack(grads).mean(0) - full).abs().max())
    gap_weighted = float((_combine(grads, sizes) - full).abs().max())
    expect_conclusion(check, results, {"gap_plain_mean": gap_plain, "gap_weighted_mean": gap_weighted}, {
        "plain_mean_is_exact": (gap_plain < 1e-6, f"with shards of {sizes} examples the plain mean is off by "
                                f"{gap_plain:.2g}, far above rounding."),
        "weighted_mean_is_exact": (gap_weighted < 1e-6, "weighting by shard size recovers the full-batch gradient up "
                                   "to rounding."),
    }, abs_tol=1e-6)
    passed(check, 4)
