"""Answers to the pre-training and sampling checks (notebooks 06 and 07)."""
import random

import torch
import torch.nn.functional as F

from ._registry import correct, wrong

# ------------------------------------------------------------------------------------ next-token targets


@correct("check_next_token_targets")
def targets_one_slice(ids, block_size, start):
    chunk = ids[start:start + block_size + 1]
    return chunk[:-1], chunk[1:]


@correct("check_next_token_targets")
def targets_narrow(ids, block_size, start):
    return ids.narrow(0, start, block_size), ids.narrow(0, start + 1, block_size)


@wrong("check_next_token_targets", "swapped")
def targets_swapped(ids, block_size, start):
    return ids[start + 1:start + block_size + 1], ids[start:start + block_size]


@wrong("check_next_token_targets", "one position late")
def targets_late(ids, block_size, start):
    return ids[start + 1:start + block_size + 1], ids[start + 2:start + block_size + 2]


@wrong("check_next_token_targets", "same as x")
def targets_same(ids, block_size, start):
    return ids[start:start + block_size], ids[start:start + block_size]


@wrong("check_next_token_targets", "wrong way")
def targets_before(ids, block_size, start):
    return ids[start:start + block_size], ids[start - 1:start + block_size - 1]


@wrong("check_next_token_targets", "block_size")
def targets_too_long(ids, block_size, start):
    return ids[start:start + block_size + 1], ids[start + 1:start + block_size + 2]


@wrong("check_next_token_targets", "shifted by two")
def targets_two(ids, block_size, start):
    return ids[start:start + block_size], ids[start + 2:start + block_size + 2]


# ------------------------------------------------------------------------------------ causal LM loss


@correct("check_causal_lm_loss")
def loss_by_hand(logits, targets):
    log_probs = logits.log_softmax(-1)
    real = targets != -100
    picked = log_probs[real].gather(-1, targets[real][:, None])
    return -picked.mean()


@correct("check_causal_lm_loss")
def loss_transpose(logits, targets):
    return F.cross_entropy(logits.transpose(1, 2), targets)


@wrong("check_causal_lm_loss", "probabilities")
def loss_softmax_first(logits, targets):
    B, T, V = logits.shape
    return F.cross_entropy(logits.softmax(-1).view(B * T, V), targets.view(B * T))


@wrong("check_causal_lm_loss", "summed")
def loss_sum(logits, targets):
    B, T, V = logits.shape
    return F.cross_entropy(logits.view(B * T, V), targets.view(B * T), reduction="sum")


@wrong("check_causal_lm_loss", "-100")
def loss_counts_ignored(logits, targets):
    B, T, V = logits.shape
    return F.cross_entropy(logits.view(B * T, V), targets.view(B * T), reduction="sum") / (B * T)


@wrong("check_causal_lm_loss", "dimension 1")
def loss_unflattened(logits, targets):
    return F.cross_entropy(logits, targets)


@wrong("check_causal_lm_loss", "one number")
def loss_no_reduction(logits, targets):
    B, T, V = logits.shape
    return F.cross_entropy(logits.view(B * T, V), targets.view(B * T), reduction="none")


@wrong("check_causal_lm_loss", "each sequence first")
def loss_per_sequence(logits, targets):
    return torch.stack([F.cross_entropy(logits[b], targets[b]) for b in range(len(logits))]).mean()


@wrong("check_causal_lm_loss", "-100")
def loss_clamped_targets(logits, targets):
    B, T, V = logits.shape
    return F.cross_entropy(logits.view(B * T, V), targets.clamp(min=0).view(B * T))


@wrong("check_causal_lm_loss", "different order")
def loss_transposed_targets(logits, targets):
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V), targets.T.reshape(B * T))


# ------------------------------------------------------------------------------------ top-k / top-p


@correct("check_top_k")
def top_k_scatter(logits, k):
    values, indices = logits.topk(k, dim=-1)
    return torch.full_like(logits, float("-inf")).scatter(-1, indices, values)


