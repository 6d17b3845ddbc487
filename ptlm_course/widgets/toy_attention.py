"""Notebook 03's attention explorer: toy attention on a sentence, with the scale, the temperature and the
causal mask as controls.

Each word gets a fixed random vector (seeded by the word itself, so the same word always gets the same
vector), queries = keys = those vectors plus a little position signal. Nothing is trained: the point is to
see how the scale, the temperature and the causal mask change the weights.
"""
from __future__ import annotations

import math
import zlib

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..attention import causal_mask, scaled_dot_product_attention
from ..plotting import plot_attention
from ._common import LABELS, _Displayable, _draw, _require_ipywidgets, _show_or_explain, _tag

SENTENCES = (
    "the cat sat on the mat because the mat was warm",
    "to be or not to be that is the question",
    "the king and the queen spoke to the king s son",
)


def word_vectors(words: list[str], d_k: int) -> torch.Tensor:
    """(T, d_k): one fixed random vector per word (same word, same vector) plus a small position signal."""
    rows = []
    for position, word in enumerate(words):
        g = torch.Generator().manual_seed(zlib.crc32(word.encode()))   # stable across runs and machines
        position_signal = 0.3 * torch.randn(d_k, generator=torch.Generator().manual_seed(10_000 + position))
        rows.append(torch.randn(d_k, generator=g) + position_signal)
    return torch.stack(rows)                                           # (T, d_k)



class AttentionExplorer(_Displayable):
    """The explorer's controls, its output area and its current state (``weights``, ``state``)."""
    what = "attention explorer"

    def __init__(self, sentences=SENTENCES):
        widgets = _require_ipywidgets("attention explorer")
        self.sentence = widgets.Combobox(value=sentences[0], options=list(sentences), description="sentence",
                                         ensure_option=False, layout=widgets.Layout(width="520px"), style=LABELS)
        self.d_k = widgets.IntSlider(value=64, min=4, max=512, step=4, description="d_k", style=LABELS)
        self.temperature = widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05,
                                                  description="temperature", style=LABELS)
        self.scaled = widgets.Checkbox(value=True, description="divide by sqrt(d_k)")
        self.causal = widgets.Checkbox(value=False, description="causal mask")
        self.summary = widgets.HTML()
        self.output = widgets.Output()
        controls = [self.sentence, self.d_k, self.temperature, self.scaled, self.causal]
        for control in controls:
            control.observe(lambda _change: self.update(), names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.sentence]), widgets.HBox([self.d_k, self.temperature]),
            widgets.HBox([self.scaled, self.causal]), self.summary, self.output,
        ])
        _tag(self.widget, "attention-explorer")
        self.weights: torch.Tensor | None = None
        self.state: dict = {}
        self.figure = None
        self.update()

    def compute(self) -> tuple[list[str], torch.Tensor]:
        """The words and their (T, T) attention weights for the current settings."""
        words = self.sentence.value.lower().split()[:16] or ["(empty)"]
        x = word_vectors(words, self.d_k.value)                        # (T, d_k)
        scale = (1 / math.sqrt(self.d_k.value) if self.scaled.value else 1.0) / self.temperature.value
        mask = causal_mask(len(words)) if self.causal.value else None
        _, weights = scaled_dot_product_attention(x, x, x, mask=mask, scale=scale)   # (T, T)
        return words, weights

    def update(self) -> None:
        words, self.weights = self.compute()
        T = len(words)
        top = self.weights.max(-1).values.mean().item()
        blocked = T * (T - 1) // 2 if self.causal.value else 0           # pairs (query, later key) masked out
        self.state = {"words": words, "d_k": self.d_k.value, "temperature": self.temperature.value,
                      "scaled": self.scaled.value, "causal": self.causal.value, "mean_top_weight": top,
                      "blocked_pairs": blocked}
        mask_note = (f" · causal mask: {blocked} of {T * T} (query, key) pairs blocked, shown grey"
                     if self.causal.value else "")
        self.summary.value = (f"{T} words · average largest weight per row: <b>{top:.2f}</b> "
                              f"(1.00 = each word looks at one word only){mask_note}")
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        plot_attention(self.weights, words, ax=ax, annotate=False,
                       title=f"d_k={self.d_k.value}, temperature={self.temperature.value:.2f}"
                             + (", causal" if self.causal.value else ""))
        if self.causal.value:            # the mask is visible even when the weights barely change (no scaling)
            future = torch.ones(T, T, dtype=torch.bool).triu(1).numpy()    # (T, T) True = key after query
            overlay = np.zeros((T, T, 4))
            overlay[future] = (0.82, 0.82, 0.82, 1.0)                         # opaque light grey
            ax.imshow(overlay)
            for i, j in zip(*future.nonzero()):
                ax.text(j, i, "×", ha="center", va="center", fontsize=7, color="#777")
        self.figure = fig
        _draw(self.output, fig)


def build_attention_explorer(sentences=SENTENCES) -> AttentionExplorer:
    """Build the explorer without showing it (``explorer.widget`` is what to display)."""
    return AttentionExplorer(sentences)


def attention_explorer(sentences=SENTENCES) -> AttentionExplorer | None:
    """Show the explorer in a notebook; prints a plain message instead when ipywidgets is missing."""
    return _show_or_explain("attention explorer", lambda: AttentionExplorer(sentences))
