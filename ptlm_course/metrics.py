"""Numbers to judge a language model by: perplexity, masked-LM accuracy, and for classifiers accuracy,
the confusion matrix, precision, recall and F1 (scikit-learn's definitions; 0/0 counts as 0.0); for generated
text chrF (sacreBLEU's definition), and for BIO tagging entity-level F1 (conlleval's).

Shapes: ``B`` batch, ``T`` positions, ``V`` vocabulary size, ``K`` number of classes, ``N`` examples.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from .validation import describe, expect_floating, expect_tensor, is_int, is_number

__all__ = [
    "perplexity", "masked_accuracy", "accuracy", "confusion_matrix", "precision_recall_f1",
    "classification_report", "format_report", "plot_confusion_matrix", "chrf", "bio_spans", "entity_f1",
]


def perplexity(mean_loss) -> float:
    """exp(mean cross-entropy in nats): the number of tokens the model is "choosing between" on average.

    A uniform guess over ``V`` tokens has loss ln V and perplexity V. Overflow gives ``inf``.
    """
    if isinstance(mean_loss, torch.Tensor):
        if mean_loss.numel() != 1:
            raise ValueError(f"`mean_loss` should be one number (the mean loss), but got {describe(mean_loss)}.")
        mean_loss = mean_loss.item()
    if not is_number(mean_loss):
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


# --------------------------------------------------------------------------------------------------
# Classification: confusion matrix, precision, recall, F1
# --------------------------------------------------------------------------------------------------

def _as_class_ids(x, name: str, num_classes: int) -> torch.Tensor:
    """A list or tensor of class ids -> a flat long tensor, checked to lie in [0, num_classes)."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"`{name}` should be a tensor or list of class ids, but got {describe(x)}.") from None
        if x.numel() == 0:
            x = x.long()                                                     # [] reads as float
    if x.is_floating_point() or x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"`{name}` should hold integer class ids, but its dtype is {x.dtype} "
                        "(for logits, pass logits.argmax(-1)).")
    if x.dim() != 1:
        raise ValueError(f"`{name}` should be one class id per example (N,), but got shape {tuple(x.shape)}.")
    if x.numel() and (x.min() < 0 or x.max() >= num_classes):
        bad = x[(x < 0) | (x >= num_classes)]
        raise ValueError(f"`{name}` should hold class ids in [0, {num_classes - 1}], but contains {bad[:5].tolist()}.")
    return x.long().cpu()


def _check_pair(preds, labels, num_classes) -> tuple[torch.Tensor, torch.Tensor]:
    if not is_int(num_classes) or num_classes < 2:
        raise ValueError(f"`num_classes` should be an integer >= 2, but got {describe(num_classes)}.")
    preds, labels = _as_class_ids(preds, "preds", num_classes), _as_class_ids(labels, "labels", num_classes)
    if preds.shape != labels.shape:
        raise ValueError(f"`preds` and `labels` should have one entry per example each, but got "
                         f"{preds.numel()} predictions and {labels.numel()} labels.")
    if labels.numel() == 0:
        raise ValueError("`labels` is empty: there is nothing to score.")
    return preds, labels


