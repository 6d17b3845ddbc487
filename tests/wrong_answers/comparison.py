"""Answers to the checks of notebook 08 (BERT's pseudo-log-likelihood with later word pieces masked; experiment)."""
import math

import torch
import torch.nn.functional as F

from ptlm_course.checks.comparison import word_pll_setup

from ._registry import correct, wrong


def _scores(model, rows, positions, ids):
    with torch.no_grad():
        hidden = model.bert(rows, torch.zeros_like(rows), torch.ones_like(rows)).last_hidden_state
        logits = model.mlm_head(hidden[torch.arange(len(ids)), positions])
    return F.cross_entropy(logits, torch.tensor(ids), reduction="none")


# ------------------------------------------------------------------------------------ word-masked NLL

@correct("check_word_masked_nll")
def loop_one_row_at_a_time(model, ids, word_ids, cls_id, sep_id, mask_id):
    out = []
    for i in range(len(ids)):
        hidden = [mask_id if (j >= i and word_ids[j] == word_ids[i]) else t for j, t in enumerate(ids)]
        row = [cls_id] + hidden + [sep_id]
        x = torch.tensor([row])
        with torch.no_grad():
            h = model.bert(x, torch.zeros_like(x), torch.ones_like(x)).last_hidden_state[0, i + 1]
            log_probs = model.mlm_head(h).log_softmax(-1)
        out.append(-log_probs[ids[i]])
    return torch.stack(out)


@correct("check_word_masked_nll")
def gather_style(model, ids, word_ids, cls_id, sep_id, mask_id):
    n = len(ids)
    rows = torch.tensor([[cls_id] + ids + [sep_id]] * n)
    for i in range(n):
        j = i
        while j < n and word_ids[j] == word_ids[i]:
            rows[i, j + 1] = mask_id
            j += 1
    with torch.no_grad():
        logits = model.mlm_head(model.bert(rows, torch.zeros_like(rows), torch.ones_like(rows)).last_hidden_state)
    log_probs = logits.log_softmax(-1)[torch.arange(n), torch.arange(n) + 1]          # (n, V)
    return -log_probs.gather(1, torch.tensor(ids)[:, None]).squeeze(1)


def _rows(ids, word_ids, cls_id, sep_id, mask_id, hide):
    n = len(ids)
    rows = torch.tensor([[cls_id] + ids + [sep_id]] * n)
    for i in range(n):
        for j in range(n):
            if hide(i, j):
                rows[i, j + 1] = mask_id
    return rows


@wrong("check_word_masked_nll", "masked only token i")
def lesson_rule(model, ids, word_ids, cls_id, sep_id, mask_id):
    rows = _rows(ids, word_ids, cls_id, sep_id, mask_id, lambda i, j: i == j)
    return _scores(model, rows, torch.arange(len(ids)) + 1, ids)


@wrong("check_word_masked_nll", "earlier ones too")
def whole_word(model, ids, word_ids, cls_id, sep_id, mask_id):
    rows = _rows(ids, word_ids, cls_id, sep_id, mask_id, lambda i, j: word_ids[i] == word_ids[j])
    return _scores(model, rows, torch.arange(len(ids)) + 1, ids)


@wrong("check_word_masked_nll", "EARLIER pieces")
def earlier_pieces(model, ids, word_ids, cls_id, sep_id, mask_id):
    rows = _rows(ids, word_ids, cls_id, sep_id, mask_id, lambda i, j: word_ids[i] == word_ids[j] and j <= i)
    return _scores(model, rows, torch.arange(len(ids)) + 1, ids)


@wrong("check_word_masked_nll", "off by one")
def forgot_cls_offset(model, ids, word_ids, cls_id, sep_id, mask_id):
    n = len(ids)
    rows = torch.tensor([[cls_id] + ids + [sep_id]] * n)
    for i in range(n):
        for j in range(n):
            if word_ids[i] == word_ids[j] and j >= i:
                rows[i, j] = mask_id                   # forgot the [CLS] at position 0
    return _scores(model, rows, torch.arange(n), ids)


