"""Checks for the fine-tuning exercises (notebooks 09, 12 and 14).

What the student writes, and the check that goes with it:

``check_cls_head(ClsHead)``
    ``class ClsHead(nn.Module)`` with ``__init__(self, d_model, num_labels, dropout)`` and
    ``forward(self, hidden_states) -> logits``: hidden_states (B, T, C) from the encoder -> (B, num_labels),
    = Linear(Dropout(hidden_states[:, 0])): dropout then one ``nn.Linear(d_model, num_labels)`` on the
    [CLS] vector (position 0).
``check_freeze(freeze_fn)``
    ``freeze_fn(model, train_top_layers) -> None`` for a ``BertForSequenceClassification``: only the top
    ``train_top_layers`` blocks of ``model.bert.blocks`` and the ``model.classifier`` train; the embeddings
    and the other blocks are frozen (the pooler may go either way). Calling it again with another number
    must work too (so start by making everything trainable).
``check_align_labels(align_fn)``
    ``align_fn(word_pieces, word_labels) -> list[int]`` for token classification: ``word_pieces`` is one list
    of WordPiece pieces per word, ``word_labels`` one label per word; the result has one label per position of
    ``[CLS] pieces... [SEP]``: the word's label on its first piece, -100 on [CLS], [SEP] and later pieces.
``check_lora_linear(LoRALinear)``
    ``class LoRALinear(nn.Module)`` with ``__init__(self, base: nn.Linear, rank, alpha)`` (extra arguments
    need defaults), attributes ``base``, ``lora_A`` (rank, in), ``lora_B`` (out, rank), ``forward(x)`` =
    base(x) + (alpha / rank) * x A^T B^T, and ``merged() -> nn.Linear`` with weight W + (alpha / rank) B A.
``check_lora_embedding(LoRAEmbedding)``
    ``class LoRAEmbedding(nn.Module)`` with ``__init__(self, base: nn.Embedding, rank, alpha)``, attributes
    ``base``, ``lora_A`` (num_embeddings, rank) random, ``lora_B`` (rank, embedding_dim) zero, ``forward(ids)`` =
    base(ids) + (alpha / rank) * A[ids] B, and ``merged() -> nn.Embedding`` with weight W + (alpha / rank) A B
    and the base's padding_idx.
``check_early_stopping(EarlyStopping)``
    ``class EarlyStopping`` with ``__init__(self, patience, mode="min", min_delta=0.0)`` and
    ``update(self, value) -> bool``: True once ``patience`` evaluations in a row failed to beat the best
    value so far by more than ``min_delta`` (lower is better for "min", higher for "max").
``check_early_stopping_best(EarlyStopping)``
    The same rule with ``update(self, value, model) -> bool``, plus the best evaluation's weights:
    ``best_eval`` (the 0-based index of the best evaluation so far), a copy of ``model``'s weights kept at every
    improvement, and ``restore(self, model)`` that loads them back.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ._core import CheckFailed, call_student, expect_tensor_like, fn_name, passed
from ..validation import describe

__all__ = ["check_cls_head", "check_freeze", "check_lora_linear", "check_lora_embedding", "check_early_stopping",
           "check_early_stopping_best", "check_align_labels"]


def _build(check: str, cls, *args, **kwargs):
    """Instantiate the student's class, turning errors into friendly failures."""
    obj = call_student(check, cls, *args, **kwargs)
    return obj


