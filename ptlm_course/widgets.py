"""Interactive widgets for the notebooks (ipywidgets + matplotlib only: they render in JupyterLab,
Jupyter Notebook, Colab and VS Code, no front-end extension needed).

Each widget is an object with its controls as attributes, a ``state`` dict describing what it shows,
``widget`` (what to display) and ``update()``; the ``xxx(...)`` functions build and display one and,
without ipywidgets, print why and return None.

    attention_explorer(sentences=SENTENCES)                       notebook 03: toy attention, scale, mask
    masking_explorer(tokenizer, model=None, sentences=None, seed=0)        BERT's 80/10/10 masking + NSP pairs
    model_attention_explorer(model, tokenizer, sentences)         a real model's attention: layer, head, token
    sampling_playground(model, encode, decode, prompt="ROMEO:\n")  temperature, top-k, top-p, next-token bars
    TrainingDashboard(total_steps=None, every=None, mode="auto")  train(..., callbacks=[dashboard])

The notebook 03 explorer: each word gets a fixed random vector (seeded by the word itself, so the same
word always gets the same vector), queries = keys = those vectors plus a little position signal. Nothing is trained: the
point is to see how the scale, the temperature and the causal mask change the weights.
"""
from __future__ import annotations

import math
import os
import sys
import zlib

import matplotlib.pyplot as plt
import numpy as np
import torch

from .attention import causal_mask, scaled_dot_product_attention
from .plotting import plot_attention
from .validation import is_int

__all__ = [
    "AttentionExplorer", "build_attention_explorer", "attention_explorer", "word_vectors",
    "MaskingExplorer", "build_masking_explorer", "masking_explorer",
    "model_attention", "ModelAttentionExplorer", "build_model_attention_explorer", "model_attention_explorer",
    "SamplingPlayground", "build_sampling_playground", "sampling_playground",
    "widget_frontend", "TrainingDashboard",
]

SENTENCES = (
    "the cat sat on the mat because the mat was warm",
    "to be or not to be that is the question",
    "the king and the queen spoke to the king s son",
)
LABELS = {"description_width": "100px"}   # wide enough for "temperature", "top-k (0 off)": no cut labels
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


def _tag(widget, kind: str) -> None:
    """CSS classes ``ptlm-widget`` and ``ptlm-<kind>``: how the browser tests find each widget on the page."""
    widget.add_class("ptlm-widget")
    widget.add_class(f"ptlm-{kind}")


class _Displayable:
    """Shows ``self.widget`` once: a notebook cell ending in ``masking_explorer(...)`` displays the widget, not
    the object's repr (IPython calls ``_ipython_display_`` for the returned object).

    The displayed output carries a readable plain-text alternative (``fallback_text()``), shown wherever the
    live widget is not (a saved notebook before its cell is run, GitHub, the course website) instead of
    ipywidgets' ``VBox(children=(HBox(...`` repr."""
    widget = None
    _shown = False
    what = "explorer"                      # "Run this cell for the interactive <what>."

    def fallback_text(self) -> str:
        return f"Run this cell for the interactive {self.what} (it needs a running kernel)."

    def _ipython_display_(self) -> None:
        if not self._shown and self.widget is not None:
            from IPython.display import display

            bundle = self.widget._repr_mimebundle_()      # the widget view, plus ipywidgets' text/plain repr
            bundle["text/plain"] = self.fallback_text()
            display(bundle, raw=True)
            self._shown = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {', '.join(sorted(getattr(self, 'state', {})))}>"


def _import_ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


class AttentionExplorer(_Displayable):
    """The explorer's controls, its output area and its current state (``weights``, ``state``)."""
    what = "attention explorer"

    def __init__(self, sentences=SENTENCES):
        widgets = _import_ipywidgets()
        if widgets is None:
            raise ImportError(MISSING)
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
    if _import_ipywidgets() is None:
        print(MISSING)
        return None
    explorer = build_attention_explorer(sentences)
    explorer._ipython_display_()
    return explorer


# --------------------------------------------------------------------------------------------------
# Shared helpers for the Part 2 widgets
# --------------------------------------------------------------------------------------------------

