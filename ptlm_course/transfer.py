"""Does pretraining pay? A fair few-label comparison of a pretrained body against the same model from scratch.

The protocol (Part 3) gives both starting points the same chances:

- the same architecture, tokenizer, labelled examples, steps and batches; only the starting weights differ;
- the same tuning budget: each start's learning rate is picked from the same grid on the *validation* split
  (with the first seed), and only then are the other seeds run and everything scored on the test split;
- several seeds; each seed draws its own labelled subset, its own new head and its own batches, so the
  spread shows how much of a difference chance alone makes.

    curve = label_budget_curve(config, pretrained_body, splits, budgets=(50, 200, 1000), seeds=range(5))
    summarise(curve)     # {(n, start): {"mean", "min", "max", "lr"}}

``pretrained_body`` is the state dict of a :class:`~ptlm_course.bert.BERT` (e.g. ``course_bert()[0].bert``).
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .bert import BertConfig, BertForTokenClassification
from .finetuning import (classification_loss_fn, encode_tagged, make_get_batch, predict, predict_tags,
                         token_classification_loss_fn)
from .punctuation import LABELS, mark_f1
from .training import TrainConfig, train
from .validation import describe

__all__ = ["TaggerRecipe", "fine_tune_head", "fine_tune_tagger", "score_tagger", "label_budget_curve", "summarise",
           "ClassifierRecipe", "fine_tune_classifier", "classifier_accuracy", "compare_seeds", "permutation_p",
           "mcnemar_p"]

STARTS = ("pretrained", "scratch")


@dataclass(frozen=True)
class TaggerRecipe:
    """How every arm fine-tunes: the same steps, batch and schedule; only the learning rate is searched.
    A run on ``n`` labelled examples takes ``min(steps, steps_per_example * n)`` steps."""
    steps: int = 150
    steps_per_example: int = 2
    batch_size: int = 16
    lr_grid: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64


def fine_tune_head(build: Callable[[], nn.Module], body_state: dict | None, train_data: dict, lr: float,
                   seed: int, recipe, loss_fn: Callable) -> nn.Module:
    """``build()`` (a BERT with a task head, made after seeding with ``seed``), its encoder ``model.bert`` loaded
    from ``body_state`` (None = the random init), trained on ``train_data`` by ``recipe``'s steps, batch and
    schedule with ``loss_fn``; returned in eval mode. Shared by every arm of every fair comparison."""
    steps = min(recipe.steps, recipe.steps_per_example * len(train_data["labels"]))
    torch.manual_seed(seed)
    model = build()
    if body_state is not None:
        missing, unexpected = model.bert.load_state_dict(body_state, strict=False)
        if missing or [k for k in unexpected if not k.startswith("pooler.")]:
            raise ValueError(f"`body_state` should be a BERT state dict of this config; missing {missing}, "
                             f"unexpected {unexpected}.")
    train(model, TrainConfig(steps=steps, lr=lr, warmup_steps=round(recipe.warmup_fraction * steps),
                             weight_decay=recipe.weight_decay, eval_batches=0, seed=seed, progress=False),
          make_get_batch(train_data, batch_size=recipe.batch_size), loss_fn)
    return model.eval()


def fine_tune_tagger(config: BertConfig, body_state: dict | None, train_data: dict, lr: float, seed: int,
                     recipe: TaggerRecipe = TaggerRecipe()) -> BertForTokenClassification:
    """A :class:`BertForTokenClassification` trained on ``train_data`` (from ``encode_tagged``), starting
    from ``body_state`` (a BERT state dict; None = random init, seeded by ``seed``)."""
    return fine_tune_head(lambda: BertForTokenClassification(config, num_labels=len(LABELS)), body_state,
                          train_data, lr, seed, recipe, token_classification_loss_fn)


def score_tagger(model: BertForTokenClassification, data: dict) -> float:
    """Macro-F1 over the six marks on encoded data."""
    return mark_f1(predict_tags(model, data), data["labels"])[0]


def _subset(examples: Sequence, n: int, seed: int) -> list:
    if n > len(examples):
        raise ValueError(f"a label budget of {n} needs at least {n} training examples, but there are {len(examples)}.")
    return random.Random(seed).sample(list(examples), n)


def label_budget_curve(config: BertConfig, pretrained_body: dict, splits: dict, tokenizer,
                       budgets: Sequence[int], seeds: Sequence[int], recipe: TaggerRecipe = TaggerRecipe(),
                       log=print) -> list[dict]:
    """For every label budget, seed and start: the test macro-F1 with the start's chosen learning rate.
    Returns rows ``{"labels", "start", "seed", "lr", "score"}``; ``log`` gets one line per budget and start."""
    if not isinstance(pretrained_body, dict):
        raise TypeError(f"`pretrained_body` should be a BERT state dict, but got {describe(pretrained_body)}.")
    seeds, budgets = list(seeds), list(budgets)
    if not seeds or not budgets:
        raise ValueError(f"`budgets` and `seeds` should be non-empty, "
                         f"but got {describe(budgets)} and {describe(seeds)}.")
    val = encode_tagged(splits["validation"], tokenizer, recipe.max_length)
    test = encode_tagged(splits["test"], tokenizer, recipe.max_length)
    rows = []
    for n in budgets:
        subsets = {s: encode_tagged(_subset(splits["train"], n, s), tokenizer, recipe.max_length) for s in seeds}
        for start in STARTS:
            body = pretrained_body if start == "pretrained" else None
            first = seeds[0]                                   # tune on the first seed, on validation only
            tuning = {lr: fine_tune_tagger(config, body, subsets[first], lr, first, recipe) for lr in recipe.lr_grid}
            val_scores = {lr: score_tagger(model, val) for lr, model in tuning.items()}
            best_lr = max(recipe.lr_grid, key=val_scores.get)
            for s in seeds:
                model = (tuning[best_lr] if s == first
                         else fine_tune_tagger(config, body, subsets[s], best_lr, s, recipe))
                rows.append({"labels": n, "start": start, "seed": s, "lr": best_lr,
                             "score": score_tagger(model, test)})
            scores = [r["score"] for r in rows[-len(seeds):]]
            log(f"{n:>6} labels  {start:>10}  lr {best_lr:.0e}  test macro-F1 "
                + " ".join(f"{x:.3f}" for x in scores) + f"  mean {sum(scores) / len(scores):.3f}")
    return rows


def summarise(rows: list[dict]) -> dict:
    """``{(labels, start): {"mean", "min", "max", "lr", "n"}}`` over the seeds of :func:`label_budget_curve`'s rows."""
    out = {}
    for key in dict.fromkeys((r["labels"], r["start"]) for r in rows):
        scores = [r["score"] for r in rows if (r["labels"], r["start"]) == key]
        lr = next(r["lr"] for r in rows if (r["labels"], r["start"]) == key)
        out[key] = {"mean": sum(scores) / len(scores), "min": min(scores), "max": max(scores), "lr": lr,
                    "n": len(scores)}
    return out


