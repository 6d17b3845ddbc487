"""The course's pretrained encoder–decoder (notebook 19): denoising batches, its config, the cached model,
and Part 3's punctuation task asked as generation."""
import pytest
import torch

import ptlm_course.course_models as cm
import ptlm_course.seq2seq_pretraining as sp
from ptlm_course.bart import Bart
from ptlm_course.data import load_play
from ptlm_course.punctuation import punctuation_example, restore_punctuation
from ptlm_course.restoration import (Seq2SeqRecipe, encode_restoration, exact_match, fine_tune_seq2seq,
                                     generate_texts, reference_texts, restoration_pair, tagger_texts)

RECIPE = sp.BartRecipe(vocab_size=300, d_model=32, n_heads=2, d_ff=64, steps=6, warmup_steps=1, eval_every=3,
                       eval_batches=1, batch_size=4)
LINES = ["Stand forth, Demetrius. My noble lord,", "What say you, Hermia? Be advised, fair maid:",
         "I do entreat your grace to pardon me.", "Is all our company here?"]


@pytest.fixture(autouse=True)
def small_corpus(monkeypatch, tmp_path):
    """Three short training plays and two held-out ones, and a fresh cache folder for every test."""
    plays = [load_play(name) for name in ("macbeth", "the-tempest", "twelfth-night", "julius-caesar", "othello")]
    monkeypatch.setattr(cm, "split_plays", lambda: (plays[:3], plays[3:]))
    monkeypatch.setattr(sp, "split_plays", lambda: (plays[:3], plays[3:]))
    monkeypatch.setenv("PTLM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tok():
    return cm.shakespeare_wordpiece(300)


def test_text_chunks_cut_speeches_into_short_passages(tok):
    plays = [load_play("macbeth")]
    chunks = sp.text_chunks(plays, tok, 16)
    assert chunks and all(4 <= len(c) <= 16 for c in chunks)
    joined = [i for text in sp.speech_texts(plays) for i in tok.encode(text, add_special_tokens=False)]
    assert sum(map(len, chunks)) <= len(joined) and sum(map(len, chunks)) > 0.95 * len(joined)


def test_pad_rows_pads_to_the_longest_row():
    out = sp.pad_rows([[1, 2, 3], [4]], pad_id=0)
    assert out.tolist() == [[1, 2, 3], [4, 0, 0]] and out.dtype == torch.long


def test_infilling_batches_hide_spans_and_ask_for_the_whole_passage(tok):
    get_batch = sp.infilling_get_batch(RECIPE, tok)
    batch = get_batch("train", torch.Generator().manual_seed(0))
    assert batch["input_ids"].shape[0] == RECIPE.batch_size == batch["labels"].shape[0]
    assert torch.equal(batch["attention_mask"], (batch["input_ids"] != tok.pad_id).long())
    for inputs, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        target = [i for i in labels if i != -100]
        source = [i for i in inputs if i != tok.pad_id]
        assert target[-1] == tok.sep_id and source[-1] == tok.sep_id
        assert target[:-1] in get_batch.pools["train"]                         # the untouched passage
        assert tok.mask_id in source and len(source) < len(target) + 1
    again = get_batch("train", torch.Generator().manual_seed(0))
    assert all(torch.equal(batch[k], again[k]) for k in batch)                   # all randomness from the generator


def test_bart_config_uses_the_course_tokenizer_specials(tok):
    config = sp.bart_config(RECIPE, tok)
    assert (config.pad_token_id, config.decoder_start_token_id, config.eos_token_id) == (tok.pad_id, tok.cls_id,
                                                                                          tok.sep_id)
    assert config.vocab_size == tok.vocab_size and config.init_std == RECIPE.init_std and config.dropout == 0.0
    embeddings = Bart(config).shared.weight                                      # (V, C), N(0, init_std)
    assert abs(embeddings.std().item() - RECIPE.init_std) < 0.005


def test_seq2seq_loss_is_the_models_loss(tok):
    torch.manual_seed(0)
    model = Bart(sp.bart_config(RECIPE, tok))
    batch = sp.infilling_get_batch(RECIPE, tok)("train", torch.Generator().manual_seed(1))
    loss, info = sp.seq2seq_loss(model, batch)
    assert torch.allclose(loss, model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss)
    assert info["n_tokens"] == int((batch["labels"] != -100).sum())


def test_course_bart_trains_once_then_loads_the_same_weights(capsys):
    model, tok, info = sp.course_bart("small", progress=False, recipe=RECIPE)
    assert not info["loaded_from_cache"] and isinstance(model, Bart) and not model.training
    assert "val_loss" in info["final"]
    again, _, info2 = sp.course_bart("small", progress=False, recipe=RECIPE)
    assert info2["loaded_from_cache"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(TypeError, match="BartRecipe"):
        sp.course_bart("small", recipe=cm.bert_recipe("small"))


def test_restoration_pairs_lower_case_and_keep_the_marks():
    words, labels = punctuation_example("Stand forth, Demetrius. My noble lord,")
    assert restoration_pair(words, labels) == ("stand forth demetrius my noble lord",
                                               "stand forth, demetrius. my noble lord,")


def test_encoded_pairs_end_with_sep_and_decode_back(tok):
    examples = [punctuation_example(line) for line in LINES]
    data = encode_restoration(examples, tok)
    assert data["input_ids"].shape[0] == len(LINES) == data["labels"].shape[0]
    for row, mask in zip(data["input_ids"], data["attention_mask"]):
        assert row[int(mask.sum()) - 1] == tok.sep_id
    expected = [tok.decode(tok.encode(restoration_pair(w, y)[1], add_special_tokens=False)) for w, y in examples]
    assert reference_texts(data, tok) == expected
    assert tagger_texts([y for _, y in examples], examples, tok) == expected     # gold marks = the references
    no_marks = tagger_texts([[0] * len(w) for w, _ in examples], examples, tok)
    assert exact_match(no_marks, expected) == 0.0 and exact_match(expected, expected) == 100.0
    with pytest.raises(ValueError, match="non-empty list"):
        encode_restoration([], tok)
    with pytest.raises(ValueError, match="same length"):
        exact_match(["a"], ["a", "b"])


def test_fine_tuning_is_seeded_and_generation_gives_one_text_per_line(tok):
    examples = [punctuation_example(line) for line in LINES]
    data = encode_restoration(examples, tok)
    config = sp.bart_config(RECIPE, tok)
    recipe = Seq2SeqRecipe(steps=3, batch_size=2)
    a = fine_tune_seq2seq(config, None, data, 1e-3, seed=0, recipe=recipe)
    b = fine_tune_seq2seq(config, None, data, 1e-3, seed=0, recipe=recipe)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    torch.manual_seed(123)
    start = Bart(config).state_dict()                                            # another start
    c = fine_tune_seq2seq(config, start, data, 1e-3, seed=0, recipe=recipe)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    texts = generate_texts(a, data, tok, batch_size=3)
    assert len(texts) == len(LINES) and all(isinstance(t, str) for t in texts)
    assert generate_texts(a, data, tok, num_beams=2)[0] is not None


def test_restore_punctuation_and_pairs_agree():
    words, labels = ["so", "it", "is"], [0, 0, 3]
    assert restoration_pair(words, labels)[1] == restore_punctuation(words, labels).lower()
