"""Part 3's punctuation task as generation (notebook 19): write a line back with its punctuation.

The encoder reads a line without punctuation, the decoder writes it back punctuated.

    source, target = restoration_pair(["Stand", "forth", "Demetrius"], [0, 1, 2])
    # ('stand forth demetrius', 'stand forth, demetrius.')
    data = encode_restoration(splits["train"], tokenizer)          # splits: punctuation.punctuation_splits()
    model = fine_tune_seq2seq(config, course_bart()[0].state_dict(), data, lr=3e-4, seed=0)
    texts = generate_texts(model, encode_restoration(splits["test"], tokenizer), tokenizer)

The same task for a decoder-only model (notebook 21): one sequence ``source [SEP] target [SEP]``, the loss on
the target's tokens only, then greedy generation after ``source [SEP]`` until the next ``[SEP]``.

    data = encode_prompted(splits["train"], tokenizer)
    gpt = fine_tune_gpt_restorer(course_gpt()[0].config, course_gpt()[0].state_dict(), data, lr=1e-3, seed=0)
    texts = generate_gpt_texts(gpt, encode_prompted(splits["test"], tokenizer), tokenizer)

Both sides are lower-cased (the course tokenizer is uncased), so the task is the marks alone: exactly what the
Part 3 tagger predicts, which makes the two directly comparable on the same lines. Unlike the tagger, a generator
may also change, drop or invent words; :func:`exact_match` counts a line right only if all of it is.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .bart import Bart, BartConfig
from .generation import generate
from .gpt import GPT, GPTConfig
from .punctuation import restore_punctuation
from .seq2seq_generation import beam_search
from .seq2seq_pretraining import IGNORE_INDEX, pad_rows, seq2seq_loss
from .training import TrainConfig, train
from .validation import describe
from .wordpiece import WordPieceTokenizer

__all__ = ["restoration_pair", "encode_restoration", "Seq2SeqRecipe", "fine_tune_seq2seq", "generate_texts",
           "reference_texts", "tagger_texts", "exact_match", "row_batches", "prompted_example", "encode_prompted",
           "gpt_restorer_loss", "fine_tune_gpt_restorer", "generate_gpt_texts"]


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
    return _fine_tune(lambda: Bart(config), start_state, train_data, lr, seed, recipe, _trimmed_loss)


def _fine_tune(build, start_state: dict | None, train_data: dict, lr: float, seed: int, recipe: Seq2SeqRecipe,
               loss_fn) -> torch.nn.Module:
    """What both generators' fine-tuning shares: seed, ``build()``, load ``start_state``, train by ``recipe``."""
    torch.manual_seed(seed)
    model = build()
    if start_state is not None:
        model.load_state_dict(start_state)
    train(model, TrainConfig(steps=recipe.steps, lr=lr, warmup_steps=round(recipe.warmup_fraction * recipe.steps),
                             weight_decay=recipe.weight_decay, eval_batches=0, seed=seed, progress=False),
          row_batches(train_data, recipe.batch_size), loss_fn)
    return model.eval()


def row_batches(data: dict, batch_size: int):
    """A ``get_batch(split, generator)`` for :func:`~ptlm_course.training.train`: ``batch_size`` distinct random
    rows of every tensor of ``data``, whole (the loss trims padding; cutting every column to the sources'
    length would cut off the end of targets that are longer than their sources)."""
    n = len(data["input_ids"])

    def get_batch(split: str, generator: torch.Generator) -> dict:
        rows = torch.randperm(n, generator=generator)[:batch_size]             # (B,) no repeats
        return {k: v[rows] for k, v in data.items()}

    return get_batch


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


def prompted_example(source: list[int], target: list[int], sep_id: int) -> tuple[list[int], list[int]]:
    """One decoder-only training example: the sequence ``source [SEP] target [SEP]`` without its last token as
    the input, and at each position the token that follows it as the target, -100 where that token belongs
    to the prompt (``source [SEP]``): the model is trained to write the target, not to repeat the source."""
    sequence = source + [sep_id] + target + [sep_id]
    targets = [IGNORE_INDEX] * len(source) + target + [sep_id]      # position len(source) is the prompt's [SEP]
    return sequence[:-1], targets


