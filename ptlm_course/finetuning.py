"""Fine-tuning helpers (Part 3): freezing layers, counting parameters, and the sentiment-classification
data pipeline that notebooks 09-14 share with :func:`ptlm_course.training.train`.

    data      = encode_examples(splits["train"], tokenizer, max_length=64)     # dict of (N, T) tensors
    get_batch = make_get_batch(data, encode_examples(splits["validation"], ...), batch_size=32)
    history   = train(model, TrainConfig(steps=300, lr=5e-5), get_batch, classification_loss_fn)
    preds, probs = predict(model, encode_examples(splits["test"], ...))

It works for :class:`~ptlm_course.bert.BertForSequenceClassification` (input_ids, token_type_ids,
attention_mask) and :class:`~ptlm_course.gpt.GPTForSequenceClassification` (no token types; padding on
the right, which both tokenizers' batches use).

Token classification (one label per word, :class:`~ptlm_course.bert.BertForTokenClassification`) uses the
same batches with (N, T) labels:

    data  = encode_tagged(examples, tokenizer, max_length=64)    # examples: (words, word_labels) pairs
    train(model, config, make_get_batch(data, val_data), token_classification_loss_fn)
    preds = predict_tags(model, encode_tagged(test_examples, ...))  # (N, T), -100 where no label
"""
from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .validation import describe, is_int

__all__ = [
    "freeze", "unfreeze", "freeze_encoder", "count_parameters", "parameter_summary",
    "encode_examples", "make_get_batch", "classification_loss_fn", "predict", "make_eval_fn",
    "encode_tagged", "token_classification_loss_fn", "predict_tags",
]


# --------------------------------------------------------------------------------------------------
# Freezing and counting
# --------------------------------------------------------------------------------------------------

def _expect_module(module, name: str = "module") -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"`{name}` should be a torch.nn.Module, but got {describe(module)}.")