def confusion_matrix(preds, labels, num_classes: int) -> torch.Tensor:
    """(K, K) counts: entry [i, j] = examples of true class i predicted as class j (rows = truth).

    The diagonal holds the correct predictions; column j sums to how often j was predicted.
    """
    preds, labels = _check_pair(preds, labels, num_classes)
    flat = labels * num_classes + preds                                      # (N,) one cell per example
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b with 0 where b == 0 (scikit-learn's zero_division=0)."""
    return torch.where(b > 0, a / b.clamp(min=1), torch.zeros_like(a))


def _per_class(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """precision, recall, F1 and support per class, (K,) each, from a confusion matrix."""
    cm = cm.double()
    tp = cm.diag()                                                           # (K,)
    predicted, actual = cm.sum(dim=0), cm.sum(dim=1)                         # (K,) column and row sums
    precision, recall = _safe_divide(tp, predicted), _safe_divide(tp, actual)
    f1 = _safe_divide(2 * tp, predicted + actual)                            # = 2PR / (P + R)
    return precision, recall, f1, actual.long()


def precision_recall_f1(preds, labels, num_classes: int, average: str | None = "macro"):
    """Precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = their harmonic mean, as scikit-learn.

    ``average``: ``"macro"`` the unweighted mean over classes (floats), ``"binary"`` those of class 1
    (two classes only; floats), ``None`` one value per class ((K,) tensors). A class never predicted has
    precision 0, one never present recall 0.
    """
    if average not in ("macro", "binary", None):
        raise ValueError(f"`average` should be 'macro', 'binary' or None, but got {describe(average)}.")
    if average == "binary" and num_classes != 2:
        raise ValueError(f"average='binary' needs num_classes = 2 (it scores class 1), but got num_classes = "
                         f"{num_classes}; use 'macro' or None.")
    precision, recall, f1, _ = _per_class(confusion_matrix(preds, labels, num_classes))
    if average is None:
        return precision, recall, f1
    if average == "binary":
        return precision[1].item(), recall[1].item(), f1[1].item()
    return precision.mean().item(), recall.mean().item(), f1.mean().item()


def classification_report(preds, labels, num_classes: int, class_names=None) -> dict:
    """Everything in one dict: ``accuracy``, ``per_class`` {name: {precision, recall, f1, support}},
    ``macro`` {precision, recall, f1, support}, and the ``confusion_matrix`` (as nested lists)."""
    if class_names is None:
        class_names = [str(k) for k in range(num_classes)] if isinstance(num_classes, int) else None
    cm = confusion_matrix(preds, labels, num_classes)
    if len(class_names) != num_classes:
        raise ValueError(f"`class_names` should have one name per class ({num_classes}), "
                         f"but got {describe(class_names)}.")
    precision, recall, f1, support = _per_class(cm)
    per_class = {str(name): {"precision": p.item(), "recall": r.item(), "f1": f.item(), "support": int(s)}
                 for name, p, r, f, s in zip(class_names, precision, recall, f1, support)}
    n = int(cm.sum())
    return {
        "accuracy": cm.diag().sum().item() / n,
        "per_class": per_class,
        "macro": {"precision": precision.mean().item(), "recall": recall.mean().item(), "f1": f1.mean().item(),
                  "support": n},
        "confusion_matrix": cm.tolist(),
    }


def format_report(report: dict, digits: int = 3) -> str:
    """A :func:`classification_report` as an aligned text table."""
    rows = [(name, r) for name, r in report["per_class"].items()] + [("macro avg", report["macro"])]
    width = max(12, *(len(name) for name, _ in rows))
    lines = [f"{'':>{width}} {'precision':>10} {'recall':>10} {'f1':>10} {'support':>9}"]
    for name, r in rows:
        lines.append(f"{name:>{width}} {r['precision']:>10.{digits}f} {r['recall']:>10.{digits}f} "
                     f"{r['f1']:>10.{digits}f} {r['support']:>9d}")
    lines.append(f"{'accuracy':>{width}} {report['accuracy']:>10.{digits}f}")
    return "\n".join(lines)


def plot_confusion_matrix(cm, class_names=None, ax=None, normalize: bool = False, title: str = "Confusion matrix"):
    """Heat map of a (K, K) confusion matrix (rows = true class), each cell labelled with its count
    (or, with ``normalize``, the fraction of its row). Returns the axes."""
    import matplotlib.pyplot as plt

    cm = torch.as_tensor(cm)
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"`cm` should be a square (K, K) confusion matrix, but got shape {tuple(cm.shape)}.")
    K = cm.shape[0]
    class_names = [str(k) for k in range(K)] if class_names is None else [str(c) for c in class_names]
    if len(class_names) != K:
        raise ValueError(f"`class_names` should have {K} names (one per row of cm), but got {len(class_names)}.")
    values = cm.double()
    if normalize:
        values = values / values.sum(dim=1, keepdim=True).clamp(min=1)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * K + 2, 1.2 * K + 1.5))
    ax.imshow(values.numpy(), cmap="Blues", vmin=0)
    ax.set(xticks=range(K), yticks=range(K), xticklabels=class_names, yticklabels=class_names,
           xlabel="predicted", ylabel="true", title=title)
    threshold = values.max().item() / 2
    for i in range(K):
        for j in range(K):
            text = f"{values[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center",
                    color="white" if values[i, j] > threshold else "black")
    return ax


