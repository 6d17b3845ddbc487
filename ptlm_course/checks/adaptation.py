"""Checks for exercises/13_domain_adaptation.ipynb: how often a domain's words fall apart into many pieces, and
an experiment (the learning rate of continued masked-LM pretraining, picked on held-out reviews)."""
from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Mapping

import torch

from ..bert import BertForPreTraining
from ..runtime import by_budget
from ..validation import describe, is_number
from ._core import CheckFailed, call_student, expect_equal, passed
from ._experiments import expect_conclusion, run_experiment

__all__ = ["check_fragmented_share", "coverage_setup", "check_coverage_experiment", "lr_sweep_setup", "continued_mlm",
           "held_out_losses", "check_lr_sweep_experiment"]


# ------------------------------------------------------------------------------ vocabulary coverage

def _toy_tokenize(word: str) -> list[str]:
    """A stand-in tokenizer: chunks of 3 characters, later ones marked with ## (so 'abcdefg' gives 3 pieces)."""
    return [("##" if i else "") + word[i:i + 3] for i in range(0, len(word), 3)]


def _share(texts, tokenize, min_pieces, kind="ok"):
    words = [w for t in texts for w in t.split()]
    if kind == "types":
        words = sorted(set(words))
    counts = [len(tokenize(w)) for w in words]
    if kind == "strict":
        return sum(c > min_pieces for c in counts) / len(words)
    if kind == "count":
        return sum(c >= min_pieces for c in counts)
    if kind == "complement":
        return sum(c < min_pieces for c in counts) / len(words)
    if kind == "pieces":
        return sum(c for c in counts if c >= min_pieces) / sum(counts)
    if kind == "fixed3":
        return sum(c >= 3 for c in counts) / len(words)
    if kind == "two":
        return sum(c >= 2 for c in counts) / len(words)
    if kind == "percent":
        return 100 * sum(c >= min_pieces for c in counts) / len(words)
    if kind == "per_text":
        shares = [sum(len(tokenize(w)) >= min_pieces for w in t.split()) / len(t.split()) for t in texts]
        return sum(shares) / len(shares)
    return sum(c >= min_pieces for c in counts) / len(words)


_SHARE_MISTAKES = {
    "strict": "you counted words with MORE than min_pieces pieces; a word of exactly min_pieces pieces counts "
              "too (>=).",
    "count": "you returned the number of fragmented words: divide by the number of words to get a share.",
    "complement": "you returned the share of words that stay whole or short (fewer than min_pieces pieces): the task "
                  "asks for the words split into at least min_pieces pieces.",
    "types": "you counted each distinct word once (a set of words): count every occurrence, as a reader meets them.",
    "pieces": "you returned a share of pieces, not of words: divide the number of fragmented words by the number "
              "of words.",
    "fixed3": "you used 3 pieces whatever min_pieces says: use the min_pieces argument.",
    "two": "you counted every word split at all (2 pieces or more) whatever min_pieces says: use the min_pieces "
           "argument.",
    "percent": "you returned a percentage: return a share between 0 and 1.",
    "per_text": "you averaged each text's share: long texts should weigh more; take one share over all the words.",
}


def check_fragmented_share(fn) -> None:
    """Check ``fn(texts, tokenize, min_pieces) -> float``: the share of the texts' words (whitespace-separated,
    every occurrence) that ``tokenize`` splits into at least ``min_pieces`` pieces."""
    check = "check_fragmented_share"
    cases = [(["bewildering abcdefg abcd ab a"], 4),
             (["the cinematography was breathtaking", "a movie"], 3),
             (["abc abcd abcdefghij abcdefghij", "xy", "abcdefg abcdefgh ab ab ab ab"], 2),
             (["short words only", "a b c", "abcdefghi abcdefghi abcdefghi"], 3)]
    for texts, min_pieces in cases:
        got = call_student(check, fn, list(texts), _toy_tokenize, min_pieces)
        where = f" (test: texts {texts}, min_pieces = {min_pieces}; the tokenizer cuts words into chunks of 3 letters)"
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not is_number(got):
            raise CheckFailed(check, f"return the share as a number between 0 and 1, not {describe(got)}." + where)
        expected = _share(texts, _toy_tokenize, min_pieces)
        if math.isclose(got, expected, abs_tol=1e-9):
            continue
        for kind, message in _SHARE_MISTAKES.items():
            if math.isclose(got, _share(texts, _toy_tokenize, min_pieces, kind), abs_tol=1e-9):
                raise CheckFailed(check, message + where)
        expect_equal(check, round(got, 6), round(expected, 6), "the share" + where)
    passed(check, len(cases))


