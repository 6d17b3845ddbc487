"""Punctuation restoration on the plays: a token-classification task whose labels come from the text itself.

Take a speech, remove its punctuation, and ask the model to put it back: for every word, which mark (if
any) followed it? Nobody has to label anything, the held-out plays give a test set that pretraining never
saw, and the task needs what masked-LM pretraining on Shakespeare teaches (where a clause ends, what a
question looks like), which makes it the place where the course's own small BERT pays off.

    words, labels = punctuation_example("Stand forth, Demetrius. My noble lord,")
    # (['Stand', 'forth', 'Demetrius', 'My', 'noble', 'lord'], [0, 1, 2, 0, 0, 1])
    splits = punctuation_splits()            # {"train", "validation", "test"}: lists of (words, labels)
    data = encode_tagged(splits["test"], tokenizer, max_length=64)   # from ptlm_course.finetuning
"""
from __future__ import annotations

import random

import torch

from . import metrics
from .data import Play
from .validation import describe, is_int

__all__ = ["MARKS", "LABELS", "punctuation_example", "punctuation_examples", "punctuation_splits",
           "restore_punctuation", "mark_f1"]

MARKS = (",", ".", "?", "!", ";", ":")     # the six marks the task restores
LABELS = ("none",) + MARKS                 # label k: the mark after a word (0 = none)
_STRIP = "-'\"()[]_*&"                     # other characters peeled off a word's edges (dashes, quotes)


def punctuation_example(text: str) -> tuple[list[str], list[int]]:
    """The words of ``text`` without punctuation, and for each the label of the mark that followed it.

    A word followed by several marks ("lord!--", "so?'") keeps the last of the six; a token that holds no
    letters or digits (a lone dash) is dropped. Apostrophes and hyphens inside a word stay ("bewitch'd").
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` should be a string, but got {describe(text)}.")
    words, labels = [], []
    for token in text.split():
        word, label = token, 0
        while word and (word[-1] in MARKS or word[-1] in _STRIP):
            if word[-1] in MARKS and label == 0:
                label = LABELS.index(word[-1])
            word = word[:-1]
        word = word.lstrip(_STRIP + "".join(MARKS))
        if any(c.isalnum() for c in word):
            words.append(word)
            labels.append(label)
        elif label and labels:                     # "so -- ?": the mark belongs to the word before
            labels[-1] = label
    return words, labels


def punctuation_examples(plays: list[Play], max_words: int = 40) -> list[tuple[list[str], list[int]]]:
    """Every speech of ``plays`` as examples of at most ``max_words`` words (long speeches are cut into
    consecutive pieces), in order."""
    if not is_int(max_words) or max_words < 1:
        raise ValueError(f"`max_words` should be a positive integer, but got {describe(max_words)}.")
    examples = []
    for play in plays:
        for speech in play.speeches:
            words, labels = punctuation_example(speech.text)
            for start in range(0, len(words), max_words):
                examples.append((words[start:start + max_words], labels[start:start + max_words]))
    return examples


def punctuation_splits(max_words: int = 40, seed: int = 0, n_test: int | None = 1200
                       ) -> dict[str, list[tuple[list[str], list[int]]]]:
    """The course's punctuation task: ``train`` from the plays the course BERT was pretrained on (shuffled
    with ``seed``), ``validation`` from the first held-out play, ``test`` from the other three held-out
    plays, which no model of the course has seen: ``n_test`` passages drawn from all three (a fixed draw,
    the same for every ``seed``; None: every passage)."""
    from .course_models import split_plays                      # the held-out split of notebooks 06-08

    if n_test is not None and (not is_int(n_test) or n_test < 1):
        raise ValueError(f"`n_test` should be a positive integer or None, but got {describe(n_test)}.")
    train_plays, held_out = split_plays()
    train = punctuation_examples(train_plays, max_words)
    random.Random(seed).shuffle(train)
    test = punctuation_examples(held_out[1:], max_words)
    if n_test is not None and n_test < len(test):
        test = random.Random(0).sample(test, n_test)
    return {"train": train, "validation": punctuation_examples(held_out[:1], max_words), "test": test}


def restore_punctuation(words: list[str], labels) -> str:
    """The words joined again, each followed by the mark its label names: what a model's tags read like."""
    labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    if len(words) != len(labels):
        raise ValueError(f"`labels` should have one label per word ({len(words)}), but got {len(labels)}.")
    return " ".join(w + (LABELS[k] if k else "") for w, k in zip(words, labels))


def mark_f1(preds: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, float]]:
    """Macro-F1 over the six marks (the "none" class left out: it is most words and easy), and each mark's F1.

    ``preds`` and ``labels``: tensors of label ids of the same shape; positions whose label is -100 are skipped.
    """
    if not isinstance(preds, torch.Tensor) or not isinstance(labels, torch.Tensor) or preds.shape != labels.shape:
        raise ValueError(f"`preds` and `labels` should be tensors of the same shape, but got {describe(preds)} "
                         f"and {describe(labels)}.")
    keep = labels != -100
    _, _, f1 = metrics.precision_recall_f1(preds[keep], labels[keep], len(LABELS), average=None)   # (7,)
    per_mark = {mark: f1[k + 1].item() for k, mark in enumerate(MARKS)}
    return sum(per_mark.values()) / len(MARKS), per_mark
