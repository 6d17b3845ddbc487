"""Answers to exercise 18's check_beam_search: beam search for one source, written the ways students write it."""
import math

import torch

from ptlm_course.seq2seq_generation import beam_search

from ._registry import correct, wrong

CHECK = "check_beam_search"


def _next_log_probs(model, tokens, memory, memory_mask):
    return model.decode(torch.tensor([tokens]), memory, memory_mask)[0, -1].log_softmax(-1)      # (V,)


@torch.no_grad()
def _loop(model, input_ids, K, n, lp, start_all=False, per_beam=False, drop=False, expand=False, no_lp=False,
          count_start=False, return_normalised=False, multiply=False, no_start=False):
    """The plain loop with one mistake switched on (the way a student would have written it)."""
    c = model.config
    memory, memory_mask = model.encode(input_ids)
    eos = c.eos_token_id
    beams = [([c.decoder_start_token_id], 1.0 if multiply else 0.0)] * (K if start_all else 1)
    for step in range(n):
        candidates = []
        for tokens, score in beams:
            if tokens[-1] == eos and not expand:
                candidates.append((tokens, score))
                continue
            log_probs = _next_log_probs(model, tokens, memory, memory_mask).tolist()
            mine = [(tokens + [v], score * math.exp(p) if multiply else score + p) for v, p in enumerate(log_probs)]
            if per_beam and step > 0:
                mine = [max(mine, key=lambda b: b[1])]
            candidates += [b for b in mine if not (drop and b[0][-1] == eos)]
        beams = sorted(candidates, key=lambda b: b[1], reverse=True)[:K]
        if not expand and all(t[-1] == eos for t, _ in beams):
            break

    def length(tokens):
        return len(tokens) if count_start else len(tokens) - 1

    best, score = max(beams, key=lambda b: b[1] if no_lp else b[1] / length(b[0]) ** lp)
    if return_normalised:
        score = score / length(best) ** lp
    return (best[1:] if no_start else best), score


@correct(CHECK)
def beam_loop(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty)


@correct(CHECK)
@torch.no_grad()
def beam_tensors(model, input_ids, num_beams, max_new_tokens, length_penalty):
    """All beams in one batch: top-K over the (K * V) flattened candidates, as the package does."""
    c, K = model.config, num_beams
    memory, memory_mask = model.encode(input_ids)
    memory, memory_mask = memory.expand(K, -1, -1), memory_mask.expand(K, -1, -1, -1)
    targets = torch.full((K, 1), c.decoder_start_token_id)
    scores = torch.tensor([0.0] + [float("-inf")] * (K - 1))
    done = torch.zeros(K, dtype=torch.bool)
    for _ in range(max_new_tokens):
        log_probs = model.decode(targets, memory, memory_mask)[:, -1].log_softmax(-1)     # (K, V)
        V = log_probs.shape[1]
        log_probs[done] = float("-inf")
        log_probs[done, c.pad_token_id] = 0.0
        scores, flat = (scores[:, None] + log_probs).flatten().topk(K)
        parent, token = flat // V, flat % V
        done = done[parent] | (token == c.eos_token_id)
        targets = torch.cat([targets[parent], token[:, None]], 1)
        if done.all():
            break
    lengths = (targets[:, 1:] != c.pad_token_id).sum(1).clamp(min=1)
    best = (scores / lengths ** length_penalty).argmax()
    return targets[best], scores[best]


@correct(CHECK)
def beam_package(model, input_ids, num_beams, max_new_tokens, length_penalty):
    out, score = beam_search(model, input_ids, num_beams=num_beams, max_new_tokens=max_new_tokens,
                             length_penalty=length_penalty, return_scores=True)
    return out[0], score[0]


@wrong(CHECK, "identical", "one live beam")
def beam_all_beams_at_start(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty, start_all=True)


@wrong(CHECK, "per beam")
def beam_top1_per_beam(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty, per_beam=True)


@wrong(CHECK, "finished hypotheses are dropped")
def beam_drops_finished(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty, drop=True)


@wrong(CHECK, "keep expanding")
def beam_expands_finished(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty, expand=True)


@wrong(CHECK, "length penalty is missing")
def beam_no_length_penalty(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty, no_lp=True)


@wrong(CHECK, "counts the start token")
def beam_length_counts_start(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty, count_start=True)


@wrong(CHECK, "multiplied")
def beam_multiplies_probabilities(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty, multiply=True)


@wrong(CHECK, "length-normalised")
def beam_returns_normalised_score(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty, return_normalised=True)


@wrong(CHECK, "start token")
def beam_without_start_token(model, input_ids, num_beams, max_new_tokens, length_penalty):
    return _loop(model, input_ids, num_beams, max_new_tokens, length_penalty, no_start=True)


@wrong(CHECK, "per beam")
@torch.no_grad()
def beam_tensors_topk_per_row(model, input_ids, num_beams, max_new_tokens, length_penalty):
    """Batched, but each beam keeps its own best token after the first step (topk along the vocabulary)."""
    c, K = model.config, num_beams
    memory, memory_mask = model.encode(input_ids)
    memory, memory_mask = memory.expand(K, -1, -1), memory_mask.expand(K, -1, -1, -1)
    targets = torch.full((K, 1), c.decoder_start_token_id)
    scores = torch.tensor([0.0] + [float("-inf")] * (K - 1))
    done = torch.zeros(K, dtype=torch.bool)
    for step in range(max_new_tokens):
        log_probs = model.decode(targets, memory, memory_mask)[:, -1].log_softmax(-1)     # (K, V)
        log_probs[done] = float("-inf")
        log_probs[done, c.pad_token_id] = 0.0
        if step == 0:
            top, token = log_probs[0].topk(K)
            scores, parent = top, torch.zeros(K, dtype=torch.long)
        else:
            top, token = log_probs.max(-1)                       # each row's best: not over all K * V
            scores, parent = scores + top, torch.arange(K)
        done = done[parent] | (token == c.eos_token_id)
        targets = torch.cat([targets[parent], token[:, None]], 1)
        if done.all():
            break
    lengths = (targets[:, 1:] != c.pad_token_id).sum(1).clamp(min=1)
    best = (scores / lengths ** length_penalty).argmax()
    return targets[best], scores[best]
