"""Notebook 06's sampling playground: prompt, temperature, top-k and top-p; the next-token distribution as
bars and a sampled continuation."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ._common import LABELS, _Displayable, _draw, _html_escape, _require_ipywidgets, _show_or_explain, _tag, _visible

class SamplingPlayground(_Displayable):
    """Prompt, temperature, top-k and top-p: the model's next-token distribution as a bar chart and a
    sampled continuation, both redrawn whenever a control moves (``generate`` draws a new sample).

    ``model``: a GPT (``model(input_ids) -> (logits, loss)``, ``config.block_size``); ``encode(text) -> ids`` and
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
        from ..generation import apply_temperature, top_k_filter, top_p_filter

        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids[-self.model.config.block_size:]], device=device)        # (1, T)
        was_training = self.model.training
        self.model.eval()
        try:
            logits = self.model(input_ids)[0][0, -1].float().cpu()                          # (V,)
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
        from ..generation import generate

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