def _forward(check: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = call_student(check, module, x)
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(check, f"forward should return a tensor, but returned {describe(out)}.")
    return out


# --------------------------------------------------------------------------------------------------
# [CLS] classification head
# --------------------------------------------------------------------------------------------------

def _the_linear(check: str, head: nn.Module, C: int, K: int) -> nn.Linear:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1 or (linears[0].in_features, linears[0].out_features) != (C, K):
        found = [f"Linear({m.in_features}, {m.out_features})" for m in linears] or "none"
        raise CheckFailed(check, f"the head should have exactly one nn.Linear(d_model={C}, num_labels={K}) "
                                 f"(a registered sub-module, set in __init__), but it has {found}.")
    return linears[0]


def check_cls_head(head_class) -> None:
    """Check a [CLS] classification head: Linear(Dropout(hidden_states[:, 0])), see the module docstring."""
    check = "check_cls_head"
    g = torch.Generator().manual_seed(0)
    n_tests = 0
    for B, T, C, K in ((3, 5, 8, 2), (2, 7, 6, 3), (1, 4, 8, 5)):
        torch.manual_seed(0)
        head = _build(check, head_class, C, K, 0.0)
        if not isinstance(head, nn.Module):
            raise CheckFailed(check, f"{fn_name(head_class)}(...) should build an nn.Module, but built "
                                     f"{describe(head)}.")
        linear = _the_linear(check, head, C, K)
        head.eval()
        h = torch.randn(B, T, C, generator=g)
        with torch.no_grad():
            out = _forward(check, head, h)
            ref = linear(h[:, 0])                                             # (B, K)
            call = f" (hidden_states (B={B}, T={T}, C={C}), num_labels={K})"
            expect_tensor_like(check, out, ref, "the logits" + call, [
                ("it uses the mean over positions; the classifier should read the [CLS] vector, "
                 "hidden_states[:, 0]." + call, linear(h.mean(dim=1))),
                ("it uses the last position; in BERT the [CLS] token is the first one, hidden_states[:, 0]." + call,
                 linear(h[:, -1])),
                ("it returns logits for every position (B, T, K); keep only the [CLS] vector, "
                 "hidden_states[:, 0], before the Linear." + call, linear(h)),
                ("it returns probabilities (softmax); return the raw logits: the cross-entropy applies the "
                 "softmax itself." + call, ref.softmax(-1)),
                ("it uses hidden_states[0] (the first example of the batch, all positions); the [CLS] vector of "
                 "every example is hidden_states[:, 0]." + call, linear(h[0])),
            ])
        n_tests += 1

    # dropout: random in train mode, off in eval mode, on the [CLS] vector (not on the logits)
    B, T, C, K, p = 64, 3, 16, 4, 0.5
    torch.manual_seed(1)
    head = _build(check, head_class, C, K, p)
    linear = _the_linear(check, head, C, K)
    h = torch.randn(B, T, C, generator=g)
    with torch.no_grad():
        head.eval()
        ref = linear(h[:, 0])
        first = _forward(check, head, h)
        if not torch.allclose(first, _forward(check, head, h)):
            raise CheckFailed(check, "dropout is still active in eval mode (two calls differ): use nn.Dropout "
                                     "(it switches off in model.eval()) or F.dropout(x, p, training=self.training).")
        expect_tensor_like(check, first, ref, f"the logits in eval mode with dropout={p}")
        head.train()
        a, b = _forward(check, head, h), _forward(check, head, h)
    if torch.allclose(a, ref) and torch.allclose(b, ref):
        raise CheckFailed(check, f"with dropout={p} in train mode the logits never change: apply dropout "
                                 "(nn.Dropout(dropout)) to the [CLS] vector before the Linear.")
    if torch.allclose(a, b):
        raise CheckFailed(check, "in train mode two calls give the same logits: the dropout mask should be new "
                                 "on every call (use nn.Dropout).")
    bias = linear.bias if linear.bias is not None else torch.zeros(K)
    on_logits = ((a - 0).abs() < 1e-6) | ((a - ref / (1 - p)).abs() < 1e-5)
    if on_logits.all():
        raise CheckFailed(check, "the dropout is applied to the logits; apply it to the [CLS] vector, "
                                 "before the Linear layer.")
    centred = a - bias                                     # a linear function of the dropped-out [CLS] vector
    if not torch.isfinite(centred).all():
        raise CheckFailed(check, "the logits in train mode contain inf or NaN.")
    _check_dropout_rate(check, head_class, g)
    passed(check, n_tests + 2)


def _check_dropout_rate(check: str, head_class, g: torch.Generator) -> None:
    """With an identity Linear the logits *are* the dropped-out [CLS] vector: measure its drop rate and scale."""
    B, T, C = 400, 2, 16
    h = torch.rand(B, T, C, generator=g) + 1.0                                # positive, never 0
    for p in (0.0, 0.5):
        torch.manual_seed(2)
        head = _build(check, head_class, C, C, p)
        linear = _the_linear(check, head, C, C)
        with torch.no_grad():
            linear.weight.copy_(torch.eye(C))
            if linear.bias is not None:
                linear.bias.zero_()
            head.train()
            out = _forward(check, head, h)
        cls = h[:, 0]
        if out.shape != cls.shape:
            return                                                            # reported by the tests above
        dropped = (out == 0).double().mean().item()
        kept = out != 0
        if p == 0.0:
            if dropped > 0:
                raise CheckFailed(check, f"with dropout=0.0 in train mode {dropped:.0%} of the [CLS] features were "
                                         "still dropped: the `dropout` argument is ignored (a hard-coded "
                                         "nn.Dropout(0.1)?). Use nn.Dropout(dropout).")
            continue
        if abs(dropped - p) > 0.05:
            raise CheckFailed(check, f"with dropout={p} in train mode {dropped:.0%} of the [CLS] features were "
                                     f"dropped: the `dropout` argument is ignored (a hard-coded rate?). Use "
                                     f"nn.Dropout(dropout).")
        if torch.allclose(out[kept], cls[kept], atol=1e-5):
            raise CheckFailed(check, f"the kept features are not rescaled: in train mode dropout multiplies them by "
                                     f"1 / (1 - p) = {1 / (1 - p):g}, so the expected value stays the same "
                                     f"(nn.Dropout does this).")
        if not torch.allclose(out[kept], cls[kept] / (1 - p), atol=1e-5):
            raise CheckFailed(check, f"in train mode the kept [CLS] features should be the input times 1 / (1 - p) "
                                     f"= {1 / (1 - p):g}, but they are not.")


# --------------------------------------------------------------------------------------------------
# Freezing layers
# --------------------------------------------------------------------------------------------------

def _tiny_bert_classifier(n_layers: int = 4):
    from ..bert import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, d_model=16, n_layers=n_layers, n_heads=2, d_ff=32,
                        max_position_embeddings=16)
    return BertForSequenceClassification(config)


