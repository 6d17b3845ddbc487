"""BART: the encoder–decoder Transformer (Lewis et al., 2019), as Hugging Face's ``BartForConditionalGeneration``.

The encoder is a stack of post-LN blocks that read the source with a padding mask. The decoder block has three
sub-layers, each followed by its residual add and a LayerNorm: causal self-attention over the target so far,
**cross-attention** whose queries come from the target and whose keys and values come from the encoder's output,
and the feed-forward network. Both stacks start with token + learned position embeddings (BART offsets the
position ids by 2) and a LayerNorm; the output head is tied to the shared token embedding, plus a bias.

    model = Bart(BartConfig(vocab_size=..., d_model=..., ...))
    logits = model(input_ids, attention_mask, decoder_input_ids).logits        # (B, T, V)

Training pairs use teacher forcing: ``decoder_input_ids = shift_right(labels)``. For generation the decoder
keeps a key/value cache of its self-attention (``model.new_kv_cache()``); the encoder runs once.
``from_pretrained`` loads a Hugging Face BART checkpoint directory; ``from_hf_state`` a state dict.
``model.cross_attention_weights()`` returns the decoder's cross-attention maps of the last call (for heatmaps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import KVCache, MultiHeadAttention, padding_mask
from .hf_checkpoint import read_hf_checkpoint
from .outputs import Seq2SeqOutput
from .transformer import FeedForward, TransformerBlock
from .validation import describe, expect_ids_in_vocab, expect_tensor

IGNORE_INDEX = -100
_POSITION_OFFSET = 2          # BART's learned positions start at row 2 of the table


@dataclass
class BartConfig:
    """BART's sizes; the defaults are facebook/bart-base."""
    vocab_size: int = 50265
    d_model: int = 768
    n_heads: int = 12
    d_ff: int = 3072
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    max_position_embeddings: int = 1024
    dropout: float = 0.1               # on embeddings and on each residual branch
    attention_dropout: float = 0.0     # on the attention weights
    activation_dropout: float = 0.0    # inside the feed-forward network
    layer_norm_eps: float = 1e-5
    scale_embedding: bool = False      # multiply token embeddings by sqrt(d_model)
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2
    decoder_start_token_id: int = 2
    init_std: float = 0.02             # weights start from N(0, init_std)

    # our name -> the name in a Hugging Face config.json
    HF_NAMES = {"vocab_size": "vocab_size", "d_model": "d_model", "n_heads": "encoder_attention_heads",
                "d_ff": "encoder_ffn_dim", "n_encoder_layers": "encoder_layers", "n_decoder_layers": "decoder_layers",
                "max_position_embeddings": "max_position_embeddings", "dropout": "dropout",
                "attention_dropout": "attention_dropout", "activation_dropout": "activation_dropout",
                "scale_embedding": "scale_embedding", "pad_token_id": "pad_token_id", "bos_token_id": "bos_token_id",
                "eos_token_id": "eos_token_id", "decoder_start_token_id": "decoder_start_token_id",
                "init_std": "init_std"}

    @classmethod
    def from_hf_config(cls, hf: dict) -> "BartConfig":
        """Our config from a Hugging Face BART ``config.json``; sizes we do not support raise."""
        for ours, theirs in (("encoder_attention_heads", "decoder_attention_heads"),
                             ("encoder_ffn_dim", "decoder_ffn_dim")):
            if ours in hf and theirs in hf and hf[ours] != hf[theirs]:
                raise ValueError(f"This BART needs {ours} == {theirs}, but the checkpoint has {hf[ours]} and "
                                 f"{hf[theirs]}.")
        if hf.get("activation_function", "gelu") != "gelu":
            raise ValueError(f"This BART uses GELU, but the checkpoint's activation is {hf['activation_function']!r}.")
        if hf.get("normalize_before", False) or hf.get("add_final_layer_norm", False):
            raise ValueError("This BART is post-LN (facebook/bart-*); the checkpoint is a pre-LN variant (mBART).")
        return cls(**{ours: hf[theirs] for ours, theirs in cls.HF_NAMES.items() if theirs in hf})


def shift_right(labels: torch.Tensor, decoder_start_token_id: int, pad_token_id: int) -> torch.Tensor:
    """Teacher forcing: the decoder reads the target shifted one step right, starting with the start token.
    (B, T) -> (B, T); ignored labels (-100) become padding."""
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_token_id)


class BartEmbeddings(nn.Module):
    """Token embedding (shared) + learned positions (offset by 2), then a LayerNorm and dropout."""

    def __init__(self, config: BartConfig, tokens: nn.Embedding):
        super().__init__()
        self.tokens = tokens
        self.positions = nn.Embedding(config.max_position_embeddings + _POSITION_OFFSET, config.d_model)
        self.ln = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0

    def forward(self, ids: torch.Tensor, past: int = 0) -> torch.Tensor:
        """ids (B, T), the first at position ``past`` -> (B, T, C)."""
        positions = torch.arange(past, past + ids.shape[1], device=ids.device) + _POSITION_OFFSET   # (T,)
        return self.dropout(self.ln(self.tokens(ids) * self.scale + self.positions(positions)))


