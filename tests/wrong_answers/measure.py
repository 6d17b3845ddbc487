"""Measure the checks on the corpus: ``python -m wrong_answers.measure [batch ...]`` from ``tests/``
(a batch is a corpus module, e.g. ``heldout3``; none means the whole corpus).

Prints the share of wrong answers rejected, the share rejected with a message that contains the answer's key
words, and each answer that falls short (accepted, or rejected with a message that does not name it).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import sys

from ptlm_course.checks import CheckFailed

MODULES = ["tokenization", "attention", "multihead", "transformer", "sampling", "pretraining", "finetuning",
           "gpt", "embeddings", "speed", "distributed", "gpt_finetuning", "adaptation", "comparison", "pretrained",
           "qa", "denoising", "prompt_tuning", "seq2seq", "architectures"]


def find_check(name: str):
    for module in MODULES:
        try:
            found = getattr(importlib.import_module(f"ptlm_course.checks.{module}"), name, None)
        except ModuleNotFoundError:
            continue
        if found is not None:
            return found
    raise LookupError(f"no check called {name}")


def run(check_name: str, answer) -> str | None:
    """None when the check accepts the answer, else its failure message."""
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            find_check(check_name)(answer)
        except CheckFailed as failure:
            return failure.message
    return None


def label(entry) -> str:
    return f"{entry[0]}:{entry[-1].__name__}"


def measure(wrong) -> tuple[float, float, list[str], list[str]]:
    """(share rejected, share rejected and named, accepted labels, 'label wants ..., got ...' lines)."""
    accepted, unnamed = [], []
    for check_name, keywords, answer in wrong:
        message = run(check_name, answer)
        if message is None:
            accepted.append(label((check_name, answer)))
        elif not all(word.lower() in message.lower() for word in keywords):
            unnamed.append(f"{label((check_name, answer))} wants {keywords}, got: {message}")
    n = max(len(wrong), 1)
    return 1 - len(accepted) / n, 1 - (len(accepted) + len(unnamed)) / n, accepted, unnamed


def main(batches: list[str]) -> None:
    from . import CORRECT, WRONG
    chosen = [e for e in WRONG if not batches or e[-1].__module__.rsplit(".", 1)[-1] in batches]
    rejected, named, accepted, unnamed = measure(chosen)
    refused = [label(e) for e in CORRECT if (not batches or e[-1].__module__.rsplit(".", 1)[-1] in batches)
               and run(e[0], e[1]) is not None]
    print(f"{len(chosen)} wrong answers: {rejected:.1%} rejected ({len(chosen) - len(accepted)}), "
          f"{named:.1%} named ({len(chosen) - len(accepted) - len(unnamed)}); correct answers refused: {refused}")
    for line in ["accepted:"] + accepted + ["not named:"] + unnamed:
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
