"""The cached Part 2 models: trained once with a recipe, loaded afterwards, never from a stale recipe."""
from dataclasses import asdict, fields, replace

import pytest
import torch

from ptlm_course import course_models as cm
from ptlm_course.data import load_play
from ptlm_course.pretraining_data import IGNORE_INDEX

TINY_BERT = cm.BertRecipe(vocab_size=300, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                          max_length=32, n_pairs=64, n_val_pairs=16, batch_size=4, steps=3, warmup_steps=1,
                          eval_every=3, eval_batches=1)
TINY_GPT = cm.GPTRecipe(vocab_size=300, d_model=16, n_layers=1, n_heads=2, block_size=16, batch_size=4, steps=3,
                        warmup_steps=1, eval_every=3, eval_batches=1)


@pytest.fixture(autouse=True)
def small_corpus(monkeypatch, tmp_path):
    """Three short training plays and two held-out ones, and a fresh cache folder for every test."""
    plays = [load_play(name) for name in ("macbeth", "the-tempest", "twelfth-night", "julius-caesar", "othello")]
    monkeypatch.setattr(cm, "split_plays", lambda: (plays[:3], plays[3:]))
    monkeypatch.setenv("PTLM_CACHE_DIR", str(tmp_path / "cache"))


def weights_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("make, recipe", [(cm.course_bert, TINY_BERT), (cm.course_gpt, TINY_GPT)])
def test_second_call_loads_identical_weights_from_the_cache(make, recipe, capsys):
    name = "bert" if make is cm.course_bert else "gpt"
    assert not cm.in_cache(name, "small", recipe)
    model, tok, info = make(budget="small", progress=False, recipe=recipe)
    assert cm.in_cache(name, "small", recipe) and not cm.in_cache(name, "full", recipe)
    assert "Training the course" in capsys.readouterr().out
    assert not info["loaded_from_cache"] and not model.training
    again, tok2, info2 = make(budget="small", progress=False, recipe=recipe)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "Loaded the course" in out and "from the course cache" in out
    assert info2["loaded_from_cache"] and weights_equal(model, again)
    assert tok2.itos == tok.itos and len(tok) == recipe.vocab_size
    assert info2["final"] == info["final"] and info2["history"] == info["history"]
    assert info["recipe"] == asdict(recipe) and info["train_seconds"] > 0 and info["budget"] == "small"
    assert len(info["history"]["eval"]) == 1


def test_training_is_reproducible(monkeypatch, tmp_path):
    first, _, _ = cm.course_bert(budget="small", progress=False, recipe=TINY_BERT)
    monkeypatch.setenv("PTLM_CACHE_DIR", str(tmp_path / "other"))
    second, _, info = cm.course_bert(budget="small", progress=False, recipe=TINY_BERT)
    assert not info["loaded_from_cache"] and weights_equal(first, second)
    untrained = cm.build_bert(TINY_BERT, 300)
    assert not weights_equal(first, untrained), "training changed the weights"


@pytest.mark.parametrize("recipe", [TINY_BERT, TINY_GPT])
def test_every_recipe_field_changes_the_key(recipe):
    key = cm.recipe_key("x", recipe)
    assert key == cm.recipe_key("x", replace(recipe))
    for f in fields(recipe):
        value = getattr(recipe, f.name)
        changed = replace(recipe, **{f.name: value * 2 if value else 1})
        assert cm.recipe_key("x", changed) != key, f.name
    assert cm.recipe_key("x", TINY_BERT) != cm.recipe_key("x", TINY_GPT)


def test_a_changed_recipe_trains_a_new_model(capsys):
    cm.course_bert(budget="small", progress=False, recipe=TINY_BERT)
    capsys.readouterr()
    _, _, info = cm.course_bert(budget="small", progress=False, recipe=replace(TINY_BERT, lr=1e-3))
    assert "Training the course" in capsys.readouterr().out and not info["loaded_from_cache"]


