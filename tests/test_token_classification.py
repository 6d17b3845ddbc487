"""Token classification: BertForTokenClassification against transformers, word-label alignment, the
punctuation task's labels, predictions and metric, and the few-label protocol of ptlm_course.transfer."""
import pytest
import torch
import transformers

from ptlm_course.bert import BertConfig, BertForPreTraining, BertForTokenClassification
from ptlm_course.finetuning import encode_tagged, make_get_batch, predict_tags, token_classification_loss_fn
from ptlm_course.punctuation import (LABELS, MARKS, mark_f1, punctuation_example, punctuation_examples,
                                     restore_punctuation)
from ptlm_course.transfer import TaggerRecipe, fine_tune_tagger, label_budget_curve, score_tagger, summarise
from ptlm_course.wordpiece import WordPieceTokenizer

TINY_HF = dict(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=37, max_position_embeddings=24, type_vocab_size=2, pad_token_id=0)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "my", "lord", "good", "night", "sweet", "prince",
         "be", "##witch", "d", "the", "o", ",", ".", "'"]


def test_token_classification_matches_transformers(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertForTokenClassification(transformers.BertConfig(**TINY_HF, num_labels=7)).eval()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 101, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    ids[mask == 0] = 0
    labels = torch.randint(0, 7, (3, 10), generator=g).masked_fill(mask == 0, -100)
    labels[:, 0] = -100
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, labels=labels)
    hf.save_pretrained(tmp_path)
    ours = BertForTokenClassification.from_pretrained(tmp_path)          # num_labels from config.json
    assert ours.num_labels == 7 and ours.bert.pooler is None
    with torch.no_grad():
        out = ours(ids, None, mask, labels=labels)
    assert out.logits.shape == (3, 10, 7)
    assert (out.logits - ref.logits).abs().max() < 1e-5
    assert abs(out.loss.item() - ref.loss.item()) < 1e-5


