"""Answers to the fine-tuning checks (notebooks 09, 12 and 14)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import correct, wrong

# ------------------------------------------------------------------------------------ [CLS] head


@correct("check_cls_head")
class HeadFunctionalDropout(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.p = dropout
        self.out = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states):
        return self.out(F.dropout(hidden_states[:, 0, :], self.p, training=self.training))


@correct("check_cls_head")
class HeadSequential(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, num_labels))

    def forward(self, hidden_states):
        return self.net(hidden_states.select(1, 0))


class _Head(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_labels)


@wrong("check_cls_head", "argument is ignored")
class HeadFixedDropout(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states):
        return self.classifier(self.dropout(hidden_states[:, 0]))


@wrong("check_cls_head", "not rescaled")
class HeadDropoutNoRescale(_Head):
    def forward(self, hidden_states):
        cls = hidden_states[:, 0]
        if self.training:
            cls = cls * (torch.rand_like(cls) >= self.dropout.p)
        return self.classifier(cls)


@wrong("check_cls_head", "mean over positions")
class HeadMean(_Head):
    def forward(self, hidden_states):
        return self.classifier(self.dropout(hidden_states.mean(1)))


@wrong("check_cls_head", "last position")
class HeadLast(_Head):
    def forward(self, hidden_states):
        return self.classifier(self.dropout(hidden_states[:, -1]))


@wrong("check_cls_head", "probabilities")
class HeadSoftmax(_Head):
    def forward(self, hidden_states):
        return self.classifier(self.dropout(hidden_states[:, 0])).softmax(-1)


@wrong("check_cls_head", "every position")
class HeadAllPositions(_Head):
    def forward(self, hidden_states):
        return self.classifier(self.dropout(hidden_states))


@wrong("check_cls_head", "first example")
class HeadFirstExample(_Head):
    def forward(self, hidden_states):
        return self.classifier(self.dropout(hidden_states[0]))


@wrong("check_cls_head", "eval mode")
class HeadDropoutAlwaysOn(_Head):
    def forward(self, hidden_states):
        return self.classifier(F.dropout(hidden_states[:, 0], self.dropout.p, training=True))


@wrong("check_cls_head", "logits")
class HeadDropoutOnLogits(_Head):
    def forward(self, hidden_states):
        return self.dropout(self.classifier(hidden_states[:, 0]))


@wrong("check_cls_head", "exactly one nn.linear")
class HeadTwoLayers(nn.Module):
    def __init__(self, d_model, num_labels, dropout):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.classifier = nn.Linear(d_model, num_labels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states):
        return self.classifier(self.dropout(torch.tanh(self.dense(hidden_states[:, 0]))))


# ------------------------------------------------------------------------------------ freezing


@correct("check_freeze")
def freeze_requires_grad_(model, train_top_layers):
    model.requires_grad_(True)
    model.bert.embeddings.requires_grad_(False)
    n = len(model.bert.blocks)
    for i, block in enumerate(model.bert.blocks):
        block.requires_grad_(i >= n - train_top_layers)


@correct("check_freeze")
def freeze_by_name(model, train_top_layers):
    n = len(model.bert.blocks)
    top = {f"bert.blocks.{i}." for i in range(n - train_top_layers, n)}
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier") or any(name.startswith(t) for t in top) \
            or name.startswith("bert.pooler")


@wrong("check_freeze", "only the `weight` parameters")
def freeze_weights_only(model, train_top_layers):
    for p in model.parameters():
        p.requires_grad = True
    n = len(model.bert.blocks)
    for name, p in model.bert.named_parameters():
        in_top = any(name.startswith(f"blocks.{i}.") for i in range(n - train_top_layers, n))
        if "weight" in name and not in_top:
            p.requires_grad = False


@wrong("check_freeze", "-0")
def freeze_negative_slice(model, train_top_layers):
    for p in model.parameters():
        p.requires_grad = True
    for p in model.bert.parameters():
        p.requires_grad = False
    for block in model.bert.blocks[-train_top_layers:]:
        for p in block.parameters():
            p.requires_grad = True


@wrong("check_freeze", "bottom")
def freeze_bottom(model, train_top_layers):
    model.requires_grad_(True)
    model.bert.requires_grad_(False)
    for block in model.bert.blocks[:train_top_layers]:
        block.requires_grad_(True)


@wrong("check_freeze", "left over from the first call")
def freeze_no_reset(model, train_top_layers):
    model.bert.embeddings.requires_grad_(False)
    n = len(model.bert.blocks)
    for block in model.bert.blocks[:n - train_top_layers]:
        block.requires_grad_(False)


@wrong("check_freeze", "attribute")
def freeze_attribute(model, train_top_layers):
    model.bert.embeddings.requires_grad = False
    n = len(model.bert.blocks)
    for block in model.bert.blocks[:n - train_top_layers]:
        block.requires_grad = False


@wrong("check_freeze", "classifier is frozen")
def freeze_everything_then_blocks(model, train_top_layers):
    model.requires_grad_(False)
    n = len(model.bert.blocks)
    for block in model.bert.blocks[n - train_top_layers:]:
        block.requires_grad_(True)


@wrong("check_freeze", "embeddings are still trainable")
def freeze_blocks_only(model, train_top_layers):
    model.requires_grad_(True)
    n = len(model.bert.blocks)
    for block in model.bert.blocks[:n - train_top_layers]:
        block.requires_grad_(False)


@wrong("check_freeze", "off by one")
def freeze_one_extra(model, train_top_layers):
    model.requires_grad_(True)
    model.bert.requires_grad_(False)
    n = len(model.bert.blocks)
    for block in model.bert.blocks[max(0, n - train_top_layers - 1):] if train_top_layers else []:
        block.requires_grad_(True)


# ------------------------------------------------------------------------------------ LoRA


class _LoRA(nn.Module):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__()
        self.base, self.rank, self.alpha = base, rank, alpha
        base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))

    def merged(self):
        layer = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(self.base.weight + self.alpha / self.rank * self.lora_B @ self.lora_A)
            if self.base.bias is not None:
                layer.bias.copy_(self.base.bias)
        return layer


@correct("check_lora_linear")
class LoRAEinsum(_LoRA):
    def forward(self, x):
        update = torch.einsum("...i,ri,or->...o", x, self.lora_A, self.lora_B)
        return self.base(x) + update * (self.alpha / self.rank)


@correct("check_lora_linear")
class LoRAFunctional(_LoRA):
    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.alpha / self.rank


@wrong("check_lora_linear", "not scaled")
class LoRANoScale(_LoRA):
    def forward(self, x):
        return self.base(x) + x @ self.lora_A.T @ self.lora_B.T


@wrong("check_lora_linear", "rank / alpha")
class LoRAInverseScale(_LoRA):
    def forward(self, x):
        return self.base(x) + (self.rank / self.alpha) * (x @ self.lora_A.T @ self.lora_B.T)


@wrong("check_lora_linear", "misses the base layer")
class LoRANoBase(_LoRA):
    def forward(self, x):
        return (self.alpha / self.rank) * (x @ self.lora_A.T @ self.lora_B.T)


@wrong("check_lora_linear", "start at zero")
class LoRABothRandom(_LoRA):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__(base, rank, alpha)
        self.lora_B = nn.Parameter(torch.randn(base.out_features, rank) * 0.01)

    def forward(self, x):
        return self.base(x) + (self.alpha / self.rank) * (x @ self.lora_A.T @ self.lora_B.T)


@wrong("check_lora_linear", "still trainable")
class LoRAUnfrozen(_LoRA):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__(base, rank, alpha)
        base.requires_grad_(True)

    def forward(self, x):
        return self.base(x) + (self.alpha / self.rank) * (x @ self.lora_A.T @ self.lora_B.T)


@wrong("check_lora_linear", "transposed")
class LoRATransposedA(nn.Module):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__()
        self.base = base
        base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(base.in_features, rank))
        self.lora_B = nn.Parameter(torch.zeros(rank, base.out_features))

    def forward(self, x):
        return self.base(x) + x @ self.lora_A @ self.lora_B


@wrong("check_lora_linear", "merged() forgets the scaling")
class LoRAMergeUnscaled(_LoRA):
    def forward(self, x):
        return self.base(x) + (self.alpha / self.rank) * (x @ self.lora_A.T @ self.lora_B.T)

    def merged(self):
        layer = super().merged()
        with torch.no_grad():
            layer.weight.copy_(self.base.weight + self.lora_B @ self.lora_A)
        return layer


# ------------------------------------------------------------------------------------ early stopping


@correct("check_early_stopping")
class StopperSigned:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.sign = 1.0 if mode == "min" else -1.0
        self.patience, self.min_delta = patience, min_delta
        self.best, self.wait = math.inf, 0

    def update(self, value):
        score = self.sign * value
        if score < self.best - self.min_delta:
            self.best, self.wait = score, 0
        else:
            self.wait += 1
        return self.wait >= self.patience


@correct("check_early_stopping")
class StopperHistory:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.history = []

    def update(self, value):
        self.history.append(value)
        best_index = 0
        for i, v in enumerate(self.history):
            best = self.history[best_index]
            if (v < best - self.min_delta) if self.mode == "min" else (v > best + self.min_delta):
                best_index = i
        return len(self.history) - 1 - best_index >= self.patience


class _Stopper:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best, self.bad = None, 0

    def better(self, value):
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value):
        if self.better(value):
            self.best, self.bad = value, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


@wrong("check_early_stopping", "tie counts as an improvement")
class StopperTies(_Stopper):
    def better(self, value):
        if self.best is None:
            return True
        if self.mode == "min":
            return value <= self.best - self.min_delta
        return value >= self.best + self.min_delta


@wrong("check_early_stopping", "never updated")
class StopperNoBestUpdate(_Stopper):
    def update(self, value):
        if self.best is None:
            self.best = value
        elif self.better(value):
            self.bad = 0
        else:
            self.bad += 1
        return self.bad >= self.patience


@wrong("check_early_stopping", "starts at 0")
class StopperZeroStart(_Stopper):
    def __init__(self, patience, mode="min", min_delta=0.0):
        super().__init__(patience, mode, min_delta)
        self.best = 0.0


@wrong("check_early_stopping", "one evaluation late")
class StopperLate(_Stopper):
    def update(self, value):
        super().update(value)
        return self.bad > self.patience


@wrong("check_early_stopping", "not reset")
class StopperNoReset(_Stopper):
    def update(self, value):
        if self.better(value):
            self.best = value
        else:
            self.bad += 1
        return self.bad >= self.patience


@wrong("check_early_stopping", "mode='max'")
class StopperMinOnly(_Stopper):
    def better(self, value):
        return self.best is None or value < self.best - self.min_delta


@wrong("check_early_stopping", "min_delta is ignored")
class StopperNoDelta(_Stopper):
    def better(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best


@wrong("check_early_stopping", "previous value")
class StopperPrevious(_Stopper):
    def update(self, value):
        improved = self.better(value)
        self.best = value
        self.bad = 0 if improved else self.bad + 1
        return self.bad >= self.patience


# ------------------------------------------------------------------ early stopping with the best weights


class _BestBase:
    """The rule written once; subclasses differ in how they keep and restore the weights."""

    def __init__(self, patience, mode="min", min_delta=0.0):
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best, self.best_eval, self.wait, self.count, self.saved = None, None, 0, 0, None

    def better(self, value):
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def update(self, value, model):
        if self.better(value):
            self.best, self.best_eval, self.wait = value, self.count, 0
            self.saved = self.keep(model)
        else:
            self.wait += 1
        self.count += 1
        return self.wait >= self.patience

    def keep(self, model):
        return {k: v.clone() for k, v in model.state_dict().items()}

    def restore(self, model):
        model.load_state_dict(self.saved)


@correct("check_early_stopping_best")
class BestDeepcopyModel(_BestBase):
    def keep(self, model):
        import copy
        return copy.deepcopy(model)

    def restore(self, model):
        model.load_state_dict(self.saved.state_dict())


@correct("check_early_stopping_best")
class BestSignedCpu:
    def __init__(self, patience, mode="min", min_delta=0.0):
        self.sign = 1.0 if mode == "min" else -1.0
        self.patience, self.min_delta = patience, min_delta
        self.best_score, self.best_eval, self.bad, self.n, self.weights = math.inf, None, 0, 0, None

    def update(self, value, model):
        if self.sign * value < self.best_score - self.min_delta:
            self.best_score, self.best_eval, self.bad = self.sign * value, self.n, 0
            self.weights = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
        else:
            self.bad += 1
        self.n += 1
        return self.bad >= self.patience

    def restore(self, model):
        with torch.no_grad():
            for name, t in model.state_dict().items():
                t.copy_(self.weights[name])


@wrong("check_early_stopping_best", "changed with the model", "clone")
class BestKeepsStateDict(_BestBase):
    def keep(self, model):
        return model.state_dict()


@wrong("check_early_stopping_best", "changed with the model", "clone")
class BestShallowCopy(_BestBase):
    def keep(self, model):
        return dict(model.state_dict())


@wrong("check_early_stopping_best", "changed with the model")
class BestDetachOnly(_BestBase):
    def keep(self, model):
        return {k: v.detach() for k, v in model.state_dict().items()}


@wrong("check_early_stopping_best", "load_state_dict")
class BestRebindsModel(_BestBase):
    def keep(self, model):
        import copy
        return copy.deepcopy(model)

    def restore(self, model):
        model = self.saved                                    # rebinds the local name only
        return model


@wrong("check_early_stopping_best", "LAST evaluation")
class BestSavesEveryEval(_BestBase):
    def update(self, value, model):
        stop = super().update(value, model)
        self.saved = self.keep(model)                         # also when nothing improved
        return stop


@wrong("check_early_stopping_best", "FIRST evaluation")
class BestSavesOnce(_BestBase):
    def keep(self, model):
        return self.saved if self.saved is not None else super().keep(model)


@wrong("check_early_stopping_best", "counts from 1")
class BestEvalOneBased(_BestBase):
    def update(self, value, model):
        self.count += 1 if self.count == 0 and self.best is None else 0
        return super().update(value, model)


@wrong("check_early_stopping_best", "best_eval moves at every evaluation")
class BestEvalAlwaysLatest(_BestBase):
    def update(self, value, model):
        stop = super().update(value, model)
        self.best_eval = self.count - 1
        return stop


@wrong("check_early_stopping_best", "tie counts as an improvement")
class BestTieImproves(_BestBase):
    def better(self, value):
        if self.best is None:
            return True
        return value <= self.best - self.min_delta if self.mode == "min" else value >= self.best + self.min_delta


# ------------------------------------------------------------------------------------ LoRA for embeddings


class _LoRAEmb(nn.Module):
    """A LoRAEmbedding with switches for the classic mistakes."""

    def __init__(self, base, rank=8, alpha=16.0, zero="B", scaling=None, freeze=True):
        super().__init__()
        self.base = base
        if freeze:
            base.weight.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.zeros(base.num_embeddings, rank) if zero == "A"
                                   else torch.randn(base.num_embeddings, rank))
        self.lora_B = nn.Parameter(torch.zeros(rank, base.embedding_dim) if zero == "B"
                                   else torch.randn(rank, base.embedding_dim))
        self.scaling = alpha / rank if scaling is None else scaling

    def forward(self, ids):
        return self.base(ids) + self.scaling * self.lora_A[ids] @ self.lora_B

    def merged(self):
        out = nn.Embedding(self.base.num_embeddings, self.base.embedding_dim, padding_idx=self.base.padding_idx)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scaling * self.lora_A @ self.lora_B)
        return out


@correct("check_lora_embedding")
class LoRAEmbeddingFunctional(nn.Module):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Parameter(nn.init.normal_(torch.empty(base.num_embeddings, rank), std=0.01))
        self.lora_B = nn.Parameter(torch.zeros(rank, base.embedding_dim))
        self.scale = alpha / rank

    def forward(self, ids):
        return self.base(ids) + F.embedding(ids, self.lora_A) @ self.lora_B * self.scale

    def merged(self):
        table = self.base.weight + self.scale * (self.lora_A @ self.lora_B)
        return nn.Embedding.from_pretrained(table.detach().clone(), freeze=False, padding_idx=self.base.padding_idx)


@correct("check_lora_embedding")
class LoRAEmbeddingDeepcopy(_LoRAEmb):
    def merged(self):
        import copy
        out = copy.deepcopy(self.base)
        with torch.no_grad():
            out.weight += self.scaling * self.lora_A @ self.lora_B
        return out


@wrong("check_lora_embedding", "lora_A starts at zero", "other way")
class LoRAEmbeddingZeroA(_LoRAEmb):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__(base, rank, alpha, zero="A")


@wrong("check_lora_embedding", "not scaled")
class LoRAEmbeddingNoScale(_LoRAEmb):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__(base, rank, alpha, scaling=1.0)


@wrong("check_lora_embedding", "still trainable")
class LoRAEmbeddingTrainableBase(_LoRAEmb):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__(base, rank, alpha, freeze=False)


@wrong("check_lora_embedding", "padding_idx")
class LoRAEmbeddingLosesPadding(_LoRAEmb):
    def merged(self):
        out = nn.Embedding(self.base.num_embeddings, self.base.embedding_dim)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scaling * self.lora_A @ self.lora_B)
        return out


@wrong("check_lora_embedding", "changed the base table in place")
class LoRAEmbeddingMergesInPlace(_LoRAEmb):
    def merged(self):
        with torch.no_grad():
            self.base.weight += self.scaling * self.lora_A @ self.lora_B
        return self.base


@wrong("check_lora_embedding", "forgets the scaling")
class LoRAEmbeddingMergeUnscaled(_LoRAEmb):
    def merged(self):
        out = nn.Embedding(self.base.num_embeddings, self.base.embedding_dim, padding_idx=self.base.padding_idx)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.lora_A @ self.lora_B)
        return out


@wrong("check_lora_embedding", "should have shape", "transposed")
class LoRAEmbeddingLinearShapes(_LoRAEmb):
    def __init__(self, base, rank=8, alpha=16.0):
        super().__init__(base, rank, alpha)
        self.lora_A = nn.Parameter(torch.randn(rank, base.num_embeddings))      # copied from LoRALinear's (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.embedding_dim, rank))
