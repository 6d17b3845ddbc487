"""Extractive question answering on the plays (Part 5): answer a question by pointing at a span of the context.

The questions come from the text itself. A context is a few consecutive speeches of a scene written as
``NAME: words``. Two question types:

- "intruder": one word of the context was swapped for a random word of the plays; "Which word does not
  belong?" asks for that span (what a masked language model has practised: which word fits here);
- "who_says": the question quotes a few words of one speech; the answer is its speaker's name.

Some questions have no answer (nothing was swapped; the quote is from a speech outside the context), and
the model says so by pointing at [CLS], as in SQuAD 2.0.

    splits = qa_splits(tokenizer, task="intruder")           # train / validation / test on disjoint plays
    data = encode_qa(splits["test"], tokenizer, max_length=64)   # ids, start/end positions, char offsets
    spans = best_spans(start_logits, end_logits, data["context_mask"], max_answer_length=4)
    exact_match("Francisco", "FRANCISCO"), token_f1("first witch", "witch")     # 1.0, 0.667
    arm = run_qa_arm(config, body_state, {0: train_0, 1: train_1}, (val_examples, val), (test_examples, test))
"""
from __future__ import annotations

import random
import re
import string
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from .bert import BertForQuestionAnswering
from .data import Play
from .transfer import fine_tune_head
from .validation import describe, expect_tensor, is_int
from .wordpiece import is_punctuation

__all__ = ["QAExample", "who_says_examples", "intruder_examples", "TASKS", "qa_splits", "context_pieces",
           "encode_qa", "qa_length", "fits", "best_spans", "span_texts", "normalize_answer", "exact_match", "token_f1",
           "qa_scores", "qa_loss_fn", "qa_loss_fn_bf16", "predict_spans", "QARecipe", "fine_tune_qa", "score_qa",
           "QAArm", "run_qa_arm"]


@dataclass(frozen=True)
class QAExample:
    question: str
    context: str
    answer: str              # "" when the context does not hold the answer
    answer_start: int        # character offset of the answer in the context; -1 when there is none


# --------------------------------------------------------------------------------------------------
# Examples from the plays
# --------------------------------------------------------------------------------------------------

def _words(speech_text: str, max_words: int) -> list[str]:
    return speech_text.split()[:max_words]


def _quote(words: list[str], rng: random.Random, quote_words: tuple[int, int]) -> str:
    n = min(len(words), rng.randint(*quote_words))
    start = rng.randrange(len(words) - n + 1)
    return " ".join(words[start:start + n]).strip(string.punctuation + " ")


def who_says_examples(plays: Sequence[Play], n_speeches: int = 3, max_speech_words: int = 8,
                      quote_words: tuple[int, int] = (4, 6), no_answer: float = 0.25,
                      seed: int = 0) -> list[QAExample]:
    """One "Who says ...?" question per window of ``n_speeches`` consecutive speeches of a scene (windows do
    not overlap). Each speech keeps its first ``max_speech_words`` words; the quote is ``quote_words``
    consecutive words of one of them. With probability ``no_answer`` the quote comes instead from a speech
    of the same scene outside the window (or, without one, of another scene): the answer is then ""."""
    if isinstance(plays, Play) or not all(isinstance(p, Play) for p in plays):
        raise TypeError(f"`plays` should be a list of Play objects, but got {describe(plays)}.")
    if not is_int(n_speeches) or n_speeches < 2:
        raise ValueError(f"`n_speeches` should be an integer >= 2, but got {describe(n_speeches)}.")
    if not (isinstance(no_answer, (int, float)) and 0 <= no_answer < 1):
        raise ValueError(f"`no_answer` should be a fraction in [0, 1), but got {describe(no_answer)}.")
    lo, hi = quote_words
    if not (is_int(lo) and is_int(hi) and 2 <= lo <= hi <= max_speech_words):
        raise ValueError(f"`quote_words` should be (low, high) with 2 <= low <= high <= max_speech_words "
                         f"({max_speech_words}), but got {describe(quote_words)}.")
    rng = random.Random(seed)
    examples = []
    for play in plays:
        speeches = [[(s.speaker, _words(s.text, max_speech_words)) for s in scene.speeches] for scene in play.scenes]
        for k, scene in enumerate(speeches):
            for w in range(0, len(scene) - n_speeches + 1, n_speeches):
                window = scene[w:w + n_speeches]
                if any(len(words) < lo for _, words in window):
                    continue
                context, starts = "", []
                for speaker, words in window:
                    context += ("\n" if context else "")
                    starts.append(len(context))
                    context += f"{speaker}: {' '.join(words)}"
                if rng.random() < no_answer:
                    outside = [ws for i, (_, ws) in enumerate(scene) if not w <= i < w + n_speeches and len(ws) >= lo]
                    if not outside:
                        outside = [ws for j, other in enumerate(speeches) if j != k for _, ws in other if len(ws) >= lo]
                    quote = _quote(rng.choice(outside), rng, quote_words)
                    if not quote or quote.lower() in context.lower():
                        continue
                    examples.append(QAExample(f'Who says "{quote}"?', context, "", -1))
                else:
                    i = rng.randrange(n_speeches)
                    quote = _quote(window[i][1], rng, quote_words)
                    if quote:
                        examples.append(QAExample(f'Who says "{quote}"?', context, window[i][0], starts[i]))
    return examples


