"""Checks for notebook 06's GPT exercise: the forward pass from token ids to logits, and the same pass
with a key/value cache (one generation step)."""
from __future__ import annotations

import torch

from ._core import CheckFailed, call_student, expect_tensor_like, passed
from ..attention import KVCache
from ..gpt import GPT, GPTConfig

__all__ = ["check_gpt_forward", "check_gpt_step"]


def _tiny_gpt(seed: int, n_layers: int) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=11, block_size=16, n_layers=n_layers, n_heads=2, d_model=8, dropout=0.0)
    model = GPT(config).double().eval()
    with torch.no_grad():                                   # weights large enough that every part shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln" in name:
                p.uniform_(-0.5, 0.5) if name.endswith("bias") else p.uniform_(0.5, 1.5)
            elif p.dim() == 2:
                p.normal_(0.0, 0.5)
    return model


def _variant(model: GPT, input_ids: torch.Tensor, kind: str = "ok") -> torch.Tensor:
    """The forward pass written out, with the classic mistakes as switches."""
    B, T = input_ids.shape
    positions = torch.arange(T)
    if kind == "positions_from_1":
        positions = positions + 1
    pos = {"no_positions": 0.0, "positions_from_ids": model.wpe(input_ids)}.get(kind, model.wpe(positions))
    x = model.wte(input_ids) + pos                                                     # (B, T, C)
    if kind == "norm_first":
        x = model.ln_f(x)
    blocks = list(model.blocks)
    blocks = {"reversed_blocks": blocks[::-1], "last_block_only": blocks[-1:],
              "first_block_only": blocks[:1]}.get(kind, blocks)
    for block in blocks:
        x = block(x)
        if kind == "norm_every_block":
            x = model.ln_f(x)
    if kind not in ("no_final_norm", "norm_first", "norm_every_block"):
        x = model.ln_f(x)
    logits = model.lm_head(x)                                                    # (B, T, V)
    return logits.softmax(-1) if kind == "softmax" else logits


_MISTAKES = {
    "no_positions": "the position embeddings are missing: add model.wpe(torch.arange(T)) to the token embeddings, "
                    "or every position looks the same to the blocks.",
    "positions_from_ids": "the position embeddings were looked up with the token ids: index model.wpe with the "
                          "positions 0..T-1, torch.arange(T).",
    "positions_from_1": "the positions start at 1: the first token has position 0, torch.arange(T).",
    "no_final_norm": "the final LayerNorm is missing: apply model.ln_f after the last block, before model.lm_head.",
    "norm_first": "the final LayerNorm is applied to the embeddings, before the blocks: model.ln_f comes after the "
                  "last block, right before model.lm_head.",
    "norm_every_block": "the final LayerNorm is applied after every block: model.ln_f runs once, after the last "
                        "block, right before model.lm_head (each block normalises its own inputs).",
    "reversed_blocks": "the blocks run in reverse order: apply model.blocks[0] first, then blocks[1], ...",
    "last_block_only": "only the last block was applied (x = block(x) inside the loop, but the loop input is "
                       "not updated?): each block reads the previous block's output.",
    "first_block_only": "only the first block was applied: run x through every block in model.blocks, in order.",
    "softmax": "you returned probabilities (softmax): return the raw logits model.lm_head(...) (the loss and the "
               "sampling apply the softmax themselves).",
}


def check_gpt_forward(fn) -> None:
    """Check ``fn(model, input_ids (B, T)) -> logits (B, T, V)`` against ``GPT.forward`` on tiny random models."""
    check = "check_gpt_forward"
    g = torch.Generator().manual_seed(14)
    cases = [(2, 7, 2), (1, 16, 3), (3, 1, 2)]                  # (B, T, n_layers); T = 16 fills the context
    for i, (B, T, n_layers) in enumerate(cases):
        model = _tiny_gpt(i, n_layers)
        input_ids = torch.randint(model.config.vocab_size, (B, T), generator=g)
        with torch.no_grad():
            logits = call_student(check, fn, model, input_ids.clone())
            expected = model(input_ids)[0]
            mistakes = []
            for kind, message in _MISTAKES.items():
                try:
                    mistakes.append((message, _variant(model, input_ids, kind)))
                except IndexError:                                               # position 16 does not exist
                    continue
        where = f" (test: a GPT with {n_layers} blocks, block_size 16, vocabulary 11; input_ids of shape {(B, T)})"
        if isinstance(logits, (tuple, list)):
            raise CheckFailed(check, "return only the logits tensor (B, T, V), not a tuple." + where)
        expect_tensor_like(check, logits, expected, "the logits (B, T, V)" + where,
                           [(message + where, wrong) for message, wrong in mistakes if wrong.shape == expected.shape])
    passed(check, len(cases))


# ------------------------------------------------------------------------------ one step with a KV cache


def _copy_cache(cache: list[KVCache]) -> list[KVCache]:
    """A cache holding the same keys/values; appending to it leaves the original alone (append concatenates)."""
    copies = []
    for layer in cache:
        copy = KVCache()
        copy.k, copy.v = layer.k, layer.v
        copies.append(copy)
    return copies


