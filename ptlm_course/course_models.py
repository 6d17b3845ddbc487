"""The course's own Part 2 models, pretrained once and cached on disk, for every later notebook.

    tok = shakespeare_wordpiece()                    # WordPiece vocabulary learned from the training plays
    bert, tok, info = course_bert()                  # notebook 07's recipe: MLM + NSP on Shakespeare
    gpt, tok, info = course_gpt()                    # notebook 08's recipe: next-token prediction, same data

The first call trains (seconds with ``PTLM_BUDGET=small``, minutes with the full budget on a laptop CPU) and
saves weights, config, vocabulary and ``info`` (recipe, history, final metrics, seconds) under
``runtime.cache_dir()/course_models/<name>-<budget>-<hash>``. The hash covers the whole recipe (sizes, data,
steps, learning rate, seed) and :data:`RECIPE_VERSION`, so changing the recipe never reuses a stale file.
Later calls load from there. Models come back on the CPU in eval mode. The caching itself (keys, atomic
writes, locks, loading) is ``machinery.model_cache``; this module holds the recipes and how to train them.

Both models share the Shakespeare WordPiece tokenizer, so either can be fine-tuned on other English text
(movie reviews): words Shakespeare never used split into pieces, and plain ASCII text never becomes [UNK].
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import metrics
from .bert import BertConfig, BertForPreTraining
from .data import Play, train_val_split_plays
from .gpt import GPT, GPTConfig
from .machinery import model_cache
from .pretraining_data import IGNORE_INDEX, causal_lm_batch, encode_nsp_batch, make_nsp_examples, mask_tokens
from .runtime import BUDGETS, atomic_write, budget as current_budget, cache_dir
from .training import History, TrainConfig, train
from .validation import describe, is_int
from .wordpiece import WordPieceTokenizer, train_wordpiece_vocab

__all__ = [
    "RECIPE_VERSION", "BertRecipe", "GPTRecipe", "bert_recipe", "gpt_recipe", "recipe_key",
    "shakespeare_wordpiece", "course_bert", "course_gpt", "remember_bert", "in_cache",
    "split_plays", "speech_texts", "bert_pretraining_loss", "bert_get_batch", "gpt_corpus", "gpt_get_batch",
    "gpt_loss", "build_bert", "build_gpt", "bert_config", "gpt_config", "check_budget", "pretrained_course_model",
]

RECIPE_VERSION = 1          # bump when the code of a recipe changes in a way its fields do not show
DEFAULT_VOCAB_SIZE = 4000   # a few thousand pieces: enough for Shakespeare's common words whole
SPLIT = {"val_fraction": 0.1, "seed": 0}   # held-out plays: the same split as notebooks 06 and 07


# --------------------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BertRecipe:
    """Everything that decides the pretrained BERT: tokenizer, model size, data, optimisation, seed."""
    vocab_size: int = DEFAULT_VOCAB_SIZE
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 512
    max_length: int = 64            # [CLS] A [SEP] B [SEP] plus padding
    n_pairs: int = 20_000           # NSP pairs tokenized once from the training plays (masking is redone per batch)
    n_val_pairs: int = 1_000        # from the held-out plays
    mask_prob: float = 0.15
    batch_size: int = 32
    steps: int = 3000
    lr: float = 2e-3
    warmup_steps: int = 150
    weight_decay: float = 0.01
    # BERT-base starts from N(0, 0.02). This 2-layer model, trained for minutes, sits for thousands of steps at
    # "guess the frequent token" with that start: its attention scores begin tiny, so it barely learns where to
    # look. N(0, 0.05) gets it predicting from context within the budget (notebook 07, section 8).
    initializer_range: float = 0.05
    eval_every: int = 300
    eval_batches: int = 30
    seed: int = 0


@dataclass(frozen=True)
class GPTRecipe:
    """Everything that decides the pretrained GPT; by default the same size and tokens per step as BERT's."""
    vocab_size: int = DEFAULT_VOCAB_SIZE
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    block_size: int = 64
    batch_size: int = 32
    steps: int = 3000
    lr: float = 2e-3
    warmup_steps: int = 150
    weight_decay: float = 0.01
    eval_every: int = 300
    eval_batches: int = 30
    seed: int = 0
    activation: str = "gelu"        # GPTConfig.activation: the exact GELU, as BERT's
    fast_path: bool = True          # train with TrainConfig(fused_attention=True, fused_adamw=True)