# --------------------------------------------------------------------------------------------------
# Text generation: chrF
# --------------------------------------------------------------------------------------------------

def _char_ngrams(text: str, n: int) -> Counter:
    text = "".join(text.split())                                   # chrF ignores whitespace
    return Counter(text[i:i + n] for i in range(len(text) - n + 1))


def chrf(hypotheses: Sequence[str], references: Sequence[str], char_order: int = 6, beta: float = 2.0) -> float:
    """chrF (Popović, 2015) of a corpus, in [0, 100], as sacreBLEU computes it by default: character n-grams
    of orders 1..``char_order`` (whitespace removed), counts summed over the corpus, precision and recall averaged
    over the orders both sides have, then the F-score that weighs recall ``beta`` times as much as precision."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("`hypotheses` and `references` should be lists of strings (one per example), not one string.")
    if len(hypotheses) != len(references) or not all(isinstance(t, str) for t in [*hypotheses, *references]):
        raise ValueError(f"Expected two lists of strings of the same length, but got {len(hypotheses)} hypotheses "
                         f"and {len(references)} references.")
    if not is_int(char_order) or char_order < 1:
        raise ValueError(f"`char_order` should be an integer >= 1, but got {describe(char_order)}.")
    stats = [[0, 0, 0] for _ in range(char_order)]                  # per order: hypothesis, reference, matching
    for hyp, ref in zip(hypotheses, references):
        for n in range(1, char_order + 1):
            h, r = _char_ngrams(hyp, n), _char_ngrams(ref, n)
            stats[n - 1][0] += sum(h.values())
            stats[n - 1][1] += sum(r.values())
            stats[n - 1][2] += sum((h & r).values())
    orders = [(m / h, m / r) for h, r, m in stats if h > 0 and r > 0]
    if not orders:
        return 0.0
    precision = sum(p for p, _ in orders) / len(orders)
    recall = sum(r for _, r in orders) / len(orders)
    if precision + recall == 0:
        return 0.0
    return 100 * (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall)


# --------------------------------------------------------------------------------------------------
# Token tagging: entity-level F1
# --------------------------------------------------------------------------------------------------

def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entities of a BIO tag sequence as (type, first, last) positions, read as conlleval and seqeval do:
    ``B-X`` starts an entity, ``I-X`` continues one of type X (and starts one after ``O`` or another type)."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):                          # the extra "O" closes a last entity
        if not isinstance(tag, str) or not (tag == "O" or tag[:2] in ("B-", "I-")):
            raise ValueError(f"Tags should be 'O', 'B-TYPE' or 'I-TYPE', but tag {i} is {describe(tag)}.")
        continues = tag.startswith("I-") and kind == tag[2:]
        if kind is not None and not continues:
            spans.add((kind, start, i - 1))
            kind = None
        if tag != "O" and not continues:
            start, kind = i, tag[2:]
    return spans


def entity_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (micro, exact type and boundaries) over sentences of BIO tags."""
    if len(predicted) != len(gold):
        raise ValueError(f"Expected as many predicted as gold sentences, but got {len(predicted)} and {len(gold)}.")
    found = correct = wanted = 0
    for i, (p, g) in enumerate(zip(predicted, gold)):
        if len(p) != len(g):
            raise ValueError(f"Sentence {i} has {len(p)} predicted tags but {len(g)} gold tags.")
        p_spans, g_spans = bio_spans(p), bio_spans(g)
        found, wanted, correct = found + len(p_spans), wanted + len(g_spans), correct + len(p_spans & g_spans)
    precision = correct / found if found else 0.0
    recall = correct / wanted if wanted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