def _require_ipywidgets(what: str):
    """ipywidgets, or an ImportError that says which widget needed it and that the rest still works."""
    widgets = _import_ipywidgets()
    if widgets is None:
        raise ImportError(f"The {what} needs ipywidgets (pip install ipywidgets); "
                          "the rest of the notebook works without it.")
    return widgets


def _show_or_explain(what: str, build):
    """Display ``build()``'s widget and return the object; without ipywidgets print why and return None."""
    if _import_ipywidgets() is None:
        print(f"The {what} needs ipywidgets (pip install ipywidgets); the rest of the notebook works without it.")
        return None
    explorer = build()
    explorer._ipython_display_()
    return explorer


def _draw(output, fig) -> None:
    """Replace what ``output`` shows by ``fig`` (a static PNG: renders in JupyterLab, Colab and VS Code)."""
    from IPython.display import clear_output, display

    with output:
        clear_output(wait=True)
        display(fig)
    plt.close(fig)


def _visible(token: str) -> str:
    """A token made readable on a plot: spaces and line breaks become visible symbols."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"


def _html_escape(text: str) -> str:
    import html

    return html.escape(text)


# --------------------------------------------------------------------------------------------------
# Masking explorer (notebook 07): BERT's 80/10/10 masking and next-sentence pairs
# --------------------------------------------------------------------------------------------------

MASKING_SENTENCES = (
    ("Now is the winter of our discontent made glorious summer by this sun of York.",
     "And all the clouds that lour'd upon our house in the deep bosom of the ocean buried."),
    ("But soft, what light through yonder window breaks?",
     "It is the east, and Juliet is the sun."),
    ("Friends, Romans, countrymen, lend me your ears.",
     "I come to bury Caesar, not to praise him."),
)
KIND_COLOURS = {"mask": "#ffd54f", "random": "#ef9a9a", "kept": "#a5d6a7", "special": "#e0e0e0", "plain": "#ffffff"}
KIND_NAMES = {"mask": "chosen → [MASK] (80%)", "random": "chosen → random token (10%)",
              "kept": "chosen → kept as is (10%)", "special": "special, never chosen", "plain": "not chosen"}


class MaskingExplorer(_Displayable):
    """Type a sentence pair and see BERT's pre-training input: ``[CLS] A [SEP] B [SEP]``, segment ids, and
    which tokens the 80/10/10 masking chose, replaced by [MASK], by a random token or kept. With a
    ``BertForPreTraining`` model it also shows the model's top guesses (with probabilities) at every chosen
    position and its next-sentence probability.

    Controls: ``sentence`` (A), ``next_sentence`` (B when the pair is real), ``pair`` ("IsNext" or
    "NotNext": B is then a sentence from another pair), ``mask_prob`` and ``seed`` (a new draw).
    ``state`` holds ``tokens``, ``input_tokens`` (what the model reads), ``kinds`` (one of ``mask``,
    ``random``, ``kept``, ``special``, ``plain`` per token), ``token_type_ids``, ``is_next``,
    ``text_b``, ``chosen`` (positions), ``guesses`` ({position: [(token, probability), ...]}) and
    ``nsp_is_next_prob``. ``view`` (HTML) shows it all; ``update()`` recomputes.
    """
    what = "masking explorer"

    def __init__(self, tokenizer, model=None, sentences=None, seed: int = 0, max_length: int = 64, top: int = 5):
        widgets = _require_ipywidgets("masking explorer")
        for name in ("encode_with_types", "convert_ids_to_tokens", "special_ids", "mask_id", "vocab_size"):
            if not hasattr(tokenizer, name):
                raise TypeError(f"`tokenizer` should be a WordPieceTokenizer (it needs .{name}), "
                                f"but got {type(tokenizer).__name__}.")
        if model is not None and not hasattr(model, "mlm_head"):
            raise TypeError(f"`model` should be a BertForPreTraining (it has the masked-LM head), or None, "
                            f"but got {type(model).__name__}.")
        pairs = _as_pairs(sentences if sentences is not None else MASKING_SENTENCES)
        self.tokenizer, self.model, self.pairs, self.max_length, self.top = tokenizer, model, pairs, max_length, top
        self.sentence = widgets.Text(value=pairs[0][0], description="sentence A", continuous_update=False,
                                     layout=widgets.Layout(width="640px"))
        self.next_sentence = widgets.Text(value=pairs[0][1], description="next (B)", continuous_update=False,
                                          layout=widgets.Layout(width="640px"))
        self.pair = widgets.ToggleButtons(options=["IsNext", "NotNext"], value="IsNext", description="pair")
        self.mask_prob = widgets.FloatSlider(value=0.15, min=0.0, max=0.6, step=0.05, description="mask prob",
                                             continuous_update=False)
        self.seed = widgets.IntSlider(value=seed, min=0, max=99, description="seed (draw)", continuous_update=False)
        self.view = widgets.HTML()
        for control in (self.sentence, self.next_sentence, self.pair, self.mask_prob, self.seed):
            control.observe(lambda _change: self.update(), names="value")
        self.widget = widgets.VBox([self.sentence, self.next_sentence, widgets.HBox([self.pair]),
                                    widgets.HBox([self.mask_prob, self.seed]), self.view])
        _tag(self.widget, "masking-explorer")
        self.state: dict = {}
        self.update()

    def text_b(self) -> tuple[str, bool]:
        """Sentence B and whether it really follows A (NotNext: a sentence from another pair, seeded)."""
        if self.pair.value == "IsNext":
            return self.next_sentence.value, True
        others = [b for a, b in self.pairs if b != self.next_sentence.value] or [a for a, _ in self.pairs]
        g = torch.Generator().manual_seed(self.seed.value)
        return others[int(torch.randint(len(others), (1,), generator=g))], False

    def compute(self) -> dict:
        """Encode the pair, mask it with ``mask_tokens`` and (with a model) predict the chosen tokens."""
        from .pretraining_data import mask_tokens

        tok = self.tokenizer
        text_b, is_next = self.text_b()
        ids, types = tok.encode_with_types(self.sentence.value, text_b)
        ids, types = ids[:self.max_length], types[:self.max_length]
        input_ids = torch.tensor([ids])                                             # (1, T)
        g = torch.Generator().manual_seed(self.seed.value)
        masked, labels = mask_tokens(input_ids, tok.special_ids, tok.vocab_size, tok.mask_id,
                                     mask_prob=self.mask_prob.value, generator=g)  # (1, T) each
        chosen = labels[0] != -100                                                  # (T,)
        kinds = []
        for i, token_id in enumerate(ids):
            if token_id in tok.special_ids:
                kinds.append("special")
            elif not chosen[i]:
                kinds.append("plain")
            elif masked[0, i] == tok.mask_id:
                kinds.append("mask")
            elif masked[0, i] != token_id:
                kinds.append("random")
            else:
                kinds.append("kept")
        state = {"tokens": tok.convert_ids_to_tokens(ids),
                 "input_tokens": tok.convert_ids_to_tokens(masked[0].tolist()),
                 "kinds": kinds, "token_type_ids": types, "is_next": is_next, "text_b": text_b,
                 "chosen": chosen.nonzero().flatten().tolist(), "guesses": {}, "nsp_is_next_prob": None,
                 "mask_prob": self.mask_prob.value, "seed": self.seed.value}
        if self.model is not None:
            state.update(self._predict(masked, torch.tensor([types]), state["chosen"]))
        return state

    @torch.no_grad()
    def _predict(self, masked: torch.Tensor, types: torch.Tensor, chosen: list[int]) -> dict:
        model = self.model
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            out = model(masked.to(device), types.to(device))
        finally:
            model.train(was_training)
        probs = out.mlm_logits[0].float().softmax(-1).cpu()                         # (T, V)
        guesses = {}
        for i in chosen:
            p, idx = probs[i].topk(self.top)
            guesses[i] = list(zip(self.tokenizer.convert_ids_to_tokens(idx.tolist()), p.tolist()))
        is_next_prob = out.nsp_logits[0].float().softmax(-1)[0].item()             # label 0 = B follows A
        return {"guesses": guesses, "nsp_is_next_prob": is_next_prob}

    def update(self) -> None:
        self.state = self.compute()
        self.view.value = self._html()

    def _html(self) -> str:
        s = self.state
        cells = []
        for i, (token, seen, kind, segment) in enumerate(zip(s["tokens"], s["input_tokens"], s["kinds"],
                                                             s["token_type_ids"])):
            below = "" if seen == token else f"<br><small>sees <b>{_html_escape(seen)}</b></small>"
            guess = ""
            if i in s["guesses"]:
                lines = "<br>".join(f"{_html_escape(t)} {p:.0%}" for t, p in s["guesses"][i])
                guess = f"<br><small>{lines}</small>"
            cells.append(f"<div style='background:{KIND_COLOURS[kind]};padding:2px 5px;border:1px solid #bbb;"
                         f"white-space:nowrap' title='{KIND_NAMES[kind]}, segment {segment}'>"
                         f"<b>{_html_escape(token)}</b><br><small>seg {segment}</small>{below}{guess}</div>")
        legend = " ".join(f"<span style='background:{KIND_COLOURS[k]};padding:1px 6px;border:1px solid #bbb'>"
                          f"{name}</span>" for k, name in KIND_NAMES.items())
        pair = ("B really follows A (IsNext, label 0)" if s["is_next"]
                else "B is a sentence from elsewhere (NotNext, label 1)")
        nsp = ("" if s["nsp_is_next_prob"] is None
               else f" · the model says IsNext with probability <b>{s['nsp_is_next_prob']:.0%}</b>")
        counts = {k: s["kinds"].count(k) for k in ("mask", "random", "kept")}
        return (f"<div><b>[CLS] A [SEP] B [SEP]</b>: {pair}{nsp}<br>"
                f"B = <i>{_html_escape(s['text_b'])}</i><br>"
                f"{len(s['chosen'])} of {len(s['tokens']) - s['kinds'].count('special')} ordinary tokens chosen "
                f"({counts['mask']} → [MASK], {counts['random']} → random, {counts['kept']} kept)"
                + (" — the guesses below each chosen token are the model's top "
                   f"{self.top}" if self.model is not None else "")
                + "<div style='display:flex;flex-wrap:wrap;align-items:flex-start;gap:3px;margin:6px 0;"
                f"font-family:monospace;font-size:12px;line-height:1.3'>{''.join(cells)}</div>{legend}</div>")


def _as_pairs(sentences) -> list[tuple[str, str]]:
    """Pairs (A, B) from pairs or from a list of consecutive sentences."""
    if isinstance(sentences, str) or not sentences:
        raise ValueError(f"`sentences` should be a non-empty list of sentences or of (A, B) pairs, "
                         f"but got {sentences!r}.")
    if all(isinstance(s, str) for s in sentences):
        if len(sentences) < 2:
            raise ValueError("`sentences` should hold at least 2 sentences (B is the one after A).")
        return [(a, b) for a, b in zip(sentences, sentences[1:])]
    pairs = [tuple(p) for p in sentences]
    if not all(len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
        raise ValueError(f"`sentences` should hold strings or (A, B) pairs of strings, but got {sentences!r}.")
    return pairs


def build_masking_explorer(tokenizer, model=None, sentences=None, seed: int = 0) -> MaskingExplorer:
    """Build the masking explorer without showing it (``explorer.widget`` is what to display)."""
    return MaskingExplorer(tokenizer, model, sentences, seed)


def masking_explorer(tokenizer, model=None, sentences=None, seed: int = 0) -> MaskingExplorer | None:
    """Show the masking explorer; prints a plain message and returns None when ipywidgets is missing.

    ``tokenizer``: a WordPieceTokenizer; ``model``: a BertForPreTraining (optional: its fill-in guesses);
    ``sentences``: (A, B) pairs or consecutive sentences.
    """
    return _show_or_explain("masking explorer", lambda: MaskingExplorer(tokenizer, model, sentences, seed))


# --------------------------------------------------------------------------------------------------
# Attention of a real model: our GPT and BERTs, and the pretrained MiniLM
# --------------------------------------------------------------------------------------------------

@torch.no_grad()
def model_attention(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Every layer's attention weights for one sequence: (L, H, T, T), read with forward hooks.

    Works for any model built from :class:`~ptlm_course.attention.MultiHeadAttention` (GPT, BERT,
    BertForPreTraining, BertForSequenceClassification, MiniLM). Modules set to PyTorch's fused kernel
    (which never forms the weights) are switched to the readable path for this call and back.
    """
    from .attention import MultiHeadAttention

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