def encode_prompted(examples, tokenizer: WordPieceTokenizer, block_size: int = 64) -> dict:
    """(words, labels) examples -> ``{"input_ids", "targets", "prompt_length"}`` for a GPT: each row from
    :func:`prompted_example` (right-padded with ``[PAD]`` and -100), the source cut to half the block and the
    target to what is left; ``prompt_length`` (N,) counts ``source [SEP]``, the part generation starts from."""
    if not isinstance(examples, (list, tuple)) or not examples:
        raise ValueError(f"`examples` should be a non-empty list of (words, labels), but got {describe(examples)}.")
    inputs, targets, prompt_lengths = [], [], []
    for words, labels in examples:
        source, target = restoration_pair(words, labels)
        source_ids = tokenizer.encode(source, add_special_tokens=False)[:block_size // 2 - 1]
        target_ids = tokenizer.encode(target, add_special_tokens=False)[:block_size - len(source_ids) - 1]
        x, y = prompted_example(source_ids, target_ids, tokenizer.sep_id)
        inputs.append(x)
        targets.append(y)
        prompt_lengths.append(len(source_ids) + 1)
    return {"input_ids": pad_rows(inputs, tokenizer.pad_id), "targets": pad_rows(targets, IGNORE_INDEX),  # (N, T)
            "prompt_length": torch.tensor(prompt_lengths)}                                               # (N,)


def _expect_prompted(data, name: str) -> None:
    """Check ``data`` is the dict from :func:`encode_prompted` (a GPT cannot read :func:`encode_restoration`'s)."""
    keys = ("input_ids", "targets", "prompt_length")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), torch.Tensor) for k in keys):
        raise TypeError(f"`{name}` should be the dict from encode_prompted (with {', '.join(keys)}), but got "
                        f"{describe(data)}.")


def gpt_restorer_loss(model: GPT, batch: dict) -> tuple[torch.Tensor, dict]:
    """Next-token cross-entropy on the target tokens of a batch from :func:`encode_prompted`, cut to its
    longest row (padding sits at the end and a causal model never looks ahead, so the loss is the same)."""
    t = int((batch["targets"] != IGNORE_INDEX).long().cumsum(1).argmax(1).max()) + 1   # past every row's last target
    _, loss = model(batch["input_ids"][:, :t], batch["targets"][:, :t])
    return loss, {"n_tokens": int((batch["targets"] != IGNORE_INDEX).sum())}


def fine_tune_gpt_restorer(config: GPTConfig, start_state: dict | None, train_data: dict, lr: float, seed: int,
                           recipe: Seq2SeqRecipe = Seq2SeqRecipe()) -> GPT:
    """A :class:`GPT` of ``config`` trained on ``train_data`` (from :func:`encode_prompted`) with the recipe of
    :func:`fine_tune_seq2seq`, starting from ``start_state`` (None = the random init seeded by ``seed``)."""
    _expect_prompted(train_data, "train_data")
    return _fine_tune(lambda: GPT(config), start_state, train_data, lr, seed, recipe, gpt_restorer_loss)


@torch.no_grad()
def generate_gpt_texts(model: GPT, data: dict, tokenizer: WordPieceTokenizer, batch_size: int = 200) -> list[str]:
    """Greedy continuations of every prompt ``source [SEP]`` of ``data`` (from :func:`encode_prompted`) up to the
    next ``[SEP]``, as text. The GPT has no padding mask, so prompts are batched by length (no padding at all)
    and each batch generates with the key/value cache."""
    _expect_prompted(data, "data")
    lengths = data["prompt_length"].tolist()
    texts: list[str | None] = [None] * len(lengths)
    for length in sorted(set(lengths)):
        rows = [i for i, n in enumerate(lengths) if n == length]
        for k in range(0, len(rows), batch_size):
            chunk = rows[k:k + batch_size]
            prompts = data["input_ids"][chunk, :length]                                  # (B, S)
            room = min(2 * length + 2, model.config.block_size - length)
            out = generate(model, prompts, room, greedy=True, eos_token_id=tokenizer.sep_id)   # (B, S + new)
            for i, row in zip(chunk, out[:, length:].tolist()):
                texts[i] = _text(row, tokenizer)
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
