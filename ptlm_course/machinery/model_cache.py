"""The model cache: a model trained once by its recipe, stored on disk, loaded by every later notebook.

``course_models.course_bert`` and ``course_gpt`` use it; a new model needs a frozen dataclass for its recipe
and a few lines::

    from ptlm_course.machinery.model_cache import cached_model

    def course_bart(budget=None):
        budget = budget or runtime.budget()
        recipe = bart_recipe(budget)                        # a frozen dataclass: everything that decides the model
        config = bart_config(recipe)                        # a dataclass, stored as config.json

        def build_and_train():                              # -> (model, training History or None, seconds)
            started = time.perf_counter()
            model = build_bart(recipe)
            history = train(model, train_config(recipe), get_batch, loss_fn)
            return model, history, time.perf_counter() - started

        return cached_model("bart", budget, recipe, build_and_train, lambda: Bart(config), config, tokenizer)

The first call runs ``build_and_train()`` and stores the result; later calls build ``empty_model()`` and load
the stored weights into it. Either way the model comes back on the CPU in eval mode, with an ``info`` dict:
``name``, ``budget``, ``recipe`` (its fields), ``key``, ``path``, ``history``, ``final`` (the last evaluation's
metrics, with ``val_perplexity`` for a language model's ``val_loss``), ``train_seconds``, ``n_parameters``,
``train_positions``, ``device``, ``torch`` and ``loaded_from_cache``.

**Where and under which name.** ``runtime.cache_dir()/course_models/<key>``, where the key is
``<name>-<budget>-<12 hex digits>``: a hash of the recipe's type and fields (:func:`recipe_key`; pass
``key=`` to hash more, e.g. a version of the recipe's code). Changing the recipe therefore never reuses a stale
entry. An entry is a folder: ``model.pt`` (the state dict), ``config.json``, ``info.json`` and ``vocab.txt``
(the tokenizer's ``itos``, one token a line; left out when ``tokenizer`` is None).

**Safe with several notebooks at once.** An entry is written into a temporary folder and renamed into place
(``runtime.atomic_write``): a reader, or a crash, never sees half of one. A lock file beside it (POSIX) makes
a second notebook asking for the same model wait for the first to finish training it, then load it. An entry
that cannot be read is trained again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from .. import metrics
from ..runtime import atomic_write, cache_dir

__all__ = ["recipe_key", "cache_folder", "is_cached", "cached_model", "remember_model"]


def recipe_key(name: str, recipe, **extra) -> str:
    """``name-<12 hex digits>``: a hash of the recipe's type, its fields and ``extra`` (e.g. ``version=2``)."""
    payload = json.dumps({"type": type(recipe).__name__, **extra, **asdict(recipe)}, sort_keys=True)
    return f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def cache_folder(key: str) -> Path:
    """The folder of the entry ``key`` (it may not exist yet)."""
    return cache_dir() / "course_models" / key


def is_cached(key: str) -> bool:
    """Whether the entry ``key`` is stored (a call with it would load instead of training)."""
    folder = cache_folder(key)
    return (folder / "model.pt").is_file() and (folder / "info.json").is_file()


def cached_model(name: str, budget: str, recipe, build_and_train: Callable, empty_model: Callable, model_config,
                 tokenizer=None, key: str | None = None) -> tuple[torch.nn.Module, dict]:
    """``(model, info)``: ``name``'s model for ``recipe`` from the cache, or built, trained and stored first.

    ``build_and_train()`` returns ``(model, history, seconds)`` (``history``: a ``training.History`` or None);
    ``empty_model()`` builds a model of the right size to load the stored weights into; ``model_config`` is a
    dataclass (stored as config.json); ``key`` defaults to ``recipe_key(f"{name}-{budget}", recipe)``.
    """
    key = recipe_key(f"{name}-{budget}", recipe) if key is None else key
    folder = cache_folder(key)
    with _lock(folder.with_suffix(".lock")):                  # two notebooks at once: the second waits
        if folder.is_dir():
            try:
                model, info = _load(folder, empty_model)
                print(f"Loaded the course {name.upper()} ({budget} budget) from the course cache: {_shown(folder)}")
                return model, info
            except Exception as error:                         # noqa: BLE001 - any damage means: rebuild
                print(f"The cached {name.upper()} in {folder} cannot be read ({type(error).__name__}: {error}); "
                      "training it again.")
                shutil.rmtree(folder, ignore_errors=True)
        print(f"Training the course {name.upper()} ({budget} budget); it is saved to the course cache "
              f"({_shown(folder)}) for next time.")
        model, history, seconds = build_and_train()
        info = _store(folder, key, name, budget, recipe, model, history, seconds, model_config, tokenizer)
    return model.cpu().eval(), {**info, "loaded_from_cache": False}


