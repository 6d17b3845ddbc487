"""The training dashboard: a ``train(..., callbacks=[dashboard])`` callback that shows a live loss plot
where widgets can be seen, and plain text lines elsewhere (scripts, CI)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..validation import is_int
from ._common import _Displayable, _draw, _html_escape, _require_ipywidgets, _tag, widget_frontend

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
