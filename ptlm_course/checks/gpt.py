"""Checks for notebook 06's GPT exercise: the forward pass from token ids to logits."""
from __future__ import annotations

import torch

from ._core import CheckFailed, call_student, expect_tensor_like, passed
from ..gpt import GPT, GPTConfig

__all__ = ["check_gpt_forward"]


def _tiny_gpt(seed: int, n_layer: int) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=11, block_size=16, n_layer=n_layer, n_head=2, n_embd=8, dropout=0.0)
    model = GPT(config).double().eval()
    with torch.no_grad():                                   # weights large enough that every part shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln" in name:
                p.uniform_(-0.5, 0.5) if name.endswith("bias") else p.uniform_(0.5, 1.5)
            elif p.dim() == 2:
                p.normal_(0.0, 0.5)
    return model


def _variant(model: GPT, idx: torch.Tensor, kind: str = "ok") -> torch.Tensor:
    """The forward pass written out, with the classic mistakes as switches."""
    B, T = idx.shape
    positions = torch.arange(T)
    if kind == "positions_from_1":
        positions = positions + 1
    pos = {"no_positions": 0.0, "positions_from_ids": model.wpe(idx)}.get(kind, model.wpe(positions))
    x = model.wte(idx) + pos                                                     # (B, T, C)
    if kind == "norm_first":
        x = model.ln_f(x)
    blocks = list(model.blocks)
    blocks = {"reversed_blocks": blocks[::-1], "last_block_only": blocks[-1:], "first_block_only": blocks[:1]}.get(kind, blocks)
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
    """Check ``fn(model, idx (B, T)) -> logits (B, T, V)`` against ``GPT.forward`` on tiny random models."""
    check = "check_gpt_forward"
    g = torch.Generator().manual_seed(14)
    cases = [(2, 7, 2), (1, 16, 3), (3, 1, 2)]                               # (B, T, n_layer); T = 16 fills the context
    for i, (B, T, n_layer) in enumerate(cases):
        model = _tiny_gpt(i, n_layer)
        idx = torch.randint(model.config.vocab_size, (B, T), generator=g)
        with torch.no_grad():
            logits = call_student(check, fn, model, idx.clone())
            expected = model(idx)[0]
            mistakes = []
            for kind, message in _MISTAKES.items():
                try:
                    mistakes.append((message, _variant(model, idx, kind)))
                except IndexError:                                               # position 16 does not exist
                    continue
        where = f" (test: a GPT with {n_layer} blocks, block_size 16, vocabulary 11; idx of shape {(B, T)})"
        if isinstance(logits, (tuple, list)):
            raise CheckFailed(check, "return only the logits tensor (B, T, V), not a tuple." + where)
        expect_tensor_like(check, logits, expected, "the logits (B, T, V)" + where,
                           [(message + where, wrong) for message, wrong in mistakes if wrong.shape == expected.shape])
    passed(check, len(cases))