# --------------------------------------------------------------------------------------------------
# The same protocol for sentence classification (notebooks 10, 11 and 14): any model, a fixed recipe,
# the learning rate picked on validation with the first seed, every seed scored on test
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassifierRecipe:
    """Every arm of a sentence-classification comparison trains ``steps`` steps of ``batch_size`` examples
    (AdamW, warm-up + cosine); only the learning rate is searched, on validation, from ``lr_grid``."""
    steps: int = 400
    batch_size: int = 32
    lr_grid: tuple[float, ...] = (3e-4, 1e-3)
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01


def fine_tune_classifier(model: torch.nn.Module, train_data: dict, lr: float, seed: int,
                         recipe: ClassifierRecipe = ClassifierRecipe()) -> torch.nn.Module:
    """Train every weight of ``model`` on ``train_data`` (from ``encode_examples``); returns it in eval mode."""
    config = TrainConfig(steps=recipe.steps, lr=lr, warmup_steps=round(recipe.warmup_fraction * recipe.steps),
                         weight_decay=recipe.weight_decay, eval_batches=0, seed=seed, progress=False)
    train(model, config, make_get_batch(train_data, batch_size=recipe.batch_size), classification_loss_fn)
    return model.eval()


def classifier_accuracy(model: torch.nn.Module, data: dict) -> float:
    """Accuracy on encoded examples."""
    preds, _ = predict(model, data)
    return (preds == data["labels"]).float().mean().item()