def intruder_examples(plays: Sequence[Play], n_speeches: int = 3, max_speech_words: int = 8,
                      no_answer: float = 0.25, seed: int = 0) -> list[QAExample]:
    """One "Which word does not belong?" question per window of ``n_speeches`` consecutive speeches of a scene
    (``NAME: words``, the first ``max_speech_words`` words of each). In all but a ``no_answer`` fraction of
    them one word of the speeches (letters only, 3 or more) is swapped for a word drawn uniformly from the
    distinct words (4 letters or more) of these plays; that intruder is the answer. In the others nothing is
    swapped: the answer is ""."""
    _check_window_args(plays, n_speeches, no_answer)
    rng = random.Random(seed)
    windows = []
    for play in plays:
        for scene in play.scenes:
            speeches = [(s.speaker, _words(s.text, max_speech_words)) for s in scene.speeches]
            windows += [speeches[w:w + n_speeches] for w in range(0, len(speeches) - n_speeches + 1, n_speeches)]
    pool = sorted({w.lower() for window in windows for _, words in window for w in words if w.isalpha() and len(w) > 3})
    examples = []
    for window in windows:
        candidates = [(i, j) for i, (_, words) in enumerate(window) for j, word in enumerate(words)
                      if word.isalpha() and len(word) > 2]
        if not candidates:
            continue
        answer, target = "", None
        if rng.random() >= no_answer:
            target = rng.choice(candidates)
            original = window[target[0]][1][target[1]]
            answer = rng.choice(pool)
            while answer.lower() == original.lower():
                answer = rng.choice(pool)
        context, answer_start = "", -1
        for i, (speaker, words) in enumerate(window):
            context += ("\n" if context else "") + f"{speaker}: "
            for j, word in enumerate(words):
                if (i, j) == target:
                    answer_start, word = len(context), answer
                context += word + (" " if j < len(words) - 1 else "")
        examples.append(QAExample("Which word does not belong?", context, answer, answer_start))
    return examples


def _check_window_args(plays, n_speeches, no_answer) -> None:
    if isinstance(plays, Play) or not all(isinstance(p, Play) for p in plays):
        raise TypeError(f"`plays` should be a list of Play objects, but got {describe(plays)}.")
    if not is_int(n_speeches) or n_speeches < 1:
        raise ValueError(f"`n_speeches` should be a positive integer, but got {describe(n_speeches)}.")
    if not (isinstance(no_answer, (int, float)) and 0 <= no_answer < 1):
        raise ValueError(f"`no_answer` should be a fraction in [0, 1), but got {describe(no_answer)}.")