def remember_model(name: str, budget: str, recipe, model: torch.nn.Module, history, seconds: float,
                   empty_model: Callable, model_config, tokenizer=None, key: str | None = None) -> dict:
    """Store a model trained *exactly* by ``recipe`` elsewhere (e.g. step by step in a notebook) as the entry
    :func:`cached_model` would make, so later calls load it instead of training it again.

    An existing entry is never overwritten; ``info["identical_to_cache"]`` then says whether its weights equal
    ``model``'s (they should: recipes are seeded). Returns the entry's ``info``.
    """
    key = recipe_key(f"{name}-{budget}", recipe) if key is None else key
    folder = cache_folder(key)
    with _lock(folder.with_suffix(".lock")):
        if folder.is_dir():
            try:
                cached, info = _load(folder, empty_model)
                same = all(torch.equal(a, b.cpu()) for a, b in zip(cached.state_dict().values(),
                                                                    model.state_dict().values()))
                return {**info, "identical_to_cache": same}
            except Exception:                                   # noqa: BLE001 - damaged: replace it
                shutil.rmtree(folder, ignore_errors=True)
        info = _store(folder, key, name, budget, recipe, model, history, seconds, model_config, tokenizer)
    return {**info, "loaded_from_cache": False, "identical_to_cache": None}


def _shown(folder: Path) -> str:
    """A cached folder as notebooks print it: relative to ``cache_dir()`` (no machine paths in stored outputs)."""
    return str(folder.relative_to(cache_dir()))


def _final_metrics(history) -> dict:
    final = {k: v for k, v in history.eval[-1].items() if k != "step"} if history is not None and history.eval else {}
    if "val_loss" in final and "val_mlm_loss" not in final:
        final["val_perplexity"] = metrics.perplexity(final["val_loss"])
    final.pop("val_n_tokens", None)
    return final


def _store(folder: Path, key: str, name: str, budget: str, recipe, model, history, seconds: float,
           model_config, tokenizer) -> dict:
    length = getattr(recipe, "max_length", getattr(recipe, "block_size", 0))
    info = {"name": name, "budget": budget, "recipe": asdict(recipe), "key": key, "path": str(folder),
            "history": history.to_dict() if history is not None else None, "final": _final_metrics(history),
            "train_seconds": seconds, "n_parameters": sum(p.numel() for p in model.parameters()),
            "train_positions": getattr(recipe, "steps", 0) * getattr(recipe, "batch_size", 0) * length,
            "device": str(next(model.parameters()).device), "torch": torch.__version__}
    _save(folder, model, info, model_config, tokenizer)
    return info


def _save(folder: Path, model, info: dict, model_config, tokenizer) -> None:
    """Write weights, config, info and vocabulary into a temporary folder, then rename it: never half an entry."""
    def write(tmp: Path) -> None:
        torch.save(model.state_dict(), tmp / "model.pt")
        (tmp / "config.json").write_text(json.dumps(asdict(model_config), indent=1))
        (tmp / "info.json").write_text(json.dumps(info, indent=1))
        if tokenizer is not None:
            (tmp / "vocab.txt").write_text("".join(t + "\n" for t in tokenizer.itos), encoding="utf-8")

    atomic_write(folder, write, folder=True)


def _load(folder: Path, empty_model: Callable) -> tuple[torch.nn.Module, dict]:
    info = json.loads((folder / "info.json").read_text())
    model = empty_model()
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), {**info, "path": str(folder), "loaded_from_cache": True}   # the folder may have moved


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock on ``path`` where the OS offers one (POSIX); elsewhere no lock."""
    try:
        import fcntl
    except ImportError:                                        # Windows: no lock, the rename stays atomic
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
