"""The course's own encoder–decoder, pretrained by denoising (notebook 19), cached like the course BERT and GPT.

    bart, tok, info = course_bart()     # BART's text infilling on the training plays; trains once, then loads

The model reads a short passage of the training plays whose spans were each collapsed into one ``[MASK]``
(:func:`ptlm_course.denoising.text_infilling`) and writes the whole passage back. Nothing is labelled, and the
held-out plays stay unseen. To do it, the decoder has to learn to copy what the encoder shows it and to fill the
gaps with likely text, punctuation included: the two skills a restoration task needs.

It shares the Shakespeare WordPiece tokenizer with the course BERT and GPT: ``[CLS]`` starts a target, ``[SEP]``
ends every sequence, ``[PAD]`` pads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .bart import Bart, BartConfig
from .course_models import (DEFAULT_VOCAB_SIZE, check_budget, pretrained_course_model, shakespeare_wordpiece,
                            split_plays, speech_texts)
from .data import Play
from .denoising import text_infilling
from .wordpiece import WordPieceTokenizer

__all__ = ["BartRecipe", "bart_recipe", "bart_config", "text_chunks", "pad_rows", "infilling_get_batch",
           "seq2seq_loss", "course_bart"]

IGNORE_INDEX = -100


@dataclass(frozen=True)
class BartRecipe:
    """Everything that decides the pretrained BART: sizes (the course BERT's width and depth on each side),
    data, noise, optimisation, seed."""
    vocab_size: int = DEFAULT_VOCAB_SIZE
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    max_length: int = 64            # positions of each side
    chunk_length: int = 16          # tokens per pretraining passage (the restoration task's lines are as short)
    mask_ratio: float = 0.3         # BART's setting
    poisson_lambda: float = 3.0     # mean span length
    batch_size: int = 32
    steps: int = 1200
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    # As for the course BERT: from N(0, 0.02) this small model sits for well over a thousand steps writing
    # frequent tokens and never copies its source; from N(0, 0.05) copying starts within a few hundred steps.
    init_std: float = 0.05
    eval_every: int = 300
    eval_batches: int = 10
    seed: int = 0


def bart_recipe(budget: str | None = None) -> BartRecipe:
    """The recipe of notebook 19 for ``budget`` ("small" or "full"; None: the current PTLM_BUDGET)."""
    if check_budget(budget) == "small":
        return BartRecipe(steps=40, warmup_steps=5, eval_every=20, eval_batches=3)
    return BartRecipe()


def bart_config(recipe: BartRecipe, tokenizer: WordPieceTokenizer) -> BartConfig:
    """The BartConfig of a recipe's model on ``tokenizer``'s vocabulary and special tokens, without dropout."""
    return BartConfig(vocab_size=tokenizer.vocab_size, d_model=recipe.d_model, n_heads=recipe.n_heads,
                      d_ff=recipe.d_ff, n_encoder_layers=recipe.n_encoder_layers,
                      n_decoder_layers=recipe.n_decoder_layers,
                      max_position_embeddings=recipe.max_length, dropout=0.0, pad_token_id=tokenizer.pad_id,
                      bos_token_id=tokenizer.cls_id, eos_token_id=tokenizer.sep_id,
                      decoder_start_token_id=tokenizer.cls_id, init_std=recipe.init_std)


def text_chunks(plays: list[Play], tokenizer: WordPieceTokenizer, length: int) -> list[list[int]]:
    """Every speech of ``plays`` as token ids, cut into consecutive passages of ``length`` tokens (shorter
    tails of at least 4 tokens kept)."""
    chunks = []
    for text in speech_texts(plays):
        ids = tokenizer.encode(text, add_special_tokens=False)
        chunks += [ids[i:i + length] for i in range(0, len(ids), length) if len(ids[i:i + length]) >= 4]
    return chunks


def pad_rows(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    """Lists of ids -> (B, T) with T the longest row, padded on the right with ``pad_id``."""
    out = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)   # (B, T)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def infilling_get_batch(recipe: BartRecipe, tokenizer: WordPieceTokenizer) -> Callable:
    """``get_batch(split, generator)`` for :func:`ptlm_course.training.train`: random passages of the training
    (or held-out) plays, noised afresh for every batch; ``[SEP]`` ends source and target."""
    train_plays, val_plays = split_plays()
    pools = {"train": text_chunks(train_plays, tokenizer, recipe.chunk_length),
             "val": text_chunks(val_plays, tokenizer, recipe.chunk_length)}

    def get_batch(split: str, generator: torch.Generator) -> dict:
        pool = pools[split]
        rows = torch.randint(len(pool), (recipe.batch_size,), generator=generator).tolist()
        pairs = [text_infilling(pool[i], tokenizer.mask_id, recipe.mask_ratio, recipe.poisson_lambda, generator)
                 for i in rows]
        inputs = pad_rows([noised + [tokenizer.sep_id] for noised, _ in pairs], tokenizer.pad_id)     # (B, S)
        labels = pad_rows([target + [tokenizer.sep_id] for _, target in pairs], IGNORE_INDEX)        # (B, T)
        return {"input_ids": inputs, "attention_mask": (inputs != tokenizer.pad_id).long(), "labels": labels}

    get_batch.pools = pools
    return get_batch


def seq2seq_loss(model: Bart, batch: dict) -> tuple[torch.Tensor, dict]:
    """Teacher-forced cross-entropy over the target tokens (labels of -100 skipped). Returns (loss, metrics)."""
    out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    n_tokens = int((batch["labels"] != IGNORE_INDEX).sum())
    return out.loss, {"n_tokens": n_tokens}


def course_bart(budget: str | None = None, progress: bool = True, recipe: BartRecipe | None = None
                ) -> tuple[Bart, WordPieceTokenizer, dict]:
    """The course's pretrained encoder–decoder (notebook 19): ``(model, tokenizer, info)``; trains once on the
    first call (about a minute and a half at the full budget on a laptop CPU), then loads from the cache.
    ``info["final"]["val_loss"]``: the denoising loss on the held-out plays."""
    def make_config(r: BartRecipe, _vocab_size: int) -> BartConfig:
        return bart_config(r, shakespeare_wordpiece(r.vocab_size))

    return pretrained_course_model("bart", budget, progress, recipe, BartRecipe, bart_recipe, make_config, Bart,
                                   infilling_get_batch, seq2seq_loss)