def qa_splits(tokenizer, task: str = "intruder", max_length: int = 64, seed: int = 0, n_test: int | None = 600,
              **kwargs) -> dict[str, list[QAExample]]:
    """The course's question-answering task on the held-out split of notebooks 06-09: ``train`` from the
    plays the course BERT was pretrained on (shuffled with ``seed``), ``validation`` from the first held-out
    play, ``test`` (``n_test`` drawn, a fixed draw; None: all) from the other held-out plays. Only examples
    that fit in ``max_length`` tokens are kept. ``task``: "intruder" (:func:`intruder_examples`) or "who_says"
    (:func:`who_says_examples`), which get ``kwargs``."""
    from .course_models import split_plays

    if task not in TASKS:
        raise ValueError(f"`task` should be one of {sorted(TASKS)}, but got {describe(task)}.")
    train_plays, held_out = split_plays()

    def make(plays, s):
        return [ex for ex in TASKS[task](plays, seed=s, **kwargs) if fits(ex, tokenizer, max_length)]

    train = make(train_plays, 0)
    random.Random(seed).shuffle(train)
    test = make(held_out[1:], 2)
    if n_test is not None and n_test < len(test):
        test = random.Random(0).sample(test, n_test)
    return {"train": train, "validation": make(held_out[:1], 1), "test": test}


TASKS = {"intruder": intruder_examples, "who_says": who_says_examples}


# --------------------------------------------------------------------------------------------------
# Encoding: [CLS] question [SEP] context [SEP], with each context token's characters
# --------------------------------------------------------------------------------------------------

def context_pieces(context: str, tokenizer) -> tuple[list[str], list[tuple[int, int]]]:
    """The context's word pieces and, for each, the characters ``(start, end)`` of the word or punctuation
    mark it came from: the same pieces as ``tokenizer.tokenize(context)``, found word by word."""
    spans, start = [], None
    for i, c in enumerate(context + " "):
        if c.isspace() or is_punctuation(c):
            if start is not None:
                spans.append((start, i))
                start = None
            if is_punctuation(c):
                spans.append((i, i + 1))
        elif start is None:
            start = i
    pieces, offsets = [], []
    for s, e in spans:
        for piece in tokenizer.tokenize(context[s:e]):
            pieces.append(piece)
            offsets.append((s, e))
    return pieces, offsets


def _check_examples(examples) -> None:
    if isinstance(examples, (str, QAExample)) or not isinstance(examples, Sequence) or not examples \
            or not all(isinstance(ex, QAExample) for ex in examples):
        raise TypeError(f"`examples` should be a non-empty list of QAExample, but got {describe(examples)}.")


def qa_length(example: QAExample, tokenizer) -> int:
    """The number of tokens of ``[CLS] question [SEP] context [SEP]`` with this tokenizer."""
    return len(tokenizer.tokenize(example.question)) + len(context_pieces(example.context, tokenizer)[0]) + 3


def fits(example: QAExample, tokenizer, max_length: int) -> bool:
    """Whether ``[CLS] question [SEP] context [SEP]`` has at most ``max_length`` tokens."""
    return qa_length(example, tokenizer) <= max_length


def encode_qa(examples, tokenizer, max_length: int = 64) -> dict[str, torch.Tensor]:
    """Encode examples as ``[CLS] question [SEP] context [SEP]``, padded on the right. Returns (N, T) tensors
    ``input_ids``, ``token_type_ids``, ``attention_mask``, ``context_mask`` (1 on context tokens),
    ``offsets`` (N, T, 2) (each context token's characters; -1 elsewhere), and ``labels`` (N, 2): the
    answer's first and last token positions, (0, 0) = [CLS] for a question without an answer."""
    _check_examples(examples)
    if not is_int(max_length) or max_length < 5:
        raise ValueError(f"`max_length` should be an integer >= 5, but got {describe(max_length)}.")
    rows = []
    for i, ex in enumerate(examples):
        question = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(ex.question))
        pieces, offsets = context_pieces(ex.context, tokenizer)
        ids = [tokenizer.cls_id] + question + [tokenizer.sep_id] + tokenizer.convert_tokens_to_ids(pieces) \
            + [tokenizer.sep_id]
        if len(ids) > max_length:
            raise ValueError(f"`examples[{i}]` needs {len(ids)} tokens, more than max_length={max_length}; "
                             "keep only examples that fit (see fits()).")
        first = len(question) + 2                                   # position of the first context token
        rows.append((ids, first, offsets, _answer_positions(ex, offsets, first, i)))
    T = max(len(ids) for ids, *_ in rows)
    N = len(rows)
    data = {"input_ids": torch.full((N, T), tokenizer.pad_id, dtype=torch.long),        # (N, T)
            "token_type_ids": torch.zeros((N, T), dtype=torch.long),
            "attention_mask": torch.zeros((N, T), dtype=torch.long),
            "context_mask": torch.zeros((N, T), dtype=torch.long),
            "offsets": torch.full((N, T, 2), -1, dtype=torch.long),                      # (N, T, 2)
            "labels": torch.zeros((N, 2), dtype=torch.long)}                             # (N, 2) start, end
    for n, (ids, first, offsets, (start, end)) in enumerate(rows):
        last = first + len(offsets)                                  # one past the last context token
        data["input_ids"][n, :len(ids)] = torch.tensor(ids)
        data["attention_mask"][n, :len(ids)] = 1
        data["token_type_ids"][n, first:len(ids)] = 1
        data["context_mask"][n, first:last] = 1
        if offsets:
            data["offsets"][n, first:last] = torch.tensor(offsets)
        data["labels"][n] = torch.tensor([start, end])
    return data