def _step_variant(model: GPT, input_ids: torch.Tensor, cache: list[KVCache], kind: str = "ok") -> torch.Tensor:
    """The cached forward pass written out, with the classic mistakes as switches."""
    B, T = input_ids.shape
    past = {"positions_from_0": 0, "past_from_len": len(cache)}.get(kind, cache[0].length)
    if kind == "positions_one_late":
        past += 1
    x = model.wte(input_ids) + model.wpe(torch.arange(past, past + T))                  # (B, T, C)
    for i, block in enumerate(model.blocks):
        layer_cache = {"no_cache": None, "first_cache_only": cache[0] if i == 0 else None,
                       "shared_cache": cache[0]}.get(kind, cache[i])
        x = block(x, kv_cache=layer_cache)                                         # (B, T, C)
    if kind != "no_final_norm":
        x = model.ln_f(x)
    logits = model.lm_head(x)                                                      # (B, T, V)
    return logits.softmax(-1) if kind == "softmax" else logits


_STEP_MISTAKES = {
    "positions_from_0": "the new tokens got positions 0, 1, ...: they come after the cached ones, so their "
                        "positions are past, past + 1, ..., with past = kv_cache[0].length (the keys each layer "
                        "already holds).",
    "past_from_len": "the positions start at len(kv_cache), the number of blocks: the number of cached positions is "
                     "kv_cache[0].length.",
    "positions_one_late": "the positions start one too late: with `past` cached positions, the first new token has "
                          "position past (0-based), torch.arange(past, past + T).",
    "no_cache": "the blocks were called without their cache, so the new tokens attend only to each other: call "
                "block(x, kv_cache=cache) with each block's own cache, zip(model.blocks, kv_cache).",
    "first_cache_only": "only the first block got its cache: every block needs its own, "
                        "for block, cache in zip(model.blocks, kv_cache).",
    "shared_cache": "every block was given kv_cache[0]: each block keeps its own keys and values, "
                    "for block, cache in zip(model.blocks, kv_cache).",
    "no_final_norm": "the final LayerNorm is missing: apply model.ln_f after the last block, before model.lm_head.",
    "softmax": "you returned probabilities (softmax): return the raw logits model.lm_head(...).",
}


class _NoForward(GPT):
    """A GPT whose own forward is off limits: the exercise is to write it from the parts."""

    def forward(self, *args, **kwargs):
        raise CheckFailed("check_gpt_step", "your function called model(...) itself: write the step from the parts "
                                            "(model.wte, model.wpe, model.blocks, model.ln_f, model.lm_head).")


def _step_mistakes(model: GPT, input_ids: torch.Tensor, cache: list[KVCache]) -> list[tuple[str, torch.Tensor]]:
    found = []
    for kind, message in _STEP_MISTAKES.items():
        try:
            found.append((message, _step_variant(model, input_ids, _copy_cache(cache), kind)))
        except (IndexError, ValueError, RuntimeError):        # e.g. a position past block_size
            continue
    return found


def check_gpt_step(fn) -> None:
    """Check ``fn(model, input_ids (B, T), kv_cache) -> logits (B, T, V)``: a prompt fed to an empty cache, then the
    next tokens fed one chunk at a time, each compared with the full forward pass at those positions."""
    check = "check_gpt_step"
    g = torch.Generator().manual_seed(6)
    cases = [(2, 5, (1, 1, 1), 2), (1, 3, (4, 1, 2), 3), (3, 1, (1,) * 15, 2)]   # (B, prompt, chunks, n_layers)
    for i, (B, prompt, chunks, n_layers) in enumerate(cases):
        model = _tiny_gpt(20 + i, n_layers)
        model.__class__ = _NoForward
        total = prompt + sum(chunks)
        input_ids = torch.randint(model.config.vocab_size, (B, total), generator=g)
        with torch.no_grad():
            full = GPT.forward(model, input_ids)[0]                                      # (B, total, V)
        cache, past = model.new_kv_cache(), 0
        for T in (prompt, *chunks):
            new = input_ids[:, past:past + T]
            where = (f" (test: a GPT with {n_layers} blocks, block_size 16; {past} positions already cached, "
                     f"input_ids of shape {(B, T)})")
            student_cache = _copy_cache(cache)
            with torch.no_grad():
                logits = call_student(check, fn, model, new.clone(), student_cache)
                mistakes = _step_mistakes(model, new, cache)
                GPT.forward(model, new, kv_cache=cache)                            # the reference cache moves on
            if isinstance(logits, (tuple, list)):
                raise CheckFailed(check, "return only the logits tensor (B, T, V), not a tuple." + where)
            if isinstance(logits, torch.Tensor) and T > 1 and tuple(logits.shape) == (B, 1, full.shape[-1]):
                raise CheckFailed(check, f"you returned the logits of the last new token only, (B, 1, V): return "
                                         f"those of all {T} new tokens, (B, T, V); the caller picks the last." + where)
            expect_tensor_like(check, logits, full[:, past:past + T], "the logits of the new tokens (B, T, V)" + where,
                               [(m + where, w) for m, w in mistakes])
            if student_cache[0].length != past + T:
                raise CheckFailed(check, f"after the call, kv_cache[0] should hold {past + T} positions (the "
                                         f"{past} cached and the {T} new), but it holds {student_cache[0].length}: "
                                         f"pass each block its cache, block(x, kv_cache=cache), so that it stores "
                                         f"the new keys and values." + where)
            past += T
    passed(check, len(cases))
