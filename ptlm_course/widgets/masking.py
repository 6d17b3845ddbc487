"""Notebook 07's masking explorer: BERT's pre-training input for a sentence pair (``[CLS] A [SEP] B [SEP]``,
segment ids), which tokens the 80/10/10 masking chose and, with a model, its guesses and next-sentence
probability."""
from __future__ import annotations

import torch

from ._common import _Displayable, _html_escape, _require_ipywidgets, _show_or_explain, _tag

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
        from ..pretraining_data import mask_tokens

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