@wrong("check_word_masked_nll", "no [CLS]")
def no_special_tokens(model, ids, word_ids, cls_id, sep_id, mask_id):
    n = len(ids)
    rows = torch.tensor([ids] * n)
    for i in range(n):
        for j in range(n):
            if word_ids[i] == word_ids[j] and j >= i:
                rows[i, j] = mask_id
    return _scores(model, rows, torch.arange(n), ids)


@wrong("check_word_masked_nll", "-log p")
def returns_log_probs(model, ids, word_ids, cls_id, sep_id, mask_id):
    rows = _rows(ids, word_ids, cls_id, sep_id, mask_id, lambda i, j: word_ids[i] == word_ids[j] and j >= i)
    return -_scores(model, rows, torch.arange(len(ids)) + 1, ids)


@wrong("check_word_masked_nll", "probabilities")
def returns_probs(model, ids, word_ids, cls_id, sep_id, mask_id):
    rows = _rows(ids, word_ids, cls_id, sep_id, mask_id, lambda i, j: word_ids[i] == word_ids[j] and j >= i)
    return (-_scores(model, rows, torch.arange(len(ids)) + 1, ids)).exp()


@wrong("check_word_masked_nll", "one number")
def returns_the_mean(model, ids, word_ids, cls_id, sep_id, mask_id):
    rows = _rows(ids, word_ids, cls_id, sep_id, mask_id, lambda i, j: word_ids[i] == word_ids[j] and j >= i)
    return _scores(model, rows, torch.arange(len(ids)) + 1, ids).mean()


@wrong("check_word_masked_nll", "training mode")
def leaves_training_mode(model, ids, word_ids, cls_id, sep_id, mask_id):
    model.train()                                      # "so that the masked-LM head is active"
    rows = _rows(ids, word_ids, cls_id, sep_id, mask_id, lambda i, j: word_ids[i] == word_ids[j] and j >= i)
    return _scores(model, rows, torch.arange(len(ids)) + 1, ids)


# ------------------------------------------------------------------------------------ the experiment

def _experiment(token_rule_words, conclusion=None, swap=False):
    bert, tok, speeches = word_pll_setup()
    special = (tok.cls_id, tok.sep_id, tok.mask_id)
    rule = lambda ids, words: gather_style(bert, ids, words, *special)              # noqa: E731
    token = torch.cat([rule(ids, token_rule_words(ids, words)) for ids, words in speeches])
    word = torch.cat([rule(ids, words) for ids, words in speeches])
    token_ppl, word_ppl = math.exp(token.mean().item()), math.exp(word.mean().item())
    if swap:
        token_ppl, word_ppl = word_ppl, token_ppl
    return {"pseudo_ppl_token_rule": token_ppl, "pseudo_ppl_word_rule": word_ppl,
            "word_rule_is_higher": (word_ppl > token_ppl) if conclusion is None else conclusion}


@correct("check_word_pll_experiment")
def experiment_ok():
    return _experiment(lambda ids, words: list(range(len(ids))))


@wrong("check_word_pll_experiment", "re-running the experiment")
def experiment_token_rule_with_words():                # passed the word ids to both: the two numbers coincide
    return _experiment(lambda ids, words: words)


@wrong("check_word_pll_experiment", "re-running the experiment")
def experiment_swapped():
    return _experiment(lambda ids, words: list(range(len(ids))), swap=True)


@wrong("check_word_pll_experiment", "the measurements say")
def experiment_wrong_conclusion():
    out = _experiment(lambda ids, words: list(range(len(ids))))
    out["word_rule_is_higher"] = not out["word_rule_is_higher"]
    return out


@wrong("check_word_pll_experiment", "miss the key")
def experiment_missing_key():
    out = _experiment(lambda ids, words: list(range(len(ids))))
    del out["word_rule_is_higher"]
    return out


@wrong("check_word_pll_experiment", "should be True or False")
def experiment_conclusion_as_text():
    out = _experiment(lambda ids, words: list(range(len(ids))))
    out["word_rule_is_higher"] = "yes" if out["word_rule_is_higher"] else "no"
    return out
