"""The rungs below a fine-tuned Transformer: always guessing the majority class, a bag-of-words logistic
regression, and a *probe* (a logistic regression on a frozen encoder's mean-pooled features).

A probe asks "what does the encoder already know?" without changing it; a bag-of-words model asks "how far do
the words alone get?". Both are fitted the same way: L2-regularised logistic regression, full batch, L-BFGS,
the regularisation strength chosen on the validation split.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .bert import mean_pool
from .validation import describe

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)       # regularisation strengths tried on validation


def _expect_labels(labels, name: str) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        labels = labels.tolist()
    if (not isinstance(labels, (list, tuple)) or not labels
            or not all(isinstance(y, int) and not isinstance(y, bool) and y >= 0 for y in labels)):
        raise TypeError(f"`{name}` should be a non-empty list (or 1-D tensor) of class ids >= 0, "
                        f"but got {describe(labels)}.")
    return torch.tensor(labels, dtype=torch.long)


def majority_accuracy(train_labels, test_labels) -> float:
    """Accuracy of always predicting the most frequent training label."""
    train, test = _expect_labels(train_labels, "train_labels"), _expect_labels(test_labels, "test_labels")
    majority = int(torch.bincount(train).argmax())
    return (test == majority).float().mean().item()


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks (Rotten Tomatoes is already lower-cased and spaced)."""
    return re.findall(r"[a-z0-9']+|[^\sa-z0-9']", text.lower())


class BagOfWords:
    """Binary unigram + bigram features over a vocabulary learned from the training texts."""

    def __init__(self, train_texts: Sequence[str], min_count: int = 2, bigrams: bool = True):
        if isinstance(train_texts, str) or not all(isinstance(t, str) for t in train_texts) or not train_texts:
            raise TypeError(f"`train_texts` should be a non-empty list of strings, but got {describe(train_texts)}.")
        self.bigrams = bigrams
        counts = Counter(g for text in train_texts for g in set(self._grams(text)))
        self.vocab = {g: i for i, g in enumerate(sorted(g for g, c in counts.items() if c >= min_count))}

    def _grams(self, text: str) -> list[str]:
        w = words(text)
        return w + ([f"{a} {b}" for a, b in zip(w, w[1:])] if self.bigrams else [])

    def __len__(self) -> int:
        return len(self.vocab)

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, V) sparse 0/1 matrix: which vocabulary entries each text contains."""
        rows, cols = [], []
        for i, text in enumerate(texts):
            ids = {self.vocab[g] for g in self._grams(text) if g in self.vocab}
            rows += [i] * len(ids)
            cols += sorted(ids)
        index = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
        return torch.sparse_coo_tensor(index, torch.ones(len(rows)), (len(texts), len(self)),
                                       check_invariants=True).coalesce()


class LogisticRegression(nn.Module):
    """Softmax regression: logits = x W^T + b. ``x`` may be dense or sparse (N, D)."""

    def __init__(self, n_features: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_classes, n_features))     # (K, D)
        self.bias = nn.Parameter(torch.zeros(num_classes))                   # (K,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_sparse:
            return torch.sparse.mm(x, self.weight.t()) + self.bias           # (N, K)
        return x @ self.weight.t() + self.bias                               # (N, K)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self(x).argmax(dim=-1)                                     # (N,)


def fit_logistic_regression(x: torch.Tensor, labels, l2: float, max_iter: int = 200) -> LogisticRegression:
    """Minimise mean cross-entropy + l2 * ||W||^2 over the whole training set with L-BFGS."""
    y = _expect_labels(labels, "labels")
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] != len(y):
        raise ValueError(f"`x` should be an (N, D) tensor with N = {len(y)} rows (one per label), "
                         f"but got {describe(x)}.")
    model = LogisticRegression(x.shape[1], int(y.max()) + 1 if len(y) else 2)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y) + l2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return model


def accuracy_of(model: LogisticRegression, x: torch.Tensor, labels) -> float:
    return (model.predict(x) == _expect_labels(labels, "labels")).float().mean().item()


def tuned_logistic_regression(train: tuple, val: tuple, l2_grid: Sequence[float] = L2_GRID) -> dict:
    """Fit one model per L2 strength on ``train = (x, labels)``; keep the best on ``val``.

    Returns ``{"model", "l2", "val_accuracy", "val_by_l2"}``.
    """
    fits = {l2: fit_logistic_regression(*train, l2=l2) for l2 in l2_grid}
    val_by_l2 = {l2: accuracy_of(m, *val) for l2, m in fits.items()}
    best = max(l2_grid, key=val_by_l2.get)
    return {"model": fits[best], "l2": best, "val_accuracy": val_by_l2[best], "val_by_l2": val_by_l2}


@torch.no_grad()
def mean_pooled_features(encoder: nn.Module, encoded: dict, batch_size: int = 128) -> torch.Tensor:
    """(N, C) frozen features: the average of the encoder's last hidden states over each example's real tokens.

    ``encoder`` is a ``BERT`` (what ``model.bert`` holds); ``encoded`` comes from ``encode_examples``. The
    features are standardised later by the caller if wanted; here they are the raw averages, in eval mode.
    """
    if not isinstance(encoded, dict) or "input_ids" not in encoded or "attention_mask" not in encoded:
        raise TypeError(f"`encoded` should be the dict from encode_examples, but got {describe(encoded)}.")
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    chunks = []
    try:
        for start in range(0, len(encoded["input_ids"]), batch_size):
            rows = slice(start, start + batch_size)
            mask = encoded["attention_mask"][rows]
            T = int(mask.sum(dim=1).max())                                   # cut the padding columns
            ids, types, mask = (encoded[k][rows, :T].to(device)
                                for k in ("input_ids", "token_type_ids", "attention_mask"))
            hidden = encoder(ids, types, mask).last_hidden_state            # (b, T, C)
            chunks.append(mean_pool(hidden, mask).float().cpu())            # (b, C)
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)                                                 # (N, C)


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale every feature to mean 0, std 1 using the *training* rows' statistics only."""
    mean, std = train.mean(dim=0), train.std(dim=0) + 1e-6
    return [(x - mean) / std for x in (train, *others)]


def probe_accuracy(encoder: nn.Module, data: dict, l2_grid: Sequence[float] = L2_GRID) -> dict:
    """A linear probe on frozen mean-pooled features: ``data`` holds encoded "train", "val", "test" splits.

    Returns ``{"test_accuracy", "val_accuracy", "l2"}``.
    """
    feats = {name: mean_pooled_features(encoder, data[name]) for name in ("train", "val", "test")}
    x_tr, x_va, x_te = standardise(feats["train"], feats["val"], feats["test"])
    fit = tuned_logistic_regression((x_tr, data["train"]["labels"]), (x_va, data["val"]["labels"]), l2_grid)
    return {"test_accuracy": accuracy_of(fit["model"], x_te, data["test"]["labels"]),
            "val_accuracy": fit["val_accuracy"], "l2": fit["l2"]}
