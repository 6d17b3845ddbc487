"""What the models return: named tuples shared by BERT, GPT, BART and their task heads."""
from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["BertOutput", "PreTrainingOutput", "ClassificationOutput", "QuestionAnsweringOutput",
           "Seq2SeqOutput"]


class BertOutput(NamedTuple):
    last_hidden_state: torch.Tensor        # (B, T, C)
    pooled: torch.Tensor | None            # (B, C), None for a model built without a pooler


class PreTrainingOutput(NamedTuple):
    mlm_logits: torch.Tensor               # (B, T, V)
    nsp_logits: torch.Tensor               # (B, 2)
    loss: torch.Tensor | None              # scalar, when labels were given


class ClassificationOutput(NamedTuple):
    logits: torch.Tensor                   # (B, num_labels); (B, T, num_labels) for token classification
    loss: torch.Tensor | None              # scalar, when labels were given


class QuestionAnsweringOutput(NamedTuple):
    start_logits: torch.Tensor             # (B, T) score of each position as the answer's first token
    end_logits: torch.Tensor               # (B, T) score of each position as the answer's last token
    loss: torch.Tensor | None              # scalar, when start and end positions were given


class Seq2SeqOutput(NamedTuple):
    logits: torch.Tensor                   # (B, T, V) for every target position
    loss: torch.Tensor | None              # scalar, when labels were given
    encoder_last_hidden_state: torch.Tensor    # (B, S, C)
