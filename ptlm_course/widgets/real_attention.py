"""A real model's attention (our GPT and BERTs, the pretrained MiniLM): :func:`model_attention` reads every
layer's weights with forward hooks; the explorer shows one layer and head as a heatmap and as lines from
each token to the tokens it attends to."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..plotting import plot_attention
from ._common import _Displayable, _draw, _html_escape, _require_ipywidgets, _show_or_explain, _tag, _visible

@torch.no_grad()
def model_attention(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Every layer's attention weights for one sequence: (L, H, T, T), read with forward hooks.

    Works for any model built from :class:`~ptlm_course.attention.MultiHeadAttention` (GPT, BERT,
    BertForPreTraining, BertForSequenceClassification, MiniLM). Modules set to PyTorch's fused kernel
    (which never forms the weights) are switched to the readable path for this call and back.
    """
    from ..attention import MultiHeadAttention

    attentions = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not attentions:
        raise TypeError(f"`model` should contain MultiHeadAttention layers (GPT, BERT, ...), "
                        f"but {type(model).__name__} has none.")
    captured: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _args, out: captured.append(out[1].detach())) for m in attentions]
    fused = [m.fused for m in attentions]
    was_training = model.training
    try:
        for m in attentions:
            m.fused = False
        model.eval()
        model(input_ids.to(next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        for m, f in zip(attentions, fused):
            m.fused = f
        model.train(was_training)
    return torch.stack([w[0].float().cpu() for w in captured])              # (L, H, T, T)


def _token_strings(tokenizer, ids: list[int]) -> list[str]:
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return tokenizer.convert_ids_to_tokens(ids)
    if hasattr(tokenizer, "token_strings"):
        return tokenizer.token_strings(ids)
    return [tokenizer.decode([i]) for i in ids]


class ModelAttentionExplorer(_Displayable):
    """Pick a sentence, a layer and a head of a model and see its attention as a heatmap and as lines from
    each token (left) to the tokens it attends to (right). Selecting a token (``token``) highlights its row
    and its lines and lists what it attends to most.

    ``model``: our GPT, BERT, BertForPreTraining, BertForSequenceClassification or the real MiniLM
    (``load_minilm()``); ``tokenizer``: its tokenizer (Char/BPE for GPT, WordPiece for BERTs; BERT inputs get
    [CLS] ... [SEP]). Controls: ``sentence``, ``layer``, ``head``, ``token`` (-1 = none). ``state`` holds
    ``tokens``, ``layer``, ``head``, ``token``, ``weights`` (T, T) of the shown head, ``top`` (the selected
    token's up to 5 largest non-zero weights, as (token, weight)). ``figure`` is the last drawn figure;
    ``update()`` redraws.
    """
    what = "attention explorer"

    def __init__(self, model, tokenizer, sentences, max_tokens: int = 24):
        widgets = _require_ipywidgets("attention explorer")
        if isinstance(sentences, str) or not sentences or not all(isinstance(s, str) for s in sentences):
            raise ValueError(f"`sentences` should be a non-empty list of strings, but got {sentences!r}.")
        self.model, self.tokenizer, self.max_tokens = model, tokenizer, max_tokens
        self._cache: dict[str, tuple[list[str], torch.Tensor]] = {}
        tokens, weights = self._attention(sentences[0])
        L, H = weights.shape[:2]
        self.sentence = widgets.Dropdown(options=list(sentences), value=sentences[0], description="sentence",
                                         layout=widgets.Layout(width="640px"))
        self.layer = widgets.IntSlider(value=0, min=0, max=L - 1, description="layer", continuous_update=False)
        self.head = widgets.IntSlider(value=0, min=0, max=H - 1, description="head", continuous_update=False)
        self.token = widgets.Dropdown(description="token", layout=widgets.Layout(width="320px"))
        self._set_token_options(tokens)
        self.summary = widgets.HTML()
        self.output = widgets.Output()
        self.sentence.observe(self._on_sentence, names="value")
        for control in (self.layer, self.head, self.token):
            control.observe(lambda _change: self.update(), names="value")
        self.widget = widgets.VBox([self.sentence, widgets.HBox([self.layer, self.head]), self.token,
                                    self.summary, self.output])
        _tag(self.widget, "model-attention-explorer")
        self.state: dict = {}
        self.figure = None
        self.update()

    def _attention(self, sentence: str) -> tuple[list[str], torch.Tensor]:
        """Tokens and (L, H, T, T) weights of a sentence (computed once per sentence)."""
        if sentence not in self._cache:
            ids = self.tokenizer.encode(sentence)
            limit = getattr(getattr(self.model, "config", None), "block_size", None)
            ids = ids[:min(self.max_tokens, limit or self.max_tokens)]
            if not ids:
                raise ValueError(f"the sentence {sentence!r} has no tokens.")
            self._cache[sentence] = (_token_strings(self.tokenizer, ids),
                                     model_attention(self.model, torch.tensor([ids])))
        return self._cache[sentence]

    def _set_token_options(self, tokens: list[str]) -> None:
        self.token.options = [("(none)", -1)] + [(f"{i}: {_visible(t)}", i) for i, t in enumerate(tokens)]
        self.token.value = -1

    def _on_sentence(self, _change) -> None:
        tokens, _ = self._attention(self.sentence.value)
        with self.token.hold_trait_notifications():
            self._set_token_options(tokens)
        self.update()

    def update(self) -> None:
        tokens, all_weights = self._attention(self.sentence.value)
        weights = all_weights[self.layer.value, self.head.value]             # (T, T)
        selected = self.token.value if self.token.value is not None and self.token.value < len(tokens) else -1
        top = []
        if selected >= 0:
            values, order = weights[selected].sort(descending=True)
            top = [(tokens[j], v) for j, v in zip(order.tolist()[:5], values.tolist()[:5]) if v > 0]
        self.state = {"sentence": self.sentence.value, "tokens": tokens, "layer": self.layer.value,
                      "head": self.head.value, "token": selected, "weights": weights, "top": top}
        self.summary.value = ("Select a token to see what it attends to." if selected < 0 else
                              f"<b>{_html_escape(_visible(tokens[selected]))}</b> attends most to: " +
                              ", ".join(f"{_html_escape(_visible(t))} {w:.2f}" for t, w in top))
        self.figure = self._plot(tokens, weights, selected)
        _draw(self.output, self.figure)

    def _plot(self, tokens: list[str], weights: torch.Tensor, selected: int):
        labels = [_visible(t) for t in tokens]
        T = len(tokens)
        fig, (ax_map, ax_lines) = plt.subplots(1, 2, figsize=(11, 0.28 * T + 2.5),
                                               gridspec_kw={"width_ratios": [1.3, 1]})
        plot_attention(weights, labels, ax=ax_map, annotate=False,
                       title=f"layer {self.layer.value}, head {self.head.value}")
        if selected >= 0:
            ax_map.add_patch(plt.Rectangle((-0.5, selected - 0.5), T, 1, fill=False, edgecolor="red", linewidth=2))
        ys = [T - 1 - i for i in range(T)]                                  # first token on top
        strength = weights / weights.max(-1, keepdim=True).values.clamp(min=1e-9)   # (T, T) 1 = row's largest
        for i in range(T):
            for j in range(T):
                w = strength[i, j].item()
                if w < 0.1:                                                # skip the faintest lines
                    continue
                highlight = selected < 0 or i == selected
                ax_lines.plot([0, 1], [ys[i], ys[j]], color="tab:red" if selected == i else "tab:blue",
                              alpha=w * (0.6 if highlight else 0.08), linewidth=0.5 + 2.5 * w)
        for i, label in enumerate(labels):
            weight = "bold" if i == selected else "normal"
            ax_lines.text(-0.02, ys[i], label, ha="right", va="center", fontsize=9, fontweight=weight)
            ax_lines.text(1.02, ys[i], label, ha="left", va="center", fontsize=9)
        ax_lines.set(xlim=(-0.35, 1.35), ylim=(-1, T))
        ax_lines.set_title("query (left) → key (right)\nline strength: weight / the row's largest", fontsize=10)
        ax_lines.axis("off")
        fig.tight_layout()
        return fig


def build_model_attention_explorer(model, tokenizer, sentences) -> ModelAttentionExplorer:
    """Build the model attention explorer without showing it (``explorer.widget`` is what to display)."""
    return ModelAttentionExplorer(model, tokenizer, sentences)


def model_attention_explorer(model, tokenizer, sentences) -> ModelAttentionExplorer | None:
    """Show the attention of ``model`` on ``sentences``; prints a message and returns None without ipywidgets."""
    return _show_or_explain("attention explorer", lambda: ModelAttentionExplorer(model, tokenizer, sentences))
