"""Answers to the check of notebook 20 (a soft prompt right after [CLS], for a frozen BERT classifier)."""
import torch
import torch.nn as nn

from ._registry import correct, wrong


def _text(model, input_ids, token_type_ids, shift=0):
    emb = model.bert.embeddings
    T = input_ids.shape[1]
    positions = torch.arange(T)
    positions[1:] += shift
    return emb.ln(emb.word(input_ids) + emb.position(positions) + emb.segment(token_type_ids))


def _insert(first, middle, rest):
    """[first column, middle, the other columns] along dim 1."""
    return torch.cat([first[:, :1], middle, rest[:, 1:]], dim=1)


def _soft_prompt(inputs, name=None, freeze=True, head=True, parameter=True, grad=True):
    """A SoftPrompt class whose inputs() is ``inputs(self, ids, types, mask)`` and whose set-up can go wrong;
    ``name`` (default: the inputs function's) names the answer in the corpus."""
    class SoftPrompt(nn.Module):
        def __init__(self, model, n_prompt):
            super().__init__()
            self.model, self.n_prompt = model, n_prompt
            if freeze:
                model.requires_grad_(False)
            model.classifier.requires_grad_(head)
            start = 0.5 * torch.randn(n_prompt, model.config.d_model)
            if parameter:
                self.prompt = nn.Parameter(start, requires_grad=grad)
            else:
                self.prompt = start

        def inputs(self, input_ids, token_type_ids, attention_mask):
            return inputs(self, input_ids, token_type_ids, attention_mask)

    SoftPrompt.__name__ = SoftPrompt.__qualname__ = name or inputs.__name__.strip("_")
    return SoftPrompt


def _right(self, ids, types, mask):
    B = ids.shape[0]
    text = self.model.bert.embeddings(ids, types)
    x = torch.cat([text[:, :1], self.prompt.expand(B, -1, -1), text[:, 1:]], dim=1)
    return x, torch.cat([mask[:, :1], mask.new_ones(B, self.n_prompt), mask[:, 1:]], dim=1)


correct("check_soft_prompt")(_soft_prompt(_right))


def _by_hand(self, ids, types, mask):
    B, n = ids.shape[0], self.prompt.shape[0]
    text = _text(self.model, ids, types)
    rows = [torch.cat([text[b, :1], self.prompt, text[b, 1:]]) for b in range(B)]
    masks = [torch.cat([mask[b, :1].bool(), torch.ones(n, dtype=torch.bool), mask[b, 1:].bool()]) for b in range(B)]
    return torch.stack(rows), torch.stack(masks)


correct("check_soft_prompt")(_soft_prompt(_by_hand))


def _float_mask(self, ids, types, mask):
    x, m = _right(self, ids, types, mask)
    return x, m.float()


correct("check_soft_prompt")(_soft_prompt(_float_mask))


def _text_positions_moved(self, ids, types, mask):
    B, n = ids.shape[0], self.prompt.shape[0]
    text = _text(self.model, ids, types, shift=n)
    return _insert(text, self.prompt.expand(B, -1, -1), text), _insert(mask, mask.new_ones(B, n), mask)


wrong("check_soft_prompt", "positions", "shifted")(_soft_prompt(_text_positions_moved))


def _prompt_after_text(self, ids, types, mask):
    B, n = ids.shape[0], self.prompt.shape[0]
    x = torch.cat([self.model.bert.embeddings(ids, types), self.prompt.expand(B, -1, -1)], dim=1)
    return x, torch.cat([mask, mask.new_ones(B, n)], dim=1)


wrong("check_soft_prompt", "appended", "after the first token")(_soft_prompt(_prompt_after_text))


def _prompt_before_cls(self, ids, types, mask):
    """The lesson's placement, not the exercise's."""
    B, n = ids.shape[0], self.prompt.shape[0]
    x = torch.cat([self.prompt.expand(B, -1, -1), self.model.bert.embeddings(ids, types)], dim=1)
    return x, torch.cat([mask.new_ones(B, n), mask], dim=1)


wrong("check_soft_prompt", "in front of [CLS]")(_soft_prompt(_prompt_before_cls))


def _not_extended(self, ids, types, mask):
    x, _ = _right(self, ids, types, mask)
    return x, mask


wrong("check_soft_prompt", "not extended")(_soft_prompt(_not_extended))


def _zeros_in_front(self, ids, types, mask):
    x, _ = _right(self, ids, types, mask)
    return x, _insert(mask, torch.zeros_like(mask[:, :self.n_prompt]), mask)


wrong("check_soft_prompt", "masked out")(_soft_prompt(_zeros_in_front))


def _ones_at_end(self, ids, types, mask):
    x, _ = _right(self, ids, types, mask)
    return x, torch.cat([mask, mask.new_ones(ids.shape[0], self.n_prompt)], dim=1)


wrong("check_soft_prompt", "at the end")(_soft_prompt(_ones_at_end))


def _through_layernorm(self, ids, types, mask):
    B = ids.shape[0]
    p = self.model.bert.embeddings.ln(self.prompt)
    text = self.model.bert.embeddings(ids, types)
    return _insert(text, p.expand(B, -1, -1), text), _insert(mask, mask.new_ones(B, self.n_prompt), mask)


wrong("check_soft_prompt", "LayerNorm")(_soft_prompt(_through_layernorm))


def _detached(self, ids, types, mask):
    B = ids.shape[0]
    text = self.model.bert.embeddings(ids, types)
    x = _insert(text, self.prompt.data.expand(B, -1, -1), text).detach()
    return x, _insert(mask, mask.new_ones(B, self.n_prompt), mask)


wrong("check_soft_prompt", "autograd")(_soft_prompt(_detached))
wrong("check_soft_prompt", "not frozen")(_soft_prompt(_right, "base_left_trainable", freeze=False))
wrong("check_soft_prompt", "classifier is frozen")(_soft_prompt(_right, "head_frozen_too", head=False))
wrong("check_soft_prompt", "not trainable", "nn.Parameter")(_soft_prompt(_right, "plain_tensor", parameter=False))
wrong("check_soft_prompt", "not trainable")(_soft_prompt(_right, "prompt_requires_no_grad", grad=False))


def _prompt_per_example(self, ids, types, mask):
    """Forgets the batch: concatenates a (n, C) prompt with (B, T, C) text."""
    return torch.cat([self.prompt, self.model.bert.embeddings(ids, types)], dim=1), mask


wrong("check_soft_prompt", "raised")(_soft_prompt(_prompt_per_example))