@correct("check_top_k")
def top_k_sort(logits, k):
    threshold = logits.sort(dim=-1, descending=True).values[..., k - 1:k]
    return torch.where(logits >= threshold, logits, torch.finfo(logits.dtype).min)


def _top_k(logits, k, largest=True):
    kth = logits.topk(k, dim=-1, largest=largest).values[..., -1:]
    keep = logits >= kth if largest else logits <= kth
    return logits.masked_fill(~keep, float("-inf"))


@wrong("check_top_k", "k + 1")
def top_k_strict(logits, k):
    kth = logits.topk(min(k + 1, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


@wrong("check_top_k", "k - 1")
def top_k_gt(logits, k):
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits <= kth, float("-inf"))


@wrong("check_top_k", "smallest")
def top_k_smallest(logits, k):
    return _top_k(logits, k, largest=False)


@wrong("check_top_k", "set to 0")
def top_k_zero(logits, k):
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, 0.0)


@wrong("check_top_k", "probabilities")
def top_k_probs(logits, k):
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.softmax(-1).masked_fill(logits < kth, 0.0)


@wrong("check_top_k", "inverted")
def top_k_inverted(logits, k):
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits >= kth, float("-inf"))


@correct("check_top_p")
def top_p_loop(logits, p):
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.full_like(flat, float("-inf"))
    for row in range(flat.shape[0]):
        probs = flat[row].softmax(-1)
        total = 0.0
        for index in probs.argsort(descending=True).tolist():
            out[row, index] = flat[row, index]
            total += probs[index].item()
            if total >= p:
                break
    return out.reshape(logits.shape)


@correct("check_top_p")
def top_p_shifted_mask(logits, p):
    sorted_logits, order = torch.sort(logits, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    remove = cumulative > p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    remove = remove.scatter(-1, order, remove)
    return logits.masked_fill(remove, float("-inf"))


def _top_p_sorted(logits, p):
    sorted_logits, order = logits.sort(-1, descending=True)
    probs = sorted_logits.softmax(-1)
    return sorted_logits, order, probs, probs.cumsum(-1)


@wrong("check_top_p", "crosses p")
def top_p_drops_crossing(logits, p):
    sorted_logits, order, probs, cumulative = _top_p_sorted(logits, p)
    keep = cumulative < p
    keep[..., 0] = True
    return logits.masked_fill(~torch.zeros_like(keep).scatter(-1, order, keep), float("-inf"))


@wrong("check_top_p", "sorted order")
def top_p_sorted_output(logits, p):
    sorted_logits, order, probs, cumulative = _top_p_sorted(logits, p)
    return sorted_logits.masked_fill(cumulative - probs >= p, float("-inf"))


@wrong("check_top_p", "un-sort")
def top_p_unsorted_mask(logits, p):
    sorted_logits, order, probs, cumulative = _top_p_sorted(logits, p)
    return logits.masked_fill(cumulative - probs >= p, float("-inf"))


@wrong("check_top_p", "every token in some row")
def top_p_no_first(logits, p):
    sorted_logits, order, probs, cumulative = _top_p_sorted(logits, p)
    keep = torch.zeros_like(cumulative, dtype=torch.bool).scatter(-1, order, cumulative <= p)
    return logits.masked_fill(~keep, float("-inf"))


@wrong("check_top_p", "least likely")
def top_p_ascending(logits, p):
    sorted_logits, order = logits.sort(-1)
    probs = sorted_logits.softmax(-1)
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, probs.cumsum(-1) - probs < p)
    return logits.masked_fill(~keep, float("-inf"))


@wrong("check_top_p", "probabilities")
def top_p_returns_probs(logits, p):
    sorted_logits, order, probs, cumulative = _top_p_sorted(logits, p)
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, cumulative - probs < p)
    return logits.softmax(-1).masked_fill(~keep, 0.0)


@wrong("check_top_p", "set to 0")
def top_p_zero(logits, p):
    sorted_logits, order, probs, cumulative = _top_p_sorted(logits, p)
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, cumulative - probs < p)
    return logits.masked_fill(~keep, 0.0)