def check_budget(budget: str | None) -> str:
    """``budget`` ("small" or "full"), or the current PTLM_BUDGET for None; anything else raises."""
    if budget is None:
        return current_budget()
    if budget not in BUDGETS:
        raise ValueError(f"`budget` should be None (use PTLM_BUDGET) or one of {', '.join(BUDGETS)}, "
                         f"but got {describe(budget)}.")
    return budget


def bert_recipe(budget: str | None = None) -> BertRecipe:
    """The BERT recipe of notebook 07 for ``budget`` ("small" or "full"; None: the current PTLM_BUDGET)."""
    if check_budget(budget) == "small":
        return BertRecipe(n_pairs=2_000, n_val_pairs=200, steps=40, warmup_steps=5, eval_every=20, eval_batches=5)
    return BertRecipe()


def gpt_recipe(budget: str | None = None) -> GPTRecipe:
    """The GPT recipe of notebook 08 for ``budget``: BERT's model size, batch shape and number of steps."""
    if check_budget(budget) == "small":
        return GPTRecipe(steps=40, warmup_steps=5, eval_every=20, eval_batches=5)
    return GPTRecipe()


def recipe_key(name: str, recipe) -> str:
    """``name-<12 hex digits>``: a hash of the recipe's fields, its type, RECIPE_VERSION and the plays' split."""
    return model_cache.recipe_key(name, recipe, version=RECIPE_VERSION, split=SPLIT)


# --------------------------------------------------------------------------------------------------
# The tokenizer
# --------------------------------------------------------------------------------------------------

def split_plays() -> tuple[list[Play], list[Play]]:
    """The course's held-out split: (training plays, held-out plays)."""
    return train_val_split_plays(**SPLIT)


def speech_texts(plays: list[Play]) -> list[str]:
    """Every speech of ``plays``, in order, as text (lines joined by newlines, no speaker names)."""
    return [speech.text for play in plays for speech in play.speeches]


def shakespeare_wordpiece(vocab_size: int = DEFAULT_VOCAB_SIZE) -> WordPieceTokenizer:
    """A WordPiece tokenizer whose vocabulary was learned from the speeches of the training plays
    (:func:`ptlm_course.wordpiece.train_wordpiece_vocab`); cached as a ``vocab.txt``."""
    if not is_int(vocab_size) or vocab_size < 200:
        raise ValueError(f"`vocab_size` should be an int >= 200 (the characters alone need about 150), "
                         f"but got {describe(vocab_size)}.")
    key = recipe_key(f"shakespeare-wordpiece-{vocab_size}", _VocabRecipe(vocab_size))
    path = cache_dir() / "course_models" / f"{key}.txt"
    if path.is_file():
        try:
            return WordPieceTokenizer.from_vocab_file(path)
        except (ValueError, UnicodeDecodeError) as error:
            print(f"The cached vocabulary {path} is unreadable ({error}); learning it again.")
    vocab = train_wordpiece_vocab(speech_texts(split_plays()[0]), vocab_size)
    atomic_write(path, lambda tmp: tmp.write_text("".join(token + "\n" for token in vocab), encoding="utf-8"))
    return WordPieceTokenizer(vocab)


@dataclass(frozen=True)
class _VocabRecipe:
    vocab_size: int
    min_frequency: int = 2


# --------------------------------------------------------------------------------------------------
# BERT: data, loss, model
# --------------------------------------------------------------------------------------------------

