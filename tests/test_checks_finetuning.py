"""The fine-tuning exercise checks accept correct implementations (several styles) and name each classic mistake."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptlm_course.checks import CheckFailed
from ptlm_course.checks.finetuning import (check_align_labels, check_cls_head, check_early_stopping,
                                         check_early_stopping_best, check_freeze, check_lora_embedding,
                                         check_lora_linear)
from ptlm_course.finetuning import freeze_encoder
from ptlm_course.lora import LoRALinear
from ptlm_course.training import EarlyStopping


def fails_with(check, fn, message):
    with pytest.raises(CheckFailed, match=message):
        check(fn)


class NotWritten(nn.Module):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError()


def not_written(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("check, fn", [(check_cls_head, NotWritten), (check_freeze, not_written),
                                       (check_lora_linear, NotWritten), (check_early_stopping, NotWritten),
                                       (check_early_stopping_best, NotWritten),
                                       (check_lora_embedding, NotWritten)])
def test_unwritten_code_is_reported(check, fn):
    fails_with(check, fn, "is not written yet")


# --- [CLS] head ------------------------------------------------------------------------------------

def cls_head(kind="ok"):
    class Head(nn.Module):
        def __init__(self, d_model, num_labels, dropout):
            super().__init__()
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(d_model, num_labels)

        def forward(self, hidden_states):
            pick = {"mean": lambda h: h.mean(1), "last": lambda h: h[:, -1], "all": lambda h: h,
                    "first_example": lambda h: h[0]}.get(kind, lambda h: h[:, 0])
            x = pick(hidden_states)
            if kind == "no_dropout":
                return self.classifier(x)
            if kind == "dropout_on_logits":
                return self.dropout(self.classifier(x))
            if kind == "always_dropout":
                return self.classifier(F.dropout(x, self.dropout.p, training=True))
            logits = self.classifier(self.dropout(x))
            return logits.softmax(-1) if kind == "softmax" else logits
    return Head


class FunctionalHead(nn.Module):                 # another correct style: F.dropout with self.training
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.p = dropout
        self.out = nn.Linear(d_model, num_labels)

    def forward(self, h):
        return self.out(F.dropout(h[:, 0, :], self.p, self.training))


@pytest.mark.parametrize("head", [cls_head(), FunctionalHead])
def test_cls_head_accepts_correct_heads(head, capsys):
    check_cls_head(head)
    assert "✅ check_cls_head" in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("mean", "mean over positions"),
    ("last", "uses the last position"),
    ("all", "logits for every position"),
    ("softmax", "returns probabilities"),
    ("first_example", r"hidden_states\[0\]"),
    ("no_dropout", "never change: apply dropout"),
    ("dropout_on_logits", "applied to the logits"),
    ("always_dropout", "still active in eval mode"),
])
def test_cls_head_names_mistakes(kind, message):
    fails_with(check_cls_head, cls_head(kind), message)


def test_cls_head_needs_one_linear():
    class TwoLayers(nn.Module):
        def __init__(self, d_model, num_labels, dropout):
            super().__init__()
            self.a, self.b = nn.Linear(d_model, d_model), nn.Linear(d_model, num_labels)

        def forward(self, h):
            return self.b(self.a(h[:, 0]))
    fails_with(check_cls_head, TwoLayers, r"exactly one nn.Linear\(d_model=8, num_labels=2\)")


# --- freezing --------------------------------------------------------------------------------------

def freeze_ok(model, k):
    freeze_encoder(model, k)


def freeze_by_hand(model, k):                     # another correct style; leaves the pooler frozen
    for p in model.parameters():
        p.requires_grad = True
    for p in model.bert.parameters():
        p.requires_grad = False
    n = len(model.bert.blocks)
    for block in model.bert.blocks[n - k:]:
        block.requires_grad_(True)


def freeze_mistake(kind):
    def fn(model, k):
        blocks = model.bert.blocks
        n = len(blocks)
        if kind == "module_attribute":
            model.bert.requires_grad = False
            return
        if kind == "never_unfreeze":            # only ever sets requires_grad = False
            model.bert.embeddings.requires_grad_(False)
            for b in blocks[:n - k]:
                b.requires_grad_(False)
            return
        model.requires_grad_(True)
        if kind == "head_too":
            model.requires_grad_(False)
            for b in blocks[n - k:]:
                b.requires_grad_(True)
            return
        if kind == "embeddings_trainable":
            for b in blocks[:n - k]:
                b.requires_grad_(False)
            return
        model.bert.requires_grad_(False)
        chosen = {"minus_k": blocks[-k:], "bottom": blocks[:k], "one_more": blocks[max(0, n - k - 1):],
                  "one_less": blocks[n - k + 1:]}[kind]
        for b in chosen:
            b.requires_grad_(True)
    return fn


@pytest.mark.parametrize("fn", [freeze_ok, freeze_by_hand])
def test_freeze_accepts_correct_functions(fn, capsys):
    check_freeze(fn)
    assert "✅ check_freeze" in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("module_attribute", "only creates an attribute"),
    ("head_too", "the classifier is frozen"),
    ("embeddings_trainable", "embeddings are still trainable"),
    ("never_unfreeze", "left over from the first call"),
    ("minus_k", r"blocks\[-0:\] is the \*whole\* list"),
    ("bottom", r"unfroze the \*bottom\* 1 blocks"),
    ("one_more", "off by one"),
    ("one_less", "off by one"),
])
def test_freeze_names_mistakes(kind, message):
    fails_with(check_freeze, freeze_mistake(kind), message)


# --- LoRA ------------------------------------------------------------------------------------------

class LoRAByMerge(nn.Module):                     # another correct style: builds the merged weight each call
    def __init__(self, base, rank=4, alpha=8.0):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(0.01 * torch.randn(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return F.linear(x, self.base.weight + self.scale * self.lora_B @ self.lora_A, self.base.bias)

    def merged(self):
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * self.lora_B @ self.lora_A)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def lora_mistake(kind):
    class Mistake(LoRALinear):
        def __init__(self, base, rank=8, alpha=16.0):
            super().__init__(base, rank, alpha)
            if kind == "b_random":
                nn.init.normal_(self.lora_B)
            if kind == "both_zero":
                nn.init.zeros_(self.lora_A)
            if kind == "base_trainable":
                base.requires_grad_(True)
            if kind == "transposed":
                self.lora_A = nn.Parameter(torch.randn(base.in_features, rank))
            self.scaling = {"no_scaling": 1.0, "inverted": rank / alpha, "alpha_only": alpha}.get(kind, alpha / rank)

        def merged(self):
            if kind == "merge_in_place":
                with torch.no_grad():
                    self.base.weight += self.delta_weight()
                return self.base
            if kind == "merge_no_scaling":
                linear = super().merged()
                with torch.no_grad():
                    linear.weight.copy_(self.base.weight + self.lora_B @ self.lora_A)
                return linear
            if kind == "merge_drops_bias":
                linear = nn.Linear(self.base.in_features, self.base.out_features, bias=False)
                with torch.no_grad():
                    linear.weight.copy_(self.base.weight + self.delta_weight())
                return linear
            return super().merged()
    return Mistake


@pytest.mark.parametrize("cls", [LoRALinear, LoRAByMerge])
def test_lora_check_accepts_correct_classes(cls, capsys):
    check_lora_linear(cls)
    assert "✅ check_lora_linear" in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("b_random", "lora_B should start at zero"),
    ("both_zero", "lora_A is all zeros too"),
    ("base_trainable", "base layer's weights are still trainable"),
    ("transposed", r"`lora_A` should have shape \(2, 6\), but it has \(6, 2\) \(transposed\?\)"),
    ("no_scaling", "not scaled: multiply it by alpha / rank"),
    ("inverted", "scaled by rank / alpha"),
    ("alpha_only", "scaled by alpha alone"),
    ("merge_in_place", "changed the base layer's weight in place"),
    ("merge_no_scaling", "merged\\(\\) forgets the scaling"),
    ("merge_drops_bias", "lost the bias"),
])
def test_lora_check_names_mistakes(kind, message):
    fails_with(check_lora_linear, lora_mistake(kind), message)


# --- early stopping --------------------------------------------------------------------------------

class StopperStyle2:                                 # another correct style: stores the sign, counts "wait"
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.sign, self.delta = patience, (1 if mode == "min" else -1), min_delta
        self.best, self.wait = math.inf, 0

    def update(self, value):
        if self.sign * value < self.best - self.delta:
            self.best, self.wait = self.sign * value, 0
        else:
            self.wait += 1
        return self.wait >= self.patience


def stopper_mistake(kind):
    class Mistake:
        def __init__(self, patience, mode="min", min_delta=0.0):
            self.patience, self.mode, self.min_delta = patience, mode, min_delta
            self.best, self.bad = None, 0

        def update(self, value):
            delta = 0.0 if kind == "no_delta" else self.min_delta
            if kind == "delta_wrong_way":
                delta = -delta
            mode = "min" if kind == "max_as_min" else self.mode
            reference = self.best
            better = reference is None or (value < reference - delta if mode == "min" else value > reference + delta)
            if kind == "vs_previous":
                self.best = value
                self.bad = 0 if better else self.bad + 1
            elif better:
                self.best = value
                if kind != "no_reset":
                    self.bad = 0
            else:
                self.bad += 1
            if kind == "off_by_one":
                return self.bad > self.patience
            if kind == "early_by_one":
                return self.bad >= self.patience - 1
            if kind == "returns_none":
                return None
            return self.bad >= self.patience
    return Mistake


@pytest.mark.parametrize("cls", [EarlyStopping, StopperStyle2, stopper_mistake("ok")])
def test_early_stopping_check_accepts_correct_classes(cls, capsys):
    check_early_stopping(cls)
    assert "✅ check_early_stopping" in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("off_by_one", "one evaluation late"),
    ("early_by_one", "one evaluation early"),
    ("no_reset", "counter is not reset"),
    ("max_as_min", "higher is better"),
    ("no_delta", "min_delta is ignored"),
    ("delta_wrong_way", "min_delta is applied the wrong way"),
    ("vs_previous", "compares with the previous value"),
    ("returns_none", r"should return True \(stop\) or False, but returned NoneType None"),
])
def test_early_stopping_check_names_mistakes(kind, message):
    fails_with(check_early_stopping, stopper_mistake(kind), message)


# --- LoRA for the embedding table (exercise 12) ----------------------------------------------------

def lora_embedding(kind="ok"):
    class LoRAEmbedding(nn.Module):
        def __init__(self, base, rank=8, alpha=16.0):
            super().__init__()
            self.base = base
            base.weight.requires_grad_(kind == "trainable_base")
            self.lora_A = nn.Parameter(torch.randn(base.num_embeddings, rank))
            self.lora_B = nn.Parameter(torch.zeros(rank, base.embedding_dim) if kind != "random_B"
                                       else torch.randn(rank, base.embedding_dim))
            self.scaling = 1.0 if kind == "no_scaling" else alpha / rank

        def forward(self, ids):
            return self.base(ids) + self.scaling * self.lora_A[ids] @ self.lora_B

        def merged(self):
            padding = None if kind == "no_padding" else self.base.padding_idx
            table = nn.Embedding(self.base.num_embeddings, self.base.embedding_dim, padding_idx=padding)
            with torch.no_grad():
                table.weight.copy_(self.base.weight + self.scaling * self.lora_A @ self.lora_B)
            return table
    return LoRAEmbedding


def test_lora_embedding_check_accepts_a_correct_class(capsys):
    check_lora_embedding(lora_embedding())
    assert "✅ check_lora_embedding: all 3 tests passed." in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("trainable_base", "base table is still trainable"),
    ("random_B", "lora_B should start at zero"),
    ("no_scaling", "not scaled"),
    ("no_padding", "padding_idx=None, but the base table has 0"),
])
def test_lora_embedding_check_names_mistakes(kind, message):
    fails_with(check_lora_embedding, lora_embedding(kind), message)


# --- early stopping with the best weights (exercise 14) ------------------------------------------------

def best_stopper(kind="ok"):
    class Stopper:
        def __init__(self, patience, mode="min", min_delta=0.0):
            self.rule = EarlyStopping(patience, mode, min_delta)
            self.best_eval, self.kept, self.evals = None, None, 0

        def update(self, value, model):
            stop = self.rule.update(value)
            if self.rule.improved or kind == "every_eval":
                if self.rule.improved:
                    self.best_eval = self.evals + (kind == "one_based")
                if kind == "alias":
                    self.kept = model.state_dict()
                elif kind == "first_only" and self.kept is not None:
                    pass
                else:
                    self.kept = {k: v.clone() for k, v in model.state_dict().items()}
            self.evals += 1
            return stop

        def restore(self, model):
            if kind != "no_load":
                model.load_state_dict(self.kept)
    return Stopper


def test_early_stopping_best_check_accepts_a_correct_class(capsys):
    check_early_stopping_best(best_stopper())
    assert "✅ check_early_stopping_best" in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("alias", "the kept weights changed with the model"),
    ("no_load", "did not put the kept weights into the model"),
    ("every_eval", "weights of the LAST evaluation"),
    ("first_only", "weights of the FIRST evaluation"),
    ("one_based", "best_eval counts from 1"),
])
def test_early_stopping_best_check_names_mistakes(kind, message):
    fails_with(check_early_stopping_best, best_stopper(kind), message)


@pytest.mark.parametrize("kind, message", [("vs_previous", "compares with the previous value"),
                                           ("no_reset", "counter is not reset")])
def test_early_stopping_best_check_still_names_rule_mistakes(kind, message):
    rule = stopper_mistake(kind)

    class Stopper(best_stopper()):
        def __init__(self, patience, mode="min", min_delta=0.0):
            super().__init__(patience, mode, min_delta)
            self.rule = _Improved(rule(patience, mode=mode, min_delta=min_delta))

    fails_with(check_early_stopping_best, Stopper, message)


class _Improved:
    """A stopper rule with the package's `improved` flag, derived from its best value."""

    def __init__(self, rule):
        self.rule, self.improved, self.last_best = rule, False, None

    def update(self, value):
        stop = self.rule.update(value)
        best = getattr(self.rule, "best", None)
        self.improved, self.last_best = best != self.last_best, best
        return stop


