"""GPT: a decoder-only Transformer language model with GPT-2's architecture (Part 2).

Shapes: ``B`` batch, ``T`` positions, ``C`` width (``d_model``), ``V`` vocabulary size.

    x      = dropout(wte[input_ids] + wpe[0..T-1])        token + learned position embeddings
    x      = n_layers pre-LayerNorm causal blocks         position t sees only 0..t
    logits = ln_f(x) @ wte.weight.T                       the output head reuses the token embedding

For generation, ``cache = model.new_kv_cache()`` then ``model(new_ids, kv_cache=cache)`` feeds only the new
tokens: each layer's ``attention.KVCache`` keeps the keys and values of the earlier ones.

``from_pretrained`` loads Hugging Face GPT-2 checkpoints (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``); the tests show the logits equal ``transformers``' own to 1e-5.

The activation is the exact GELU, as in BERT and nanoGPT. GPT-2 itself used GELU's tanh approximation
(``activation="gelu_tanh"``; ``from_hf_config`` reads it from a checkpoint), which differs by under 5e-4 and
which PyTorch runs 2.5 to 3 times slower on the course's CPU (notebook 15, ``benchmarks/nanogpt_speed.py``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import KVCache
from .hf_checkpoint import read_hf_checkpoint
from .outputs import ClassificationOutput
from .transformer import ACTIVATIONS, TransformerBlock
from .validation import describe, expect_class_labels, expect_ids_in_vocab, expect_tensor, is_int, is_number

__all__ = ["GPTConfig", "GPT", "GPTForSequenceClassification"]


@dataclass
class GPTConfig:
    """GPT's hyper-parameters; the sizes default to GPT-2 small (124M parameters)."""
    vocab_size: int = 50257
    block_size: int = 1024          # the longest context: number of learned positions
    n_layers: int = 12
    n_heads: int = 12
    d_model: int = 768
    dropout: float = 0.1            # on the embeddings, the attention weights and each residual branch
    bias: bool = True               # biases in the Linear layers and LayerNorms
    layer_norm_eps: float = 1e-5
    activation: str = "gelu"        # in the feed-forward network: exact GELU; GPT-2's checkpoints use "gelu_tanh"

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layers", "n_heads", "d_model"):
            value = getattr(self, name)
            if not is_int(value) or value <= 0:
                raise ValueError(f"GPTConfig.{name} should be a positive integer, but got {describe(value)}.")
        if self.d_model % self.n_heads:
            raise ValueError(f"GPTConfig.d_model ({self.d_model}) should be divisible by n_heads ({self.n_heads}) "
                             "so that every head gets d_model / n_heads channels, but it is not.")
        if not is_number(self.dropout) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout should be a probability in [0, 1), but got {describe(self.dropout)}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"GPTConfig.activation should be one of {', '.join(map(repr, ACTIVATIONS))}, "
                             f"but got {describe(self.activation)}.")

    @classmethod
    def from_hf_config(cls, hf: dict) -> "GPTConfig":
        """Read the dict of a Hugging Face GPT-2 ``config.json``; refuse options our GPT does not implement."""
        if not isinstance(hf, dict):
            raise TypeError(f"`from_hf_config` expects the dict of a config.json, but got {describe(hf)}.")
        if hf.get("model_type", "gpt2") != "gpt2":
            raise ValueError(f"Expected a GPT-2 config (model_type 'gpt2'), but got model_type {hf['model_type']!r}.")
        required = ("vocab_size", "n_layer", "n_head", "n_embd")
        absent = [key for key in required if key not in hf]
        if absent or ("n_positions" not in hf and "n_ctx" not in hf):
            raise ValueError(f"A GPT-2 config.json should have {', '.join(required)} and n_positions, "
                             f"but {absent or ['n_positions']} are missing (it has {sorted(hf)}).")
        activation = _HF_ACTIVATIONS.get(hf.get("activation_function", "gelu_new"))
        unsupported = {
            "activation_function": activation is not None,
            "n_inner": hf.get("n_inner") in (None, 4 * hf["n_embd"]),
            "scale_attn_weights": hf.get("scale_attn_weights", True) is True,
            "scale_attn_by_inverse_layer_idx": not hf.get("scale_attn_by_inverse_layer_idx", False),
            "add_cross_attention": not hf.get("add_cross_attention", False),
        }
        for key, ok in unsupported.items():
            if not ok:
                raise ValueError(f"This GPT implements plain GPT-2 only, but the config sets {key} = {hf[key]!r}.")
        return cls(vocab_size=hf["vocab_size"], block_size=hf.get("n_positions", hf.get("n_ctx")),
                   n_layers=hf["n_layer"], n_heads=hf["n_head"], d_model=hf["n_embd"],
                   dropout=float(hf.get("resid_pdrop", 0.1)), bias=True,
                   layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), activation=activation)


_HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}   # HF's name -> ours


class GPT(nn.Module):
    """GPT-2: token + position embeddings, ``n_layers`` causal pre-LN blocks, final LayerNorm, tied output head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"`GPT` expects a GPTConfig, but got {describe(config)}.")
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.d_model)     # token embedding   (V, C)
        self.wpe = nn.Embedding(c.block_size, c.d_model)     # position embedding (block_size, C)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_heads, 4 * c.d_model, dropout=c.dropout, ffn_dropout=0.0,  # as GPT-2
                             norm_first=True, causal=True, activation=c.activation,
                             layer_norm_eps=c.layer_norm_eps, bias=c.bias)
            for _ in range(c.n_layers)
        )
        for block in self.blocks:
            block.check_inputs = False                       # forward checks input_ids where it enters
        self.ln_f = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps, bias=c.bias)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight                # weight tying: one (V, C) tensor for both
        self.apply(self._init_weights)
        # GPT-2 scales the projections that write into the residual stream by 1/sqrt(2 * n_layers):
        # each block adds two of them, so the residual stream's variance stays the same with depth.
        for block in self.blocks:
            for proj in (block.attn.out_proj, block.ffn.fc2):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: list[KVCache] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """input_ids (B, T) token ids -> (logits (B, T, V), loss or None).

        ``targets`` (B, T) holds the id that should come *after* each position (the caller shifts:
        ``targets[:, t] = input_ids[:, t + 1]``); positions with -100 are ignored by the cross-entropy.
        ``kv_cache`` (from :meth:`new_kv_cache`) holds the keys/values of earlier positions, so only
        the new tokens need to be fed; it is updated in place.
        """
        past = self._check_inputs(input_ids, targets, kv_cache)
        B, T = input_ids.shape
        positions = torch.arange(past, past + T, device=input_ids.device)  # (T,)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))           # (B, T, C) + (T, C)
        caches = [None] * len(self.blocks) if kv_cache is None else kv_cache
        for block, cache in zip(self.blocks, caches):
            x = block(x, kv_cache=cache)                             # (B, T, C)
        logits = self.lm_head(self.ln_f(x))                          # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T), ignore_index=-100)
        return logits, loss

    def new_kv_cache(self) -> list[KVCache]:
        """An empty key/value cache: one per block, to pass to ``forward(..., kv_cache=...)``."""
        return [KVCache() for _ in self.blocks]

    def _check_inputs(self, input_ids, targets, kv_cache) -> int:
        """Validate the inputs; return how many positions the cache already holds."""
        expect_tensor(input_ids, "input_ids", 2, "(B, T) of token ids")
        expect_ids_in_vocab(input_ids, self.config.vocab_size, "input_ids")
        if input_ids.shape[1] == 0:
            raise ValueError("`input_ids` should hold at least one token per sequence, "
                             f"but got shape {tuple(input_ids.shape)}.")
        past = 0
        if kv_cache is not None:
            if not isinstance(kv_cache, list) or len(kv_cache) != len(self.blocks):
                raise ValueError(f"`kv_cache` should be the list of {len(self.blocks)} per-block caches made by "
                                 f"`model.new_kv_cache()`, but got {describe(kv_cache)}.")
            past = kv_cache[0].length
        T, block_size = input_ids.shape[1], self.config.block_size
        if past + T > block_size:
            seen = f"{past} cached + {T} new = {past + T}" if past else f"T = {T}"
            raise ValueError(f"The model has learned positions for at most block_size = {block_size} tokens, but "
                             f"got {seen} (`input_ids` shape {tuple(input_ids.shape)}). Crop the context, e.g. "
                             f"input_ids[:, -{block_size}:].")
        if targets is not None:
            expect_tensor(targets, "targets", 2, "(B, T) of next-token ids")
            if targets.shape != input_ids.shape:
                raise ValueError(f"`targets` should have the same shape as `input_ids` {tuple(input_ids.shape)}, "
                                 f"but got shape {tuple(targets.shape)}.")
            expect_ids_in_vocab(targets[targets != -100], self.config.vocab_size, "targets (other than -100)")
        return past

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters, counting the tied embedding/head once; optionally leave out the embeddings."""
        n = sum(p.numel() for p in self.parameters())   # parameters() yields a shared tensor once
        if exclude_embeddings:
            n -= self.wte.weight.numel() + self.wpe.weight.numel()
        return n

    @classmethod
    def from_pretrained(cls, path) -> "GPT":
        """Load a Hugging Face GPT-2 checkpoint directory (config.json + model.safetensors or
        pytorch_model.bin), e.g. one written by ``GPT2LMHeadModel.save_pretrained``. Returns it in eval mode."""
        config, hf_state = _read_checkpoint(path)
        model = cls(config)
        model.load_state_dict(_convert_hf_state(hf_state, model, path), strict=True)
        return model.eval()

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (B, T) -> the final hidden states ln_f(x) (B, T, C): what the LM head reads (classifiers)."""
        self._check_inputs(input_ids, None, None)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)   # (T,)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))           # (B, T, C)
        for block in self.blocks:
            x = block(x)                                             # (B, T, C)
        return self.ln_f(x)                                          # (B, T, C)


# --------------------------------------------------------------------------------------------------
# Hugging Face GPT-2 checkpoints
# --------------------------------------------------------------------------------------------------
# GPT-2 uses `Conv1D` layers: Linear layers whose weight is stored transposed, (in, out) instead of
# nn.Linear's (out, in). Its attention has one fused `c_attn` projection C -> 3C for q, k and v.

_HF_LAYER = {                       # Hugging Face name inside `h.{i}.` -> ours inside `blocks.{i}.`
    "ln_1": "ln1", "ln_2": "ln2", "attn.c_proj": "attn.out_proj",
    "mlp.c_fc": "ffn.fc1", "mlp.c_proj": "ffn.fc2",
}
_HF_TOP = {"wte": "wte", "wpe": "wpe", "ln_f": "ln_f"}
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")   # weights stored (in, out)


def _read_checkpoint(path) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """Read ``config.json`` and the weights (``model.safetensors`` or ``pytorch_model.bin``) of a directory."""
    hf, state = read_hf_checkpoint(path)
    return GPTConfig.from_hf_config(hf), state


def _convert_hf_state(hf_state: dict[str, torch.Tensor], model: GPT, path) -> dict[str, torch.Tensor]:
    """Rename, transpose and split a Hugging Face GPT-2 state dict into ours, checking names and shapes."""
    ours = model.state_dict()
    converted, unexpected = {}, []
    for hf_name, tensor in hf_state.items():
        name = hf_name[len("transformer."):] if hf_name.startswith("transformer.") else hf_name
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            continue                                          # causal-mask buffers, not weights
        if name == "lm_head.weight":                          # a saved copy of the tied embedding
            _check_tied_copy(tensor, hf_state)
            continue
        module, _, leaf = name.rpartition(".")                # "h.3.mlp.c_fc", "weight"
        layer = re.fullmatch(r"h\.(\d+)\.(.+)", module)
        if layer is None:
            our_name = f"{_HF_TOP[module]}.{leaf}" if module in _HF_TOP else None
        else:
            i, sub = layer.groups()                           # "3", "mlp.c_fc"
            if sub in _CONV1D and leaf == "weight":
                tensor = tensor.t()                           # Conv1D (in, out) -> Linear (out, in)
            if sub == "attn.c_attn":                          # fused (3C, C) / (3C,) -> q, k, v (C, C) / (C,)
                for part, chunk in zip("qkv", tensor.chunk(3, dim=0)):
                    converted[f"blocks.{i}.attn.{part}_proj.{leaf}"] = chunk.contiguous()
                continue
            our_name = f"blocks.{i}.{_HF_LAYER[sub]}.{leaf}" if sub in _HF_LAYER else None
        if our_name is None:
            unexpected.append(hf_name)
        else:
            converted[our_name] = tensor
    mismatched = [f"{n} {tuple(t.shape)} (ours {tuple(ours[n].shape)})"
                  for n, t in converted.items() if n in ours and t.shape != ours[n].shape]
    unexpected += [n for n in converted if n not in ours]
    missing = [n for n in ours if n not in converted and n != "lm_head.weight"]   # the head is tied
    if mismatched:
        raise ValueError(f"Checkpoint {str(path)!r} has weights whose shapes differ from this model's "
                         f"(after transposing Conv1D weights):\n  " + "\n  ".join(mismatched))
    if missing or unexpected:
        raise ValueError(f"Checkpoint {str(path)!r} does not match GPT-2:\n"
                         f"  missing (expected, not in the checkpoint): {missing}\n"
                         f"  unexpected (in the checkpoint, not expected): {unexpected}")
    converted["lm_head.weight"] = converted["wte.weight"]
    return converted


def _check_tied_copy(tensor: torch.Tensor, hf_state: dict[str, torch.Tensor]) -> None:
    """A saved ``lm_head.weight`` must equal the token embedding, or tying them would change the model."""
    wte = hf_state.get("transformer.wte.weight", hf_state.get("wte.weight"))
    if wte is not None and not torch.equal(tensor, wte):
        raise ValueError("The checkpoint's lm_head.weight differs from wte.weight, but GPT-2 ties them "
                         "(the output head reuses the token embedding); this checkpoint is not a tied GPT-2.")


# --------------------------------------------------------------------------------------------------
# Sequence classification (Part 3)
# --------------------------------------------------------------------------------------------------

class GPTForSequenceClassification(nn.Module):
    """GPT + dropout + a linear classifier on the hidden state of the *last real token*.

    GPT is causal: only the last token has seen the whole text, so it plays the role of BERT's [CLS].
    Pad on the right: the last real token is found from ``attention_mask`` (1 = real token) if given,
    else from ``pad_id`` (the last position whose id differs from it), else it is position T - 1.
    Padding on the right changes nothing before it (causal attention), so extra padding leaves the logits
    as they are.
    """

    def __init__(self, config: GPTConfig, num_labels: int = 2, pad_id: int | None = None):
        super().__init__()
        if not is_int(num_labels) or num_labels <= 0:
            raise ValueError(f"`num_labels` should be a positive integer, but got {describe(num_labels)}.")
        if pad_id is not None and (not is_int(pad_id)
                                   or not 0 <= pad_id < config.vocab_size):
            raise ValueError(f"`pad_id` should be None or a token id in [0, {config.vocab_size - 1}], "
                             f"but got {describe(pad_id)}.")
        self.config, self.num_labels, self.pad_id = config, num_labels, pad_id
        self.gpt = GPT(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, num_labels)
        GPT._init_weights(self.classifier)

    def last_token_index(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) the position of each sequence's last real token."""
        B, T = input_ids.shape
        positions = torch.arange(T, device=input_ids.device).expand(B, T)             # (B, T)
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
                raise ValueError(f"`attention_mask` should have the shape of input_ids (B, T) = {(B, T)}, "
                                 f"but got {describe(attention_mask)}.")
            real = attention_mask.bool()                                         # (B, T)
            lengths = real.sum(dim=1)                                            # (B,)
            if (lengths == 0).any():
                raise ValueError("Every sequence needs at least one real token, but attention_mask has a row "
                                 "of zeros.")
            if not torch.equal(real, positions < lengths[:, None]):
                raise ValueError("GPTForSequenceClassification expects padding on the right (attention_mask "
                                 "rows like 1 1 1 0 0), but got padding elsewhere, e.g. on the left.")
            return lengths - 1
        if self.pad_id is not None:
            real = input_ids != self.pad_id                                            # (B, T)
            return torch.where(real, positions, -1).amax(dim=1).clamp(min=0)     # all padding: position 0
        return torch.full((B,), T - 1, device=input_ids.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> ClassificationOutput:
        """input_ids (B, T) token ids, padded on the right -> ClassificationOutput(logits (B, num_labels), loss)."""
        h = self.gpt.hidden_states(input_ids)                                          # (B, T, C)
        last = self.last_token_index(input_ids, attention_mask)                        # (B,)
        features = h[torch.arange(input_ids.shape[0], device=input_ids.device), last]        # (B, C)
        logits = self.classifier(self.dropout(features))                         # (B, num_labels)
        loss = None
        if labels is not None:
            expect_class_labels(labels, (input_ids.shape[0],), "labels", self.num_labels, "(B,)")
            loss = F.cross_entropy(logits, labels)
        return ClassificationOutput(logits, loss)

    @classmethod
    def from_gpt(cls, gpt: GPT, num_labels: int = 2, pad_id: int | None = None) -> "GPTForSequenceClassification":
        """A classifier whose body is a copy of the (pretrained) ``gpt``; the new head starts random."""
        if not isinstance(gpt, GPT):
            raise TypeError(f"`from_gpt` expects a GPT model, but got {describe(gpt)}.")
        model = cls(gpt.config, num_labels, pad_id)
        model.gpt.load_state_dict(gpt.state_dict())
        return model.to(gpt.wte.weight.device)