def bert_pretraining_loss(model: BertForPreTraining, batch: dict) -> tuple[torch.Tensor, dict]:
    """BERT's joint loss (MLM + NSP), running the MLM head on the chosen positions only (~15 %),
    which gives the same loss as ``model(**batch).loss`` for a fraction of the work. Returns (loss, metrics)."""
    out = model.bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    chosen = batch["mlm_labels"] != IGNORE_INDEX                                   # (B, T)
    mlm_logits = model.mlm_head(out.last_hidden_state[chosen])                     # (N_chosen, V)
    mlm_labels = batch["mlm_labels"][chosen]                                       # (N_chosen,)
    nsp_logits = model.nsp_head(out.pooled)                                        # (B, 2)
    mlm_loss = F.cross_entropy(mlm_logits, mlm_labels)
    nsp_loss = F.cross_entropy(nsp_logits, batch["nsp_labels"])
    return mlm_loss + nsp_loss, {
        "mlm_loss": mlm_loss.item(), "nsp_loss": nsp_loss.item(),
        "mlm_acc": metrics.masked_accuracy(mlm_logits, mlm_labels),
        "nsp_acc": metrics.accuracy(nsp_logits, batch["nsp_labels"]),
        "n_tokens": int(batch["attention_mask"].sum()),
    }


def bert_get_batch(recipe: BertRecipe, tokenizer: WordPieceTokenizer) -> Callable:
    """``get_batch(split, generator)`` for :func:`train`: NSP pairs tokenized once per split (training /
    held-out plays), MLM masking redone for every batch (dynamic masking)."""
    train_plays, val_plays = split_plays()
    pools = {"train": encode_nsp_batch(make_nsp_examples(train_plays, recipe.n_pairs, generator=recipe.seed),
                                       tokenizer, recipe.max_length),
             "val": encode_nsp_batch(make_nsp_examples(val_plays, recipe.n_val_pairs, generator=recipe.seed + 1),
                                     tokenizer, recipe.max_length)}

    def get_batch(split: str, generator: torch.Generator) -> dict:
        pool = pools[split]
        rows = torch.randint(len(pool["nsp_labels"]), (recipe.batch_size,), generator=generator)   # (B,)
        masked, labels = mask_tokens(pool["input_ids"][rows], tokenizer.special_ids, tokenizer.vocab_size,
                                     tokenizer.mask_id, mask_prob=recipe.mask_prob, generator=generator)
        return {"input_ids": masked, "token_type_ids": pool["token_type_ids"][rows],
                "attention_mask": pool["attention_mask"][rows], "mlm_labels": labels,
                "nsp_labels": pool["nsp_labels"][rows]}

    get_batch.pools = pools
    return get_batch


def build_bert(recipe: BertRecipe, vocab_size: int | None = None) -> BertForPreTraining:
    """A freshly initialised BertForPreTraining of the recipe's size (seeded), without dropout."""
    torch.manual_seed(recipe.seed)
    return BertForPreTraining(bert_config(recipe, vocab_size))


def bert_config(recipe: BertRecipe, vocab_size: int | None = None) -> BertConfig:
    """The BertConfig of a recipe's model (``vocab_size`` overrides the recipe's)."""
    # No dropout: a model trained for minutes underfits, dropout would only slow it down.
    return BertConfig(vocab_size=vocab_size or recipe.vocab_size, d_model=recipe.d_model,
                      n_layers=recipe.n_layers,
                      n_heads=recipe.n_heads, d_ff=recipe.d_ff,
                      max_position_embeddings=recipe.max_length, dropout=0.0, attention_dropout=0.0,
                      initializer_range=recipe.initializer_range)


def course_bert(budget: str | None = None, progress: bool = True, recipe: BertRecipe | None = None
                ) -> tuple[BertForPreTraining, WordPieceTokenizer, dict]:
    """The course's pretrained BERT (notebook 07): ``(model, tokenizer, info)``; trains once, then loads.

    ``recipe`` (default :func:`bert_recipe` of ``budget``) may be changed; it gets its own cache entry.
    ``info``: name, budget, recipe, key, path, history (``History.to_dict()``), final (held-out metrics),
    train_seconds, n_parameters, train_positions (steps x batch x length), device, loaded_from_cache.
    """
    return pretrained_course_model("bert", budget, progress, recipe, BertRecipe, bert_recipe, bert_config,
                                   BertForPreTraining, bert_get_batch, bert_pretraining_loss)