def _trainable(module: nn.Module) -> bool:
    return all(p.requires_grad for p in module.parameters())


def _frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())


def _describe_blocks(model) -> str:
    flags = ["trainable" if _trainable(b) else "frozen" if _frozen(b) else "partly frozen" for b in model.bert.blocks]
    return "[" + ", ".join(flags) + "] (bottom to top)"


def check_freeze(freeze_fn) -> None:
    """Check ``freeze_fn(model, train_top_layers)`` on a 4-block BertForSequenceClassification."""
    check = "check_freeze"
    n_blocks, n_tests = 4, 0
    for previous, k in ((None, 0), (None, 1), (None, 3), (None, 4), (0, 2), (4, 1)):
        model = _tiny_bert_classifier(n_blocks)
        call = f"freeze_fn(model, {k})" + (f" after freeze_fn(model, {previous})" if previous is not None else "")
        if previous is not None:
            call_student(check, freeze_fn, model, previous)
        call_student(check, freeze_fn, model, k)
        blocks = model.bert.blocks
        if all(p.requires_grad for p in model.parameters()):
            if any(getattr(m, "requires_grad", True) is False for m in model.modules()):
                raise CheckFailed(check, f"{call}: nothing is frozen. Setting `module.requires_grad = False` only "
                                         "creates an attribute; freeze the parameters: "
                                         "`for p in module.parameters(): p.requires_grad = False` "
                                         "(or module.requires_grad_(False)).")
            if previous is None:
                raise CheckFailed(check, f"{call}: every parameter is still trainable; freeze the embeddings and "
                                         "the lower blocks (p.requires_grad = False).")
        if not _trainable(model.classifier):
            raise CheckFailed(check, f"{call}: the classifier is frozen; the new head must always train "
                                     "(it starts random).")
        body = [model.bert.embeddings] + list(model.bert.blocks[:n_blocks - k])
        still = [name for part in body for name, p in part.named_parameters() if p.requires_grad]
        if still and all(name.endswith("bias") for name in still):
            raise CheckFailed(check, f"{call}: only the `weight` parameters were frozen; the biases (e.g. "
                                     f"{still[0]!r}) still train. Freeze every parameter of a frozen part: "
                                     "`for p in module.parameters(): p.requires_grad = False`.")
        if not _frozen(model.bert.embeddings):
            raise CheckFailed(check, f"{call}: the embeddings are still trainable; they belong to the pretrained "
                                     "body and are frozen with it.")
        want = [i >= n_blocks - k for i in range(n_blocks)]                 # True = trainable
        got_trainable = [_trainable(b) for b in blocks]
        got_frozen = [_frozen(b) for b in blocks]
        if all(t or f for t, f in zip(got_trainable, got_frozen)) and got_trainable == want:
            n_tests += 1
            continue
        state = _describe_blocks(model)
        if previous is not None and got_trainable == [i >= n_blocks - previous for i in range(n_blocks)] \
                or (previous is not None and sum(got_trainable) < k and all(got_frozen[:n_blocks - k])):
            raise CheckFailed(check, f"{call}: the blocks are {state}, left over from the first call. Start by "
                                     "making every parameter trainable, then freeze the body and unfreeze the top "
                                     "blocks.")
        if k == 0 and all(got_trainable):
            raise CheckFailed(check, f"{call}: every block is trainable, but train_top_layers=0 should freeze them "
                                     "all. Careful: blocks[-0:] is the *whole* list (-0 == 0); use "
                                     "blocks[len(blocks) - k:].")
        if got_trainable == [i < k for i in range(n_blocks)]:
            raise CheckFailed(check, f"{call}: the blocks are {state}: you unfroze the *bottom* {k} blocks; "
                                     "train the top ones (closest to the head), blocks[len(blocks) - k:].")
        if sum(got_trainable) in (k - 1, k + 1) and all(got_trainable[i] for i in range(n_blocks) if got_trainable[i]):
            raise CheckFailed(check, f"{call}: the blocks are {state}: {sum(got_trainable)} trainable instead "
                                     f"of {k} (off by one).")
        raise CheckFailed(check, f"{call}: the blocks are {state}, but the top {k} should be trainable and "
                                 "the others frozen.")
    passed(check, n_tests)


# --------------------------------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------------------------------

def _param(check: str, lora, name: str, shape: tuple) -> torch.Tensor:
    p = getattr(lora, name, None)
    if not isinstance(p, nn.Parameter):
        raise CheckFailed(check, f"`{name}` should be an nn.Parameter (so the optimizer trains it), "
                                 f"but it is {describe(p)}.")
    if tuple(p.shape) != shape:
        raise CheckFailed(check, f"`{name}` should have shape {shape}, but it has {tuple(p.shape)}"
                                 + (" (transposed?)." if tuple(p.shape) == shape[::-1] else "."))
    return p