@correct("check_sample_next")
def sample_gumbel_free(logits, generator=None):
    probs = torch.softmax(logits, dim=-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=probs.dtype)
    return (probs.cumsum(-1) < u).sum(-1).clamp(max=probs.shape[-1] - 1)


@correct("check_sample_next")
def sample_flat(logits, generator=None):
    return torch.multinomial(F.softmax(logits.float(), -1), 1, generator=generator).squeeze(-1)


@wrong("check_sample_next", "greedy")
def sample_argmax(logits, generator=None):
    return logits.argmax(-1, keepdim=True)


@wrong("check_sample_next", "raw logits")
def sample_raw_logits(logits, generator=None):
    return torch.multinomial(logits.clamp(min=0), 1, generator=generator)


@wrong("check_sample_next", "generator", "ignored")
def sample_global_rng(logits, generator=None):
    return torch.multinomial(logits.softmax(-1), 1)


@wrong("check_sample_next", "uniformly")
def sample_uniform(logits, generator=None):
    allowed = torch.isfinite(logits).double()
    return torch.multinomial(allowed, 1, generator=generator)


@wrong("check_sample_next", "integer")
def sample_float(logits, generator=None):
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).float()


# ------------------------------------------------------------------------------------ MLM masking


@correct("check_mlm_masking")
def mask_tokens_hf(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    labels = input_ids.clone()
    probability = torch.full(input_ids.shape, mask_prob)
    probability.masked_fill_(torch.isin(input_ids, torch.tensor(list(special_ids))), 0.0)
    chosen = torch.bernoulli(probability, generator=generator).bool()
    labels[~chosen] = -100
    masked = input_ids.clone()
    replaced = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & chosen
    masked[replaced] = mask_id
    randomised = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & chosen & ~replaced
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)])
    masked[randomised] = ordinary[torch.randint(len(ordinary), (int(randomised.sum()),), generator=generator)]
    return masked, labels


@correct("check_mlm_masking")
def mask_tokens_resample(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(list(special_ids)))
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    u = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
    bad = torch.isin(random_ids, torch.tensor(list(special_ids)))
    while bad.any():                                       # redraw the special ones
        random_ids[bad] = torch.randint(vocab_size, (int(bad.sum()),), generator=generator)
        bad = torch.isin(random_ids, torch.tensor(list(special_ids)))
    masked = torch.where(chosen & (u < 0.8), mask_id, input_ids)
    masked = torch.where(chosen & (u >= 0.8) & (u < 0.9), random_ids, masked)
    return masked, torch.where(chosen, input_ids, -100)


def _masking(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None, low=None,
             use_prob=True, use_generator=True, rows=False, first_rows=False):
    g = generator if use_generator else None
    special = torch.isin(input_ids, torch.tensor(list(special_ids)))
    rate = mask_prob if use_prob else 0.15
    if rows:
        chosen = (torch.rand(input_ids.shape[0], 1, generator=g) < rate) & ~special
    else:
        chosen = (torch.rand(input_ids.shape, generator=g) < rate) & ~special
    u = torch.rand(input_ids.shape, generator=g)
    if low is None:
        ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)])
        random_ids = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=g)]
    else:
        random_ids = torch.randint(low, vocab_size, input_ids.shape, generator=g)
    masked = input_ids.clone()
    masked[chosen & (u < 0.8)] = mask_id
    swap = chosen & (u >= 0.8) & (u < 0.9)
    masked[swap] = random_ids[swap]
    return masked, torch.where(chosen, input_ids, torch.full_like(input_ids, -100))


