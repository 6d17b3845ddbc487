"""Decoding an encoder–decoder model: greedy search and beam search, with the decoder's key/value cache.

Both work with any model that has ``encode(input_ids, attention_mask) -> (memory, memory_mask)``,
``decode(decoder_input_ids, memory, memory_mask, kv_cache=None) -> logits`` and ``new_kv_cache()`` (e.g.
:class:`ptlm_course.bart.Bart`). The encoder runs once; each step feeds the decoder only the newest token when
``use_cache=True`` (the whole target so far otherwise: the same tokens, more work).

Beam search keeps the ``num_beams`` best partial targets of each source by the sum of their tokens' log-probabilities;
a target that has produced ``eos`` is finished and keeps its score. The winner maximises
``score / length ** length_penalty`` (``length_penalty=0``: the plain sum, which favours short targets).
"""
from __future__ import annotations

import torch

from .validation import describe, is_int, is_number

__all__ = ["greedy_decode", "beam_search"]


@torch.no_grad()
def greedy_decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  max_new_tokens: int = 32, use_cache: bool = True) -> torch.Tensor:
    """The most likely next token at every step -> (B, 1 + n) target ids starting with the start token."""
    return beam_search(model, input_ids, attention_mask, num_beams=1, max_new_tokens=max_new_tokens,
                       use_cache=use_cache)


@torch.no_grad()
def beam_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, num_beams: int = 4,
                max_new_tokens: int = 32, length_penalty: float = 1.0, use_cache: bool = True,
                return_scores: bool = False):
    """(B, S) sources -> (B, 1 + n) best targets (start token first, padded after ``eos``); with
    ``return_scores``, also their (B,) sums of log-probabilities."""
    _check_arguments(num_beams, max_new_tokens, length_penalty)
    was_training = model.training
    model.eval()
    try:
        return _search(model, input_ids, attention_mask, num_beams, max_new_tokens, length_penalty, use_cache,
                       return_scores)
    finally:
        model.train(was_training)


def _search(model, input_ids, attention_mask, K, max_new_tokens, length_penalty, use_cache, return_scores):
    c = model.config
    memory, memory_mask = model.encode(input_ids, attention_mask)               # (B, S, C), (B, 1, 1, S)
    B = memory.shape[0]
    memory, memory_mask = memory.repeat_interleave(K, 0), memory_mask.repeat_interleave(K, 0)   # (B*K, ...)
    targets = torch.full((B * K, 1), c.decoder_start_token_id, dtype=torch.long, device=memory.device)
    scores = torch.full((B, K), float("-inf"), device=memory.device)
    scores[:, 0] = 0.0                                                           # one live beam at the start
    finished = torch.zeros(B * K, dtype=torch.bool, device=memory.device)
    lengths = torch.zeros(B * K, device=memory.device)                          # generated tokens, eos included
    cache = model.new_kv_cache() if use_cache else None
    for _ in range(max_new_tokens):
        fed = targets[:, -1:] if use_cache else targets
        log_probs = model.decode(fed, memory, memory_mask, kv_cache=cache)[:, -1].float().log_softmax(-1)  # (B*K, V)
        V = log_probs.shape[-1]
        log_probs[finished] = float("-inf")                                     # a finished target only pads
        log_probs[finished, c.pad_token_id] = 0.0
        total = (scores.view(B * K, 1) + log_probs).view(B, K * V)              # (B, K*V)
        scores, best = total.topk(K, dim=-1)                                    # (B, K)
        rows = (best // V + torch.arange(B, device=best.device)[:, None] * K).flatten()   # (B*K,) parent beams
        tokens = (best % V).flatten()                                           # (B*K,)
        lengths = lengths[rows] + (~finished[rows]).float()
        finished = finished[rows] | (tokens == c.eos_token_id)
        targets = torch.cat([targets[rows], tokens[:, None]], dim=1)            # (B*K, t + 1)
        if cache is not None:
            for layer in cache:
                layer.k, layer.v = layer.k[rows], layer.v[rows]
        if finished.all():
            break
    ranked = scores.view(B * K) / lengths.clamp(min=1) ** length_penalty
    winner = ranked.view(B, K).argmax(-1) + torch.arange(B, device=ranked.device) * K   # (B,)
    return (targets[winner], scores.view(B * K)[winner]) if return_scores else targets[winner]


def _check_arguments(num_beams, max_new_tokens, length_penalty) -> None:
    if not is_int(num_beams) or num_beams < 1:
        raise ValueError(f"`num_beams` should be an integer >= 1, but got {describe(num_beams)}.")
    if not is_int(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` should be an integer >= 1, but got {describe(max_new_tokens)}.")
    if not is_number(length_penalty):
        raise ValueError(f"`length_penalty` should be a number, but got {describe(length_penalty)}.")