def freeze(module: nn.Module) -> nn.Module:
    """Stop training every parameter of ``module`` (``requires_grad = False``); returns it."""
    _expect_module(module)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Train every parameter of ``module`` again (``requires_grad = True``); returns it."""
    _expect_module(module)
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def _body_and_top(model: nn.Module) -> tuple[nn.Module, nn.ModuleList, list[nn.Module]]:
    """(the pretrained body, its blocks, the layers above the blocks) of a BERT or GPT classifier."""
    from .bert import BERT
    from .gpt import GPT

    body = getattr(model, "bert", None)
    if not isinstance(body, BERT):
        body = getattr(model, "gpt", None)
    if not isinstance(body, (BERT, GPT)) or not isinstance(getattr(model, "classifier", None), nn.Module):
        raise TypeError("`model` should be a BertForSequenceClassification or GPTForSequenceClassification "
                        f"(a `.bert` or `.gpt` body and a `.classifier` head), but got {type(model).__name__}.")
    top = [body.pooler] if isinstance(body, BERT) else [body.ln_f]   # BERT's pooler / GPT's final LayerNorm
    return body, body.blocks, [m for m in top if m is not None]


def freeze_encoder(model: nn.Module, train_top_layers: int = 0) -> nn.Module:
    """Freeze the pretrained body of a BERT or GPT classifier except its top ``train_top_layers`` blocks.

    ``0`` is a *linear probe*: only the classifier learns. The layers above the blocks (BERT's pooler,
    GPT's final LayerNorm) train together with the top blocks (when ``train_top_layers > 0``). The
    classification head (and anything outside the body) stays trainable. Returns the model.
    """
    body, blocks, top = _body_and_top(model)
    n = len(blocks)
    if not is_int(train_top_layers) or not 0 <= train_top_layers <= n:
        raise ValueError(f"`train_top_layers` should be an integer in [0, {n}] (the model has {n} blocks), "
                         f"but got {describe(train_top_layers)}.")
    unfreeze(model)                                    # start from a clean slate: a second call can unfreeze
    freeze(body)
    for block in blocks[n - train_top_layers:]:        # not blocks[-k:]: that is every block when k = 0
        unfreeze(block)
    if train_top_layers > 0:
        for m in top:
            unfreeze(m)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (a shared, tied tensor counts once); only the trainable ones if asked."""
    _expect_module(model, "model")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_summary(model: nn.Module, depth: int = 1) -> str:
    """A table of parameters per sub-module down to ``depth`` levels (total and trainable), and the totals."""
    _expect_module(model, "model")
    if not is_int(depth) or depth < 1:
        raise ValueError(f"`depth` should be a positive integer, but got {describe(depth)}.")
    rows, seen = [], set()
    for name, module in model.named_modules():
        level = name.count(".") + 1 if name else 0
        if level == depth or (0 < level < depth and not any(True for _ in module.children())):
            params = [p for p in module.parameters() if id(p) not in seen]     # a tied tensor counts once
            seen.update(id(p) for p in params)
            if params:
                rows.append((name, sum(p.numel() for p in params),
                             sum(p.numel() for p in params if p.requires_grad)))
    total, trainable = count_parameters(model), count_parameters(model, trainable_only=True)
    width = max([len(r[0]) for r in rows] + [9])
    lines = [f"{'module':<{width}} {'parameters':>12} {'trainable':>12}"]
    lines += [f"{name:<{width}} {n:>12,} {t:>12,}" for name, n, t in rows]
    share = 100 * trainable / max(total, 1)
    lines.append(f"{'total':<{width}} {total:>12,} {trainable:>12,}  ({share:.2f}% trainable)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Data: examples -> tensors -> batches
# --------------------------------------------------------------------------------------------------

def _texts_and_labels(examples) -> tuple[list[str], list[int]]:
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence) or len(examples) == 0:
        raise TypeError(f"`examples` should be a non-empty list of Example(text, label) (or (text, label) pairs), "
                        f"but got {describe(examples)}.")
    texts, labels = [], []
    for i, ex in enumerate(examples):
        text, label = (ex.text, ex.label) if hasattr(ex, "text") and hasattr(ex, "label") else (
            ex if isinstance(ex, (tuple, list)) and len(ex) == 2 else (None, None))
        if not isinstance(text, str) or not is_int(label):
            raise TypeError(f"`examples[{i}]` should be an Example(text, label) or a (str, int) pair, "
                            f"but got {describe(ex)}.")
        texts.append(text)
        labels.append(label)
    return texts, labels


def encode_examples(examples, tokenizer, max_length: int, pad_id: int | None = None) -> dict[str, torch.Tensor]:
    """Tokenize labelled examples into ``input_ids``, ``token_type_ids``, ``attention_mask`` (N, T) and
    ``labels`` (N,), padded on the right to the longest sequence (at most ``max_length`` tokens).

    A WordPiece tokenizer (with ``batch_encode``) adds [CLS] ... [SEP] and truncates keeping them. Any other
    tokenizer with ``encode(text) -> list[int]`` (BPE for GPT) is truncated to ``max_length`` and padded
    with ``pad_id`` (default: ``tokenizer.pad_id``).
    """
    texts, labels = _texts_and_labels(examples)
    if not is_int(max_length) or max_length < 3:
        raise ValueError(f"`max_length` should be an integer >= 3, but got {describe(max_length)}.")
    if hasattr(tokenizer, "batch_encode"):
        enc = tokenizer.batch_encode(texts, max_length=max_length, padding=True, truncation=True)
    elif hasattr(tokenizer, "encode"):
        pad_id = getattr(tokenizer, "pad_id", None) if pad_id is None else pad_id
        if not is_int(pad_id):
            raise ValueError("This tokenizer has no `pad_id`: pass `pad_id=` (for GPT-2, the end-of-text id "
                             f"is the usual choice), but got {describe(pad_id)}.")
        rows = [tokenizer.encode(t)[:max_length] or [pad_id] for t in texts]     # an empty text keeps one token
        T = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), T), pad_id, dtype=torch.long)         # (N, T)
        attention_mask = torch.zeros((len(rows), T), dtype=torch.long)           # (N, T)
        for i, r in enumerate(rows):
            input_ids[i, :len(r)] = torch.tensor(r)
            attention_mask[i, :len(r)] = 1
        enc = {"input_ids": input_ids, "token_type_ids": torch.zeros_like(input_ids),
               "attention_mask": attention_mask}
    else:
        raise TypeError("`tokenizer` should have batch_encode (WordPiece) or encode (BPE), "
                        f"but got {describe(tokenizer)}.")
    return {**enc, "labels": torch.tensor(labels, dtype=torch.long)}


def expect_encoded(data, name: str) -> int:
    """Check ``data`` is the dict from :func:`encode_examples`; return its number of examples."""
    keys = ("input_ids", "attention_mask", "labels")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), torch.Tensor) for k in keys):
        raise TypeError(f"`{name}` should be the dict from encode_examples (with {', '.join(keys)}), "
                        f"but got {describe(data)}.")
    return len(data["labels"])


