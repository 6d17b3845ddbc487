"""Checks for exercises/20_prompt_tuning.ipynb: a soft prompt right after [CLS], for a frozen BERT classifier."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..bert import BertConfig, BertForSequenceClassification
from ..validation import describe
from ._core import CheckFailed, call_student, expect_tensor_like, passed

__all__ = ["check_soft_prompt"]


def _reference_inputs(model, prompt, input_ids, token_type_ids, attention_mask, shifted=False, before_cls=False,
                      appended=False, not_extended=False, prompt_masked=False, mask_at_end=False,
                      through_ln=False):
    """The encoder's input (x, mask) with one classic mistake switched on (all off = the right answer: the prompt
    right after the first token, [CLS])."""
    emb = model.bert.embeddings
    B, T = input_ids.shape
    n = prompt.shape[0]
    positions = torch.arange(T)                                                            # (T,)
    if shifted:
        positions = torch.cat([positions[:1], positions[1:] + n])                          # as if the prompt had some
    text = emb.ln(emb.word(input_ids) + emb.position(positions) + emb.segment(token_type_ids))  # (B, T, C)
    p = (emb.ln(prompt) if through_ln else prompt).expand(B, -1, -1)                       # (B, n, C)
    if appended:
        x = torch.cat([text, p], dim=1)
    elif before_cls:
        x = torch.cat([p, text], dim=1)
    else:
        x = torch.cat([text[:, :1], p, text[:, 1:]], dim=1)                                # (B, n + T, C)
    m = attention_mask.long()
    if not_extended:
        return x, m
    extra = torch.full((B, n), 0 if prompt_masked else 1, dtype=torch.long)
    if appended or mask_at_end:
        parts = [m, extra]
    elif before_cls:
        parts = [extra, m]
    else:
        parts = [m[:, :1], extra, m[:, 1:]]
    return x, torch.cat(parts, dim=1)                                                      # (B, n + T)


_X_MISTAKES = [
    ("the text's positions are shifted by n: the prompt has no position, so embed the whole text exactly as "
     "without a prompt (positions 0..T-1) and only then put the prompt in.", {"shifted": True}),
    ("the prompt is in front of [CLS] (that is notebook 20's placement): here [CLS] stays first and the prompt "
     "goes right after it, x = [CLS, prompt, rest of the text].", {"before_cls": True}),
    ("the prompt is appended after the text: it goes right after the first token ([CLS]), "
     "x = [CLS, prompt, rest of the text].", {"appended": True}),
    ("the prompt went through the embedding LayerNorm: it is learned directly in the space of the embedding "
     "layer's output, so insert it into the embedded text unchanged.", {"through_ln": True}),
]
_MASK_MISTAKES = [
    ("the attention mask is not extended: the encoder reads n + T positions, so insert n ones into the mask "
     "(B, T) -> (B, n + T), where the prompt is.", {"not_extended": True}),
    ("the prompt is masked out (zeros where the prompt is): with 0 no token can attend to the prompt; the prompt's "
     "n mask entries must be 1.", {"prompt_masked": True}),
    ("the mask's ones for the prompt are at the end: they go where the prompt is, after the first column "
     "(mask[:, :1], n ones, mask[:, 1:]).", {"mask_at_end": True}),
]


def _tiny_classifier(seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                        max_position_embeddings=24, dropout=0.0, attention_dropout=0.0)
    return BertForSequenceClassification(config, num_labels=2, pooling="mean").eval()


def _check_parameters(check: str, module, model, n: int, C: int) -> nn.Parameter:
    prompt = getattr(module, "prompt", None)
    if not isinstance(prompt, torch.Tensor):
        raise CheckFailed(check, f"`self.prompt` should be an nn.Parameter of shape (n_prompt, C) = ({n}, {C}), "
                                 f"but it is {describe(prompt)}.")
    if not isinstance(prompt, nn.Parameter):
        raise CheckFailed(check, "`self.prompt` is a plain tensor, not an nn.Parameter: the prompt vectors are not "
                                 "trainable (the optimizer never sees them). Wrap it in nn.Parameter(...).")
    if tuple(prompt.shape) != (n, C):
        raise CheckFailed(check, f"`self.prompt` should have shape (n_prompt, C) = ({n}, {C}), "
                                 f"but it has shape {tuple(prompt.shape)}.")
    if not prompt.requires_grad:
        raise CheckFailed(check, "the prompt vectors are not trainable (requires_grad is False): they are the only "
                                 "new numbers besides the classifier, so they must learn.")
    unfrozen = [name for name, p in model.bert.named_parameters() if p.requires_grad]
    if unfrozen:
        raise CheckFailed(check, f"the base model is not frozen: {len(unfrozen)} encoder parameters still require "
                                 f"gradients (e.g. {unfrozen[0]}). Freeze the model (model.requires_grad_(False)) "
                                 "and keep only the prompt and the classifier trainable.")
    if not all(p.requires_grad for p in model.classifier.parameters()):
        raise CheckFailed(check, "the classifier is frozen: it is new (random), so it must train together with the "
                                 "prompt. Freeze the model first, then set model.classifier.requires_grad_(True).")
    if any(p is prompt for p in model.parameters()):
        raise CheckFailed(check, "the prompt was registered inside the base model; keep it on your module.")
    return prompt


def check_soft_prompt(SoftPrompt) -> None:
    """Check ``SoftPrompt(model, n_prompt)``: trainable ``prompt`` (n, C), frozen base, trainable classifier, and
    ``inputs(input_ids, token_type_ids, attention_mask) -> (x (B, n + T, C), mask (B, n + T))``."""
    check = "check_soft_prompt"
    cases = [(0, 3, 2, 7), (1, 5, 4, 9), (2, 1, 3, 5)]
    for seed, n, B, T in cases:
        model = _tiny_classifier(seed)
        C = model.config.d_model
        module = call_student(check, SoftPrompt, model, n)
        prompt = _check_parameters(check, module, model, n, C)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            prompt.copy_(torch.randn(n, C, generator=g))
        ids = torch.randint(1, 50, (B, T), generator=g)
        types = torch.randint(0, 2, (B, T), generator=g)
        mask = torch.ones(B, T, dtype=torch.long)
        mask[0, T - 2:] = 0                                                  # the first row is padded
        ids[mask == 0] = 0
        call = f"SoftPrompt(model, n_prompt={n}).inputs(input_ids {(B, T)}, token_type_ids, attention_mask)"
        out = call_student(check, module.inputs, ids.clone(), types.clone(), mask.clone())
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise CheckFailed(check, f"{call} should return two things, (x, mask), but returned {describe(out)}.")
        x, new_mask = out
        with torch.no_grad():
            expected_x, expected_mask = _reference_inputs(model, prompt.detach(), ids, types, mask)
            x_mistakes = [(f"{call}: {text}", _reference_inputs(model, prompt.detach(), ids, types, mask, **flag)[0])
                          for text, flag in _X_MISTAKES]
            mask_mistakes = [(f"{call}: {text}", _reference_inputs(model, prompt, ids, types, mask, **flag)[1])
                             for text, flag in _MASK_MISTAKES]
        expect_tensor_like(check, x, expected_x, f"{call}: x", x_mistakes)
        if isinstance(new_mask, torch.Tensor):
            if new_mask.is_floating_point() or new_mask.dtype == torch.bool:
                new_mask = new_mask.long()
        expect_tensor_like(check, new_mask, expected_mask, f"{call}: mask", mask_mistakes, atol=0, rtol=0)
        if isinstance(x, torch.Tensor) and x.requires_grad is False:
            raise CheckFailed(check, f"{call}: x does not depend on the prompt through autograd (requires_grad is "
                                     "False): use self.prompt itself, not a detached copy or .data.")
    passed(check, len(cases))