def check_lora_linear(lora_class) -> None:
    """Check a LoRALinear class: shapes, zero-initialised B, frozen base, alpha/rank scaling, merge."""
    check = "check_lora_linear"
    g = torch.Generator().manual_seed(0)
    n_tests = 0
    for d_in, d_out, rank, alpha, bias in ((6, 5, 2, 4.0, True), (8, 3, 4, 16.0, False), (5, 7, 1, 2.0, True)):
        torch.manual_seed(0)
        base = nn.Linear(d_in, d_out, bias=bias)
        W, b = base.weight.detach().clone(), (base.bias.detach().clone() if bias else None)
        lora = _build(check, lora_class, base, rank=rank, alpha=alpha)
        where = f" (base nn.Linear({d_in}, {d_out}, bias={bias}), rank={rank}, alpha={alpha})"
        if getattr(lora, "base", None) is not base:
            raise CheckFailed(check, "keep the wrapped layer as `self.base` (the same nn.Linear object)." + where)
        A = _param(check, lora, "lora_A", (rank, d_in))
        B = _param(check, lora, "lora_B", (d_out, rank))
        if any(p.requires_grad for p in base.parameters()):
            raise CheckFailed(check, "the base layer's weights are still trainable: freeze them "
                                     "(base.weight.requires_grad_(False), and the bias)." + where)
        if not (A.requires_grad and B.requires_grad):
            raise CheckFailed(check, "lora_A and lora_B should be trainable (requires_grad=True)." + where)
        if not torch.all(B == 0):
            raise CheckFailed(check, "lora_B should start at zero, so that the adapted layer starts as exactly the "
                                     "pretrained one (B @ A = 0)." + where)
        if torch.all(A == 0):
            raise CheckFailed(check, "lora_A is all zeros too: with A = B = 0 no gradient ever reaches them. "
                                     "Initialise A randomly (e.g. nn.init.kaiming_uniform_ or a small normal)." + where)
        x = torch.randn(4, 3, d_in, generator=g)                            # (B, T, in): works on any batch shape
        with torch.no_grad():
            expect_tensor_like(check, _forward(check, lora, x), base(x),
                               "the output at initialisation (B = 0 must leave the layer unchanged)" + where, [
                ("the output misses the base layer: it is base(x) + (alpha / rank) * x A^T B^T." + where,
                 torch.zeros_like(base(x)))])
            B.copy_(torch.randn(d_out, rank, generator=g))                  # now make the update visible
            delta = x @ A.T @ B.T                                           # (B, T, out)
            ref = base(x) + (alpha / rank) * delta
            expect_tensor_like(check, _forward(check, lora, x), ref, "the output with a non-zero B" + where, [
                ("the low-rank update is not scaled: multiply it by alpha / rank." + where, base(x) + delta),
                ("the update is scaled by rank / alpha; the scaling is alpha / rank." + where,
                 base(x) + (rank / alpha) * delta),
                ("the update is scaled by alpha alone; the scaling is alpha / rank." + where, base(x) + alpha * delta),
                ("the update is scaled by alpha * rank; the scaling is alpha / rank." + where,
                 base(x) + (alpha * rank) * delta),
                ("the output misses the base layer: it is base(x) + (alpha / rank) * x A^T B^T." + where,
                 (alpha / rank) * delta),
            ])
            merge = getattr(lora, "merged", None)
            if not callable(merge):
                raise CheckFailed(check, "write the method `merged()`, returning an nn.Linear with the merged weight.")
            merged = call_student(check, merge)
            if not isinstance(merged, nn.Linear):
                raise CheckFailed(check, f"merged() should return an nn.Linear, but returned {describe(merged)}.")
            W_ref = W + (alpha / rank) * B @ A
            expect_tensor_like(check, merged.weight, W_ref, "merged().weight" + where, [
                ("merged() forgets the scaling: the weight is W + (alpha / rank) * B @ A." + where, W + B @ A),
                ("merged() returns the original weight: add (alpha / rank) * B @ A." + where, W),
            ])
            if bias:
                if merged.bias is None:
                    raise CheckFailed(check, "merged() lost the bias of the base layer: copy it over." + where)
                expect_tensor_like(check, merged.bias, b, "merged().bias (the base layer's bias)" + where)
            elif merged.bias is not None and not torch.all(merged.bias == 0):
                raise CheckFailed(check, "merged() has a non-zero bias, but the base layer has none." + where)
            if not torch.allclose(base.weight, W):
                raise CheckFailed(check, "merged() changed the base layer's weight in place: build a new nn.Linear "
                                         "(the adapter would otherwise add its update twice)." + where)
            expect_tensor_like(check, merged(x), ref, "merged()(x) (should equal the adapted layer's output)" + where)
        n_tests += 1
    passed(check, n_tests)


