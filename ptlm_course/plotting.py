"""Plots for attention weights: one heatmap, or a grid with one heatmap per head."""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .validation import describe

__all__ = ["plot_attention", "plot_attention_heads"]


def _as_array(weights, ndim: int, layout: str) -> np.ndarray:
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().float().cpu().numpy()
    if not isinstance(weights, np.ndarray):
        raise TypeError(f"`weights` should be a tensor or array {layout}, but got {describe(weights)}.")
    if weights.ndim != ndim:
        raise ValueError(f"`weights` should have {ndim} dimensions {layout}, but got shape {weights.shape}.")
    return weights


def _check_tokens(tokens, size: int, name: str, meaning: str) -> list[str]:
    tokens = [str(t) for t in tokens]
    if len(tokens) != size:
        raise ValueError(f"`{name}` should have one label per {meaning} ({size}), but it has {len(tokens)}.")
    return tokens


def plot_attention(weights, query_tokens: Sequence[str], key_tokens: Sequence[str] | None = None,
                   ax: plt.Axes | None = None, title: str | None = None, annotate: bool | None = None) -> plt.Axes:
    """Heatmap of (T_q, T_k) weights: row = query (who looks), column = key (who is looked at).

    ``key_tokens`` defaults to ``query_tokens`` (self-attention). Values are written in the cells
    when the map is small enough to read them (or when ``annotate=True``).
    """
    w = _as_array(weights, 2, "(T_q, T_k)")                  # (T_q, T_k)
    query_tokens = _check_tokens(query_tokens, w.shape[0], "query_tokens", "row (query)")
    key_tokens = _check_tokens(query_tokens if key_tokens is None else key_tokens, w.shape[1],
                               "key_tokens", "column (key)")
    if ax is None:
        size = max(3.0, 0.45 * max(w.shape) + 1.5)
        _, ax = plt.subplots(figsize=(size + 0.8, size))
    image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0)   # weights lie in [0, 1]
    ax.set_xticks(range(len(key_tokens)), key_tokens, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(query_tokens)), query_tokens, fontsize=9)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if annotate or (annotate is None and w.size <= 100):
        for i, j in np.ndindex(*w.shape):
            ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if w[i, j] > 0.6 else "white")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_attention_heads(weights, tokens: Sequence[str], key_tokens: Sequence[str] | None = None,
                         ncols: int = 4, title: str | None = None) -> plt.Figure:
    """A grid of heatmaps, one per head, from (H, T, S) weights (take one batch element first)."""
    w = _as_array(weights, 3, "(H, T, S)")                   # (H, T, S)
    tokens = _check_tokens(tokens, w.shape[1], "tokens", "row (query)")
    key_tokens = _check_tokens(tokens if key_tokens is None else key_tokens, w.shape[2], "key_tokens", "column (key)")
    H = w.shape[0]
    ncols = min(ncols, H)
    nrows = math.ceil(H / ncols)
    cell = max(2.2, 0.3 * max(w.shape[1:]) + 1.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        ax.imshow(w[h], cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"head {h}", fontsize=10)
        ax.set_xticks(range(len(key_tokens)), key_tokens if h + ncols >= H else [],   # labels on the bottom row
                      rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens if h % ncols == 0 else [], fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