_SEQUENCE_KEYS = ("input_ids", "token_type_ids", "attention_mask")     # (N, T): cut to the batch's length


def _select(data: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows of every tensor, the token columns cut to the batch's longest real sequence (token labels
    (N, T) too; other per-example tensors, e.g. a teacher's (N, K) logits, keep all their columns)."""
    T = int(data["attention_mask"][rows].sum(dim=1).max())
    per_token = set(_SEQUENCE_KEYS) | ({"labels"} if data["labels"].dim() == 2 else set())
    return {k: (v[rows, :T] if k in per_token else v[rows]) for k, v in data.items()}


def make_get_batch(train_data: dict, val_data: dict | None = None, batch_size: int = 32) -> Callable:
    """A ``get_batch(split, generator)`` for :func:`~ptlm_course.training.train`: ``batch_size`` distinct
    random examples of ``"train"`` or ``"val"``, all randomness drawn from ``generator`` (exact resume)."""
    splits = {"train": train_data, "val": val_data}
    sizes = {"train": expect_encoded(train_data, "train_data")}
    if val_data is not None:
        sizes["val"] = expect_encoded(val_data, "val_data")
    if not is_int(batch_size) or batch_size <= 0:
        raise ValueError(f"`batch_size` should be a positive integer, but got {describe(batch_size)}.")

    def get_batch(split: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if split not in sizes:
            raise ValueError(f"`split` should be one of {sorted(sizes)}, but got {describe(split)}"
                             + (" (pass val_data to make_get_batch)." if split == "val" else "."))
        n = sizes[split]
        rows = torch.randperm(n, generator=generator)[:batch_size]                # (B,) no repeats
        return _select(splits[split], rows)

    return get_batch


def model_inputs(model: nn.Module, batch: dict) -> dict:
    """The keyword arguments of the model's forward for a batch: input_ids and attention_mask, and
    token_type_ids for a model that reads segments (BERT does, GPT has none)."""
    inner = getattr(model, "module", model)                 # a DistributedDataParallel wrapper
    params = inspect.signature(inner.forward).parameters
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "token_type_ids" in params and "token_type_ids" in batch:
        kwargs["token_type_ids"] = batch["token_type_ids"]
    return kwargs


def classification_loss_fn(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    """``loss_fn`` for :func:`~ptlm_course.training.train`: cross-entropy, and the batch's accuracy."""
    logits = model(**model_inputs(model, batch)).logits                       # (B, K)
    loss = F.cross_entropy(logits, batch["labels"])
    accuracy = (logits.argmax(dim=-1) == batch["labels"]).float().mean()
    return loss, {"accuracy": accuracy.detach()}


@torch.no_grad()
def predict(model: nn.Module, encoded: dict, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class ids (N,), class probabilities (N, K)) for every example, in eval mode without
    gradients, on the model's device; the model's train/eval mode is restored afterwards. Both on the CPU."""
    n = expect_encoded(encoded, "encoded")
    if not is_int(batch_size) or batch_size <= 0:
        raise ValueError(f"`batch_size` should be a positive integer, but got {describe(batch_size)}.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs = []
    try:
        for start in range(0, n, batch_size):
            batch = _select(encoded, torch.arange(start, min(start + batch_size, n)))
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(**model_inputs(model, batch)).logits                 # (b, K)
            probs.append(logits.float().softmax(dim=-1).cpu())
    finally:
        model.train(was_training)
    probs = torch.cat(probs)                                                     # (N, K)
    return probs.argmax(dim=-1), probs


def make_eval_fn(encoded: dict, batch_size: int = 128) -> Callable[[nn.Module], dict]:
    """An ``eval_fn`` for :func:`~ptlm_course.training.train` scoring the *whole* split:
    ``{"val_loss", "val_accuracy"}`` (use with ``early_stopping_metric="val_accuracy", mode="max"``)."""
    expect_encoded(encoded, "encoded")

    def eval_fn(model: nn.Module) -> dict[str, float]:
        _, probs = predict(model, encoded, batch_size)
        labels = encoded["labels"]
        loss = F.nll_loss(probs.clamp(min=1e-12).log(), labels).item()
        return {"val_loss": loss, "val_accuracy": (probs.argmax(-1) == labels).float().mean().item()}

    return eval_fn


# --------------------------------------------------------------------------------------------------
# Token classification: one label per word
# --------------------------------------------------------------------------------------------------

def _check_tagged(examples) -> None:
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence) or len(examples) == 0:
        raise TypeError(f"`examples` should be a non-empty list of (words, labels) pairs, "
                        f"but got {describe(examples)}.")
    for i, ex in enumerate(examples):
        ok = isinstance(ex, (tuple, list)) and len(ex) == 2 and isinstance(ex[0], (list, tuple))
        if not ok or len(ex[0]) != len(ex[1]) or not all(isinstance(w, str) for w in ex[0]) \
                or any(not is_int(k) or k < 0 for k in ex[1]):
            raise TypeError(f"`examples[{i}]` should be (words, labels): a list of strings and as many label "
                            f"ids (ints >= 0), but got {describe(ex)}.")


def encode_tagged(examples, tokenizer, max_length: int) -> dict[str, torch.Tensor]:
    """Tokenize (words, word_labels) examples for token classification: ``input_ids``, ``token_type_ids``,
    ``attention_mask`` and ``labels``, all (N, T), padded on the right.

    A word may become several WordPiece pieces; its label goes on the *first* piece and the others get -100
    (no loss, no score), as do [CLS], [SEP] and padding. Words that do not fit in ``max_length`` are cut.
    """
    _check_tagged(examples)
    if not is_int(max_length) or max_length < 3:
        raise ValueError(f"`max_length` should be an integer >= 3, but got {describe(max_length)}.")
    if not hasattr(tokenizer, "tokenize") or not hasattr(tokenizer, "cls_id"):
        raise TypeError(f"`tokenizer` should be a WordPieceTokenizer, but got {describe(tokenizer)}.")
    rows, row_labels = [], []
    for words, labels in examples:
        ids, tags = [tokenizer.cls_id], [-100]
        for word, label in zip(words, labels):
            pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
            if len(ids) + len(pieces) > max_length - 1:
                break
            ids += pieces
            tags += [label] + [-100] * (len(pieces) - 1)
        rows.append(ids + [tokenizer.sep_id])
        row_labels.append(tags + [-100])
    T = max(len(r) for r in rows)
    data = {"input_ids": torch.full((len(rows), T), tokenizer.pad_id, dtype=torch.long),     # (N, T)
            "token_type_ids": torch.zeros((len(rows), T), dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), T), dtype=torch.long),
            "labels": torch.full((len(rows), T), -100, dtype=torch.long)}
    for i, (ids, tags) in enumerate(zip(rows, row_labels)):
        data["input_ids"][i, :len(ids)] = torch.tensor(ids)
        data["attention_mask"][i, :len(ids)] = 1
        data["labels"][i, :len(tags)] = torch.tensor(tags)
    return data


def token_classification_loss_fn(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    """``loss_fn`` for :func:`~ptlm_course.training.train`: cross-entropy over the labelled positions."""
    logits = model(batch["input_ids"], batch.get("token_type_ids"), batch["attention_mask"]).logits   # (B, T, K)
    labels = batch["labels"]                                                                       # (B, T)
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    keep = labels != -100
    accuracy = (logits.argmax(dim=-1)[keep] == labels[keep]).float().mean()
    return loss, {"accuracy": accuracy.detach()}


@torch.no_grad()
def predict_tags(model: nn.Module, encoded: dict, batch_size: int = 256) -> torch.Tensor:
    """Predicted label ids (N, T) on the CPU, -100 wherever ``encoded["labels"]`` is -100 (pieces after a
    word's first, special tokens, padding), in eval mode; the model's mode is restored afterwards."""
    n = expect_encoded(encoded, "encoded")
    if encoded["labels"].dim() != 2:
        raise ValueError(f"`encoded` should come from encode_tagged ((N, T) labels), but its labels are "
                         f"{describe(encoded['labels'])}.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds = torch.full_like(encoded["labels"], -100)                              # (N, T)
    try:
        for start in range(0, n, batch_size):
            rows = torch.arange(start, min(start + batch_size, n))
            batch = {k: v.to(device) for k, v in _select(encoded, rows).items()}
            tags = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).logits.argmax(-1)
            preds[rows, :tags.shape[1]] = tags.cpu()                               # (b, T_batch)
    finally:
        model.train(was_training)
    return preds.masked_fill(encoded["labels"] == -100, -100)
