"""Interactive widgets for the notebooks (ipywidgets + matplotlib only: they render in JupyterLab,
Jupyter Notebook, Colab and VS Code, no front-end extension needed). One module per widget:

    toy_attention   attention_explorer(sentences=SENTENCES)              notebook 03: toy attention, scale, mask
    masking         masking_explorer(tokenizer, model=None, sentences=None, seed=0)  BERT's 80/10/10 masking + NSP
    real_attention  model_attention_explorer(model, tokenizer, sentences)  a real model's attention: layer, head
    sampling        sampling_playground(model, encode, decode, prompt="ROMEO:\\n")  temperature, top-k, top-p
    dashboard       TrainingDashboard(total_steps=None, every=None, mode="auto")  train(..., callbacks=[dashboard])
    _common         what they share: display, the ipywidgets import, drawing, widget_frontend()

Each widget is an object with its controls as attributes, a ``state`` dict describing what it shows,
``widget`` (what to display) and ``update()``; the ``xxx(...)`` functions build and display one and,
without ipywidgets, print why and return None. Import them from here: ``from ptlm_course.widgets import ...``.
"""
from ._common import LABELS as LABELS  # not in __all__ (nor the sentence lists): reachable as before
from ._common import widget_frontend
from .dashboard import TrainingDashboard
from .masking import MASKING_SENTENCES as MASKING_SENTENCES
from .masking import MaskingExplorer, build_masking_explorer, masking_explorer
from .real_attention import (ModelAttentionExplorer, build_model_attention_explorer, model_attention,
                             model_attention_explorer)
from .sampling import SamplingPlayground, build_sampling_playground, sampling_playground
from .toy_attention import SENTENCES as SENTENCES
from .toy_attention import AttentionExplorer, attention_explorer, build_attention_explorer, word_vectors

__all__ = [
    "AttentionExplorer", "build_attention_explorer", "attention_explorer", "word_vectors",
    "MaskingExplorer", "build_masking_explorer", "masking_explorer",
    "model_attention", "ModelAttentionExplorer", "build_model_attention_explorer", "model_attention_explorer",
    "SamplingPlayground", "build_sampling_playground", "sampling_playground",
    "widget_frontend", "TrainingDashboard",
]