@wrong("check_mlm_masking", "randint(len(special_ids), vocab_size)")
def mask_randint_after_specials(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _masking(input_ids, special_ids, vocab_size, mask_id, mask_prob, generator, low=len(special_ids))


@wrong("check_mlm_masking", "special tokens")
def mask_randint_any(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _masking(input_ids, special_ids, vocab_size, mask_id, mask_prob, generator, low=0)


@wrong("check_mlm_masking", "mask_prob is ignored")
def mask_fixed_rate(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _masking(input_ids, special_ids, vocab_size, mask_id, mask_prob, generator, use_prob=False)


@wrong("check_mlm_masking", "generator", "ignored")
def mask_global_rng(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _masking(input_ids, special_ids, vocab_size, mask_id, mask_prob, generator, use_generator=False)


@wrong("check_mlm_masking", "whole rows")
def mask_whole_rows(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _masking(input_ids, special_ids, vocab_size, mask_id, mask_prob, generator, rows=True)


@wrong("check_mlm_masking", "generator", "ignored")
def mask_half_generator(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(list(special_ids)))
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    u = torch.rand(input_ids.shape)                                          # forgot the generator here
    masked = torch.where(chosen & (u < 0.8), mask_id, input_ids)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)])
    swap = chosen & (u >= 0.8) & (u < 0.9)
    masked[swap] = ordinary[torch.randint(len(ordinary), (int(swap.sum()),), generator=generator)]
    return masked, torch.where(chosen, input_ids, -100)


@wrong("check_mlm_masking", "special tokens were chosen")
def mask_forgets_specials(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    chosen = torch.rand(input_ids.shape, generator=generator) < mask_prob
    u = torch.rand(input_ids.shape, generator=generator)
    masked = torch.where(chosen & (u < 0.8), mask_id, input_ids)
    return masked, torch.where(chosen, input_ids, -100)


@wrong("check_mlm_masking", "modified in place")
def mask_in_place(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    masked, labels = _masking(input_ids, special_ids, vocab_size, mask_id, mask_prob, generator)
    input_ids.copy_(masked)
    return input_ids, labels


@wrong("check_mlm_masking", "every chosen token became")
def mask_all_mask(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    special = torch.isin(input_ids, torch.tensor(list(special_ids)))
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & ~special
    return input_ids.masked_fill(chosen, mask_id), input_ids.masked_fill(~chosen, -100)


@wrong("check_mlm_masking", "every position has a label")
def mask_label_everything(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    masked, _ = _masking(input_ids, special_ids, vocab_size, mask_id, mask_prob, generator)
    return masked, input_ids.clone()


@wrong("check_mlm_masking", "labels hold the masked ids")
def mask_labels_masked(input_ids, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    masked, labels = _masking(input_ids, special_ids, vocab_size, mask_id, mask_prob, generator)
    return masked, torch.where(labels != -100, masked, labels)


# ------------------------------------------------------------------------------------ NSP pairs


def _with_next(plays):
    return [(t, s, k) for t, scenes in plays.items() for s, scene in enumerate(scenes) for k in range(len(scene) - 1)]


@correct("check_nsp_pairs")
def nsp_python_random(plays, n, generator=None):
    seed = int(torch.randint(2 ** 31, (1,), generator=generator))
    rng = random.Random(seed)
    firsts = _with_next(plays)
    pairs = []
    for _ in range(n):
        title, s, k = rng.choice(firsts)
        if rng.random() < 0.5:
            pairs.append((plays[title][s][k], plays[title][s][k + 1], True))
        else:
            other = rng.choice([t for t in plays if t != title])
            pairs.append((plays[title][s][k], rng.choice(rng.choice(plays[other])), False))
    return pairs


@correct("check_nsp_pairs")
def nsp_vectorised_draws(plays, n, generator=None):
    firsts = _with_next(plays)
    titles = list(plays)
    starts = torch.randint(len(firsts), (n,), generator=generator).tolist()
    flags = (torch.rand(n, generator=generator) < 0.5).tolist()
    pairs = []
    for start, flag in zip(starts, flags):
        title, s, k = firsts[start]
        if flag:
            pairs.append((plays[title][s][k], plays[title][s][k + 1], 1))
        else:
            others = [seg for t in titles if t != title for scene in plays[t] for seg in scene]
            pairs.append((plays[title][s][k], others[int(torch.randint(len(others), (), generator=generator))], 0))
    return pairs


def _nsp(plays, n, generator=None, first_only=False, use_generator=True, same_play=False, always_next=False):
    g = generator if use_generator else None
    firsts = [f for f in _with_next(plays) if not first_only or f[2] == 0]
    pairs = []
    for _ in range(n):
        title, s, k = firsts[int(torch.randint(len(firsts), (), generator=g))]
        a = plays[title][s][k]
        if always_next or torch.rand((), generator=g) < 0.5:
            pairs.append((a, plays[title][s][k + 1], True))
        else:
            pool = [seg for t in plays if (t == title) == same_play for scene in plays[t] for seg in scene]
            pairs.append((a, pool[int(torch.randint(len(pool), (), generator=g))], False))
    return pairs


@wrong("check_nsp_pairs", "first segment of a scene")
def nsp_first_segment(plays, n, generator=None):
    return _nsp(plays, n, generator, first_only=True)


@wrong("check_nsp_pairs", "generator", "ignored")
def nsp_global_rng(plays, n, generator=None):
    return _nsp(plays, n, generator, use_generator=False)


@wrong("check_nsp_pairs", "same play")
def nsp_same_play(plays, n, generator=None):
    return _nsp(plays, n, generator, same_play=True)


@wrong("check_nsp_pairs", "every pair is labelled is_next")
def nsp_always_next(plays, n, generator=None):
    return _nsp(plays, n, generator, always_next=True)


@wrong("check_nsp_pairs", "inverted")
def nsp_inverted(plays, n, generator=None):
    return [(a, b, not flag) for a, b, flag in _nsp(plays, n, generator)]


@wrong("check_nsp_pairs", "not the segment right after")
def nsp_next_scene(plays, n, generator=None):
    pairs = []
    for a, b, flag in _nsp(plays, n, generator):
        if flag:
            for scenes in plays.values():
                for s, scene in enumerate(scenes):
                    if a in scene and s + 1 < len(scenes):
                        b = scenes[s + 1][0]
        pairs.append((a, b, flag))
    return pairs


@correct("check_top_k")
def top_k_kthvalue(logits, k):
    kth = torch.kthvalue(logits, logits.shape[-1] - k + 1, dim=-1, keepdim=True).values
    return logits.masked_fill(logits < kth, float("-inf"))


@correct("check_next_token_targets")
def targets_unfold(ids, block_size, start):
    window = ids[start:].unfold(0, block_size + 1, 1)[0]
    return window[:-1].clone(), window[1:].clone()


@correct("check_causal_lm_loss")
def loss_nll(logits, targets):
    return F.nll_loss(F.log_softmax(logits, -1).flatten(0, 1), targets.flatten(), ignore_index=-100)


# ------------------------------------------------------------------------------------ GPT forward


@correct("check_gpt_forward")
def gpt_tied_head(model, input_ids):
    positions = torch.arange(input_ids.shape[1]).unsqueeze(0)                 # (1, T)
    x = model.wte(input_ids) + model.wpe(positions)
    for block in model.blocks:
        x = block(x)
    return model.ln_f(x) @ model.wte.weight.T                          # the head is tied to wte


@correct("check_gpt_forward")
def gpt_sequential(model, input_ids):
    x = model.drop(model.wte(input_ids) + model.wpe.weight[:input_ids.shape[1]])
    return model.lm_head(model.ln_f(torch.nn.Sequential(*model.blocks)(x)))


def _gpt(model, input_ids, positions=True, start=0, final=True, order=1, softmax=False):
    T = input_ids.shape[1]
    x = model.wte(input_ids)
    if positions:
        x = x + model.wpe(torch.arange(start, start + T))
    for block in list(model.blocks)[::order]:
        x = block(x)
    logits = model.lm_head(model.ln_f(x) if final else x)
    return logits.softmax(-1) if softmax else logits


@wrong("check_gpt_forward", "position embeddings are missing")
def gpt_no_positions(model, input_ids):
    return _gpt(model, input_ids, positions=False)


@wrong("check_gpt_forward", "start at 1")
def gpt_positions_from_one(model, input_ids):
    return _gpt(model, input_ids, start=1)


@wrong("check_gpt_forward", "final layernorm")
def gpt_no_final_norm(model, input_ids):
    return _gpt(model, input_ids, final=False)


@wrong("check_gpt_forward", "reverse order")
def gpt_reversed(model, input_ids):
    return _gpt(model, input_ids, order=-1)


@wrong("check_gpt_forward", "probabilities")
def gpt_softmax(model, input_ids):
    return _gpt(model, input_ids, softmax=True)


@wrong("check_gpt_forward", "token ids")
def gpt_positions_by_ids(model, input_ids):
    x = model.wte(input_ids) + model.wpe(input_ids)
    for block in model.blocks:
        x = block(x)
    return model.lm_head(model.ln_f(x))


@wrong("check_gpt_forward", "only the last block")
def gpt_loop_bug(model, input_ids):
    x = model.wte(input_ids) + model.wpe(torch.arange(input_ids.shape[1]))
    for block in model.blocks:
        h = block(x)
    return model.lm_head(model.ln_f(h))


@wrong("check_gpt_forward", "not a tuple")
def gpt_returns_pair(model, input_ids):
    return _gpt(model, input_ids), None


# ------------------------------------------------------------------------------ GPT step with a KV cache


@correct("check_gpt_step")
def step_zip(model, input_ids, kv_cache):
    past = kv_cache[0].length
    x = model.wte(input_ids) + model.wpe(torch.arange(past, past + input_ids.shape[1]))
    for block, cache in zip(model.blocks, kv_cache):
        x = block(x, kv_cache=cache)
    return model.lm_head(model.ln_f(x))


@correct("check_gpt_step")
def step_indexed(model, input_ids, kv_cache):
    start = 0 if kv_cache[-1].k is None else kv_cache[-1].k.shape[2]     # any layer's cache has the same length
    positions = torch.arange(input_ids.shape[1]) + start
    x = model.drop(model.wte(input_ids) + model.wpe(positions)[None])
    for i in range(len(model.blocks)):
        x = model.blocks[i](x, kv_cache=kv_cache[i])
    return model.ln_f(x) @ model.wte.weight.T


def _step(model, input_ids, kv_cache, past=None, caches=None, final=True, only_last=False):
    past = kv_cache[0].length if past is None else past
    x = model.wte(input_ids) + model.wpe(torch.arange(past, past + input_ids.shape[1]))
    for block, cache in zip(model.blocks, kv_cache if caches is None else caches):
        x = block(x, kv_cache=cache)
    logits = model.lm_head(model.ln_f(x) if final else x)
    return logits[:, -1:] if only_last else logits


@wrong("check_gpt_step", "positions 0, 1")
def step_positions_from_zero(model, input_ids, kv_cache):
    return _step(model, input_ids, kv_cache, past=0)


@wrong("check_gpt_step", "len(kv_cache)")
def step_past_is_len(model, input_ids, kv_cache):
    return _step(model, input_ids, kv_cache, past=len(kv_cache))


@wrong("check_gpt_step", "one too late")
def step_positions_from_one(model, input_ids, kv_cache):
    return _step(model, input_ids, kv_cache, past=kv_cache[0].length + 1)


@wrong("check_gpt_step", "pass each block its cache")
def step_no_cache(model, input_ids, kv_cache):
    return _step(model, input_ids, kv_cache, caches=[None] * len(model.blocks))


@wrong("check_gpt_step", "every block was given kv_cache[0]")
def step_shared_cache(model, input_ids, kv_cache):
    return _step(model, input_ids, kv_cache, caches=[kv_cache[0]] * len(model.blocks))


@wrong("check_gpt_step", "final layernorm")
def step_no_final_norm(model, input_ids, kv_cache):
    return _step(model, input_ids, kv_cache, final=False)


@wrong("check_gpt_step", "last new token only")
def step_last_only(model, input_ids, kv_cache):
    return _step(model, input_ids, kv_cache, only_last=True)


@wrong("check_gpt_step", "called model(...) itself")
def step_calls_model(model, input_ids, kv_cache):
    return model(input_ids, kv_cache=kv_cache)[0]


# ------------------------------------------------------------------------------------ whole-word masking


def _wwm(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None, draw="word",
         expand=True, starts_from=None, use_generator=True, low=None, skip_specials=True):
    g = generator if use_generator else None
    B, T = input_ids.shape
    special = torch.isin(input_ids, torch.tensor(sorted(special_ids)))
    flags = continues if starts_from is None else starts_from
    first = ~flags & ~special if skip_specials else ~flags
    r = torch.rand((B, T), generator=g)
    pick = (r < mask_prob) & (first if draw == "word" else ~special)
    start = torch.where(continues, 0, torch.arange(T).expand(B, T)).cummax(dim=1).values
    if draw == "piece_then_word":
        any_piece = torch.zeros((B, T), dtype=torch.long).scatter_add_(1, start, pick.long()) > 0
        chosen = any_piece.gather(1, start) & ~special
    elif expand:
        chosen = pick.gather(1, start) & (~special if skip_specials else torch.ones_like(special))
    else:
        chosen = pick
    u = torch.rand((B, T), generator=g)
    if low is None:
        ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)])
        random_ids = ordinary[torch.randint(len(ordinary), (B, T), generator=g)]
    else:
        random_ids = torch.randint(low, vocab_size, (B, T), generator=g)
    out = input_ids.clone()
    out[chosen & (u < 0.8)] = mask_id
    swap = chosen & (u >= 0.8) & (u < 0.9)
    out[swap] = random_ids[swap]
    return out, torch.where(chosen, input_ids, torch.full_like(input_ids, -100))


@correct("check_whole_word_masking")
def wwm_cummax(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _wwm(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob, generator)


@correct("check_whole_word_masking")
def wwm_loops(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    masked, labels = input_ids.clone(), torch.full_like(input_ids, -100)
    ordinary = [i for i in range(vocab_size) if i not in special_ids]
    for b in range(input_ids.shape[0]):
        word_on = False
        for t in range(input_ids.shape[1]):
            tok = int(input_ids[b, t])
            if tok in special_ids:
                word_on = False
                continue
            if not continues[b, t]:
                word_on = torch.rand(1, generator=generator).item() < mask_prob
            if word_on:
                labels[b, t] = tok
                u = torch.rand(1, generator=generator).item()
                if u < 0.8:
                    masked[b, t] = mask_id
                elif u < 0.9:
                    masked[b, t] = ordinary[int(torch.randint(len(ordinary), (1,), generator=generator))]
    return masked, labels


@wrong("check_whole_word_masking", "chosen only in part")
def wwm_token_by_token(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _wwm(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob, generator, draw="piece",
                expand=False)


@wrong("check_whole_word_masking", "only the first piece")
def wwm_first_piece_only(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _wwm(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob, generator, expand=False)


@wrong("check_whole_word_masking", "one random number per word")
def wwm_piece_then_word(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _wwm(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob, generator,
                draw="piece_then_word")


@wrong("check_whole_word_masking", "mask_prob is ignored")
def wwm_fixed_rate(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _wwm(input_ids, continues, special_ids, vocab_size, mask_id, 0.15, generator)


@wrong("check_whole_word_masking", "generator")
def wwm_global_rng(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _wwm(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob, generator, use_generator=False)


@wrong("check_whole_word_masking", "special tokens were chosen")
def wwm_specials_are_words(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _wwm(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob, generator, skip_specials=False)


@wrong("check_whole_word_masking", "special ids come first")
def wwm_random_from_offset(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    return _wwm(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob, generator, low=len(special_ids))


@wrong("check_whole_word_masking", "wrong way round")
def wwm_flags_reversed(input_ids, continues, special_ids, vocab_size, mask_id, mask_prob=0.15, generator=None):
    B, T = input_ids.shape
    special = torch.isin(input_ids, torch.tensor(sorted(special_ids)))
    word_start = continues & ~special                                   # misread: True marks a new word
    pick = (torch.rand((B, T), generator=generator) < mask_prob) & word_start
    out = input_ids.clone()
    out[pick] = mask_id
    return out, torch.where(pick, input_ids, torch.full_like(input_ids, -100))