# --------------------------------------------------------------------------------------------------
# GPT: data, loss, model
# --------------------------------------------------------------------------------------------------

def gpt_corpus(plays: list[Play], tokenizer: WordPieceTokenizer) -> torch.Tensor:
    """The speeches of ``plays`` as one stream of token ids (N,), each speech followed by [SEP].

    Tokenizing a million tokens takes seconds, so the result is cached on disk (keyed by the plays and the
    vocabulary)."""
    digest = hashlib.sha256(json.dumps([[p.slug for p in plays], tokenizer.itos]).encode()).hexdigest()[:16]
    path = cache_dir() / "course_models" / f"corpus-{digest}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:                                      # noqa: BLE001 - damaged: tokenize again
            pass
    ids: list[int] = []
    for text in speech_texts(plays):
        ids += tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)) + [tokenizer.sep_id]
    corpus = torch.tensor(ids, dtype=torch.long)
    atomic_write(path, lambda tmp: torch.save(corpus, tmp))
    return corpus


def gpt_get_batch(recipe: GPTRecipe, tokenizer: WordPieceTokenizer) -> Callable:
    """``get_batch(split, generator)``: random blocks of the training or held-out plays' token stream."""
    train_plays, val_plays = split_plays()
    corpora = {"train": gpt_corpus(train_plays, tokenizer), "val": gpt_corpus(val_plays, tokenizer)}

    def get_batch(split: str, generator: torch.Generator):
        return causal_lm_batch(corpora[split], recipe.block_size, recipe.batch_size, generator=generator)

    get_batch.corpora = corpora
    return get_batch


def gpt_loss(model: GPT, batch) -> tuple[torch.Tensor, dict]:
    """Next-token cross-entropy over every position. Returns (loss, {"n_tokens": ...})."""
    x, y = batch
    _, loss = model(x, y)
    return loss, {"n_tokens": x.numel()}


def build_gpt(recipe: GPTRecipe, vocab_size: int | None = None) -> GPT:
    """A freshly initialised GPT of the recipe's size (seeded), without dropout."""
    torch.manual_seed(recipe.seed)
    return GPT(gpt_config(recipe, vocab_size))


def gpt_config(recipe: GPTRecipe, vocab_size: int | None = None) -> GPTConfig:
    """The GPTConfig of a recipe's model (``vocab_size`` overrides the recipe's), without dropout."""
    return GPTConfig(vocab_size=vocab_size or recipe.vocab_size, block_size=recipe.block_size,
                     n_layers=recipe.n_layers,
                     n_heads=recipe.n_heads, d_model=recipe.d_model, dropout=0.0, activation=recipe.activation)


def course_gpt(budget: str | None = None, progress: bool = True, recipe: GPTRecipe | None = None
               ) -> tuple[GPT, WordPieceTokenizer, dict]:
    """The course's pretrained GPT on the same data and tokenizer (notebook 08): ``(model, tokenizer, info)``.

    Same caching and ``info`` as :func:`course_bert`; ``info["final"]`` holds ``val_loss`` and ``val_perplexity``.
    """
    return pretrained_course_model("gpt", budget, progress, recipe, GPTRecipe, gpt_recipe, gpt_config, GPT,
                                   gpt_get_batch, gpt_loss)


# --------------------------------------------------------------------------------------------------
# Training and the cache
# --------------------------------------------------------------------------------------------------