# --------------------------------------------------------------------------------------------------
# Sampling playground (notebook 06)
# --------------------------------------------------------------------------------------------------

class SamplingPlayground(_Displayable):
    """Prompt, temperature, top-k and top-p: the model's next-token distribution as a bar chart and a
    sampled continuation, both redrawn whenever a control moves (``generate`` draws a new sample).

    ``model``: a GPT (``model(idx) -> (logits, loss)``, ``config.block_size``); ``encode(text) -> ids`` and
    ``decode(ids) -> text``. Controls: ``prompt``, ``temperature``, ``top_k`` (0 = off), ``top_p`` (1 = off),
    ``length``, ``seed``, ``generate`` (button: next seed). ``state`` holds ``prompt``, ``temperature``,
    ``top_k``, ``top_p``, ``seed``, ``n_kept`` (tokens left after top-k/top-p), ``top_tokens`` ([(token,
    probability after filtering)] for the most likely tokens), ``continuation`` (the generated text) and
    ``error`` (a message when the prompt cannot be encoded). ``figure`` is the last bar chart.
    """
    what = "sampling playground"

    def __init__(self, model, encode, decode, prompt: str = "ROMEO:\n", length: int = 200, bars: int = 20):
        widgets = _require_ipywidgets("sampling playground")
        if not callable(encode) or not callable(decode):
            raise TypeError("`encode` and `decode` should be functions (text -> ids, ids -> text), "
                            f"but got {type(encode).__name__} and {type(decode).__name__}.")
        self.model, self.encode, self.decode, self.bars = model, encode, decode, bars
        vocab = model.config.vocab_size
        self.prompt = widgets.Textarea(value=prompt, description="prompt", continuous_update=False,
                                       layout=widgets.Layout(width="520px"), style=LABELS)
        self.temperature = widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.05, description="temperature",
                                               continuous_update=False, style=LABELS)
        self.top_k = widgets.IntSlider(value=0, min=0, max=vocab, description="top-k (0 off)", continuous_update=False,
                                       style=LABELS)
        self.top_p = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p (1 off)",
                                         continuous_update=False, style=LABELS)
        self.length = widgets.IntSlider(value=length, min=10, max=600, step=10, description="new tokens",
                                        continuous_update=False, style=LABELS)
        self.seed = widgets.IntText(value=0, description="seed", layout=widgets.Layout(width="220px"), style=LABELS)
        self.generate = widgets.Button(description="Generate again", button_style="primary",
                                       tooltip="draw a new sample (next seed)")
        self.generate.on_click(lambda _button: setattr(self.seed, "value", self.seed.value + 1))
        self.text = widgets.HTML()
        self.output = widgets.Output()
        for control in (self.prompt, self.temperature, self.top_k, self.top_p, self.length, self.seed):
            control.observe(lambda _change: self.update(), names="value")
        self.widget = widgets.VBox([
            self.prompt, widgets.HBox([self.temperature, self.top_k]), widgets.HBox([self.top_p, self.length]),
            widgets.HBox([self.seed, self.generate]), self.output, self.text,
        ])
        _tag(self.widget, "sampling-playground")
        self.state: dict = {}
        self.figure = None
        self.update()

    def sampling(self) -> dict:
        """The generate() keyword arguments the controls stand for."""
        return {"temperature": self.temperature.value, "top_k": self.top_k.value or None,
                "top_p": self.top_p.value if self.top_p.value < 1.0 else None}

    @torch.no_grad()
    def next_token_probs(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(V,) probabilities after the temperature only, and (V,) after temperature, top-k and top-p."""
        from .generation import apply_temperature, top_k_filter, top_p_filter

        device = next(self.model.parameters()).device
        idx = torch.tensor([ids[-self.model.config.block_size:]], device=device)        # (1, T)
        was_training = self.model.training
        self.model.eval()
        try:
            logits = self.model(idx)[0][0, -1].float().cpu()                          # (V,)
        finally:
            self.model.train(was_training)
        s = self.sampling()
        logits = apply_temperature(logits, s["temperature"])
        filtered = logits
        if s["top_k"] is not None:
            filtered = top_k_filter(filtered, s["top_k"])
        if s["top_p"] is not None:
            filtered = top_p_filter(filtered, s["top_p"])
        return logits.softmax(-1), filtered.softmax(-1)

    def update(self) -> None:
        from .generation import generate

        s = self.sampling()
        self.state = {"prompt": self.prompt.value, **s, "seed": self.seed.value, "error": None}
        try:
            ids = list(self.encode(self.prompt.value))
            if not ids:
                raise ValueError("the prompt is empty: type at least one character.")
        except Exception as error:                        # an unknown character, an empty prompt, ...
            self.state.update(error=str(error), continuation="", n_kept=0, top_tokens=[])
            self.text.value = f"<span style='color:#b00'>Cannot use this prompt: {_html_escape(str(error))}</span>"
            return
        before, after = self.next_token_probs(ids)
        order = before.argsort(descending=True)[:self.bars].tolist()
        labels = [_visible(self.decode([i])) for i in order]
        self.state["n_kept"] = int((after > 0).sum())
        self.state["top_tokens"] = [(self.decode([i]), after[i].item()) for i in order]

        device = next(self.model.parameters()).device
        g = torch.Generator(device=device).manual_seed(self.seed.value)
        out = generate(self.model, torch.tensor([ids], device=device), self.length.value, generator=g, **s)
        self.state["continuation"] = self.decode(out[0, len(ids):].tolist())
        self.text.value = (f"<pre style='white-space:pre-wrap;font-size:12px'><b>{_html_escape(self.prompt.value)}"
                           f"</b>{_html_escape(self.state['continuation'])}</pre>")

        fig, ax = plt.subplots(figsize=(9, 3))
        x = range(len(order))
        ax.bar(x, [before[i].item() for i in order], color="lightgrey", label="after temperature")
        ax.bar(x, [after[i].item() for i in order], color="tab:blue", width=0.5,
               label="after top-k / top-p (sampled from)")
        ax.set_xticks(list(x), labels, fontsize=9)
        ax.set(ylabel="probability", title=f"next token after the prompt · {self.state['n_kept']} tokens kept")
        ax.legend(fontsize=8)
        fig.tight_layout()
        self.figure = fig
        _draw(self.output, fig)


def build_sampling_playground(model, encode, decode, prompt: str = "ROMEO:\n",
                              length: int = 200) -> SamplingPlayground:
    """Build the sampling playground without showing it (``playground.widget`` is what to display)."""
    return SamplingPlayground(model, encode, decode, prompt, length)


def sampling_playground(model, encode, decode, prompt: str = "ROMEO:\n",
                        length: int = 200) -> SamplingPlayground | None:
    """Show the sampling playground (``length`` new tokens per sample); prints a message and returns None
    when ipywidgets is missing."""
    return _show_or_explain("sampling playground", lambda: SamplingPlayground(model, encode, decode, prompt, length))


# --------------------------------------------------------------------------------------------------
# Training dashboard: a live loss plot, or plain text lines where no widget can be shown
# --------------------------------------------------------------------------------------------------

def widget_frontend() -> bool:
    """Whether the code runs where ipywidgets can be *seen*: a kernel behind JupyterLab / Jupyter Notebook
    (the server sets ``JPY_SESSION_NAME``), Colab or VS Code. False in plain Python, IPython consoles and
    headless runs (nbclient, nbval, nbconvert: CI). ``PTLM_WIDGETS=1`` / ``0`` forces the answer."""
    forced = os.environ.get("PTLM_WIDGETS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if _import_ipywidgets() is None:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:           # not a Jupyter kernel
        return False
    return ("google.colab" in sys.modules or "JPY_SESSION_NAME" in os.environ
            or any(key.startswith("VSCODE_") for key in os.environ))


class TrainingDashboard(_Displayable):
    """A callback for ``train(..., callbacks=[dashboard])`` that shows the loss as training goes.

    With a widget front end (see :func:`widget_frontend`) it shows a live plot of the training and
    validation loss and a status line, redrawn every ``every`` steps (default: about 30 redraws over
    ``total_steps``, else every 50) and at the last step; without one it prints a plain text line instead
    (default: about 10 lines over ``total_steps``; through ``tqdm.write``, so the progress bar stays intact).
    ``mode``: ``"auto"``, ``"widget"`` or ``"text"``. ``state`` holds ``mode``, ``step``, ``draws``, ``loss`` and
    ``val_loss`` (the latest); ``figure`` is the last plot (widget mode); ``lines`` the printed lines (text mode).
    """
    what = "training dashboard (a live loss plot)"

    def __init__(self, total_steps: int | None = None, every: int | None = None, mode: str = "auto",
                 title: str = "training"):
        if mode not in ("auto", "widget", "text"):
            raise ValueError(f"`mode` should be 'auto', 'widget' or 'text', but got {mode!r}.")
        for name, value in (("total_steps", total_steps), ("every", every)):
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(f"`{name}` should be a positive integer or None, but got {value!r}.")
        if mode == "auto":
            mode = "widget" if widget_frontend() else "text"
        self.total_steps, self.title = total_steps, title
        redraws = 30 if mode == "widget" else 10                          # plots are cheap to look at, lines not
        self.every = every or (max(1, total_steps // redraws) if total_steps else 50)
        self.state = {"mode": mode, "step": 0, "draws": 0, "loss": None, "val_loss": None}
        self.figure = None
        self.lines: list[str] = []
        self.widget = None
        if mode == "widget":
            widgets = _require_ipywidgets("training dashboard")
            self.status = widgets.HTML(value=f"<b>{_html_escape(title)}</b>: waiting for the first step")
            self.output = widgets.Output()
            self.widget = widgets.VBox([self.status, self.output])
            _tag(self.widget, "training-dashboard")

    def __call__(self, step: int, model, history) -> None:
        self.state["step"] = step
        last = step == self.total_steps
        if step % self.every == 0 or last:
            self.update(history)

    def update(self, history) -> None:
        """Redraw (widget mode) or print one line (text mode) for the history so far."""
        loss = history.train[-1]["loss"] if history.train else None
        vals = [r["val_loss"] for r in history.eval if "val_loss" in r]
        self.state.update(loss=loss, val_loss=vals[-1] if vals else None, draws=self.state["draws"] + 1)
        line = self._line()
        if self.state["mode"] == "text":
            from tqdm.auto import tqdm

            self.lines.append(line)
            tqdm.write(line)
            return
        self._ipython_display_()                                          # the first time only
        self.status.value = _html_escape(line)
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot(*history.values("loss"), label="train", alpha=0.8)
        if vals:
            ax.plot(*history.values("val_loss", "eval"), "o-", label="validation")
        if self.total_steps:
            ax.set_xlim(0, self.total_steps)
        ax.set(xlabel="step", ylabel="loss", title=self.title)
        ax.legend()
        fig.tight_layout()
        self.figure = fig
        _draw(self.output, fig)

    def _line(self) -> str:
        s = self.state
        total = f"/{self.total_steps}" if self.total_steps else ""
        parts = [f"{self.title}: step {s['step']}{total}"]
        if s["loss"] is not None:
            parts.append(f"loss {s['loss']:.4f}")
        if s["val_loss"] is not None:
            parts.append(f"val_loss {s['val_loss']:.4f}")
        return " · ".join(parts)
