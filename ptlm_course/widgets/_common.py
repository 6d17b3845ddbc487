"""What every widget shares: the display protocol (``_Displayable``), the ipywidgets import and its
"needs ipywidgets" messages, drawing helpers and :func:`widget_frontend` (can a widget be seen here?)."""
from __future__ import annotations

import html
import os
import sys

import matplotlib.pyplot as plt

LABELS = {"description_width": "100px"}   # wide enough for "temperature", "top-k (0 off)": no cut labels


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


def _missing(what: str) -> str:
    """The message shown when a widget cannot be built: which widget needed ipywidgets, and that nothing else does."""
    return f"The {what} needs ipywidgets (pip install ipywidgets); the rest of the notebook works without it."


def _require_ipywidgets(what: str):
    """ipywidgets, or an ImportError that says which widget needed it and that the rest still works."""
    widgets = _import_ipywidgets()
    if widgets is None:
        raise ImportError(_missing(what))
    return widgets


def _show_or_explain(what: str, build):
    """Display ``build()``'s widget and return the object; without ipywidgets print why and return None."""
    if _import_ipywidgets() is None:
        print(_missing(what))
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
    return html.escape(text)


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
