"""machinery/model_cache.py: any model with a recipe is cached in a few lines; the course models' keys and
entries are exactly those the cache held before the code moved there."""
import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from ptlm_course import course_models as cm
from ptlm_course.machinery import model_cache
from ptlm_course.runtime import cache_dir


@dataclass(frozen=True)
class TinyRecipe:
    width: int = 3
    seed: int = 0


@dataclass
class TinyConfig:
    width: int = 3


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PTLM_CACHE_DIR", str(tmp_path / "cache"))


def cached_tiny(recipe, calls):
    def build_and_train():
        calls.append(recipe)
        torch.manual_seed(recipe.seed)
        return nn.Linear(recipe.width, 1), None, 0.5                # no History: a model that is not trained

    return model_cache.cached_model("tiny", "small", recipe, build_and_train, lambda: nn.Linear(recipe.width, 1),
                                    TinyConfig(recipe.width))


def test_a_third_model_is_trained_once_then_loaded(capsys):
    calls = []
    model, info = cached_tiny(TinyRecipe(), calls)
    assert "Training the course TINY (small budget)" in capsys.readouterr().out
    again, info2 = cached_tiny(TinyRecipe(), calls)
    assert "Loaded the course TINY (small budget) from the course cache: course_models/tiny-small-" \
        in capsys.readouterr().out
    assert len(calls) == 1 and not info["loaded_from_cache"] and info2["loaded_from_cache"]
    assert torch.equal(model.weight, again.weight) and not again.training
    folder = model_cache.cache_folder(info["key"])
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "info.json", "model.pt"]   # no tokenizer
    assert json.loads((folder / "config.json").read_text()) == {"width": 3}
    assert info2["history"] is None and info2["final"] == {} and info2["n_parameters"] == 4
    cached_tiny(TinyRecipe(width=4), calls)                        # another recipe: another entry
    assert len(calls) == 2 and model_cache.is_cached(model_cache.recipe_key("tiny-small", TinyRecipe(width=4)))


def test_no_temporary_folder_is_left_and_a_damaged_entry_is_rebuilt(capsys):
    calls = []
    _, info = cached_tiny(TinyRecipe(), calls)
    folder = model_cache.cache_folder(info["key"])
    (folder / "model.pt").write_bytes(b"not a checkpoint")
    _, info2 = cached_tiny(TinyRecipe(), calls)
    assert "cannot be read" in capsys.readouterr().out and len(calls) == 2 and not info2["loaded_from_cache"]
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name, folder.name + ".lock"]


def test_the_course_models_keys_are_pinned():
    """The cache keys of the course models: a change retrains every student's models, so it must be deliberate.
    (BERT's last changed when the recipes took the course's one size vocabulary: d_model, n_heads, n_layers, d_ff;
    GPT's when its recipe took the exact GELU and the fast path: activation, fast_path.)"""
    assert cm.recipe_key("gpt-full", cm.gpt_recipe("full")) == "gpt-full-ff1e4fb141e7"
    assert cm.recipe_key("bert-full", cm.bert_recipe("full")) == "bert-full-8547a33c371f"
    assert cm.recipe_key("gpt-small", cm.gpt_recipe("small")) == "gpt-small-3b3fcc80cc50"
    assert cm.recipe_key("bert-small", cm.bert_recipe("small")) == "bert-small-f759a879957c"
    assert model_cache.cache_folder("gpt-full-ff1e4fb141e7") == cache_dir() / "course_models" / "gpt-full-ff1e4fb141e7"