def coverage_setup():
    """The coverage experiment's ingredients: the course tokenizer's ``tokenize`` and two corpora,
    {"shakespeare": 500 speeches of the held-out plays, "reviews": 100 IMDb validation reviews}."""
    from ..course_models import speech_texts, split_plays
    from ..data import sentiment_splits
    _, tok, _ = _quiet_course_bert()
    return tok.tokenize, {"shakespeare": speech_texts(split_plays()[1])[:500],
                          "reviews": [e.text for e in sentiment_splits("imdb")["validation"][:100]]}


def check_coverage_experiment(experiment) -> None:
    """Re-measure the share of words in 3+ pieces in both corpora and check the stated results."""
    check = "check_coverage_experiment"
    stated = run_experiment(check, experiment)             # first: an unwritten one fails fast
    tokenize, corpora = coverage_setup()
    plays, reviews = (_share(corpora[name], tokenize, 3) for name in ("shakespeare", "reviews"))
    if isinstance(stated, Mapping):
        for key, ours, other, other_name in (("share_shakespeare", plays, reviews, "reviews"),
                                             ("share_reviews", reviews, plays, "Shakespeare")):
            got = stated.get(key)
            if is_number(got) and not math.isclose(got, ours, rel_tol=1e-3):
                for kind, message in _SHARE_MISTAKES.items():
                    if math.isclose(got, _share(corpora[key[6:]], tokenize, 3, kind), rel_tol=1e-3):
                        raise CheckFailed(check, f"`{key}`: " + message)
                if math.isclose(got, other, rel_tol=1e-3):
                    raise CheckFailed(check, f"`{key}` = {got:.4g} is the {other_name}' share: the two corpora are "
                                             f"swapped.")
    expect_conclusion(check, stated, {"share_shakespeare": plays, "share_reviews": reviews}, {
        "reviews_fragment_more": (reviews > plays, f"{reviews:.1%} of review words against {plays:.1%} of "
                                                   f"Shakespeare's are cut into 3+ pieces."),
        "more_than_twice_as_often": (reviews > 2 * plays, f"{reviews:.1%} / {plays:.1%} = {reviews / plays:.2f}."),
    }, rel=1e-3)
    passed(check, 4)


# ------------------------------------------------------------------------------ the experiment

LR_GRID = (1e-4, 5e-4, 2e-3, 1e-2)


def _quiet_course_bert():
    from ..course_models import course_bert
    with contextlib.redirect_stdout(io.StringIO()):                         # no "Loaded ..." line in the check
        return course_bert(progress=False)