class DecoderBlock(nn.Module):
    """Post-LN decoder block: causal self-attention, cross-attention to the encoder, feed-forward network."""

    def __init__(self, config: BartConfig):
        super().__init__()
        C, eps = config.d_model, config.layer_norm_eps
        self.self_attn = MultiHeadAttention(C, config.n_heads, dropout=config.attention_dropout)
        self.ln1 = nn.LayerNorm(C, eps=eps)
        self.cross_attn = MultiHeadAttention(C, config.n_heads, dropout=config.attention_dropout)
        self.ln2 = nn.LayerNorm(C, eps=eps)
        self.ffn = FeedForward(C, config.d_ff, dropout=config.activation_dropout, activation="gelu")
        self.ln3 = nn.LayerNorm(C, eps=eps)
        self.dropout = nn.Dropout(config.dropout)
        self.cross_weights: torch.Tensor | None = None     # (B, H, T, S) after each call, for plotting

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        """x (B, T, C) target states; memory (B, S, C) the encoder's output; memory_mask (B, 1, 1, S)."""
        attended, _ = self.self_attn(x, causal=True, kv_cache=kv_cache)                  # (B, T, C)
        x = self.ln1(x + self.dropout(attended))
        attended, weights = self.cross_attn(x, context=memory, mask=memory_mask)        # (B, T, C), (B, H, T, S)
        self.cross_weights = None if weights is None else weights.detach()
        x = self.ln2(x + self.dropout(attended))
        return self.ln3(x + self.dropout(self.ffn(x)))                                   # (B, T, C)