def _answer_positions(ex: QAExample, offsets: list[tuple[int, int]], first: int, i: int) -> tuple[int, int]:
    """Token positions of the first and last context piece inside the answer's characters; (0, 0) = none."""
    if not ex.answer:
        return 0, 0
    lo, hi = ex.answer_start, ex.answer_start + len(ex.answer)
    if ex.context[lo:hi] != ex.answer:
        raise ValueError(f"`examples[{i}]`: the context at answer_start={lo} reads {ex.context[lo:hi]!r}, "
                         f"not the answer {ex.answer!r}.")
    inside = [k for k, (s, e) in enumerate(offsets) if s >= lo and e <= hi]
    if not inside or offsets[inside[0]][0] != lo or offsets[inside[-1]][1] != hi:
        raise ValueError(f"`examples[{i}]`: the answer {ex.answer!r} does not start and end on word boundaries.")
    return first + inside[0], first + inside[-1]


# --------------------------------------------------------------------------------------------------
# Decoding: the best span, or no answer
# --------------------------------------------------------------------------------------------------

def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, context_mask: torch.Tensor,
               max_answer_length: int = 4, null_threshold: float = 0.0) -> torch.Tensor:
    """The predicted span of every row: the context positions (s, e) with s <= e < s + max_answer_length
    that maximise start_logits[s] + end_logits[e]; but (0, 0) (no answer) when the [CLS] score
    start_logits[0] + end_logits[0] beats that best span's score by more than ``null_threshold``.
    Inputs (B, T); returns (B, 2) long."""
    expect_tensor(start_logits, "start_logits", 2, "(B, T)")
    for name, t in (("end_logits", end_logits), ("context_mask", context_mask)):
        if not isinstance(t, torch.Tensor) or t.shape != start_logits.shape:
            raise ValueError(f"`{name}` should be a tensor of shape {tuple(start_logits.shape)} like "
                             f"start_logits, but got {describe(t)}.")
    if not is_int(max_answer_length) or max_answer_length < 1:
        raise ValueError(f"`max_answer_length` should be a positive integer, but got {describe(max_answer_length)}.")
    B, T = start_logits.shape
    scores = start_logits.float()[:, :, None] + end_logits.float()[:, None, :]          # (B, T, T): [s, e]
    s, e = torch.arange(T)[:, None], torch.arange(T)[None, :]
    allowed = (s <= e) & (e < s + max_answer_length)                                     # (T, T)
    ctx = context_mask.bool()
    allowed = allowed & ctx[:, :, None] & ctx[:, None, :]                                # (B, T, T)
    scores = scores.masked_fill(~allowed, float("-inf"))
    best, flat = scores.flatten(1).max(dim=1)                                            # (B,)
    spans = torch.stack([flat // T, flat % T], dim=1)                                    # (B, 2)
    null = start_logits[:, 0].float() + end_logits[:, 0].float()                         # (B,)
    no_answer = (null - best > null_threshold) | torch.isinf(best)
    return spans.masked_fill(no_answer[:, None], 0)


def span_texts(spans: torch.Tensor, examples: Sequence[QAExample], offsets: torch.Tensor) -> list[str]:
    """The context text of each predicted span ((0, 0) -> "", no answer), from the encoded ``offsets``."""
    _check_examples(examples)
    texts = []
    for (s, e), ex, off in zip(spans.tolist(), examples, offsets):
        texts.append("" if s == 0 else ex.context[int(off[s, 0]):int(off[e, 1])])
    return texts


# --------------------------------------------------------------------------------------------------
# Metrics (SQuAD's): exact match and token F1 after normalisation
# --------------------------------------------------------------------------------------------------

def normalize_answer(text: str) -> str:
    """Lower case, punctuation removed, the articles a / an / the removed, whitespace collapsed (SQuAD's)."""
    if not isinstance(text, str):
        raise TypeError(f"an answer should be a string, but got {describe(text)}.")
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised answers are equal (two empty answers: both say "no answer"), else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """F1 of the normalised answers' words (a bag, counting repeats). If either is empty ("no answer"),
    1.0 when both are and 0.0 otherwise."""
    pred, true = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not true:
        return float(pred == true)
    common = sum((Counter(pred) & Counter(true)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(true)
    return 2 * precision * recall / (precision + recall)


def qa_scores(predictions: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """Mean exact match and token F1 in percent, overall and on the answerable / unanswerable questions."""
    if len(predictions) != len(golds) or not golds:
        raise ValueError(f"`predictions` and `golds` should be non-empty lists of the same length, "
                         f"but got {len(predictions)} and {len(golds)}.")
    em = [exact_match(p, g) for p, g in zip(predictions, golds)]
    f1 = [token_f1(p, g) for p, g in zip(predictions, golds)]
    has = [bool(normalize_answer(g)) for g in golds]

    def mean(xs, keep):
        kept = [x for x, k in zip(xs, keep) if k]
        return 100 * sum(kept) / len(kept) if kept else float("nan")

    return {"exact_match": mean(em, [True] * len(em)), "f1": mean(f1, [True] * len(f1)),
            "has_answer_f1": mean(f1, has), "no_answer_accuracy": mean(em, [not h for h in has])}


# --------------------------------------------------------------------------------------------------
# Training and prediction with ptlm_course.training.train
# --------------------------------------------------------------------------------------------------

def qa_loss_fn(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """``loss_fn`` for :func:`~ptlm_course.training.train`: the span loss of batches from
    ``make_get_batch(encode_qa(...))`` (``labels`` (B, 2) = start, end)."""
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                start_positions=batch["labels"][:, 0], end_positions=batch["labels"][:, 1])
    return out.loss, {}


def _bf16(enabled: bool):
    """bfloat16 autocast on the CPU (matrix products in bfloat16, losses and softmaxes in float32), or nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else nullcontext()


def qa_loss_fn_bf16(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """:func:`qa_loss_fn` under bfloat16 autocast on the CPU (the model's weights stay float32)."""
    with _bf16(True):
        return qa_loss_fn(model, batch)


@torch.no_grad()
def predict_spans(model, data: dict, max_answer_length: int = 4, null_threshold: float = 0.0,
                  batch_size: int = 256, bfloat16: bool = False) -> torch.Tensor:
    """(N, 2) predicted spans of encoded data (from :func:`encode_qa`), in eval mode; the mode is restored.
    ``bfloat16``: the forward passes run under bfloat16 autocast on the CPU (the span scores in float32)."""
    was_training = model.training
    model.eval()
    spans = []
    try:
        for lo in range(0, len(data["labels"]), batch_size):
            rows = slice(lo, lo + batch_size)
            with _bf16(bfloat16):
                out = model(data["input_ids"][rows], data["token_type_ids"][rows], data["attention_mask"][rows])
            spans.append(best_spans(out.start_logits, out.end_logits, data["context_mask"][rows],
                                    max_answer_length, null_threshold))
    finally:
        model.train(was_training)
    return torch.cat(spans)                                                             # (N, 2)


@dataclass(frozen=True)
class QARecipe:
    """How every arm fine-tunes (Part 3's protocol): the same steps, batch and schedule; only the learning rate
    is picked, on validation, from ``lr_grid``. A run on ``n`` examples takes ``min(steps, steps_per_example * n)``.
    ``bfloat16``: training and prediction run under bfloat16 autocast on the CPU (about twice as fast for a model
    of MiniLM's size on a CPU with bfloat16 units; the weights and the optimizer stay float32).
    ``freeze_word_embeddings``: the word-embedding table is not trained (for MiniLM: 11.7 M of its 22.7 M numbers,
    whose AdamW update costs a fifth of a step on the CPU); everything else is."""
    steps: int = 300
    steps_per_example: int = 3
    batch_size: int = 16
    lr_grid: tuple[float, ...] = (5e-4, 2e-3)
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    max_answer_length: int = 4
    bfloat16: bool = False
    freeze_word_embeddings: bool = False


def fine_tune_qa(config, body_state: dict | None, train_data: dict, lr: float, seed: int,
                 recipe: QARecipe = QARecipe()):
    """A :class:`~ptlm_course.bert.BertForQuestionAnswering` trained on ``train_data`` (from :func:`encode_qa`),
    its encoder starting from ``body_state`` (a BERT state dict) or, when None, from a random init (``seed``)."""
    def build():
        model = BertForQuestionAnswering(config)
        model.bert.embeddings.word.weight.requires_grad_(not recipe.freeze_word_embeddings)
        return model

    return fine_tune_head(build, body_state, train_data, lr, seed, recipe,
                          qa_loss_fn_bf16 if recipe.bfloat16 else qa_loss_fn)


def score_qa(model, data: dict, examples: Sequence[QAExample], recipe: QARecipe = QARecipe()) -> dict[str, float]:
    """:func:`qa_scores` of the model's predicted spans on encoded ``data`` of ``examples``."""
    _check_examples(examples)
    if len(examples) != len(data["labels"]):
        raise ValueError(f"`data` should encode the {len(examples)} examples, but it has {len(data['labels'])} rows.")
    spans = predict_spans(model, data, recipe.max_answer_length, bfloat16=recipe.bfloat16)
    return qa_scores(span_texts(spans, examples, data["offsets"]), [ex.answer for ex in examples])


# --------------------------------------------------------------------------------------------------
# One arm of a fair comparison: the learning rate picked on validation with the first seed, every seed on test
# --------------------------------------------------------------------------------------------------

@dataclass
class QAArm:
    """What :func:`run_qa_arm` measured for one starting point."""
    lr: float                          # the learning rate picked on validation
    val_f1: dict[float, float]         # validation F1 of every learning rate of the grid (the first seed)
    scores: list[dict]                 # per seed: {"seed", "exact_match", "f1", "has_answer_f1", "no_answer_accuracy"}
    first_model: nn.Module             # the first seed's model with the picked learning rate
    seconds: float                     # wall-clock time of the whole arm (training and scoring)


def run_qa_arm(config, body_state: dict | None, train_sets: dict[int, dict], val: tuple[Sequence[QAExample], dict],
               test: tuple[Sequence[QAExample], dict], recipe: QARecipe = QARecipe()) -> QAArm:
    """Part 3's protocol for one start: every learning rate of ``recipe.lr_grid`` fine-tunes on the first seed's
    training set and is scored on validation (F1); the best one then fine-tunes every other seed, and every
    seed's model is scored on test. ``train_sets``: seed -> encoded training questions (from :func:`encode_qa`,
    the first key is the first seed); ``val`` and ``test``: (examples, their encoding)."""
    if not isinstance(train_sets, dict) or not train_sets or not all(is_int(s) for s in train_sets):
        raise TypeError(f"`train_sets` should be a non-empty dict seed -> encoded questions, "
                        f"but got {describe(train_sets)}.")
    for name, pair in (("val", val), ("test", test)):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], dict)):
            raise TypeError(f"`{name}` should be a pair (examples, encode_qa(examples, ...)), "
                            f"but got {describe(pair)}.")
    started = time.perf_counter()
    seeds = list(train_sets)
    first = seeds[0]
    tuning = {lr: fine_tune_qa(config, body_state, train_sets[first], lr, first, recipe) for lr in recipe.lr_grid}
    val_f1 = {lr: score_qa(model, val[1], val[0], recipe)["f1"] for lr, model in tuning.items()}
    lr = max(recipe.lr_grid, key=val_f1.get)                      # ties: the first of the grid
    scores = []
    for s in seeds:
        model = tuning[lr] if s == first else fine_tune_qa(config, body_state, train_sets[s], lr, s, recipe)
        scores.append({"seed": s, **score_qa(model, test[1], test[0], recipe)})
    return QAArm(lr, val_f1, scores, tuning[lr], time.perf_counter() - started)