@functools.lru_cache(maxsize=2)
def _windows(budget: str):
    """(train windows, held-out review windows, held-out Shakespeare windows), built as in notebook 13."""
    from ..course_models import speech_texts, split_plays
    from ..data import sentiment_splits
    _, tok, _ = _quiet_course_bert()
    imdb = sentiment_splits("imdb")
    body = 62

    def windows(texts, limit):
        stream = []
        for text in texts:
            stream += tok.convert_tokens_to_ids(tok.tokenize(text)) + [tok.sep_id]
        n = min(limit, len(stream) // body)
        rows = torch.tensor(stream[: n * body]).view(n, body)                 # (N, 62)
        return torch.cat([torch.full((n, 1), tok.cls_id), rows, torch.full((n, 1), tok.sep_id)], dim=1)

    n_reviews = by_budget(small=40, full=300)
    train = windows([e.text for e in imdb["train"][:n_reviews]], 10_000)
    val = windows([e.text for e in imdb["validation"][:40]], 64)
    plays = windows(speech_texts(split_plays()[1])[:400], 64)
    return train, val, plays


class SweepSetup:
    """The experiment's fixed ingredients: the course BERT, its tokenizer, IMDb training windows, held-out
    review and Shakespeare windows (masked once, with a fixed seed), the number of steps and the grid."""

    def __init__(self):
        from ..pretraining_data import mask_tokens
        self.bert, self.tok, _ = _quiet_course_bert()
        self.steps = by_budget(small=8, full=40)
        self.batch_size = 32
        self.lr_grid = LR_GRID
        self.train_windows, val, plays = _windows(by_budget(small="small", full="full"))
        fixed = torch.Generator().manual_seed(1234)
        self.held_out = {name: mask_tokens(w, self.tok.special_ids, self.tok.vocab_size, self.tok.mask_id,
                                           generator=fixed) for name, w in (("reviews", val), ("shakespeare", plays))}

    def masked_batch(self, generator):
        from ..pretraining_data import mask_tokens
        rows = torch.randint(0, len(self.train_windows), (self.batch_size,), generator=generator)
        return mask_tokens(self.train_windows[rows], self.tok.special_ids, self.tok.vocab_size, self.tok.mask_id,
                           generator=generator)


def lr_sweep_setup() -> SweepSetup:
    return SweepSetup()


def continued_mlm(setup: SweepSetup, lr: float) -> BertForPreTraining:
    """A copy of the course BERT after ``setup.steps`` steps of masked LM on the IMDb windows at a constant
    learning rate ``lr`` (AdamW, seed 0: the same run every time)."""
    torch.manual_seed(0)
    model = BertForPreTraining(setup.bert.config)
    model.load_state_dict(setup.bert.state_dict())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(setup.steps):
        inputs, labels = setup.masked_batch(g)
        loss = model(inputs, attention_mask=torch.ones_like(inputs), mlm_labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def held_out_losses(setup: SweepSetup, model: BertForPreTraining) -> dict:
    """The masked-LM loss on the fixed held-out windows: {"reviews": ..., "shakespeare": ...}."""
    was = model.training
    model.eval()
    out = {name: model(x, attention_mask=torch.ones_like(x), mlm_labels=y).loss.item()
           for name, (x, y) in setup.held_out.items()}
    model.train(was)
    return out


def _per_lr(check, stated, key, grid):
    """The student's {lr: number} dict, keyed by the grid's values."""
    given = stated[key]
    if not isinstance(given, Mapping):
        raise CheckFailed(check, f"`{key}` should be a dict {{learning rate: loss}} over the grid {list(grid)}, "
                                 f"but it is {describe(given)}.")
    out = {}
    for lr in grid:
        found = [v for k, v in given.items() if isinstance(k, (int, float)) and math.isclose(k, lr, rel_tol=1e-6)]
        if not found:
            raise CheckFailed(check, f"`{key}` has no entry for the learning rate {lr:g}: run every rate of the grid "
                                     f"{list(grid)}.")
        value = found[0]
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not is_number(value):
            raise CheckFailed(check, f"`{key}`[{lr:g}] should be the loss you measured, not {describe(value)}.")
        out[lr] = float(value)
    return out


@functools.lru_cache(maxsize=2)
def _measured_sweep(steps: int, grid: tuple, n_windows: int):
    """The check's own run of the sweep (once per process and budget): (before, {lr: review}, {lr: Shakespeare})."""
    setup = lr_sweep_setup()
    before = held_out_losses(setup, setup.bert)
    reviews, plays = {}, {}
    for lr in grid:
        losses = held_out_losses(setup, continued_mlm(setup, lr))
        reviews[lr], plays[lr] = losses["reviews"], losses["shakespeare"]
    return before, reviews, plays


def check_lr_sweep_experiment(experiment) -> None:
    """Re-run the learning-rate sweep of continued masked-LM pretraining and check the stated results."""
    check = "check_lr_sweep_experiment"
    stated = run_experiment(check, experiment)             # first: an unwritten one fails fast
    keys = ["review_loss", "shakespeare_loss", "best_lr"]
    if not isinstance(stated, Mapping) or any(k not in stated for k in keys):
        raise CheckFailed(check, f"state your results as a dict with (at least) the keys {keys}, but got "
                                 f"{describe(stated)}.")
    setup = lr_sweep_setup()
    reviews = _per_lr(check, stated, "review_loss", setup.lr_grid)
    plays = _per_lr(check, stated, "shakespeare_loss", setup.lr_grid)
    best = stated["best_lr"]
    if not is_number(best) or \
            not any(math.isclose(best, lr, rel_tol=1e-6) for lr in setup.lr_grid):
        raise CheckFailed(check, f"`best_lr` should be one of the grid's rates {list(setup.lr_grid)}, not "
                                 f"{describe(best)}.")
    best = next(lr for lr in setup.lr_grid if math.isclose(best, lr, rel_tol=1e-6))
    own_best = min(reviews, key=reviews.get)
    if best != own_best:
        highest, for_plays = best == max(reviews, key=reviews.get), best == min(plays, key=plays.get)
        if highest:
            also = " (it is also the best rate for Shakespeare, the old domain)" if for_plays else ""
            raise CheckFailed(check, f"`best_lr` = {best:g} has the HIGHEST held-out review loss of your sweep{also}: "
                                     f"pick the rate with the lowest review loss ({own_best:g}).")
        if for_plays:
            raise CheckFailed(check, f"`best_lr` = {best:g} is the best rate for Shakespeare, the old domain: pick "
                                     f"on the held-out reviews, the domain we adapt to ({own_best:g}).")
        raise CheckFailed(check, f"`best_lr` = {best:g}, but your own numbers give the lowest held-out review loss "
                                 f"at {own_best:g}: pick the rate with the lowest `review_loss`.")
    before, measured_reviews, measured_plays = _measured_sweep(setup.steps, setup.lr_grid, len(setup.train_windows))
    for name, ours, theirs in (("review_loss", measured_reviews, reviews), ("shakespeare_loss", measured_plays, plays)):
        for lr in setup.lr_grid:
            if abs(theirs[lr] - ours[lr]) > 0.01 * abs(ours[lr]):
                swapped = (reviews if name == "shakespeare_loss" else plays)[lr]
                hint = (" (it matches the other domain's loss: are review and Shakespeare swapped?)"
                        if abs(swapped - ours[lr]) <= 0.01 * abs(ours[lr]) else "")
                raise CheckFailed(check, f"`{name}`[{lr:g}] = {theirs[lr]:.4g}, but re-running the experiment gives "
                                         f"{ours[lr]:.4g}{hint}: use `continued_mlm` and `held_out_losses` as given "
                                         f"and copy what they return.")
    true_best = min(measured_reviews, key=measured_reviews.get)
    expect_conclusion(check, stated, {"review_loss_before": before["reviews"],
                                      "shakespeare_loss_before": before["shakespeare"]}, {
        "adaptation_lowers_review_loss": (measured_reviews[true_best] < before["reviews"],
                                          f"at {true_best:g} the held-out review loss goes {before['reviews']:.3f} -> "
                                          f"{measured_reviews[true_best]:.3f}."),
        "best_lr_forgets_shakespeare": (measured_plays[true_best] > before["shakespeare"],
                                        f"at {true_best:g} the held-out Shakespeare loss goes "
                                        f"{before['shakespeare']:.3f} -> {measured_plays[true_best]:.3f}."),
        "largest_lr_is_best": (true_best == max(setup.lr_grid),
                               f"the lowest held-out review loss is at {true_best:g}, the largest rate is "
                               f"{max(setup.lr_grid):g}."),
    }, rel=0.01)
    passed(check, 4 + len(setup.lr_grid))
