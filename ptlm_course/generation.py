"""Text generation: pick the next token again and again (Part 2).

Shapes: ``B`` batch, ``T`` positions, ``V`` vocabulary size.

    logits  = model(input_ids)[0][:, -1, :]            (B, V) scores for the token after each sequence
    logits  = logits / temperature               < 1: sharper, > 1: flatter
    logits  = top_k_filter / top_p_filter         drop unlikely tokens (set them to -inf)
    next    = sample from softmax(logits)         or argmax when greedy

With ``use_cache=True`` the model keeps each layer's keys and values, so every step feeds only the
newest token instead of the whole context. GPT-2's positions are learned and absolute, so a cache
cannot slide: once the context reaches ``block_size`` tokens, ``generate`` stops caching and from
then on recomputes over the last ``block_size`` tokens, exactly as without a cache.
"""
from __future__ import annotations

import torch

from .validation import describe, expect_floating, expect_tensor, is_int, is_number

__all__ = ["apply_temperature", "top_k_filter", "top_p_filter", "sample_next", "generate"]


def _expect_logits(logits) -> torch.Tensor:
    expect_tensor(logits, "logits", layout="(..., V)")
    expect_floating(logits, "logits")
    if logits.dim() == 0:
        raise ValueError("`logits` should have a last dimension V (the vocabulary), but got a 0-dimensional tensor.")
    return logits


def _check_temperature(temperature) -> float:
    if not is_number(temperature):
        raise TypeError(f"`temperature` should be a positive number, but got {describe(temperature)}.")
    if not temperature > 0:
        raise ValueError(f"`temperature` should be > 0, but got {temperature}. For the most likely token "
                         "every time (the limit temperature -> 0), use greedy=True.")
    return float(temperature)


def _check_top_k(k) -> int:
    if not is_int(k) or k < 1:
        raise ValueError(f"`top_k` should be an integer >= 1 (how many tokens to keep), but got {describe(k)}.")
    return k


def _check_top_p(p) -> float:
    if not is_number(p) or not 0.0 < p <= 1.0:
        raise ValueError(f"`top_p` should be a probability in (0, 1] (1 keeps every token), but got {describe(p)}.")
    return float(p)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature: below 1 sharpens the distribution, above 1 flattens it. (..., V) -> (..., V)."""
    return _expect_logits(logits) / _check_temperature(temperature)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the ``k`` largest logits in each row (ties broken by ``torch.topk``), set the rest to -inf.

    ``k`` larger than V keeps everything. (..., V) -> (..., V).
    """
    _expect_logits(logits)
    k = min(_check_top_k(k), logits.shape[-1])
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, logits.topk(k, dim=-1).indices, True)        # True at the k largest
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probabilities sum to >= ``p``.

    The most likely token is always kept. (..., V) -> (..., V), the dropped logits set to -inf.
    """
    _expect_logits(logits)
    p = _check_top_p(p)
    sorted_logits, order = logits.sort(dim=-1, descending=True)    # (..., V), most likely first
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs                     # probability of the tokens ranked above
    keep_sorted = mass_before < p                                  # the top token has 0 < p: always kept
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)   # back to vocabulary order
    return logits.masked_fill(~keep, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, greedy: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose one token per row of ``logits`` (B, V): the argmax if ``greedy``, else a sample after
    temperature, top-k and top-p. Returns token ids (B, 1)."""
    expect_tensor(logits, "logits", 2, "(B, V)")
    expect_floating(logits, "logits")
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)                 # (B, 1)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()        # sample in float32: a tiny temperature overflows float16 to inf/nan
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = logits.softmax(dim=-1)                                  # (B, V), filtered tokens get 0
    return torch.multinomial(probs, num_samples=1, generator=generator)   # (B, 1)


@torch.no_grad()
def generate(model, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
             use_cache: bool = True, generator: torch.Generator | None = None,
             eos_token_id: int | None = None) -> torch.Tensor:
    """Extend each prompt in ``input_ids`` (B, T) by up to ``max_new_tokens`` tokens; returns (B, T + new).

    ``model`` is a :class:`~ptlm_course.gpt.GPT` (or anything with ``config.block_size``, ``forward(input_ids)``
    returning ``(logits, loss)`` and, for ``use_cache``, ``new_kv_cache()``). It runs in eval mode (no
    dropout) and is put back in its previous mode afterwards. ``generator`` makes sampling reproducible.
    After a sequence emits ``eos_token_id`` it gets only ``eos_token_id`` (as padding); generation stops
    early once every sequence has finished.
    """
    expect_tensor(input_ids, "input_ids", 2, "(B, T) of token ids")
    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"`max_new_tokens` should be a non-negative integer, but got {describe(max_new_tokens)}.")
    if not greedy:                                  # check the settings once, before the loop
        _check_temperature(temperature)
        if top_k is not None:
            _check_top_k(top_k)
        if top_p is not None:
            _check_top_p(top_p)
    block_size = model.config.block_size

    was_training = model.training
    model.eval()
    try:
        cache = model.new_kv_cache() if use_cache else None
        unseen = input_ids[:, -block_size:]               # (B, T') tokens the cache has not seen yet
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)   # (B,)
        for _ in range(max_new_tokens):
            if cache is not None and cache[0].length + unseen.shape[1] > block_size:
                cache = None                        # full: positions cannot go past block_size
            if cache is None:
                logits, _ = model(input_ids[:, -block_size:])             # (B, T, V), the whole (cropped) context
            else:
                logits, _ = model(unseen, kv_cache=cache)           # (B, T', V), only the new tokens
            next_token = sample_next(logits[:, -1, :], temperature, top_k, top_p, greedy, generator)  # (B, 1)
            if eos_token_id is not None:
                next_token = next_token.masked_fill(finished[:, None], eos_token_id)
                finished |= next_token[:, 0] == eos_token_id
            input_ids = torch.cat([input_ids, next_token], dim=1)               # (B, T + 1)
            unseen = next_token
            if eos_token_id is not None and finished.all():
                break
    finally:
        model.train(was_training)
    return input_ids