def check_lora_embedding(lora_class) -> None:
    """Check a LoRAEmbedding class: shapes, which factor starts at zero, frozen base, scaling, the merged table."""
    check = "check_lora_embedding"
    g = torch.Generator().manual_seed(1)
    n_tests = 0
    for V, C, rank, alpha, padding_idx in ((11, 6, 2, 4.0, None), (9, 5, 4, 16.0, 0), (7, 8, 1, 2.0, 3)):
        torch.manual_seed(0)
        base = nn.Embedding(V, C, padding_idx=padding_idx)
        W = base.weight.detach().clone()
        lora = _build(check, lora_class, base, rank=rank, alpha=alpha)
        where = f" (base nn.Embedding({V}, {C}, padding_idx={padding_idx}), rank={rank}, alpha={alpha})"
        if getattr(lora, "base", None) is not base:
            raise CheckFailed(check, "keep the wrapped table as `self.base` (the same nn.Embedding object)." + where)
        A = _param(check, lora, "lora_A", (V, rank))
        B = _param(check, lora, "lora_B", (rank, C))
        if base.weight.requires_grad:
            raise CheckFailed(check, "the base table is still trainable: freeze it (base.weight.requires_grad_(False))."
                              + where)
        if not (A.requires_grad and B.requires_grad):
            raise CheckFailed(check, "lora_A and lora_B should be trainable (requires_grad=True)." + where)
        if torch.all(A == 0) and not torch.all(B == 0):
            raise CheckFailed(check, "lora_A starts at zero and lora_B is random: the task asks for the other way "
                                     "round, lora_A (one rank-r code per token) random and lora_B zero." + where)
        if not torch.all(B == 0):
            raise CheckFailed(check, "lora_B should start at zero, so that the adapted table starts as exactly the "
                                     "pretrained one (A B = 0)." + where)
        if torch.all(A == 0):
            raise CheckFailed(check, "lora_A is all zeros too: with A = B = 0 no gradient ever reaches them. "
                                     "Initialise A randomly (e.g. nn.init.normal_)." + where)
        ids = torch.randint(V, (3, 5), generator=g)                         # (B, T) token ids
        with torch.no_grad():
            expect_tensor_like(check, _forward(check, lora, ids), base(ids),
                               "the output at initialisation (B = 0 must leave the table unchanged)" + where)
            B.copy_(torch.randn(rank, C, generator=g))                      # now make the update visible
            delta = A[ids] @ B                                              # (B, T, C)
            ref = base(ids) + (alpha / rank) * delta
            expect_tensor_like(check, _forward(check, lora, ids), ref, "the output with a non-zero B" + where, [
                ("the low-rank update is not scaled: multiply it by alpha / rank." + where, base(ids) + delta),
                ("the update is scaled by rank / alpha; the scaling is alpha / rank." + where,
                 base(ids) + (rank / alpha) * delta),
                ("the output misses the base table: it is base(ids) + (alpha / rank) * A[ids] B." + where,
                 (alpha / rank) * delta),
            ])
            merge = getattr(lora, "merged", None)
            if not callable(merge):
                raise CheckFailed(check, "write the method `merged()`, returning an nn.Embedding with the "
                                         "merged table.")
            merged = call_student(check, merge)
            if not isinstance(merged, nn.Embedding):
                raise CheckFailed(check, f"merged() should return an nn.Embedding, but returned {describe(merged)}.")
            expect_tensor_like(check, merged.weight, W + (alpha / rank) * A @ B, "merged().weight" + where, [
                ("merged() forgets the scaling: the table is W + (alpha / rank) * A @ B." + where, W + A @ B),
                ("merged() returns the original table: add (alpha / rank) * A @ B." + where, W),
            ])
            if merged.padding_idx != base.padding_idx:
                raise CheckFailed(check, f"merged() has padding_idx={merged.padding_idx}, but the base table has "
                                         f"{base.padding_idx}: keep it (nn.Embedding(..., padding_idx="
                                         f"base.padding_idx)), or the padding row starts to train." + where)
            if not torch.equal(base.weight, W):
                raise CheckFailed(check, "merged() changed the base table in place: build a new nn.Embedding "
                                         "(the adapter would otherwise add its update twice)." + where)
            expect_tensor_like(check, merged(ids), ref, "merged()(ids) (should equal the adapted table's output)"
                               + where)
        n_tests += 1
    passed(check, n_tests)


# --------------------------------------------------------------------------------------------------
# Early stopping
# --------------------------------------------------------------------------------------------------