def compare_seeds(build, data: dict, seeds: Sequence[int], recipe: ClassifierRecipe = ClassifierRecipe()) -> dict:
    """One arm of a comparison: ``build(seed)`` returns a fresh model (its new weights seeded by ``seed``);
    ``data`` holds encoded "train", "val" and "test" splits.

    The learning rate is the grid's best on validation with ``seeds[0]``; that run is kept as the first seed's,
    the other seeds train with the chosen rate. Returns ``{"lr", "val_by_lr", "test", "model"}`` where
    ``test`` lists the test accuracy per seed and ``model`` is the first seed's model.
    """
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"`seeds` should be a non-empty list of integers, but got {describe(seeds)}.")
    if not isinstance(data, dict) or not {"train", "val", "test"} <= set(data):
        raise TypeError(f"`data` should be a dict with encoded 'train', 'val' and 'test' splits, "
                        f"but got {describe(data)}.")
    tuning = {lr: fine_tune_classifier(build(seeds[0]), data["train"], lr, seeds[0], recipe) for lr in recipe.lr_grid}
    val_by_lr = {lr: classifier_accuracy(model, data["val"]) for lr, model in tuning.items()}
    best = max(recipe.lr_grid, key=val_by_lr.get)
    models = [tuning[best]] + [fine_tune_classifier(build(s), data["train"], best, s, recipe) for s in seeds[1:]]
    return {"lr": best, "val_by_lr": val_by_lr, "test": [classifier_accuracy(m, data["test"]) for m in models],
            "model": models[0]}


def permutation_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the difference of means of ``a`` and ``b``: the share of all ways to split the pooled
    values into groups of len(a) and len(b) whose means differ at least as much as observed (exact test)."""
    a, b = list(a), list(b)
    if not a or not b:
        raise ValueError(f"`a` and `b` should be non-empty, but got {describe(a)} and {describe(b)}.")
    pooled = a + b
    observed = abs(sum(a) / len(a) - sum(b) / len(b))
    total = sum(pooled)
    extreme = count = 0
    for group in itertools.combinations(range(len(pooled)), len(a)):
        in_a = sum(pooled[i] for i in group)
        gap = abs(in_a / len(a) - (total - in_a) / len(b))
        extreme += gap >= observed - 1e-12
        count += 1
    return extreme / count


def mcnemar_p(preds_a, preds_b, labels) -> float:
    """Exact two-sided McNemar test: do two models scored on the *same* test examples differ in accuracy?

    Only the examples where exactly one model is right count: with b (only A right) and c (only B right),
    under "no difference" each of those n = b + c examples goes either way with probability 1/2, so
    p = min(1, 2 * P(Binomial(n, 1/2) <= min(b, c))).
    """
    a, b_, y = (torch.as_tensor(x) for x in (preds_a, preds_b, labels))
    if a.shape != b_.shape or a.shape != y.shape or a.dim() != 1:
        raise ValueError(f"`preds_a`, `preds_b` and `labels` should be 1-D and the same length, but got shapes "
                         f"{tuple(a.shape)}, {tuple(b_.shape)} and {tuple(y.shape)}.")
    only_a = int(((a == y) & (b_ != y)).sum())
    only_b = int(((a != y) & (b_ == y)).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)