class Bart(nn.Module):
    """BART for conditional generation: encoder, decoder, and the tied output head (+ ``final_logits_bias``)."""

    def __init__(self, config: BartConfig):
        super().__init__()
        self.config = c = config
        self.shared = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_token_id)
        self.encoder_embeddings = BartEmbeddings(c, self.shared)
        self.encoder = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_heads, c.d_ff, dropout=c.dropout, norm_first=False,
                             activation="gelu", layer_norm_eps=c.layer_norm_eps,
                             attention_dropout=c.attention_dropout, ffn_dropout=c.activation_dropout)
            for _ in range(c.n_encoder_layers))
        self.decoder_embeddings = BartEmbeddings(c, self.shared)
        self.decoder = nn.ModuleList(DecoderBlock(c) for _ in range(c.n_decoder_layers))
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.shared.weight               # tied: one (V, C) tensor
        self.register_buffer("final_logits_bias", torch.zeros(1, c.vocab_size))   # (1, V) as in Hugging Face
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids (B, S) -> the encoder's output (B, S, C) and the source mask (B, 1, 1, S)."""
        self._check_ids(input_ids, "input_ids")
        mask = padding_mask(torch.ones_like(input_ids) if attention_mask is None else attention_mask)
        if mask.shape[-1] != input_ids.shape[1]:
            raise ValueError(f"`attention_mask` should have the shape of `input_ids` {tuple(input_ids.shape)}, "
                             f"but got {describe(attention_mask)}.")
        x = self.encoder_embeddings(input_ids)                   # (B, S, C)
        for block in self.encoder:
            x = block(x, mask=mask)
        return x, mask

    def decode(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
               kv_cache: list[KVCache] | None = None) -> torch.Tensor:
        """The target so far (B, T) -> logits (B, T, V); with a cache, only the new positions are fed."""
        self._check_ids(decoder_input_ids, "decoder_input_ids")
        past = 0 if kv_cache is None else kv_cache[0].length
        if past + decoder_input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"The decoder sees at most {self.config.max_position_embeddings} positions, but got "
                             f"{past} cached + {decoder_input_ids.shape[1]} new.")
        x = self.decoder_embeddings(decoder_input_ids, past)      # (B, T, C)
        caches = [None] * len(self.decoder) if kv_cache is None else kv_cache
        for block, cache in zip(self.decoder, caches):
            x = block(x, memory, memory_mask, kv_cache=cache)
        return self.lm_head(x) + self.final_logits_bias          # (B, T, V)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None
                ) -> Seq2SeqOutput:
        """Teacher forcing: logits (B, T, V) for every target position; the loss when ``labels`` (B, T) are given
        (``decoder_input_ids`` then default to ``shift_right(labels)``)."""
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("Pass `decoder_input_ids` (B, T), or `labels` to build them with shift_right.")
            decoder_input_ids = shift_right(labels, self.config.decoder_start_token_id, self.config.pad_token_id)
        memory, memory_mask = self.encode(input_ids, attention_mask)
        logits = self.decode(decoder_input_ids, memory, memory_mask)
        loss = None
        if labels is not None:
            expect_tensor(labels, "labels", 2, "(B, T)")
            if labels.shape != decoder_input_ids.shape:
                raise ValueError(f"`labels` should have the shape of `decoder_input_ids` "
                                 f"{tuple(decoder_input_ids.shape)}, but got {tuple(labels.shape)}.")
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        return Seq2SeqOutput(logits=logits, loss=loss, encoder_last_hidden_state=memory)

    def cross_attention_weights(self) -> torch.Tensor:
        """The decoder's cross-attention weights of the last ``forward``/``decode`` call: (L, B, H, T, S), one
        (T, S) map per layer and head; row t says where target position t read the source."""
        weights = [block.cross_weights for block in self.decoder]
        if any(w is None for w in weights):
            raise ValueError("No cross-attention weights are stored: run the model (forward or decode) first, "
                             "without fused attention (it never computes the weights).")
        return torch.stack(weights)                                  # (L, B, H, T, S)

    def new_kv_cache(self) -> list[KVCache]:
        """An empty self-attention cache for the decoder: one per block."""
        return [KVCache() for _ in self.decoder]

    def _check_ids(self, ids, name: str) -> None:
        expect_tensor(ids, name, 2, "(B, T)")
        expect_ids_in_vocab(ids, self.config.vocab_size, name)
        if ids.shape[1] == 0:
            raise ValueError(f"`{name}` should hold at least one token, but got shape {tuple(ids.shape)}.")
        if name == "input_ids" and ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"The encoder sees at most {self.config.max_position_embeddings} positions, but "
                             f"`input_ids` has {ids.shape[1]}.")

    # --- Hugging Face checkpoints -------------------------------------------------------------------------

    @classmethod
    def from_hf_state(cls, config: BartConfig, hf_state: dict[str, torch.Tensor]) -> "Bart":
        """Our BART with the weights of a Hugging Face ``BartForConditionalGeneration`` state dict."""
        model = cls(config)
        ours = model.state_dict()
        loaded, unexpected = set(), []
        for hf_name, tensor in hf_state.items():
            name = _hf_to_ours(hf_name)
            if name is None:
                continue
            if name not in ours:
                unexpected.append(hf_name)
                continue
            if ours[name].shape != tensor.shape:
                raise ValueError(f"{hf_name}: the checkpoint has shape {tuple(tensor.shape)}, ours "
                                 f"{tuple(ours[name].shape)}.")
            ours[name] = tensor
            loaded.add(name)
        missing = sorted(set(ours) - loaded - {"lm_head.weight", "encoder_embeddings.tokens.weight",
                                               "decoder_embeddings.tokens.weight"})
        if missing or unexpected:
            raise ValueError(f"The checkpoint does not match this BART: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}.")
        model.load_state_dict(ours)
        return model.eval()

    @classmethod
    def from_pretrained(cls, path) -> "Bart":
        """Load a Hugging Face BART checkpoint directory (config.json + model.safetensors or pytorch_model.bin)."""
        hf, state = read_hf_checkpoint(path)
        return cls.from_hf_state(BartConfig.from_hf_config(hf), state)


_HF_LAYER = {"self_attn.": "attn.", "self_attn_layer_norm.": "ln1.", "fc1.": "ffn.fc1.", "fc2.": "ffn.fc2.",
             "final_layer_norm.": "ln2."}
_HF_DECODER_LAYER = {"self_attn.": "self_attn.", "self_attn_layer_norm.": "ln1.", "encoder_attn.": "cross_attn.",
                     "encoder_attn_layer_norm.": "ln2.", "fc1.": "ffn.fc1.", "fc2.": "ffn.fc2.",
                     "final_layer_norm.": "ln3."}


def _hf_to_ours(hf_name: str) -> str | None:
    """A Hugging Face BART parameter name -> ours (None for copies of the shared embedding)."""
    name = hf_name.removeprefix("model.")
    if name in ("shared.weight", "final_logits_bias"):
        return name
    if name in ("lm_head.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        return None                                          # tied to shared.weight
    for side in ("encoder", "decoder"):
        if name.startswith(f"{side}.embed_positions."):
            return f"{side}_embeddings.positions." + name.rsplit(".", 1)[1]
        if name.startswith(f"{side}.layernorm_embedding."):
            return f"{side}_embeddings.ln." + name.rsplit(".", 1)[1]
        if name.startswith(f"{side}.layers."):
            index, rest = name[len(f"{side}.layers."):].split(".", 1)
            table = _HF_LAYER if side == "encoder" else _HF_DECODER_LAYER
            for theirs, ours in sorted(table.items(), key=lambda kv: -len(kv[0])):   # longest prefix first
                if rest.startswith(theirs):
                    return f"{side}.{index}.{ours}{rest[len(theirs):]}"
    return hf_name                                           # unknown: reported as unexpected