def _rule(patience, mode, min_delta, values, variant: str = "ok", first_compared: bool = False) -> list[bool]:
    """The stop decisions of a reference rule (or of a classic mistake), up to the first True.
    ``first_compared``: the first value is stored as the best and then compared with itself (a tie)."""
    best, bad, out = None, 0, []
    for v in values:
        if variant == "start_zero" and best is None:
            best = 0.0                                   # as if 0 were a value already seen
        if variant == "inf_for_max" and best is None:
            best = math.inf                              # the 'min' start, in both modes
        if first_compared and best is None:
            best = v
        if variant == "tie_improves":
            better = best is None or (v <= best - min_delta if mode == "min" else v >= best + min_delta)
        elif variant == "max_as_min":
            better = best is None or v < best - min_delta
        elif variant == "no_delta":
            better = best is None or (v < best if mode == "min" else v > best)
        elif variant == "delta_wrong_way":
            better = best is None or (v < best + min_delta if mode == "min" else v > best - min_delta)
        elif variant == "vs_previous":
            better = best is None or (v < best - min_delta if mode == "min" else v > best + min_delta)
        else:
            better = best is None or (v < best - min_delta if mode == "min" else v > best + min_delta)
        if variant == "vs_previous":
            best = v                                     # compares with the last value, not the best one
            bad = 0 if better else bad + 1
        elif better:
            if variant != "never_update" or best is None:
                best = v
            if variant != "no_reset":
                bad = 0
        else:
            bad += 1
        stop = bad > patience if variant == "off_by_one" else (bad >= patience - 1 if variant == "early_by_one"
                                                               else bad >= patience)
        out.append(stop)
        if stop:
            break
    return out


_MISTAKES = {
    "off_by_one": "it stops one evaluation late: stop as soon as the count of evaluations without improvement "
                  "reaches `patience` (>=, not >).",
    "early_by_one": "it stops one evaluation early: stop when the count of evaluations without improvement "
                    "reaches `patience`, not patience - 1.",
    "no_reset": "the counter is not reset when the metric improves: set it back to 0 on every improvement.",
    "max_as_min": "with mode='max' higher is better (e.g. accuracy), but your rule treats lower as better.",
    "no_delta": "min_delta is ignored: an improvement must beat the best value by more than min_delta.",
    "delta_wrong_way": "min_delta is applied the wrong way: with mode='min' a value improves only if "
                       "value < best - min_delta (with 'max': value > best + min_delta).",
    "vs_previous": "it compares with the previous value; compare with the best value so far.",
    "tie_improves": "a tie counts as an improvement: a value equal to the best (or exactly min_delta better) is "
                    "not an improvement, so use a strict comparison (value < best - min_delta, not <=).",
    "never_update": "the best value is never updated: when the metric improves, store it as the new best.",
    "inf_for_max": "the best value starts at +inf in both modes: with mode='max' no value beats +inf, so nothing "
                   "ever improves. Start with -inf for 'max' (+inf for 'min'), or with best = None.",
    "start_zero": "the best value starts at 0 instead of the first value: with mode='min' a loss never beats 0. "
                  "Start with best = None (or +inf for 'min', -inf for 'max') so that the first value is the best.",
}

_FIRST_COMPARED = ("the first value counts as no improvement: it is stored as the best and then compared with "
                   "itself, a tie. The first value is always an improvement: store it and keep the count at 0.")

_CASES = [  # (patience, mode, min_delta, values)
    (2, "min", 0.0, [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.74, 0.73]),
    (1, "min", 0.0, [0.5, 0.6, 0.4]),
    (3, "min", 0.0, [2.0, 1.5, 1.6, 1.4, 1.45, 1.5, 1.55, 1.3]),
    (2, "max", 0.0, [0.5, 0.6, 0.55, 0.7, 0.65, 0.66, 0.8]),
    (2, "min", 0.05, [1.0, 0.97, 0.96, 0.9, 0.88, 0.8]),
    (2, "max", 0.1, [0.5, 0.55, 0.58, 0.7]),
    (3, "min", 0.0, [1.0, 1.1, 0.99, 1.2, 1.05, 0.995, 1.3]),
    (2, "min", 0.1, [1.0, 1.05, 1.08, 1.02, 1.1]),
    (2, "min", 0.0, [1.0, 0.75, 0.75, 0.75, 0.5]),        # ties are not improvements
    (2, "max", 0.0, [0.5, 0.5, 0.5, 0.75]),
    (1, "min", 0.25, [1.0, 0.75, 0.5]),                    # exactly min_delta better is not enough
]


def _student_decisions(check: str, stopper_class, patience, mode, min_delta, values, model=None) -> list[bool]:
    """The student's decisions up to the first True; ``model`` is passed to update() when given."""
    stopper = _build(check, stopper_class, patience, mode=mode, min_delta=min_delta)
    got = []
    for v in values:                                     # until it says stop
        result = call_student(check, stopper.update, *((v,) if model is None else (v, model)))
        if not isinstance(result, (bool, int)) or result not in (True, False):
            raise CheckFailed(check, f"update() should return True (stop) or False, but returned {describe(result)}.")
        got.append(bool(result))
        if result:
            break
    return got


def check_early_stopping(stopper_class) -> None:
    """Check an EarlyStopping class on sequences of validation values, naming the classic mistakes."""
    _check_rule("check_early_stopping", stopper_class)
    passed("check_early_stopping", len(_CASES))