def test_token_classifier_loads_a_pretraining_body_and_checks_labels():
    config = BertConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                        max_position_embeddings=16)
    body = BertForPreTraining(config).bert.state_dict()
    model = BertForTokenClassification(config, num_labels=3)
    missing, unexpected = model.bert.load_state_dict(body, strict=False)
    assert not missing and all(k.startswith("pooler.") for k in unexpected)
    ids = torch.randint(1, 50, (2, 5))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(ids, labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        model(ids, labels=torch.full((2, 5), 3))
    with pytest.raises(ValueError, match="num_labels"):
        BertForTokenClassification(config, num_labels=1)


def test_punctuation_labels_come_from_the_text():
    words, labels = punctuation_example("Stand forth, Demetrius. My noble lord,\nWhat, ho!")
    assert words == ["Stand", "forth", "Demetrius", "My", "noble", "lord", "What", "ho"]
    assert [LABELS[k] for k in labels] == ["none", ",", ".", "none", "none", ",", ",", "!"]
    # several marks: the last of the six wins; inner apostrophes stay; a lone dash is dropped
    words, labels = punctuation_example("Is't so?' -- bewitch'd; -- ! away")
    assert words == ["Is't", "so", "bewitch'd", "away"]
    assert [LABELS[k] for k in labels] == ["none", "?", "!", "none"]
    assert restore_punctuation(["my", "lord"], [0, LABELS.index("?")]) == "my lord?"
    with pytest.raises(TypeError, match="string"):
        punctuation_example(None)
    with pytest.raises(ValueError, match="one label per word"):
        restore_punctuation(["a"], [0, 1])


def test_punctuation_examples_cut_long_speeches_and_keep_every_word():
    from ptlm_course.data import load_play
    play = load_play("hamlet")
    examples = punctuation_examples([play], max_words=10)
    assert all(1 <= len(w) <= 10 and len(w) == len(tags) for w, tags in examples)
    n_words = sum(len(punctuation_example(s.text)[0]) for s in play.speeches)
    assert sum(len(w) for w, _ in examples) == n_words
    with pytest.raises(ValueError, match="max_words"):
        punctuation_examples([play], max_words=0)


def test_encode_tagged_puts_each_label_on_the_first_piece():
    tok = WordPieceTokenizer(VOCAB)
    data = encode_tagged([(["my", "bewitch'd", "lord"], [0, 1, 2]), (["o"], [3])], tok, max_length=16)
    pieces = tok.convert_ids_to_tokens(data["input_ids"][0].tolist())
    assert pieces == ["[CLS]", "my", "be", "##witch", "'", "d", "lord", "[SEP]"]    # one word, four pieces
    assert data["labels"][0].tolist() == [-100, 0, 1, -100, -100, -100, 2, -100]
    assert data["labels"][1].tolist() == [-100, 3, -100] + [-100] * 5           # padding: no label
    assert data["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    # words that do not fit are cut whole
    short = encode_tagged([(["my", "bewitch'd", "lord"], [0, 1, 2])], tok, max_length=4)
    assert tok.convert_ids_to_tokens(short["input_ids"][0].tolist()) == ["[CLS]", "my", "[SEP]"]
    with pytest.raises(TypeError, match="as many label"):
        encode_tagged([(["my", "lord"], [0])], tok, max_length=8)
    with pytest.raises(TypeError, match="non-empty list"):
        encode_tagged([], tok, max_length=8)


def test_batches_cut_token_labels_with_the_inputs():
    tok = WordPieceTokenizer(VOCAB)
    data = encode_tagged([(["my", "lord"] * 3, [0, 1] * 3), (["o"], [2])], tok, max_length=16)
    batch = make_get_batch(data, batch_size=1)("train", torch.Generator().manual_seed(0))
    assert batch["labels"].shape == batch["input_ids"].shape


def test_predict_tags_and_mark_f1():
    tok = WordPieceTokenizer(VOCAB)
    data = encode_tagged([(["my", "bewitch'd", "lord"], [0, 1, 2]), (["o", "lord"], [3, 0])], tok, 16)
    config = BertConfig(vocab_size=len(VOCAB), d_model=16, n_layers=1, n_heads=2, d_ff=32,
                        max_position_embeddings=16)
    model = BertForTokenClassification(config, num_labels=len(LABELS)).train()
    preds = predict_tags(model, data)
    assert model.training                                                      # mode restored
    assert torch.equal(preds == -100, data["labels"] == -100)
    with torch.no_grad():
        logits = model.eval()(data["input_ids"], None, data["attention_mask"]).logits
    keep = data["labels"] != -100
    assert torch.equal(preds[keep], logits.argmax(-1)[keep])
    # the metric: perfect predictions score 1; "none" everywhere scores 0
    f1, per_mark = mark_f1(data["labels"], data["labels"])
    present = {LABELS[k] for k in data["labels"][keep].tolist() if k}
    assert all(per_mark[m] == 1.0 for m in present) and set(per_mark) == set(MARKS)
    assert f1 == pytest.approx(len(present) / len(MARKS))
    assert mark_f1(torch.zeros_like(data["labels"]).masked_fill(~keep, -100), data["labels"])[0] == 0.0
    loss, logs = token_classification_loss_fn(model, data)
    assert loss.item() == pytest.approx(model(data["input_ids"], None, data["attention_mask"],
                                              labels=data["labels"]).loss.item(), abs=1e-6)


def test_the_few_label_protocol_picks_lr_on_validation_and_scores_every_seed():
    tok = WordPieceTokenizer(VOCAB)
    config = BertConfig(vocab_size=len(VOCAB), d_model=16, n_layers=1, n_heads=2, d_ff=32,
                        max_position_embeddings=16)
    words = ["my", "lord", "good", "night", "sweet", "prince"]
    example = (words, [0, 1, 0, 2, 0, 3])                                       # a fixed pattern to learn
    splits = {"train": [example] * 20, "validation": [example] * 4, "test": [example] * 4}
    body = BertForPreTraining(config).bert.state_dict()
    recipe = TaggerRecipe(steps=30, batch_size=4, lr_grid=(1e-5, 3e-3), max_length=16)
    lines = []
    rows = label_budget_curve(config, body, splits, tok, budgets=(8,), seeds=(0, 1), recipe=recipe, log=lines.append)
    assert [(r["labels"], r["start"], r["seed"]) for r in rows] == [
        (8, "pretrained", 0), (8, "pretrained", 1), (8, "scratch", 0), (8, "scratch", 1)]
    assert all(r["lr"] == 3e-3 for r in rows)                   # 1e-5 learns nothing in 30 steps
    assert all(r["score"] > 0.3 for r in rows) and len(lines) == 2    # 3 of the 6 marks occur: 0.5 is perfect
    summary = summarise(rows)
    assert summary[8, "scratch"]["n"] == 2 and summary[8, "scratch"]["min"] <= summary[8, "scratch"]["mean"]
    model = fine_tune_tagger(config, body, encode_tagged(splits["train"], tok, 16), 3e-3, 0, recipe)
    assert score_tagger(model, encode_tagged(splits["test"], tok, 16)) == pytest.approx(
        next(r["score"] for r in rows if r["start"] == "pretrained" and r["seed"] == 0))
    with pytest.raises(ValueError, match="label budget"):
        label_budget_curve(config, body, splits, tok, budgets=(21,), seeds=(0,), recipe=recipe)
