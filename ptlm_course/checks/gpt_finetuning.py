"""Checks for exercises/11_finetuning_gpt.ipynb: a mean-pooling GPT classifier head, and the causal-LM loss
restricted to the review tokens of prompt + review sequences."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..gpt import GPT, GPTConfig
from ..validation import describe
from ._core import CheckFailed, _source, call_student, expect_tensor_like, fn_name, passed

__all__ = ["check_mean_pooled_logits", "check_review_lm_loss"]


# ------------------------------------------------------------------------------ mean of the real positions

def _pooled_logits(body, classifier, ids, mask, kind="ok"):
    h = body.hidden_states(ids).double()                                    # (B, T, C)
    m = mask.double()[..., None]                                            # (B, T, 1)
    rows = torch.arange(ids.shape[0])
    last_real = mask.sum(1) - 1                                             # (B,)
    if kind == "all_positions":
        pooled = h.mean(1)
    elif kind == "sum":
        pooled = (h * m).sum(1)
    elif kind == "divide_by_T":
        pooled = (h * m).sum(1) / ids.shape[1]
    elif kind == "last_real":
        pooled = h[rows, last_real]
    elif kind == "last_position":
        pooled = h[:, -1]
    elif kind == "first_position":
        pooled = h[:, 0]
    elif kind == "padding_only":
        pooled = (h * (1 - m)).sum(1) / (1 - m).sum(1).clamp(min=1)
    elif kind == "one_pad_too_many":
        m = (torch.arange(ids.shape[1])[None] <= mask.sum(1)[:, None]).double()[..., None]
        pooled = (h * m).sum(1) / m.sum(1)
    else:
        pooled = (h * m).sum(1) / m.sum(1)                                  # (B, C)
    weight, bias = classifier.weight.double(), classifier.bias.double()
    return pooled @ weight.T + bias                                         # (B, K)


_POOL_MISTAKES = {
    "all_positions": "you averaged over all T positions, padding included: average only where attention_mask is 1 "
                     "(sum of h * mask over positions, divided by the number of real tokens of the row).",
    "sum": "you summed the real positions' hidden states without dividing by the number of real tokens: that is "
           "the sum, not the mean (and it grows with the length of the text).",
    "divide_by_T": "you divided the masked sum by the padded length T: divide each row by its own number of real "
                   "tokens, attention_mask.sum(dim=1).",
    "last_real": "this reads the last real token (the lesson's head); the task asks for the mean of all real "
                 "positions.",
    "last_position": "this reads the last position of the padded row, which is padding in every shorter row: "
                     "average the real positions instead.",
    "first_position": "this reads the first position, which has seen only the first token: average the real "
                      "positions instead.",
    "padding_only": "you averaged the padding positions: the mask is 1 on the real tokens and 0 on padding.",
    "one_pad_too_many": "one padding position too many is averaged in each row (an off-by-one in the mask: "
                        "positions 0 .. length - 1 are real).",
}


def _call_pooling(check, fn, body, classifier, ids, mask):
    """Call the student's head; errors become short messages (no model dump), with a hint for the classic ones."""
    try:
        return fn(body, classifier, ids, mask)
    except NotImplementedError:
        raise CheckFailed(check, f"`{fn_name(fn)}` is not written yet: replace `raise NotImplementedError()` with "
                                 f"your code.") from None
    except Exception as error:  # noqa: BLE001 - every student error becomes a message
        text = str(error)
        hint = ""
        if ".hidden_states(" not in _source(fn) and ("cannot be multiplied" in text or "must match the size" in text):
            hint = ("\n   Hint: gpt_body(input_ids) returns next-token logits (B, T, vocab), not hidden states: "
                    "use gpt_body.hidden_states(input_ids), (B, T, C).")
        elif "must match the size" in text:
            hint = ("\n   Hint: the mask (B, T) must become (B, T, 1) to multiply the hidden states (B, T, C): "
                    "attention_mask.unsqueeze(-1).")
        raise CheckFailed(check, f"`{fn_name(fn)}` raised {type(error).__name__}: {text}\n   (called with a GPT body "
                                 f"of width {body.config.d_model}, classifier {classifier}, input_ids and "
                                 f"attention_mask of shape {tuple(ids.shape)}){hint}") from None