def test_a_corrupted_cache_file_is_explained_and_rebuilt(capsys, tmp_path):
    model, _, info = cm.course_gpt(budget="small", progress=False, recipe=TINY_GPT)
    (tmp_path / "cache" / "course_models" / info["key"] / "model.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    again, _, info2 = cm.course_gpt(budget="small", progress=False, recipe=TINY_GPT)
    out = capsys.readouterr().out
    assert "cannot be read" in out and "training it again" in out
    assert not info2["loaded_from_cache"] and weights_equal(model, again)
    _, _, info3 = cm.course_gpt(budget="small", progress=False, recipe=TINY_GPT)
    assert info3["loaded_from_cache"]


def test_a_corrupted_vocabulary_is_learned_again(capsys, tmp_path):
    tok = cm.shakespeare_wordpiece(300)
    [path] = (tmp_path / "cache" / "course_models").glob("shakespeare-wordpiece-300-*.txt")
    path.write_text("garbage\n")
    again = cm.shakespeare_wordpiece(300)
    assert "unreadable" in capsys.readouterr().out and again.itos == tok.itos


def test_bert_loss_on_chosen_positions_equals_the_full_model_loss():
    tok = cm.shakespeare_wordpiece(300)
    get_batch = cm.bert_get_batch(TINY_BERT, tok)
    batch = get_batch("train", torch.Generator().manual_seed(0))
    assert (batch["mlm_labels"] != IGNORE_INDEX).any()
    model = cm.build_bert(TINY_BERT, tok.vocab_size).eval()
    loss, metrics = cm.bert_pretraining_loss(model, batch)
    assert torch.allclose(loss, model(**batch).loss, atol=1e-5)
    assert {"mlm_loss", "nsp_loss", "mlm_acc", "nsp_acc", "n_tokens"} <= set(metrics)


def test_gpt_corpus_separates_speeches_and_never_needs_unk(tmp_path):
    tok = cm.shakespeare_wordpiece(300)
    plays = cm.split_plays()[1]
    ids = cm.gpt_corpus(plays, tok)
    assert int((ids == tok.sep_id).sum()) == len(cm.speech_texts(plays))
    assert ids[-1] == tok.sep_id and not (ids == tok.unk_id).any()
    [cached] = (tmp_path / "cache" / "course_models").glob("corpus-*.pt")
    assert torch.equal(cm.gpt_corpus(plays, tok), ids)                       # read from the cache
    cached.write_bytes(b"damaged")
    assert torch.equal(cm.gpt_corpus(plays, tok), ids)                       # tokenized again
    x, y = cm.gpt_get_batch(TINY_GPT, tok)("val", torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (TINY_GPT.batch_size, TINY_GPT.block_size) and torch.equal(x[:, 1:], y[:, :-1])


def test_shakespeare_wordpiece_reads_plain_english_without_unk():
    tok = cm.shakespeare_wordpiece(300)
    review = "A 2-hour snooze-fest: the CGI ($200M!) can't save it. 3/10 #overrated @studio"
    assert tok.unk_id not in tok.encode(review)
    assert tok.itos[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_the_full_recipes_compare_like_with_like():
    bert, gpt = cm.bert_recipe("full"), cm.gpt_recipe("full")
    assert (bert.d_model, bert.n_layers, bert.n_heads) == (gpt.d_model, gpt.n_layers, gpt.n_heads)
    assert (bert.vocab_size, bert.max_length, bert.batch_size, bert.steps) == (
        gpt.vocab_size, gpt.block_size, gpt.batch_size, gpt.steps)
    assert cm.bert_recipe("small").steps < bert.steps


@pytest.mark.parametrize("make, recipe, fast", [(cm.course_bert, TINY_BERT, False), (cm.course_gpt, TINY_GPT, True)])
def test_the_gpt_trains_on_the_fast_path_and_bert_as_stored(monkeypatch, make, recipe, fast):
    """The course GPT trains as nanoGPT's model does (benchmarks/nanogpt_speed.py), with the exact GELU as BERT;
    BERT on train's default path, as its stored results were made."""
    configs = []
    monkeypatch.setattr(cm, "train", lambda model, config, *args: configs.append(config) or cm.History())
    model, _, _ = make(budget="small", progress=False, recipe=recipe)
    assert [(c.fused_attention, c.fused_adamw) for c in configs] == [(fast, True if fast else None)]
    assert {m.approximate for m in model.modules() if isinstance(m, torch.nn.GELU)} == {"none"}


def test_the_gpt_recipe_sets_the_activation():
    assert cm.gpt_config(TINY_GPT).activation == "gelu"
    assert cm.gpt_config(replace(TINY_GPT, activation="gelu_tanh")).activation == "gelu_tanh"


def test_the_bert_recipe_sets_the_initial_weight_scale():
    for std in (0.02, 0.05):
        model = cm.build_bert(replace(cm.bert_recipe("small"), initializer_range=std), vocab_size=500)
        assert model.config.initializer_range == std
        weights = torch.cat([p.flatten() for p in model.parameters() if p.dim() == 2])   # every weight matrix
        assert abs(weights.std().item() - std) < 0.1 * std, (std, weights.std().item())


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="`budget` should be None .* or one of small, full, but got str 'medium'"):
        cm.course_bert(budget="medium")
    with pytest.raises(TypeError, match="should be a BertRecipe, but got GPTRecipe"):
        cm.course_bert(budget="small", recipe=TINY_GPT)
    with pytest.raises(TypeError, match="should be a GPTRecipe"):
        cm.course_gpt(budget="small", recipe=TINY_BERT)
    with pytest.raises(ValueError, match="should be 'bert' or 'gpt'"):
        cm.in_cache("t5")
    with pytest.raises(ValueError, match="vocab_size` should be an int >= 200"):
        cm.shakespeare_wordpiece(50)


def test_a_model_trained_step_by_step_with_the_recipe_is_remembered(capsys):
    tok = cm.shakespeare_wordpiece(300)
    model = cm.build_bert(TINY_BERT, len(tok))
    history, seconds = cm._train(model, TINY_BERT, cm.bert_get_batch(TINY_BERT, tok), cm.bert_pretraining_loss, False)
    info = cm.remember_bert(model, history, seconds, budget="small", recipe=TINY_BERT)
    assert info["identical_to_cache"] is None and info["final"]["val_mlm_loss"] > 0
    loaded, _, loaded_info = cm.course_bert(budget="small", progress=False, recipe=TINY_BERT)
    assert loaded_info["loaded_from_cache"] and weights_equal(model, loaded)
    assert cm.remember_bert(model, history, seconds, budget="small", recipe=TINY_BERT)["identical_to_cache"] is True
    with pytest.raises(ValueError, match="do not match the recipe"):
        cm.remember_bert(model, history, seconds, budget="small", recipe=replace(TINY_BERT, steps=4))
    with pytest.raises(ValueError, match="do not match the recipe"):
        cm.remember_bert(model, history, seconds, budget="small", recipe=replace(TINY_BERT, d_model=32))
