"""Prompt tuning and prefix tuning (Part 5): adapt a frozen BERT classifier through a few learned vectors.

Prompt tuning (Lester et al., 2021) prepends ``n`` learned vectors to the *input* of the encoder:

    x = [p_1 .. p_n ; embeddings(text)]       (B, n + T, C); the text keeps its positions 0..T-1

Prefix tuning (Li & Liang, 2021) goes deeper: every self-attention layer gets ``n`` learned *keys and values*
in front of its own, so every query of every layer can attend to them:

    attention(q, [P_k ; k], [P_v ; v])        keys and values (B, H, n + T, d); the queries stay (B, H, T, d)

In both the pretrained model is frozen; only the new vectors (and the new classification head) train.

    tuned = PromptTuning(classifier, n_prompt=20)       # or PrefixTuning(classifier, n_prefix=10)
    ...train tuned like any classifier...
    classifier = tuned.remove()                         # the base model, untouched
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import (MultiHeadAttention, causal_mask, merge_heads, padding_mask, scaled_dot_product_attention,
                        split_heads)
from .bert import BertForSequenceClassification, mean_pool
from .outputs import ClassificationOutput
from .validation import (describe, expect_class_labels, expect_floating, expect_ids_in_vocab, expect_module_dtype,
                         expect_tensor, is_int)

__all__ = ["PromptTuning", "PrefixAttention", "PrefixTuning"]


def _expect_classifier(model) -> None:
    if not isinstance(model, BertForSequenceClassification):
        raise TypeError(f"`model` should be a BertForSequenceClassification, but got {describe(model)}.")
    if any(isinstance(m, (_PromptMarker, PrefixAttention)) for m in model.modules()):
        raise ValueError("`model` already has a soft prompt or a prefix: call .remove() on the first wrapper first.")


def _expect_count(value, name: str) -> int:
    if not is_int(value) or value <= 0:
        raise ValueError(f"`{name}` should be a positive integer (a number of vectors), but got {describe(value)}.")
    return int(value)


def _check_inputs(model: BertForSequenceClassification, input_ids, token_type_ids, attention_mask):
    """BERT's own input checks: (B, T) ids in the vocabulary, same-shaped segment ids and 0/1 mask."""
    cfg = model.config
    expect_tensor(input_ids, "input_ids", 2, "(B, T)")
    expect_ids_in_vocab(input_ids, cfg.vocab_size, "input_ids")
    B, T = input_ids.shape
    if T == 0 or T > cfg.max_position_embeddings:
        raise ValueError(f"`input_ids` should hold 1 to max_position_embeddings = {cfg.max_position_embeddings} "
                         f"tokens per sequence, but got shape {(B, T)}.")
    token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    for name, t in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
        if not isinstance(t, torch.Tensor) or t.shape != input_ids.shape:
            raise ValueError(f"`{name}` should have the same shape as input_ids (B, T) = {(B, T)}, "
                             f"but got {describe(t)}.")
    expect_ids_in_vocab(token_type_ids, cfg.type_vocab_size, "token_type_ids")
    padding_mask(attention_mask)                                  # raises unless it holds only 0 and 1
    return token_type_ids, attention_mask


def _classify(model: BertForSequenceClassification, hidden, attention_mask, labels) -> ClassificationOutput:
    """The head of ``model`` on the text's hidden states (B, T, C): pooled [CLS] or mean, then the classifier."""
    if model.pooling == "cls":
        pooled = torch.tanh(model.bert.pooler(hidden[:, 0]))                    # (B, C)
    else:
        pooled = mean_pool(hidden, attention_mask)                               # (B, C)
    logits = model.classifier(model.dropout(pooled))                             # (B, K)
    loss = None
    if labels is not None:
        expect_class_labels(labels, (hidden.shape[0],), "labels", model.num_labels, "(B,)")
        loss = F.cross_entropy(logits, labels)
    return ClassificationOutput(logits, loss)


