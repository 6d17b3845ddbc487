"""Token embeddings and the two ways of telling a Transformer where each token sits.

    embed = TokenAndPositionEmbedding(vocab_size=65, d_model=64, max_len=256, positional="sinusoidal")
    x = embed(ids)   # ids (B, T) -> x (B, T, C)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .validation import expect_floating, expect_ids_in_vocab, expect_positive_int, expect_size, expect_tensor

POSITIONAL_KINDS = ("learned", "sinusoidal")


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """The table of "Attention Is All You Need": PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...)."""
    expect_positive_int(max_len, "max_len")
    expect_positive_int(d_model, "d_model")
    if d_model % 2:
        raise ValueError(f"`d_model` should be even for sinusoidal positions (sin/cos pairs), but got {d_model}.")
    position = torch.arange(max_len, dtype=torch.float32)[:, None]             # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)                   # (d_model/2,)
    frequency = torch.exp(-math.log(10000.0) * two_i / d_model)                # 1 / 10000^(2i/d)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * frequency)                              # (max_len, d_model/2)
    pe[:, 1::2] = torch.cos(position * frequency)
    return pe


def _check_sequence(x: torch.Tensor, d_model: int, max_len: int) -> None:
    expect_tensor(x, "x", ndim=3, layout="(B, T, C)")
    expect_floating(x, "x")
    expect_size(x, "x", -1, d_model, "d_model")
    _check_length(x, "x", max_len)


def _check_length(x: torch.Tensor, name: str, max_len: int) -> None:
    if x.shape[1] > max_len:
        raise ValueError(
            f"The sequence is longer than the positions the layer knows: `{name}` has T = {x.shape[1]} "
            f"(shape {tuple(x.shape)}), but max_len = {max_len}. Use shorter sequences or a larger max_len."
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to a sequence: x (B, T, C) -> x + pe[:T]. Nothing to learn.

    ``check_inputs``: whether ``forward`` checks ``x`` (False inside :class:`TokenAndPositionEmbedding`, which
    checks the ids where they enter).
    """

    check_inputs = True

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_table(max_len, d_model))  # (max_len, C), moves with .to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_inputs:
            _check_sequence(x, self.d_model, self.max_len)
        return x + self.pe[: x.shape[1]].to(x.dtype)                      # (B, T, C) + (T, C)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained vector per position (as in GPT-2 and BERT): x (B, T, C) -> x + weight[:T].
    ``check_inputs`` as in :class:`SinusoidalPositionalEncoding`."""

    check_inputs = True

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        expect_positive_int(max_len, "max_len")
        expect_positive_int(d_model, "d_model")
        self.d_model, self.max_len = d_model, max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)  # small, like GPT-2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.check_inputs:
            _check_sequence(x, self.d_model, self.max_len)
        positions = torch.arange(x.shape[1], device=x.device)              # (T,)
        return x + self.embedding(positions)                               # (B, T, C) + (T, C)


class TokenAndPositionEmbedding(nn.Module):
    """Token ids (B, T) -> token vectors plus position vectors (B, T, C), then dropout."""

    def __init__(self, vocab_size: int, d_model: int, max_len: int, positional: str = "learned",
                 dropout: float = 0.0):
        super().__init__()
        expect_positive_int(vocab_size, "vocab_size")
        if positional not in POSITIONAL_KINDS:
            raise ValueError(f"`positional` should be one of {', '.join(POSITIONAL_KINDS)}, but got {positional!r}.")
        self.vocab_size = vocab_size
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = (LearnedPositionalEmbedding(max_len, d_model) if positional == "learned"
                         else SinusoidalPositionalEncoding(d_model, max_len))
        self.position.check_inputs = False          # forward checks the ids where they enter
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        expect_tensor(ids, "ids", ndim=2, layout="(B, T) of token ids")
        expect_ids_in_vocab(ids, self.vocab_size, "ids")
        _check_length(ids, "ids", self.position.max_len)
        x = self.token(ids)                                                # (B, T, C)
        return self.dropout(self.position(x))                              # (B, T, C)


__all__ = ["POSITIONAL_KINDS", "sinusoidal_table", "SinusoidalPositionalEncoding",
           "LearnedPositionalEmbedding", "TokenAndPositionEmbedding"]
