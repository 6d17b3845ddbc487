"""Answers to the checks of notebooks 02, 15 and 16 (the variant tasks and the experiments)."""
import functools

import torch

from ptlm_course.checks.distributed import shard_gradients, unequal_shards_setup
from ptlm_course.checks.embeddings import order_experiment_setup
from ptlm_course.checks.speed import measure_peak, memory_experiment_setup
from ptlm_course.flops import token_matmul_weights, training_flops_per_token

from ._registry import correct, wrong

# ------------------------------------------------------------------------------------ sinusoidal halves


@correct("check_sinusoidal_halves")
def halves_numpy_style(max_len, d_model):
    pos = torch.arange(max_len).unsqueeze(1).float()
    inv = 1.0 / (10000 ** (torch.arange(0, d_model, 2).float() / d_model))
    return torch.hstack([torch.sin(pos * inv), torch.cos(pos * inv)])


@correct("check_sinusoidal_halves")
def halves_from_interleaved(max_len, d_model):
    from ptlm_course.embeddings import sinusoidal_table
    table = sinusoidal_table(max_len, d_model)
    return torch.cat([table[:, 0::2], table[:, 1::2]], dim=1)


def _halves(max_len, d_model, exponent=2, start=0, order=("sin", "cos"), interleave=False):
    pos = torch.arange(start, start + max_len, dtype=torch.float64)[:, None]
    w = 10000.0 ** (-exponent * torch.arange(d_model // 2, dtype=torch.float64) / d_model)
    parts = {"sin": torch.sin(pos * w), "cos": torch.cos(pos * w)}
    if interleave:
        return torch.stack([parts["sin"], parts["cos"]], dim=-1).reshape(max_len, d_model)
    return torch.cat([parts[order[0]], parts[order[1]]], dim=-1)


@wrong("check_sinusoidal_halves", "interleaved")
def halves_interleaved(max_len, d_model):
    return _halves(max_len, d_model, interleave=True)


@wrong("check_sinusoidal_halves", "swapped")
def halves_cos_first(max_len, d_model):
    return _halves(max_len, d_model, order=("cos", "sin"))


@wrong("check_sinusoidal_halves", "i / d_model")
def halves_i_over_d(max_len, d_model):
    return _halves(max_len, d_model, exponent=1)


@wrong("check_sinusoidal_halves", "start at 1")
def halves_from_one(max_len, d_model):
    return _halves(max_len, d_model, start=1)


@wrong("check_sinusoidal_halves", "both halves hold sines")
def halves_sin_sin(max_len, d_model):
    return _halves(max_len, d_model, order=("sin", "sin"))


@wrong("check_sinusoidal_halves", "(max_len, d_model)")
def halves_transposed(max_len, d_model):
    return _halves(max_len, d_model).T


# ------------------------------------------------------------------------------------ order gap


@correct("check_order_gap")
def gap_explicit_inverse(layer, x, perm, pe=None):
    pe = torch.zeros(x.shape[1], x.shape[2]) if pe is None else pe
    with torch.no_grad():
        shuffled = layer(x[:, perm] + pe)[0]
        plain = layer(x + pe)[0]
    return float(torch.max(torch.abs(shuffled - plain.index_select(1, perm))))


@wrong("check_order_gap", "f(x)[:, perm]")
def gap_unpermuted(layer, x, perm, pe=None):
    pe = 0 if pe is None else pe
    with torch.no_grad():
        return (layer(x[:, perm] + pe)[0] - layer(x + pe)[0]).abs().max().item()


@wrong("check_order_gap", "moved with the tokens")
def gap_pe_first(layer, x, perm, pe=None):
    h = x if pe is None else x + pe
    with torch.no_grad():
        return (layer(h[:, perm])[0] - layer(h)[0][:, perm]).abs().max().item()


@wrong("check_order_gap", "mean")
def gap_mean(layer, x, perm, pe=None):
    pe = 0 if pe is None else pe
    with torch.no_grad():
        return (layer(x[:, perm] + pe)[0] - layer(x + pe)[0][:, perm]).abs().mean().item()


@wrong("check_order_gap", "one number")
def gap_tensor(layer, x, perm, pe=None):
    pe = 0 if pe is None else pe
    with torch.no_grad():
        return (layer(x[:, perm] + pe)[0] - layer(x + pe)[0][:, perm]).abs()


def _gap(layer, x, perm, pe=None):
    pe = 0 if pe is None else pe
    with torch.no_grad():
        return (layer(x[:, perm] + pe)[0] - layer(x + pe)[0][:, perm]).abs().max().item()


def _order_results(**override):
    layer, x, perm, pe = order_experiment_setup()
    results = {"gap_without_positions": _gap(layer, x, perm), "gap_with_positions": _gap(layer, x, perm, pe),
               "attention_alone_ignores_order": True, "positions_make_it_order_aware": True}
    return {**results, **override}


@correct("check_order_experiment")
def order_experiment_computed():
    results = _order_results()
    results["attention_alone_ignores_order"] = results["gap_without_positions"] < 1e-5
    results["positions_make_it_order_aware"] = results["gap_with_positions"] > 1e-3
    return results


@wrong("check_order_experiment", "attention_alone_ignores_order", "measurements say true")
def order_experiment_wrong_conclusion():
    return _order_results(attention_alone_ignores_order=False)


@wrong("check_order_experiment", "gap_with_positions", "re-running")
def order_experiment_made_up_number():
    return _order_results(gap_with_positions=0.5)


@wrong("check_order_experiment", "miss the key")
def order_experiment_incomplete():
    results = _order_results()
    del results["positions_make_it_order_aware"]
    return results


@wrong("check_order_experiment", "true or false")
def order_experiment_words():
    return _order_results(attention_alone_ignores_order="yes")


# ------------------------------------------------------------------------------------ checkpointed FLOPs


@correct("check_checkpointed_flops")
def flops_from_training(model, T):
    L, C = len(model.blocks), model.config.d_model
    return training_flops_per_token(model, T) + 2 * token_matmul_weights(model) + 4 * L * T * C


@wrong("check_checkpointed_flops", "without checkpointing")
def flops_plain(model, T):
    return training_flops_per_token(model, T)


@wrong("check_checkpointed_flops", "16 l t c")
def flops_attention_once(model, T):
    L, C = len(model.blocks), model.config.d_model
    return 8 * token_matmul_weights(model) + 12 * L * T * C


@wrong("check_checkpointed_flops", "doubled the whole step")
def flops_doubled(model, T):
    return 2 * training_flops_per_token(model, T)


@wrong("check_checkpointed_flops", "every parameter")
def flops_all_parameters(model, T):
    L, C = len(model.blocks), model.config.d_model
    return 8 * sum(p.numel() for p in model.parameters()) + 16 * L * T * C


@wrong("check_checkpointed_flops", "attention term")
def flops_no_attention(model, T):
    return 8 * token_matmul_weights(model)


# ------------------------------------------------------------------------------------ memory experiment


@functools.lru_cache(maxsize=1)
def _measured_peaks():
    model, batch = memory_experiment_setup()
    return measure_peak(model, batch, False), measure_peak(model, batch, True)


def _memory_results(**override):
    without, with_ckpt = _measured_peaks()
    results = {"peak_without": without, "peak_with": with_ckpt, "saved_fraction": 1 - with_ckpt / without,
               "checkpointing_saves_memory": True, "saves_more_than_half": True}
    return {**results, **override}


@correct("check_memory_experiment")
def memory_experiment_measured():
    return _memory_results()


@wrong("check_memory_experiment", "saved_fraction", "re-running")
def memory_experiment_ratio_instead_of_saving():
    results = _memory_results()
    results["saved_fraction"] = results["peak_with"] / results["peak_without"]
    return results


@wrong("check_memory_experiment", "checkpointing_saves_memory", "measurements say true")
def memory_experiment_wrong_direction():
    return _memory_results(checkpointing_saves_memory=False)




# ------------------------------------------------------------------------------------ combining gradients


@correct("check_combine_gradients")
def combine_stack(shard_grads, shard_sizes):
    weights = torch.tensor(shard_sizes, dtype=shard_grads[0].dtype) / sum(shard_sizes)
    return (torch.stack(shard_grads) * weights[:, None]).sum(0)


@correct("check_combine_gradients")
def combine_running_mean(shard_grads, shard_sizes):
    mean, seen = torch.zeros_like(shard_grads[0]), 0
    for g, n in zip(shard_grads, shard_sizes):
        seen += n
        mean = mean + (g - mean) * n / seen
    return mean


@wrong("check_combine_gradients", "plain mean")
def combine_plain_mean(shard_grads, shard_sizes):
    return torch.stack(shard_grads).mean(0)


@wrong("check_combine_gradients", "summed")
def combine_sum(shard_grads, shard_sizes):
    return sum(shard_grads)


@wrong("check_combine_gradients", "not divided")
def combine_weighted_sum(shard_grads, shard_sizes):
    return sum(n * g for n, g in zip(shard_sizes, shard_grads))


@wrong("check_combine_gradients", "inverted")
def combine_inverse(shard_grads, shard_sizes):
    weights = [1 / n for n in shard_sizes]
    return sum(w * g for w, g in zip(weights, shard_grads)) / sum(weights)


@wrong("check_combine_gradients", "number of workers")
def combine_over_workers(shard_grads, shard_sizes):
    return sum(n * g for n, g in zip(shard_sizes, shard_grads)) / len(shard_sizes)


@wrong("check_combine_gradients", "in place")
def combine_in_place(shard_grads, shard_sizes):
    total = shard_grads[0].mul_(shard_sizes[0])
    for g, n in zip(shard_grads[1:], shard_sizes[1:]):
        total += n * g
    return total / sum(shard_sizes)


# ------------------------------------------------------------------------------------ unequal shards experiment


@functools.lru_cache(maxsize=1)
def _gradients():
    model, batch, n = unequal_shards_setup()
    return shard_gradients(model, batch, n)


def _shards_results(**override):
    full, grads, sizes = _gradients()
    weighted = sum(s * g for s, g in zip(sizes, grads)) / sum(sizes)
    results = {"gap_plain_mean": (torch.stack(grads).mean(0) - full).abs().max().item(),
               "gap_weighted_mean": (weighted - full).abs().max().item(),
               "plain_mean_is_exact": False, "weighted_mean_is_exact": True}
    return {**results, **override}


@correct("check_unequal_shards_experiment")
def shards_experiment_measured():
    results = _shards_results()
    results["plain_mean_is_exact"] = results["gap_plain_mean"] < 1e-6
    results["weighted_mean_is_exact"] = results["gap_weighted_mean"] < 1e-6
    return results


@wrong("check_unequal_shards_experiment", "plain_mean_is_exact", "measurements say false")
def shards_experiment_trusts_the_lesson():
    return _shards_results(plain_mean_is_exact=True)


@wrong("check_unequal_shards_experiment", "gap_plain_mean", "re-running")
def shards_experiment_relative_error():
    results = _shards_results()
    results["gap_plain_mean"] /= _gradients()[0].abs().max().item()
    return results


@wrong("check_unequal_shards_experiment", "as a dict")
def shards_experiment_tuple():
    results = _shards_results()
    return tuple(results.values())