def _freeze_all_but_head(model: nn.Module, train_head: bool) -> None:
    model.requires_grad_(False)
    if train_head:
        model.classifier.requires_grad_(True)


class _PromptMarker(nn.Module):
    """Placeholder so that a model cannot get two prompts; holds nothing."""


# --------------------------------------------------------------------------------------------------
# Prompt tuning: learned vectors in front of the input
# --------------------------------------------------------------------------------------------------


class PromptTuning(nn.Module):
    """A frozen ``BertForSequenceClassification`` reading ``n_prompt`` learned vectors before every input.

    The prompt (n, C) lives in the space of BERT's embedding output (after its LayerNorm) and has no position:
    the text is embedded exactly as without a prompt (positions 0..T-1) and the prompt is put in front of it.
    The attention mask is extended with ones, so every token sees the prompt; the prompt's outputs are dropped
    before the head, which reads the text's [CLS] (``pooling="cls"``) or the mean of the real tokens (``"mean"``).
    The prompt starts as the embeddings of ``n`` random vocabulary tokens (Lester et al.'s initialisation).
    ``train_head``: the classifier trains too (it is new); the rest of ``model`` is frozen.
    """

    def __init__(self, model: BertForSequenceClassification, n_prompt: int = 20, train_head: bool = True,
                 seed: int | None = None):
        super().__init__()
        _expect_classifier(model)
        self.n_prompt = _expect_count(n_prompt, "n_prompt")
        self.model = model
        self.was_trainable = {name: p.requires_grad for name, p in model.named_parameters()}
        _freeze_all_but_head(model, train_head)
        model.add_module("_prompt_marker", _PromptMarker())
        emb = model.bert.embeddings
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        ids = torch.randint(0, emb.word.num_embeddings, (self.n_prompt,), generator=generator)
        with torch.no_grad():
            start = emb.ln(emb.word.weight[ids.to(emb.word.weight.device)])       # (n, C)
        self.prompt = nn.Parameter(start.clone())                                 # (n, C)

    def inputs(self, input_ids, token_type_ids=None, attention_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input with the prompt in front: x (B, n + T, C) and its 0/1 mask (B, n + T)."""
        token_type_ids, attention_mask = _check_inputs(self.model, input_ids, token_type_ids, attention_mask)
        B = input_ids.shape[0]
        text = self.model.bert.embeddings(input_ids, token_type_ids)             # (B, T, C), positions 0..T-1
        prompt = self.prompt.to(text.dtype).expand(B, -1, -1)                     # (B, n, C)
        x = torch.cat([prompt, text], dim=1)                                      # (B, n + T, C)
        mask = torch.cat([attention_mask.new_ones(B, self.n_prompt), attention_mask], dim=1)   # (B, n + T)
        return x, mask

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None) -> ClassificationOutput:
        """Like ``BertForSequenceClassification.forward``: logits (B, K), and the loss when labels are given."""
        x, mask = self.inputs(input_ids, token_type_ids, attention_mask)           # (B, n + T, C), (B, n + T)
        keep = padding_mask(mask)                                                  # (B, 1, 1, n + T)
        for block in self.model.bert.blocks:
            x = block(x, mask=keep)                                                # (B, n + T, C)
        text = x[:, self.n_prompt:]                                                # (B, T, C): drop the prompt
        return _classify(self.model, text, mask[:, self.n_prompt:], labels)

    def remove(self) -> BertForSequenceClassification:
        """The base model, as it was before: the marker gone and its parameters' ``requires_grad`` restored."""
        del self.model._prompt_marker
        for name, p in self.model.named_parameters():
            p.requires_grad_(self.was_trainable[name])
        return self.model

    def extra_repr(self) -> str:
        return f"n_prompt={self.n_prompt}, width={self.prompt.shape[1]}"


# --------------------------------------------------------------------------------------------------
# Prefix tuning: learned keys and values in every self-attention layer
# --------------------------------------------------------------------------------------------------


class PrefixAttention(nn.Module):
    """A frozen :class:`MultiHeadAttention` whose keys and values get a prefix in front.

    ``prefix`` is set by :class:`PrefixTuning` for one call: ``(k, v)``, each (n, C) (shared by the batch) or
    (B, n, C). Without a prefix (None) it is exactly the wrapped attention. Self-attention only.
    """

    def __init__(self, attn: MultiHeadAttention):
        super().__init__()
        if not isinstance(attn, MultiHeadAttention):
            raise TypeError(f"PrefixAttention wraps a MultiHeadAttention, but got {describe(attn)}.")
        self.attn = attn
        self.prefix: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x, context=None, mask=None, causal: bool = False, kv_cache=None):
        """x: (B, T, C) -> out (B, T, C), weights (B, H, T, n + T) (None when fused)."""
        if self.prefix is None:
            return self.attn(x, context=context, mask=mask, causal=causal, kv_cache=kv_cache)
        if context is not None or kv_cache is not None:
            raise ValueError("A prefix applies to self-attention without a cache: pass neither `context` nor "
                             "`kv_cache`.")
        a = self.attn
        expect_tensor(x, "x", 3, "(B, T, C)")
        expect_floating(x, "x")
        expect_module_dtype(x, a, "x")
        B, T, C = x.shape
        pk, pv = (self._expand(p, B, C) for p in self.prefix)                      # (B, n, C) each
        n = pk.shape[1]
        q = split_heads(a.q_proj(x), a.n_heads)                                    # (B, H, T, d)
        k = split_heads(torch.cat([pk, a.k_proj(x)], dim=1), a.n_heads)            # (B, H, n + T, d)
        v = split_heads(torch.cat([pv, a.v_proj(x)], dim=1), a.n_heads)            # (B, H, n + T, d)
        allowed = self._extend(mask, n, T, causal, x.device)                      # (..., T, n + T) or None
        dropout_p = a.dropout if self.training else 0.0
        if a.fused:
            y, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p), None
        else:
            y, weights = scaled_dot_product_attention(q, k, v, mask=allowed, dropout_p=dropout_p)
        return a.out_proj(merge_heads(y)), weights                                 # (B, T, C), (B, H, T, n + T)

    @staticmethod
    def _expand(p: torch.Tensor, B: int, C: int) -> torch.Tensor:
        if p.dim() == 2:
            p = p.expand(B, -1, -1)                                                # (B, n, C)
        if p.dim() != 3 or p.shape[0] != B or p.shape[2] != C:
            raise ValueError(f"A prefix should be (n, C) or (B, n, C) with B = {B}, C = {C}, "
                             f"but got shape {tuple(p.shape)}.")
        return p

    @staticmethod
    def _extend(mask, n: int, T: int, causal: bool, device) -> torch.Tensor | None:
        """Every query may see the n prefix positions; the text keys keep their mask (and causality)."""
        if mask is None and not causal:
            return None
        if mask is not None:
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape[-1] != T:
                raise ValueError(f"`mask` should be a bool tensor with T = {T} keys in its last dim, "
                                 f"but got {describe(mask)}.")
            mask = torch.cat([mask.new_ones(*mask.shape[:-1], n), mask], dim=-1)    # (..., n + T)
        if causal:
            order = torch.cat([torch.ones(T, n, dtype=torch.bool, device=device), causal_mask(T, device)], dim=1)
            mask = order if mask is None else mask & order                          # (..., T, n + T)
        return mask

    def extra_repr(self) -> str:
        return "prefix set" if self.prefix is not None else "no prefix"


