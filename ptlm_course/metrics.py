"""Numbers to judge a language model by: perplexity, masked-LM accuracy and classification accuracy.

Shapes: ``B`` batch, ``T`` positions, ``V`` vocabulary size, ``K`` number of classes.
"""
from __future__ import annotations

import math

import torch

from .validation import describe, expect_floating, expect_tensor

__all__ = ["perplexity", "masked_accuracy", "accuracy"]


def perplexity(mean_loss) -> float:
    """exp(mean cross-entropy in nats): the number of tokens the model is "choosing between" on average.

    A uniform guess over ``V`` tokens has loss ln V and perplexity V. Overflow gives ``inf``.
    """
    if isinstance(mean_loss, torch.Tensor):
        if mean_loss.numel() != 1:
            raise ValueError(f"`mean_loss` should be one number (the mean loss), but got {describe(mean_loss)}.")
        mean_loss = mean_loss.item()
    if isinstance(mean_loss, bool) or not isinstance(mean_loss, (int, float)):
        raise TypeError(f"`mean_loss` should be a number (the mean cross-entropy), but got {describe(mean_loss)}.")
    if mean_loss < 0:
        raise ValueError(f"`mean_loss` should be a cross-entropy, which is never negative, but got {mean_loss!r}.")
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf


def _check_logits_labels(logits, labels, layout: str) -> None:
    expect_tensor(logits, "logits", None, layout)
    expect_floating(logits, "logits")
    expect_tensor(labels, "labels")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"`labels` should hold integer class ids (torch.long), but its dtype is {labels.dtype}.")
    if logits.dim() != labels.dim() + 1 or logits.shape[:-1] != labels.shape:
        raise ValueError(f"`logits` should have the shape of `labels` plus one last dimension of scores, "
                         f"but got logits {tuple(logits.shape)} and labels {tuple(labels.shape)}.")


def masked_accuracy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> float:
    """MLM accuracy: the fraction of scored positions (labels != ignore_index) whose top logit is the label.

    logits (B, T, V) (or (N, V)), labels (B, T) (or (N,)). Returns ``nan`` when no position is scored.
    """
    _check_logits_labels(logits, labels, "(B, T, V)")
    scored = labels != ignore_index                           # (B, T) True where a label counts
    n = int(scored.sum())
    if n == 0:
        return math.nan
    correct = (logits.argmax(dim=-1) == labels) & scored      # (B, T)
    return correct.sum().item() / n


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Classification accuracy (e.g. NSP or sentiment): logits (B, K), labels (B,) class ids."""
    expect_tensor(logits, "logits", 2, "(B, K)")
    _check_logits_labels(logits, labels, "(B, K)")
    if labels.numel() == 0:
        raise ValueError("`labels` is empty: there is nothing to score.")
    return (logits.argmax(dim=-1) == labels).float().mean().item()
