"""The checks of exercise 11 accept correct answers (several styles) and name each classic mistake."""
import pytest
import torch
import torch.nn.functional as F

from ptlm_course.checks import CheckFailed
from ptlm_course.checks.gpt_finetuning import check_mean_pooled_logits, check_review_lm_loss


def fails_with(check, fn, message):
    with pytest.raises(CheckFailed, match=message):
        check(fn)


def not_written(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("check", [check_mean_pooled_logits, check_review_lm_loss])
def test_unwritten_code_is_reported(check):
    fails_with(check, not_written, "is not written yet")


# --- mean pooling -----------------------------------------------------------------------------------

def pooled(kind="ok"):
    def fn(body, classifier, input_ids, attention_mask):
        h = body.hidden_states(input_ids)                                    # (B, T, C)
        m = attention_mask.unsqueeze(-1).float()                             # (B, T, 1)
        if kind == "all":
            return classifier(h.mean(1))
        if kind == "sum":
            return classifier((h * m).sum(1))
        if kind == "last":
            return classifier(h[torch.arange(len(h)), attention_mask.sum(1) - 1])
        if kind == "by_T":
            return classifier((h * m).sum(1) / h.shape[1])
        if kind == "batch":
            return classifier((h * m).sum((0, 1)) / m.sum())
        return classifier((h * m).sum(1) / m.sum(1))
    return fn


def pooled_loop(body, classifier, input_ids, attention_mask):
    """Another style: one row at a time, cut to its real tokens."""
    rows = []
    for ids, mask in zip(input_ids, attention_mask):
        n = int(mask.sum())
        rows.append(body.hidden_states(ids[None, :n])[0].mean(0))
    return classifier(torch.stack(rows))


def test_mean_pooled_logits_accepts_correct_styles(capsys):
    check_mean_pooled_logits(pooled())
    check_mean_pooled_logits(pooled_loop)
    assert capsys.readouterr().out.count("✅") == 2


@pytest.mark.parametrize("kind, message", [("all", "padding included"), ("sum", "not the mean"),
                                           ("last", "last real token"), ("by_T", "padded length"),
                                           ("batch", "shape")])
def test_mean_pooled_logits_names_mistakes(kind, message):
    fails_with(check_mean_pooled_logits, pooled(kind), message)


# --- the review tokens' loss ------------------------------------------------------------------------

def review_loss(kind="ok"):
    def fn(logits, input_ids, prompt_lengths, attention_mask):
        T = input_ids.shape[1]
        targets = input_ids[:, 1:].clone()                                   # (B, T-1)
        pos = torch.arange(1, T).unsqueeze(0)
        keep = (pos >= prompt_lengths.unsqueeze(1)) & attention_mask[:, 1:].bool()
        if kind == "prompt_too":
            keep = attention_mask[:, 1:].bool()
        if kind == "late":
            keep = (pos > prompt_lengths.unsqueeze(1)) & attention_mask[:, 1:].bool()
        targets[~keep] = -100
        if kind == "no_shift":
            targets = input_ids.clone()
            targets[(torch.arange(T)[None] < prompt_lengths[:, None]) | (attention_mask == 0)] = -100
            return F.cross_entropy(logits.transpose(1, 2), targets)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               reduction="sum" if kind == "sum" else "mean")
        return loss.item() if kind == "item" else loss
    return fn


def test_review_lm_loss_accepts_correct_style(capsys):
    check_review_lm_loss(review_loss())
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [("prompt_too", "prompt's tokens are scored"), ("late", "first review token"),
                                           ("no_shift", "not shifted"), ("sum", "summed"), ("item", "Python number")])
def test_review_lm_loss_names_mistakes(kind, message):
    fails_with(check_review_lm_loss, review_loss(kind), message)