def _check_rule(check: str, stopper_class, model=None) -> None:
    """The stop decisions on every case of _CASES; raise naming the mistake that explains them."""
    got = [_student_decisions(check, stopper_class, *case, model=model) for case in _CASES]
    expected = [_rule(*case) for case in _CASES]
    if got == expected:
        return
    first = next(i for i in range(len(_CASES)) if got[i] != expected[i])
    patience, mode, min_delta, values = _CASES[first]
    case = (f" (patience={patience}, mode={mode!r}, min_delta={min_delta}, values {values}: "
            f"expected the decisions {expected[first]}, got {got[first]})")
    for variant, explanation in _MISTAKES.items():        # a mistake that explains every answer
        if all(_rule(*c, variant=variant) == g for c, g in zip(_CASES, got)):
            raise CheckFailed(check, explanation + case)
    for variant, explanation in [("ok", "")] + list(_MISTAKES.items()):     # ... with the first value compared
        if all(_rule(*c, variant=variant, first_compared=True) == g for c, g in zip(_CASES, got)):
            raise CheckFailed(check, (f"{explanation} Also, " if explanation else "") + _FIRST_COMPARED + case)
    raise CheckFailed(check, "update() returned the wrong decisions" + case)


def _best_evals(patience, mode, min_delta, values) -> list[int]:
    """The reference's best_eval after each update, up to the stop."""
    best, best_eval, bad, out = None, None, 0, []
    for i, v in enumerate(values):
        if best is None or (v < best - min_delta if mode == "min" else v > best + min_delta):
            best, best_eval, bad = v, i, 0
        else:
            bad += 1
        out.append(best_eval)
        if bad >= patience:
            break
    return out


_WEIGHT_CASES = [  # (patience, mode, min_delta, values)
    (2, "min", 0.0, [1.0, 0.8, 0.9, 0.7, 0.75, 0.72]),        # best: evaluation 3, stops at 5
    (2, "max", 0.0, [0.5, 0.7, 0.6, 0.65]),                   # best: 1, stops at 3
    (3, "min", 0.05, [1.0, 0.9, 0.88, 0.87, 0.86]),           # best: 1 (0.88 is not 0.05 better), stops at 4
]

_MISSING = object()


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))


def _weights(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _simulate(check: str, stopper_class, patience, mode, min_delta, values):
    """Train a tiny model (in-place steps, as an optimizer does), evaluating after each step; after the stop,
    one more step, then restore(). Returns the weights at each evaluation, best_eval after each one,
    the weights just before restore(), the weights after it, and the stopper."""
    model = _tiny_net()
    stopper = _build(check, stopper_class, patience, mode=mode, min_delta=min_delta)
    snapshots, best_evals = [], []
    for i, v in enumerate(values):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * (i + 1))                      # an optimizer step changes the tensors in place
        snapshots.append(_weights(model))
        stop = call_student(check, stopper.update, v, model)
        best_evals.append(getattr(stopper, "best_eval", _MISSING))
        if stop:
            break
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)                                    # training went on a little after the best
    latest = _weights(model)
    if not callable(getattr(stopper, "restore", None)):
        raise CheckFailed(check, "your class has no method restore(self, model) that loads the kept weights back.")
    call_student(check, stopper.restore, model)
    return snapshots, best_evals, latest, _weights(model), stopper


def _aliasing_or_not_loaded(check: str, stopper, latest: dict) -> str:
    """restore() left the latest weights: tell a kept reference apart from a restore that loads nothing."""
    fresh = _tiny_net()
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    call_student(check, stopper.restore, fresh)
    if _same(_weights(fresh), latest):
        return ("the kept weights changed with the model: model.state_dict() (and dict(...), copy.copy(...) or "
                ".detach() of it) holds the model's own tensors, which every optimizer step updates in place. "
                "Keep a real copy: {k: v.detach().clone() for k, v in model.state_dict().items()} "
                "(or copy.deepcopy(model.state_dict())).")
    return ("restore(model) did not put the kept weights into the model it was given: load them with "
            "model.load_state_dict(kept) (assigning to the name `model` inside restore changes nothing outside).")


def check_early_stopping_best(stopper_class) -> None:
    """Check early stopping with best-weight restoring: the rule, best_eval and restore()."""
    check = "check_early_stopping_best"
    _check_rule(check, stopper_class, model=_tiny_net())
    for patience, mode, min_delta, values in _WEIGHT_CASES:
        case = f" (patience={patience}, mode={mode!r}, min_delta={min_delta}, values {values})"
        snapshots, best_evals, latest, restored, stopper = _simulate(check, stopper_class, patience, mode,
                                                                     min_delta, values)
        expected = _best_evals(patience, mode, min_delta, values)
        if _MISSING in best_evals:
            raise CheckFailed(check, "keep the index of the best evaluation so far in self.best_eval (0 for the "
                                     "first value)." + case)
        if best_evals != expected:
            if best_evals == [b + 1 for b in expected]:
                raise CheckFailed(check, "best_eval counts from 1: the first evaluation has index 0." + case)
            if best_evals == list(range(len(best_evals))):
                raise CheckFailed(check, "best_eval moves at every evaluation: it should change only when the "
                                         "value improves on the best." + case)
            raise CheckFailed(check, f"best_eval after each update should be {expected}, but it is {best_evals}."
                              + case)
        best = expected[-1]
        if _same(restored, snapshots[best]):
            continue
        if _same(restored, latest):
            raise CheckFailed(check, _aliasing_or_not_loaded(check, stopper, latest) + case)
        seen = next((i for i, w in enumerate(snapshots) if _same(restored, w)), None)
        if seen == len(snapshots) - 1:
            raise CheckFailed(check, "restore() loaded the weights of the LAST evaluation: keep a copy only when "
                                     "the value improves, so the copy is the best evaluation's." + case)
        if seen == 0:
            raise CheckFailed(check, "restore() loaded the weights of the FIRST evaluation: replace the kept copy "
                                     "at every improvement, not only the first time." + case)
        if seen is not None:
            raise CheckFailed(check, f"restore() loaded the weights of evaluation {seen}, but the best one is "
                                     f"evaluation {best} (value {values[best]})." + case)
        raise CheckFailed(check, f"after restore() the model's weights are neither the best evaluation's "
                                 f"(evaluation {best}) nor any other evaluation's." + case)
    passed(check, len(_CASES) + len(_WEIGHT_CASES))


