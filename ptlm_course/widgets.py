"""An interactive attention explorer for notebook 03 (ipywidgets + matplotlib, nothing else).

Each word gets a fixed random vector (seeded by the word itself, so the same word always gets the
same vector), queries = keys = those vectors plus a little position signal. Nothing is trained: the
point is to see how the scale, the temperature and the causal mask change the weights.
"""
from __future__ import annotations

import math
import zlib

import matplotlib.pyplot as plt
import torch

from .attention import causal_mask, scaled_dot_product_attention
from .plotting import plot_attention

__all__ = ["AttentionExplorer", "build_attention_explorer", "attention_explorer", "word_vectors"]

SENTENCES = (
    "the cat sat on the mat because the mat was warm",
    "to be or not to be that is the question",
    "the king and the queen spoke to the king s son",
)
MISSING = ("The attention explorer needs ipywidgets (pip install ipywidgets); "
           "the rest of the notebook works without it.")


def word_vectors(words: list[str], d_k: int) -> torch.Tensor:
    """(T, d_k): one fixed random vector per word (same word, same vector) plus a small position signal."""
    rows = []
    for position, word in enumerate(words):
        g = torch.Generator().manual_seed(zlib.crc32(word.encode()))   # stable across runs and machines
        position_signal = 0.3 * torch.randn(d_k, generator=torch.Generator().manual_seed(10_000 + position))
        rows.append(torch.randn(d_k, generator=g) + position_signal)
    return torch.stack(rows)                                           # (T, d_k)


def _import_ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


class AttentionExplorer:
    """The explorer's controls, its output area and its current state (``weights``, ``state``)."""

    def __init__(self, sentences=SENTENCES):
        widgets = _import_ipywidgets()
        if widgets is None:
            raise ImportError(MISSING)
        self.sentence = widgets.Combobox(value=sentences[0], options=list(sentences), description="sentence",
                                         ensure_option=False, layout=widgets.Layout(width="520px"))
        self.d_k = widgets.IntSlider(value=64, min=4, max=512, step=4, description="d_k")
        self.temperature = widgets.FloatLogSlider(value=1.0, base=10, min=-1, max=1, step=0.05,
                                                  description="temperature")
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
        self.weights: torch.Tensor | None = None
        self.state: dict = {}
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
        top = self.weights.max(-1).values.mean().item()
        self.state = {"words": words, "d_k": self.d_k.value, "temperature": self.temperature.value,
                      "scaled": self.scaled.value, "causal": self.causal.value, "mean_top_weight": top}
        self.summary.value = (f"{len(words)} words · average largest weight per row: <b>{top:.2f}</b> "
                              "(1.00 = each word looks at one word only)")
        with self.output:
            from IPython.display import clear_output, display
            clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6.5, 5.5))
            plot_attention(self.weights, words, ax=ax, annotate=False,
                           title=f"d_k={self.d_k.value}, temperature={self.temperature.value:.2f}")
            display(fig)
            plt.close(fig)


def build_attention_explorer(sentences=SENTENCES) -> AttentionExplorer:
    """Build the explorer without showing it (``explorer.widget`` is what to display)."""
    return AttentionExplorer(sentences)


def attention_explorer(sentences=SENTENCES) -> AttentionExplorer | None:
    """Show the explorer in a notebook; prints a plain message instead when ipywidgets is missing."""
    if _import_ipywidgets() is None:
        print(MISSING)
        return None
    from IPython.display import display
    explorer = build_attention_explorer(sentences)
    display(explorer.widget)
    return explorer