class PrefixTuning(nn.Module):
    """A frozen ``BertForSequenceClassification`` whose every self-attention layer gets ``n_prefix`` learned
    keys and values in front of its own.

    Each :class:`MultiHeadAttention` inside ``model`` is wrapped in a :class:`PrefixAttention`; before each call
    the prefixes of all L layers are computed (:meth:`prefix_kv`, (L, 2, n, C)) and handed to the wrappers.

    ``reparam_hidden``: as Li & Liang (2021), train the prefixes through a small MLP — a (n, C) table, then
    Linear(C, hidden), tanh, Linear(hidden, L * 2 * C) — which they found more stable; after training the MLP can
    be dropped (:meth:`bake`) and only the (L, 2, n, C) prefixes kept. ``None``: learn the prefixes directly.
    ``train_head``: the classifier trains too; the rest of ``model`` is frozen.
    """

    def __init__(self, model: BertForSequenceClassification, n_prefix: int = 10, reparam_hidden: int | None = None,
                 train_head: bool = True, init_std: float = 0.02):
        super().__init__()
        _expect_classifier(model)
        self.n_prefix = _expect_count(n_prefix, "n_prefix")
        if reparam_hidden is not None:
            _expect_count(reparam_hidden, "reparam_hidden")
        self.model = model
        self.was_trainable = {name: p.requires_grad for name, p in model.named_parameters()}
        _freeze_all_but_head(model, train_head)
        self.names = [name for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)]
        for name in self.names:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, PrefixAttention(model.get_submodule(name)))
        L, C = len(self.names), model.config.d_model
        weight = model.classifier.weight
        if reparam_hidden is None:
            self.prefix = nn.Parameter(init_std * torch.randn(L, 2, self.n_prefix, C, device=weight.device))
            self.table, self.mlp = None, None
        else:
            self.prefix = None
            self.table = nn.Parameter(init_std * torch.randn(self.n_prefix, C, device=weight.device))  # (n, C)
            self.mlp = nn.Sequential(nn.Linear(C, reparam_hidden), nn.Tanh(), nn.Linear(reparam_hidden, L * 2 * C))
            self.mlp.to(weight.device)

    def wrappers(self) -> list[PrefixAttention]:
        return [self.model.get_submodule(name) for name in self.names]

    def prefix_kv(self) -> torch.Tensor:
        """The prefixes of all layers: (L, 2, n, C), [l, 0] the keys and [l, 1] the values of layer l."""
        if self.prefix is not None:
            return self.prefix
        L, C = len(self.names), self.model.config.d_model
        return self.mlp(self.table).view(self.n_prefix, L, 2, C).permute(1, 2, 0, 3)   # (L, 2, n, C)

    @torch.no_grad()
    def bake(self) -> "PrefixTuning":
        """Replace the MLP by the prefixes it computes now (the same outputs, fewer parameters); returns self."""
        if self.prefix is None:
            self.prefix = nn.Parameter(self.prefix_kv().detach().clone())
            self.table, self.mlp = None, None
        return self

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None) -> ClassificationOutput:
        """Like ``BertForSequenceClassification.forward``: logits (B, K), and the loss when labels are given."""
        kv = self.prefix_kv()                                                      # (L, 2, n, C)
        wrappers = self.wrappers()
        for layer, wrapper in enumerate(wrappers):
            wrapper.prefix = (kv[layer, 0], kv[layer, 1])                          # (n, C) each
        try:
            return self.model(input_ids, token_type_ids, attention_mask, labels=labels)
        finally:
            for wrapper in wrappers:
                wrapper.prefix = None

    def remove(self) -> BertForSequenceClassification:
        """The base model, as it was before: the attention layers unwrapped, ``requires_grad`` restored."""
        for name, wrapper in zip(self.names, self.wrappers()):
            parent, _, child = name.rpartition(".")
            setattr(self.model.get_submodule(parent), child, wrapper.attn)
        for name, p in self.model.named_parameters():
            p.requires_grad_(self.was_trainable[name])
        return self.model

    def extra_repr(self) -> str:
        how = "direct" if self.mlp is None else f"through an MLP of width {self.mlp[0].out_features}"
        return f"n_prefix={self.n_prefix}, layers={len(self.names)}, {how}"