def test_early_stopping_best_check_wants_the_model_argument():
    fails_with(check_early_stopping_best, EarlyStopping, r"update\(\) takes 2 positional arguments")


# ------------------------------------------------------------------ check_align_labels

def _align_ok(word_pieces, word_labels):
    out = [-100]
    for pieces, label in zip(word_pieces, word_labels):
        out += [label] + [-100] * (len(pieces) - 1)
    return out + [-100]


def _align_ok_tensor(word_pieces, word_labels):                 # another style: a tensor, filled by index
    n = 2 + sum(len(p) for p in word_pieces)
    out = torch.full((n,), -100)
    position = 1
    for pieces, label in zip(word_pieces, word_labels):
        out[position] = label
        position += len(pieces)
    return out


def _align_every_piece(word_pieces, word_labels):
    return [-100] + [label for pieces, label in zip(word_pieces, word_labels) for _ in pieces] + [-100]


def _align_last_piece(word_pieces, word_labels):
    out = [-100]
    for pieces, label in zip(word_pieces, word_labels):
        out += [-100] * (len(pieces) - 1) + [label]
    return out + [-100]


def _align_zeros(word_pieces, word_labels):
    out = [0]
    for pieces, label in zip(word_pieces, word_labels):
        out += [label] + [0] * (len(pieces) - 1)
    return out + [0]


def _align_no_specials(word_pieces, word_labels):
    return _align_ok(word_pieces, word_labels)[1:-1]


def _align_no_sep(word_pieces, word_labels):
    return _align_ok(word_pieces, word_labels)[:-1]


def _align_shifted(word_pieces, word_labels):
    return [-100, -100] + _align_ok(word_pieces, word_labels)[1:-1]


def _align_one_per_word(word_pieces, word_labels):
    return [-100] + list(word_labels) + [-100]


@pytest.mark.parametrize("fn", [_align_ok, _align_ok_tensor])
def test_align_labels_accepts_correct_answers(fn, capsys):
    check_align_labels(fn)
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("fn, words", [
    (_align_every_piece, "only its FIRST piece"),
    (_align_last_piece, "LAST piece"),
    (_align_zeros, "-100"),
    (_align_no_specials, "[CLS] and [SEP]"),
    (_align_no_sep, "before [SEP]"),
    (_align_shifted, "shifted by one"),
    (_align_one_per_word, "one label per input position"),
])
def test_align_labels_names_the_mistake(fn, words):
    with pytest.raises(CheckFailed) as info:
        check_align_labels(fn)
    assert words in info.value.message
