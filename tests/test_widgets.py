"""The attention explorer reacts to its controls, and degrades to a message without ipywidgets."""
import sys

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from ptlm_course import widgets  # noqa: E402
from ptlm_course.plotting import plot_attention, plot_attention_heads  # noqa: E402


def test_controls_change_the_view(capsys):
    explorer = widgets.build_attention_explorer()
    words = explorer.state["words"]
    assert explorer.weights.shape == (len(words), len(words))
    assert not explorer.state["causal"] and explorer.weights.triu(1).sum() > 0

    explorer.causal.value = True                           # moving a control updates the view
    assert explorer.state["causal"] and explorer.weights.triu(1).abs().max() == 0

    sharp = explorer.state["mean_top_weight"]
    explorer.temperature.value = 10.0                      # hotter = flatter weights
    assert explorer.state["mean_top_weight"] < sharp

    explorer.temperature.value = 1.0
    explorer.scaled.value = False                          # no 1/sqrt(d_k): nearly one-hot rows
    assert explorer.state["mean_top_weight"] > 0.95
    explorer.sentence.value = "a b a"
    assert explorer.state["words"] == ["a", "b", "a"]
    assert "average largest weight" in explorer.summary.value


def test_explorer_without_ipywidgets(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)   # makes `import ipywidgets` fail
    assert widgets.attention_explorer() is None
    assert "needs ipywidgets" in capsys.readouterr().out
    with pytest.raises(ImportError, match="needs ipywidgets"):
        widgets.build_attention_explorer()


def test_word_vectors_are_stable_per_word():
    v = widgets.word_vectors(["the", "cat", "the"], 16)
    assert v.shape == (3, 16)
    w = widgets.word_vectors(["dog", "x", "dog"], 16)
    assert torch.allclose(v[0] - v[2], w[0] - w[2])        # same word: only the position signal differs
    assert not torch.allclose(v[0], w[0])                  # different words: different vectors
    assert torch.equal(v, widgets.word_vectors(["the", "cat", "the"], 16))


def test_plots_check_their_labels():
    weights = torch.softmax(torch.randn(3, 4), -1)
    ax = plot_attention(weights, ["a", "b", "c"], ["w", "x", "y", "z"], title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["w", "x", "y", "z"]
    with pytest.raises(ValueError, match=r"one label per column \(key\) \(4\), but it has 3"):
        plot_attention(weights, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"3 dimensions \(H, T, S\)"):
        plot_attention_heads(weights, ["a", "b", "c"])
    fig = plot_attention_heads(torch.softmax(torch.randn(5, 3, 3), -1), ["a", "b", "c"], ncols=2)
    assert sum(ax.get_visible() and ax.axison for ax in fig.axes) == 5