def pretrained_course_model(name: str, budget: str | None, progress: bool, recipe, recipe_type: type,
                            default_recipe: Callable, make_config: Callable, model_type: type, make_get_batch: Callable,
                            loss_fn: Callable):
    """What :func:`course_bert`, :func:`course_gpt` and ``seq2seq_pretraining.course_bart`` share: ``(model,
    tokenizer, info)`` from the cache, or trained (seeded, on the Shakespeare WordPiece vocabulary) and stored
    there first."""
    budget = check_budget(budget)
    recipe = default_recipe(budget) if recipe is None else recipe
    if not isinstance(recipe, recipe_type):
        raise TypeError(f"`recipe` should be a {recipe_type.__name__}, but got {describe(recipe)}.")
    tokenizer = shakespeare_wordpiece(recipe.vocab_size)
    config = make_config(recipe, tokenizer.vocab_size)

    def build():
        torch.manual_seed(recipe.seed)                          # as build_bert / build_gpt
        model = model_type(config)
        history, seconds = _train(model, recipe, make_get_batch(recipe, tokenizer), loss_fn, progress)
        return model, history, seconds

    model, info = model_cache.cached_model(name, budget, recipe, build, lambda: model_type(config), config,
                                           tokenizer, key=recipe_key(f"{name}-{budget}", recipe))
    return model, tokenizer, info


def _train(model, recipe, get_batch, loss_fn, progress: bool) -> tuple[History, float]:
    # GPT's recipe trains on the fast path; BERT's has no fast_path and trains as its stored results were made
    fast = dict(fused_attention=True, fused_adamw=True) if getattr(recipe, "fast_path", False) else {}
    config = TrainConfig(steps=recipe.steps, lr=recipe.lr, warmup_steps=recipe.warmup_steps,
                         weight_decay=recipe.weight_decay, eval_every=recipe.eval_every,
                         eval_batches=recipe.eval_batches, log_every=max(1, recipe.steps // 40),
                         seed=recipe.seed, progress=progress, **fast)
    started = time.perf_counter()
    history = train(model, config, get_batch, loss_fn)
    return history, time.perf_counter() - started


def in_cache(name: str, budget: str | None = None, recipe=None) -> bool:
    """Whether ``course_bert`` (``name="bert"``) or ``course_gpt`` (``"gpt"``) would load from the cache
    for this budget and recipe (default: the budget's recipe) instead of training."""
    if name not in ("bert", "gpt"):
        raise ValueError(f"`name` should be 'bert' or 'gpt', but got {describe(name)}.")
    budget = check_budget(budget)
    recipe = (bert_recipe if name == "bert" else gpt_recipe)(budget) if recipe is None else recipe
    return model_cache.is_cached(recipe_key(f"{name}-{budget}", recipe))


def remember_bert(model: BertForPreTraining, history: History, train_seconds: float, budget: str | None = None,
                  recipe: BertRecipe | None = None) -> dict:
    """Store a BERT that was trained *exactly* with ``recipe`` (as notebook 07 does, step by step) as
    :func:`course_bert`'s cache entry, so later notebooks load it instead of training it again.

    If the entry exists already, nothing is overwritten; ``info["identical_to_cache"]`` then says whether the
    cached weights equal ``model``'s (they should: the recipe is seeded). Returns the entry's ``info``.
    """
    budget = check_budget(budget)
    recipe = bert_recipe(budget) if recipe is None else recipe
    if not isinstance(model, BertForPreTraining) or not isinstance(history, History):
        raise TypeError(f"`remember_bert` expects a BertForPreTraining and its training History, "
                        f"but got {describe(model)} and {describe(history)}.")
    if model.config != bert_config(recipe, model.config.vocab_size) or len(history.train) == 0 \
            or history.train[-1]["step"] != recipe.steps:
        raise ValueError(f"The model and history do not match the recipe ({recipe}): expected a model of its "
                         f"size trained for {recipe.steps} steps.")
    tokenizer = shakespeare_wordpiece(recipe.vocab_size)
    return model_cache.remember_model("bert", budget, recipe, model, history, train_seconds,
                                      lambda: BertForPreTraining(model.config), model.config, tokenizer,
                                      key=recipe_key(f"bert-{budget}", recipe))
