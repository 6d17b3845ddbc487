"""Knowledge distillation (Part 3, notebook 14): a small *student* learns from a big *teacher*'s predictions.

    _, teacher_probs = predict(teacher, teacher_encoded)            # (N, K), with the teacher's own tokenizer
    data = with_teacher_logits(student_encoded, teacher_probs.log())  # the same N texts, student's tokenizer
    history = train(student, config, make_get_batch(data), make_distillation_loss_fn(temperature=2.0))

The teacher's probabilities say more than its labels: "72 % positive" is a softer, more informative target
than "positive". Dividing both models' logits by a temperature T > 1 softens them further, so the student
also learns how the teacher ranks the unlikely classes (Hinton, Vinyals and Dean, 2015). The soft term is
multiplied by T^2 so that its gradients keep the same size whatever T is.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .finetuning import expect_encoded, model_inputs
from .validation import describe

__all__ = ["distillation_loss", "with_teacher_logits", "make_distillation_loss_fn"]


def _check_logits(student_logits, teacher_logits) -> None:
    for name, t in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            raise TypeError(f"`{name}` should be a float tensor of shape (B, K) (one row of class scores per "
                            f"example), but got {describe(t)}.")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"The student's and the teacher's logits should have the same shape (B, K), but got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}: are they scores of "
                         "the same examples, with the same number of classes?")


def _check_number(value, name: str, low: float, high: float | None, low_open: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bounds = f"> {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"`{name}` should be a number {bounds}, but got {describe(value)}.")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0,
                      labels: torch.Tensor | None = None, alpha: float = 1.0) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross_entropy(student, labels)``.

    student_logits, teacher_logits: (B, K); the teacher's log-probabilities work as well as its logits
    (a softmax does not change when a row is shifted). teacher_T = softmax(teacher_logits / T), likewise for
    the student. ``labels`` (B,) are needed only when ``alpha < 1``. Returns the batch mean (a scalar).
    """
    _check_logits(student_logits, teacher_logits)
    _check_number(temperature, "temperature", 0.0, None, low_open=True)
    _check_number(alpha, "alpha", 0.0, 1.0, low_open=False)
    T = float(temperature)
    student_log_p = F.log_softmax(student_logits / T, dim=-1)                      # (B, K)
    teacher_log_p = F.log_softmax(teacher_logits.detach() / T, dim=-1)            # (B, K) no gradient to the teacher
    kl = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum(dim=-1)       # (B,)
    loss = alpha * T * T * kl.mean()
    if alpha < 1:
        if not isinstance(labels, torch.Tensor) or labels.shape != student_logits.shape[:1] \
                or labels.dtype != torch.long:
            raise ValueError(f"With alpha < 1 part of the loss is the usual cross-entropy, so `labels` should be a "
                             f"(B,) = ({student_logits.shape[0]},) tensor of class ids (torch.long), "
                             f"but got {describe(labels)}.")
        loss = loss + (1 - alpha) * F.cross_entropy(student_logits, labels)
    return loss


def with_teacher_logits(encoded: dict, teacher_logits: torch.Tensor) -> dict:
    """``encoded`` (from :func:`~ptlm_course.finetuning.encode_examples`) plus ``"teacher_logits"`` (N, K):
    row i must be the teacher's scores for example i. ``make_get_batch`` then serves them with each batch."""
    n = expect_encoded(encoded, "encoded")
    if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.dim() != 2 \
            or not teacher_logits.is_floating_point():
        raise TypeError(f"`teacher_logits` should be a float tensor (N, K), but got {describe(teacher_logits)}.")
    if len(teacher_logits) != n:
        raise ValueError(f"`teacher_logits` should have one row per example: {n} rows, but it has "
                         f"{len(teacher_logits)}. Score exactly the examples of `encoded`, in the same order.")
    return {**encoded, "teacher_logits": teacher_logits.detach().float().cpu()}


def make_distillation_loss_fn(temperature: float = 2.0, alpha: float = 1.0) -> Callable:
    """A ``loss_fn`` for :func:`~ptlm_course.training.train` on batches with ``"teacher_logits"``
    (see :func:`with_teacher_logits`): :func:`distillation_loss`, plus the batch's agreement with the
    teacher's choice and, if the batch has labels, its accuracy."""
    _check_number(temperature, "temperature", 0.0, None, low_open=True)
    _check_number(alpha, "alpha", 0.0, 1.0, low_open=False)

    def loss_fn(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        if "teacher_logits" not in batch:
            raise KeyError("The batch has no 'teacher_logits': build the training data with "
                           "with_teacher_logits(encoded, teacher_logits) before make_get_batch.")
        logits = model(**model_inputs(model, batch)).logits                  # (B, K)
        loss = distillation_loss(logits, batch["teacher_logits"], temperature, batch.get("labels"), alpha)
        chosen = logits.argmax(dim=-1)                                          # (B,)
        metrics = {"agreement": (chosen == batch["teacher_logits"].argmax(dim=-1)).float().mean().detach()}
        if "labels" in batch:
            metrics["accuracy"] = (chosen == batch["labels"]).float().mean().detach()
        return loss, metrics

    return loss_fn
