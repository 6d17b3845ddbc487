"""Checks for exercises/08_bert_vs_gpt.ipynb: BERT's pseudo-log-likelihood with the later pieces of a word
masked too, and an experiment (how much the one-token-at-a-time rule flatters BERT's pseudo-perplexity)."""
from __future__ import annotations

import contextlib
import functools
import io
import math

import torch
import torch.nn.functional as F

from ..bert import BertConfig, BertForPreTraining
from ..runtime import by_budget
from ._core import CheckFailed, call_student, expect_tensor_like, passed
from ._experiments import expect_conclusion, run_experiment

__all__ = ["check_word_masked_nll", "word_pll_setup", "check_word_pll_experiment"]

CLS, SEP, MASK = 2, 3, 4                       # the special ids of the check's small model (as in the course's)


def _reference(model, ids, word_ids, cls_id, sep_id, mask_id, kind="ok") -> torch.Tensor:
    """-log p(t_i | the speech with t_i and the later pieces of its word masked), for every i: (n,)."""
    n = len(ids)
    row = torch.tensor([cls_id, *ids, sep_id])                                  # (n + 2,)
    if kind == "no_specials":
        row = torch.tensor(list(ids))
    offset = 0 if kind in ("no_specials", "no_offset") else 1
    batch = row.repeat(n, 1)                                                    # (n, L): copy i scores token i
    for i in range(n):
        for j in range(n):
            same_word = word_ids[j] == word_ids[i]
            hide = (j == i if kind == "token" else
                    same_word if kind == "whole_word" else
                    same_word and j <= i if kind == "earlier" else
                    same_word and j >= i)
            if hide:
                batch[i, j + offset] = mask_id
    positions = torch.arange(n) + offset
    with torch.no_grad():
        out = model.bert(batch, torch.zeros_like(batch), torch.ones_like(batch))
        logits = model.mlm_head(out.last_hidden_state[torch.arange(n), positions])   # (n, V)
    nll = F.cross_entropy(logits, torch.tensor(ids), reduction="none")           # (n,)
    if kind == "log_p":
        return -nll
    if kind == "p":
        return (-nll).exp()
    return nll


_MISTAKES = {
    "token": "you masked only token i, the lesson's rule: also mask the LATER pieces of the same word (j > i with "
             "word_ids[j] == word_ids[i]), or BERT reads '##ing' while it guesses the piece before it.",
    "whole_word": "you masked every piece of the word, the earlier ones too: keep the pieces BEFORE i visible "
                  "(a left-to-right reading inside the word) and mask only i and the pieces after it.",
    "earlier": "you masked token i with the EARLIER pieces of its word instead of the later ones: mask i and the "
               "pieces AFTER it.",
    "no_offset": "the masked and read positions are off by one: [CLS] sits at position 0, so token i of the speech "
                 "is at position i + 1 of the row.",
    "no_specials": "the rows have no [CLS] ... [SEP]: BERT was trained on `[CLS] A [SEP] ...`; build each row as "
                   "[cls_id] + masked ids + [sep_id] and read position i + 1.",
    "log_p": "you returned log p; the task asks for -log p (a loss, positive).",
    "p": "you returned the probabilities; the task asks for -log p.",
}


@functools.lru_cache(maxsize=1)
def _small_bert() -> BertForPreTraining:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                        max_position_embeddings=24, dropout=0.0, attention_dropout=0.0,
                        initializer_range=0.2)      # large weights: every masked piece changes the losses
    return BertForPreTraining(config).eval()


def check_word_masked_nll(fn) -> None:
    """Check ``fn(model, ids, word_ids, cls_id, sep_id, mask_id) -> (n,) tensor`` of -log p, one per token."""
    check = "check_word_masked_nll"
    model = _small_bert().eval()
    cases = [([7, 8, 9, 10, 11, 12], [0, 0, 1, 2, 2, 2]),       # two multi-piece words
             ([5, 6, 7], [0, 1, 2]),                            # single-piece words only: the lesson's rule
             ([13, 14, 15, 16, 17], [0, 1, 1, 1, 1])]
    n_tests = 0
    for ids, word_ids in cases:
        expected = _reference(model, ids, word_ids, CLS, SEP, MASK)
        actual = call_student(check, fn, model, list(ids), list(word_ids), CLS, SEP, MASK)
        if isinstance(actual, torch.Tensor) and actual.dim() == 0:
            raise CheckFailed(check, f"you returned one number ({actual.item():.4g}); return one -log p per token, "
                                     f"a tensor of shape ({len(ids)},): the mean is taken later.")
        mistakes = [(text, _reference(model, ids, word_ids, CLS, SEP, MASK, kind)) for kind, text in _MISTAKES.items()
                    if not (kind == "token" and len(set(word_ids)) == len(word_ids))]
        expect_tensor_like(check, actual, expected, f"the result for ids {ids}, word_ids {word_ids}", mistakes,
                           atol=1e-4, rtol=1e-4)
        n_tests += 1
    if model.training:
        raise CheckFailed(check, "your function left the model in training mode: do not call model.train() in it.")
    passed(check, n_tests)


# ------------------------------------------------------------------------------ the experiment

def _word_ids(pieces: list[str]) -> list[int]:
    """The word each piece belongs to: a new word at every piece that does not start with '##'."""
    word, out = -1, []
    for piece in pieces:
        word += not piece.startswith("##")
        out.append(word)
    return out


def word_pll_setup():
    """The experiment's fixed ingredients: (the course BERT in eval mode, its tokenizer, speeches), where each
    speech is (ids, word_ids): held-out speeches of 3 to 60 pieces with at least one multi-piece word."""
    from ..course_models import course_bert, speech_texts, split_plays
    with contextlib.redirect_stdout(io.StringIO()):         # the same output at every budget
        bert, tok, _ = course_bert(progress=False)
    speeches = []
    for text in speech_texts(split_plays()[1]):
        pieces = tok.tokenize(text)
        words = _word_ids(pieces)
        if 3 <= len(pieces) <= 60 and len(set(words)) < len(words):
            speeches.append((tok.convert_tokens_to_ids(pieces), words))
    g = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(speeches), generator=g)[:by_budget(small=8, full=60)].tolist()
    return bert.eval(), tok, [speeches[i] for i in chosen]


def _measure():
    bert, tok, speeches = word_pll_setup()
    special = (tok.cls_id, tok.sep_id, tok.mask_id)
    per_token = torch.cat([_reference(bert, ids, list(range(len(ids))), *special) for ids, _ in speeches])
    per_word = torch.cat([_reference(bert, ids, words, *special) for ids, words in speeches])
    return math.exp(per_token.mean().item()), math.exp(per_word.mean().item())


def check_word_pll_experiment(experiment) -> None:
    """Check the stated results of the experiment against a re-run of it."""
    check = "check_word_pll_experiment"
    results = run_experiment(check, experiment)             # first: an unwritten one fails fast
    token_ppl, word_ppl = _measure()
    expect_conclusion(check, results, {"pseudo_ppl_token_rule": token_ppl, "pseudo_ppl_word_rule": word_ppl}, {
        "word_rule_is_higher": (word_ppl > token_ppl,
                                "compare the two pseudo-perplexities you measured: hiding the later pieces of a word "
                                "takes information away from BERT, so its loss on those pieces can only be judged by "
                                "measuring it."),
    }, rel=2e-5)                                           # the same computation: only float rounding differs
    passed(check, 3)
