"""Part 3's punctuation task as generation (notebook 19): write a line back with its punctuation.

The encoder reads a line without punctuation, the decoder writes it back punctuated.

    source, target = restoration_pair(["Stand", "forth", "Demetrius"], [0, 1, 2])
    # ('stand forth demetrius', 'stand forth, demetrius.')
    data = encode_restoration(splits["train"], tokenizer)          # splits: punctuation.punctuation_splits()
    model = fine_tune_seq2seq(config, course_bart()[0].state_dict(), data, lr=3e-4, seed=0)
    texts = generate_texts(model, encode_restoration(splits["test"], tokenizer), tokenizer)

Both sides are lower-cased (the course tokenizer is uncased), so the task is the marks alone: exactly what the
Part 3 tagger predicts, which makes the two directly comparable on the same lines. Unlike the tagger, a generator
may also change, drop or invent words; :func:`exact_match` counts a line right only if all of it is.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .bart import Bart, BartConfig
from .finetuning import make_get_batch
from .punctuation import restore_punctuation
from .seq2seq_generation import beam_search
from .seq2seq_pretraining import IGNORE_INDEX, pad_rows, seq2seq_loss
from .training import TrainConfig, train
from .validation import describe
from .wordpiece import WordPieceTokenizer

__all__ = ["restoration_pair", "encode_restoration", "Seq2SeqRecipe", "fine_tune_seq2seq", "generate_texts",
           "reference_texts", "tagger_texts", "exact_match"]


def restoration_pair(words: list[str], labels) -> tuple[str, str]:
    """(the words lower-cased and joined, the same words followed by their marks)."""
    return " ".join(words).lower(), restore_punctuation(words, labels).lower()


def encode_restoration(examples, tokenizer: WordPieceTokenizer, max_length: int = 64) -> dict:
    """(words, labels) examples -> ``{"input_ids", "attention_mask", "labels"}``: sources and targets as ids,
    each ended by ``[SEP]`` and cut to ``max_length``; targets padded with -100 (ignored by the loss)."""
    if not isinstance(examples, (list, tuple)) or not examples:
        raise ValueError(f"`examples` should be a non-empty list of (words, labels), but got {describe(examples)}.")
    sources, targets = [], []
    for words, labels in examples:
        source, target = restoration_pair(words, labels)
        sources.append(tokenizer.encode(source, add_special_tokens=False)[:max_length - 1] + [tokenizer.sep_id])
        targets.append(tokenizer.encode(target, add_special_tokens=False)[:max_length - 1] + [tokenizer.sep_id])
    input_ids = pad_rows(sources, tokenizer.pad_id)                                   # (N, S)
    return {"input_ids": input_ids, "attention_mask": (input_ids != tokenizer.pad_id).long(),
            "labels": pad_rows(targets, IGNORE_INDEX)}                                # (N, T)


@dataclass(frozen=True)
class Seq2SeqRecipe:
    """How every arm fine-tunes: the same steps, batch and schedule; only the learning rate is searched."""
    steps: int = 300
    batch_size: int = 16
    lr_grid: tuple[float, ...] = (3e-4, 1e-3)
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01


def fine_tune_seq2seq(config: BartConfig, start_state: dict | None, train_data: dict, lr: float, seed: int,
                      recipe: Seq2SeqRecipe = Seq2SeqRecipe()) -> Bart:
    """A :class:`Bart` of ``config`` trained on ``train_data`` (from :func:`encode_restoration`), starting from
    ``start_state`` (a pretrained state dict; None = the random init seeded by ``seed``); in eval mode."""
    torch.manual_seed(seed)
    model = Bart(config)
    if start_state is not None:
        model.load_state_dict(start_state)
    train(model, TrainConfig(steps=recipe.steps, lr=lr, warmup_steps=round(recipe.warmup_fraction * recipe.steps),
                             weight_decay=recipe.weight_decay, eval_batches=0, seed=seed, progress=False),
          make_get_batch(train_data, batch_size=recipe.batch_size), _trimmed_loss)
    return model.eval()


def _trimmed_loss(model: Bart, batch: dict) -> tuple[torch.Tensor, dict]:
    """:func:`seq2seq_loss` on a batch cut to its longest source and target (less padding, same loss)."""
    s = int(batch["attention_mask"].sum(1).max())
    t = int((batch["labels"] != IGNORE_INDEX).sum(1).max())
    return seq2seq_loss(model, {"input_ids": batch["input_ids"][:, :s],
                                "attention_mask": batch["attention_mask"][:, :s], "labels": batch["labels"][:, :t]})


def _text(ids: list[int], tokenizer: WordPieceTokenizer) -> str:
    """Generated or gold ids -> text: up to the first ``[SEP]``, start token and padding dropped."""
    if tokenizer.sep_id in ids:
        ids = ids[:ids.index(tokenizer.sep_id)]
    return tokenizer.decode([i for i in ids if i not in (tokenizer.cls_id, tokenizer.pad_id, IGNORE_INDEX)])


@torch.no_grad()
def generate_texts(model: Bart, data: dict, tokenizer: WordPieceTokenizer, num_beams: int = 1,
                   batch_size: int = 200) -> list[str]:
    """The model's restored lines for every source of ``data`` (greedy for ``num_beams=1``), as text."""
    texts = []
    for i in range(0, len(data["input_ids"]), batch_size):
        ids, mask = data["input_ids"][i:i + batch_size], data["attention_mask"][i:i + batch_size]
        s = int(mask.sum(1).max())
        out = beam_search(model, ids[:, :s], mask[:, :s], num_beams=num_beams, max_new_tokens=2 * s + 2)
        texts += [_text(row, tokenizer) for row in out.tolist()]
    return texts


def reference_texts(data: dict, tokenizer: WordPieceTokenizer) -> list[str]:
    """The gold targets of ``data`` as text, written exactly as :func:`generate_texts` writes its outputs."""
    return [_text(row, tokenizer) for row in data["labels"].tolist()]


def tagger_texts(predicted_labels, examples, tokenizer: WordPieceTokenizer) -> list[str]:
    """A Part 3 tagger's lines: each example's words with the predicted marks, written as the references are."""
    texts = []
    for labels, (words, _) in zip(predicted_labels, examples):
        ids = tokenizer.encode(restore_punctuation(words, labels).lower(), add_special_tokens=False)
        texts.append(tokenizer.decode(ids))
    return texts


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    """The percentage of lines written exactly as the reference (every word and every mark)."""
    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"`hypotheses` and `references` should be non-empty lists of the same length, but got "
                         f"{describe(hypotheses)} and {describe(references)}.")
    return 100.0 * sum(h == r for h, r in zip(hypotheses, references)) / len(references)