def check_mean_pooled_logits(fn) -> None:
    """Check ``fn(gpt_body, classifier, input_ids, attention_mask) -> (B, K)``: the classifier applied to the mean
    hidden state of each row's real (attention_mask == 1) positions."""
    check = "check_mean_pooled_logits"
    torch.manual_seed(11)
    body = GPT(GPTConfig(vocab_size=40, block_size=16, n_layers=2, n_heads=2, d_model=24, dropout=0.0)).eval()
    classifier = nn.Linear(24, 5)
    g = torch.Generator().manual_seed(11)
    cases = [[5, 9, 3], [7, 7], [1, 6, 4, 2], [8]]
    for lengths in cases:
        T = max(lengths) + 2                                                # every row ends in padding
        ids = torch.randint(1, 40, (len(lengths), T), generator=g)
        mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()   # (B, T), padded on the right
        given_ids, given_mask = ids.clone(), mask.clone()           # padding holds arbitrary ids: use the mask
        with torch.no_grad():
            got = _call_pooling(check, fn, body, classifier, given_ids, given_mask)
        if not torch.equal(given_ids, ids) or not torch.equal(given_mask, mask):
            raise CheckFailed(check, "input_ids or attention_mask was changed in place: build new tensors.")
        where = f" (test: rows of {lengths} real tokens, padded on the right to T = {T})"
        if isinstance(got, tuple):
            raise CheckFailed(check, f"return the logits tensor (B, K), not {describe(got)}." + where)
        with torch.no_grad():
            expected = _pooled_logits(body, classifier, ids, mask)
            mistakes = [(m + where, _pooled_logits(body, classifier, ids, mask, k)) for k, m in _POOL_MISTAKES.items()]
        if isinstance(got, torch.Tensor) and got.shape == expected.shape[1:]:
            raise CheckFailed(check, f"the logits have shape {tuple(got.shape)}: return (B, K), one row per text "
                                     f"(did you also average over the batch dimension?)" + where)
        expect_tensor_like(check, got, expected, "the logits" + where, mistakes, atol=1e-5)
    passed(check, len(cases))


# ------------------------------------------------------------------------------ the review tokens' loss

def _review_loss(logits, ids, prompt_lengths, mask, kind="ok"):
    B, T, V = logits.shape
    pred, target = logits[:, :-1].double(), ids[:, 1:]                     # position t predicts token t + 1
    pos = torch.arange(1, T)[None]                                          # (1, T-1) the target's position
    keep = (pos >= prompt_lengths[:, None]) & (mask[:, 1:] == 1)            # (B, T-1)
    if kind == "no_shift":
        pred, target = logits.double(), ids
        pos = torch.arange(T)[None]
        keep = (pos >= prompt_lengths[:, None]) & (mask == 1)
    elif kind == "all_tokens":
        keep = mask[:, 1:] == 1
    elif kind == "with_padding":
        keep = pos >= prompt_lengths[:, None]
    elif kind == "everything":
        keep = torch.ones_like(keep)
    elif kind == "skip_first_review_token":
        keep = (pos > prompt_lengths[:, None]) & (mask[:, 1:] == 1)
    elif kind == "prompt_only":
        keep = (pos < prompt_lengths[:, None]) & (mask[:, 1:] == 1)
    elif kind == "reverse_shift":
        pred, target = logits[:, 1:].double(), ids[:, :-1]
        pos = torch.arange(T - 1)[None]
        keep = (pos >= prompt_lengths[:, None]) & (mask[:, :-1] == 1)
    elif kind == "boundary_one_early":
        keep = (pos >= prompt_lengths[:, None] - 1) & (mask[:, 1:] == 1)
    losses = F.cross_entropy(pred.reshape(-1, V), target.reshape(-1), reduction="none").view(target.shape)
    keep = keep.double()
    if kind == "sum":
        return (losses * keep).sum()
    if kind == "mean_of_rows":
        return ((losses * keep).sum(1) / keep.sum(1)).mean()
    return (losses * keep).sum() / keep.sum()


