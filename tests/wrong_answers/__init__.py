"""A corpus of answers to the exercise checks, written the way students write them.

``WRONG``: realistic wrong answers, each with the key words its failure message must contain (so the message
names the mistake, not only "wrong values"). ``CORRECT``: correct answers in styles other than the solutions'.
``tests/test_checks_corpus.py`` runs every check on every answer and measures how many wrong answers are
rejected and how many of those rejections name the mistake.
"""
from ._registry import CORRECT, WRONG
from . import (  # noqa: F401  (they register)
    architectures, attention, comparison, denoising, finetuning, gpt_adaptation, heldout, knn, heldout2, heldout3,
    heldout4, heldout5, heldout6, heldout7, heldout8, heldout9, part4, pretraining, prompt_tuning, qa, seq2seq,
    tokenization, transformer,
)

__all__ = ["CORRECT", "WRONG"]