# --------------------------------------------------------------------------------------------------
# Token classification: word labels -> piece labels
# --------------------------------------------------------------------------------------------------

_ALIGN_CASES = [
    ([["my"], ["be", "##witch", "'", "d"], ["lord"]], [0, 1, 2]),
    ([["o"]], [3]),
    ([["good"], ["night"], ["sweet"], ["prin", "##ce"]], [1, 0, 0, 2]),
    ([["un", "##hap", "##py"], ["day"]], [4, 5]),
]


def _align_reference(word_pieces, word_labels, variant: str = "ok") -> list[int]:
    out = [] if variant == "no_specials" else [-100]
    previous = None
    for pieces, label in zip(word_pieces, word_labels):
        rest = 0 if variant == "zero_fill" else -100
        if variant == "new_word_by_label":                # a word with the previous word's label looks continued
            out += [label if label != previous else -100] + [-100] * (len(pieces) - 1)
            previous = label
        elif variant == "every_piece":
            out += [label] * len(pieces)
        elif variant == "last_piece":
            out += [rest] * (len(pieces) - 1) + [label]
        else:
            out += [label] + [rest] * (len(pieces) - 1)
    if variant == "zero_fill":
        out = [0] + out[1:]
    return out if variant in ("no_specials", "no_sep") else out + ([0] if variant == "zero_fill" else [-100])


_ALIGN_MISTAKES = {
    "every_piece": "every piece of a word got the word's label: only its FIRST piece should carry it; the other "
                   "pieces get -100, so a long word does not count several times in the loss and the score.",
    "last_piece": "the label went on a word's LAST piece: the convention puts it on the first piece (and -100 on "
                  "the others).",
    "zero_fill": "positions without a label got 0, which is a real class (\"none\" here): use -100, the value "
                 "cross_entropy skips (ignore_index), for [CLS], [SEP] and a word's later pieces.",
    "no_specials": "the labels leave out [CLS] and [SEP]: the list must line up with the model's input "
                   "[CLS] pieces... [SEP], so it starts and ends with -100.",
    "new_word_by_label": "a word whose label equals the previous word's label got -100, as if it continued that "
                         "word: tell words apart by their index (word_ids()), not by their labels.",
    "no_sep": "the labels stop before [SEP]: add a final -100 for it, so the list is as long as the input.",
}


def check_align_labels(align_fn) -> None:
    """``align_fn(word_pieces, word_labels) -> list[int]``: one label per position of [CLS] pieces... [SEP]."""
    check = "check_align_labels"
    n = 0
    for word_pieces, word_labels in _ALIGN_CASES:
        got = call_student(check, align_fn, [list(p) for p in word_pieces], list(word_labels))
        if isinstance(got, torch.Tensor):
            got = got.tolist()
        if not isinstance(got, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in got):
            raise CheckFailed(check, f"`{fn_name(align_fn)}` should return a list of ints, but returned "
                                     f"{describe(got)}.")
        expected = _align_reference(word_pieces, word_labels)
        if list(got) != expected:
            for variant, explanation in _ALIGN_MISTAKES.items():
                if list(got) == _align_reference(word_pieces, word_labels, variant):
                    raise CheckFailed(check, f"{explanation} (words {word_pieces}, labels {word_labels}: "
                                             f"expected {expected}, got {list(got)})")
            if list(got)[1:] == expected[:-1] or list(got)[:-1] == expected[1:]:
                raise CheckFailed(check, f"the labels are shifted by one position: [CLS] comes first, so the first "
                                         f"word's label is at index 1 (expected {expected}, got {list(got)}).")
            if len(got) != len(expected):
                raise CheckFailed(check, f"there should be one label per input position ({len(expected)} for "
                                         f"[CLS] + {sum(map(len, word_pieces))} pieces + [SEP]), but there are "
                                         f"{len(got)} (words {word_pieces}).")
            raise CheckFailed(check, f"for words {word_pieces} with labels {word_labels} the labels should be "
                                     f"{expected}, but they are {list(got)}.")
        n += 1
    passed(check, n)