_LOSS_MISTAKES = {
    "no_shift": "the targets are not shifted: the logits at position t predict token t + 1, so compare "
                "logits[:, :-1] with input_ids[:, 1:].",
    "reverse_shift": "the shift goes the wrong way: the logits at position t predict the NEXT token, so compare "
                     "logits[:, :-1] with input_ids[:, 1:] (not logits[:, 1:] with input_ids[:, :-1]).",
    "all_tokens": "the prompt's tokens are scored too: only targets at positions >= prompt_length (the review) "
                  "count.",
    "with_padding": "padding positions are scored too: drop the targets where attention_mask is 0.",
    "everything": "every target is scored, prompt and padding included: keep only review tokens (position >= "
                  "prompt_length and attention_mask 1).",
    "skip_first_review_token": "the first review token is left out (an off-by-one at the boundary): the target at "
                               "position prompt_length is the review's first token and counts.",
    "boundary_one_early": "the prompt's last token is scored as if it were review (an off-by-one at the boundary): "
                          "targets count from position prompt_length on.",
    "prompt_only": "you scored the prompt's tokens instead of the review's: keep targets at positions >= "
                   "prompt_length.",
    "sum": "you summed the review tokens' losses: take their mean (divide by the number of review tokens).",
    "mean_of_rows": "you averaged each row's mean: rows with more review tokens should weigh more; take one mean "
                    "over all review tokens of the batch.",
}


def check_review_lm_loss(fn) -> None:
    """Check ``fn(logits, input_ids, prompt_lengths, attention_mask) -> scalar``: the mean next-token loss over the
    review tokens only (positions >= prompt_lengths[b] with attention_mask 1), logits (B, T, V) from the model."""
    check = "check_review_lm_loss"
    g = torch.Generator().manual_seed(111)
    cases = [([3, 2, 4], [9, 6, 7]), ([1, 5], [8, 8]), ([2, 2, 3, 6], [4, 10, 9, 11])]
    for prompts, lengths in cases:
        B, T, V = len(prompts), max(lengths) + 1, 13
        logits = torch.randn(B, T, V, generator=g)
        ids = torch.randint(1, V, (B, T), generator=g)
        mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
        ids = ids.masked_fill(mask == 0, 0)
        prompt_lengths = torch.tensor(prompts)
        given = [t.clone() for t in (logits, ids, prompt_lengths, mask)]
        got = call_student(check, fn, *given)
        if any(not torch.equal(a, b) for a, b in zip(given, (logits, ids, prompt_lengths, mask))):
            raise CheckFailed(check, "an input was changed in place: build new tensors.")
        where = f" (test: prompts of {prompts} tokens, texts of {lengths} real tokens, T = {T})"
        if isinstance(got, (int, float)) and not isinstance(got, bool):
            raise CheckFailed(check, "return the loss as a tensor (so that it can be backpropagated), not a Python "
                                     "number (.item() drops the graph)." + where)
        if isinstance(got, torch.Tensor) and got.numel() == 1 and got.dim() > 0:
            got = got.reshape(())
        expected = _review_loss(logits, ids, prompt_lengths, mask)
        mistakes = [(m + where, _review_loss(logits, ids, prompt_lengths, mask, k)) for k, m in _LOSS_MISTAKES.items()]
        if isinstance(got, torch.Tensor) and got.dim() > 0:
            raise CheckFailed(check, f"return one number (a 0-dim tensor), the mean over review tokens, not a tensor "
                                     f"of shape {tuple(got.shape)}." + where)
        expect_tensor_like(check, got, expected, "the loss" + where, mistakes, atol=1e-5)
    logits = torch.randn(2, 6, 5, generator=g, requires_grad=True)
    ids = torch.randint(0, 5, (2, 6), generator=g)
    loss = call_student(check, fn, logits, ids, torch.tensor([2, 3]), torch.ones(2, 6, dtype=torch.long))
    if not loss.requires_grad:
        raise CheckFailed(check, "the loss does not depend on the logits in autograd's eyes (detached, or rebuilt "
                                 "from numbers): compute it from the logits tensor so that backward() works.")
    passed(check, len(cases) + 1)
