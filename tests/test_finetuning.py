"""Fine-tuning helpers: freezing, counting, the classification data pipeline, the GPT classifier (last real
token), and a real Rotten Tomatoes fine-tune that beats chance."""
import pytest
import torch
import torch.nn as nn

from ptlm_course.bert import BertConfig, BertForSequenceClassification, ClassificationOutput
from ptlm_course.data import Example, sentiment_splits
from ptlm_course.finetuning import (
    classification_loss_fn, count_parameters, encode_examples, freeze, freeze_encoder, make_eval_fn,
    make_get_batch, parameter_summary, predict, unfreeze,
)
from ptlm_course.gpt import GPT, GPTConfig, GPTForSequenceClassification
from ptlm_course.metrics import accuracy, classification_report
from ptlm_course.training import TrainConfig, train
from ptlm_course.wordpiece import WordPieceTokenizer


def tiny_bert(n_layers=3, vocab_size=60, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, d_model=16, n_layers=n_layers, n_heads=2,
                        d_ff=32, max_position_embeddings=32, dropout=dropout, attention_dropout=dropout)
    return BertForSequenceClassification(config)


def tiny_gpt_classifier(pad_id=0, seed=0, num_labels=2):
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=50, block_size=32, n_layers=2, n_heads=2, d_model=16, dropout=0.0)
    return GPTForSequenceClassification(config, num_labels=num_labels, pad_id=pad_id).eval()


class ToyTokenizer:
    """A BPE-like tokenizer: encode only, one id per character, no pad id of its own."""
    def encode(self, text):
        return [1 + ord(c) % 40 for c in text]


EXAMPLES = [Example("a fine film", 1), Example("dull", 0), Example("a truly wonderful, moving story", 1),
            Example("bad", 0), Example("not good at all, sadly", 0)]


@pytest.fixture(scope="module")
def wordpiece():
    return WordPieceTokenizer.from_pretrained_minilm()


# --------------------------------------------------------------------------------------------------
# Freezing and counting
# --------------------------------------------------------------------------------------------------

def test_freeze_and_unfreeze_set_every_parameter():
    model = tiny_bert()
    assert freeze(model.bert) is model.bert
    assert not any(p.requires_grad for p in model.bert.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_freeze_encoder_bert_keeps_top_blocks_and_head_trainable(k):
    model = tiny_bert(n_layers=3)
    freeze_encoder(model, train_top_layers=k)
    trainable = [all(p.requires_grad for p in b.parameters()) for b in model.bert.blocks]
    frozen = [not any(p.requires_grad for p in b.parameters()) for b in model.bert.blocks]
    assert trainable == [i >= 3 - k for i in range(3)] and all(t or f for t, f in zip(trainable, frozen))
    assert not any(p.requires_grad for p in model.bert.embeddings.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    assert all(p.requires_grad == (k > 0) for p in model.bert.pooler.parameters())


def test_freeze_encoder_can_unfreeze_again_and_works_for_gpt():
    model = tiny_bert()
    freeze_encoder(model, 0)
    freeze_encoder(model, 3)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - sum(
        p.numel() for p in model.bert.embeddings.parameters())
    gpt = tiny_gpt_classifier()
    freeze_encoder(gpt, 1)
    names = {n for n, p in gpt.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in gpt.named_parameters()
                     if n.startswith(("gpt.blocks.1.", "gpt.ln_f.", "classifier."))}


def test_frozen_layers_get_no_gradient_and_do_not_change_in_training():
    model = tiny_bert(dropout=0.1)
    freeze_encoder(model, train_top_layers=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = encode_examples(EXAMPLES * 4, ToyTokenizer(), max_length=12, pad_id=0)
    seen_grads = []

    def record(step, m, history):
        seen_grads.append([n for n, p in m.named_parameters() if not p.requires_grad and p.grad is not None])

    train(model, TrainConfig(steps=5, lr=1e-2, device="cpu", progress=False, eval_batches=0),
          make_get_batch(data, batch_size=4), classification_loss_fn, callbacks=[record])
    assert seen_grads == [[]] * 5
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == p.requires_grad, n            # frozen: unchanged; trainable: moved


def test_count_parameters_counts_tied_weights_once_and_summary_adds_up():
    gpt = tiny_gpt_classifier()
    assert count_parameters(gpt) == gpt.gpt.num_parameters() + 16 * 2 + 2
    model = tiny_bert()
    freeze_encoder(model, 1)
    summary = parameter_summary(model, depth=2)
    lines = summary.splitlines()
    assert lines[0].split() == ["module", "parameters", "trainable"]
    rows = {line.split()[0]: [int(v.replace(",", "")) for v in line.split()[1:3]] for line in lines[1:]}
    assert set(rows) == {"bert.embeddings", "bert.blocks", "bert.pooler", "classifier", "total"}
    assert rows["total"] == [count_parameters(model), count_parameters(model, trainable_only=True)]
    assert sum(r[0] for k, r in rows.items() if k != "total") == rows["total"][0]
    assert sum(r[1] for k, r in rows.items() if k != "total") == rows["total"][1]


def test_freezing_errors_are_explained():
    with pytest.raises(TypeError, match="BertForSequenceClassification or GPTForSequenceClassification .* "
                                        "but got Linear"):
        freeze_encoder(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"`train_top_layers` should be an integer in \[0, 3\] \(the model has 3 "
                                         r"blocks\), but got int 4"):
        freeze_encoder(tiny_bert(), 4)
    with pytest.raises(TypeError, match="should be a torch.nn.Module, but got str"):
        freeze("bert")
    with pytest.raises(ValueError, match="`depth` should be a positive integer"):
        parameter_summary(tiny_bert(), depth=0)


# --------------------------------------------------------------------------------------------------
# Data pipeline
# --------------------------------------------------------------------------------------------------

def test_encode_examples_with_wordpiece(wordpiece):
    enc = encode_examples(EXAMPLES, wordpiece, max_length=6)
    assert set(enc) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert enc["labels"].tolist() == [1, 0, 1, 0, 0]
    assert enc["input_ids"].shape == (5, 6)                           # the longest is truncated to 6
    assert enc["input_ids"][2].tolist()[0] == wordpiece.cls_id and enc["input_ids"][2, -1] == wordpiece.sep_id
    assert enc["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0]    # [CLS] dull [SEP], padded on the right
    assert wordpiece.decode(enc["input_ids"][0][enc["attention_mask"][0].bool()].tolist()) == "[CLS] a fine film [SEP]"


def test_encode_examples_with_an_encode_only_tokenizer():
    enc = encode_examples([("hello", 1), ("hi", 0)], ToyTokenizer(), max_length=4, pad_id=0)
    assert enc["input_ids"].tolist() == [ToyTokenizer().encode("hell"), ToyTokenizer().encode("hi") + [0, 0]]
    assert enc["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert enc["token_type_ids"].abs().sum() == 0


def test_get_batch_is_seeded_distinct_and_trimmed():
    data = encode_examples(EXAMPLES * 3, ToyTokenizer(), max_length=40, pad_id=0)
    val = encode_examples(EXAMPLES[:2], ToyTokenizer(), max_length=40, pad_id=0)
    get_batch = make_get_batch(data, val, batch_size=6)
    a = get_batch("train", torch.Generator().manual_seed(3))
    b = get_batch("train", torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["input_ids"].shape[0] == 6 and a["attention_mask"].sum(1).max() == a["input_ids"].shape[1]
    v = get_batch("val", torch.Generator().manual_seed(0))
    assert sorted(v["labels"].tolist()) == [0, 1] and v["input_ids"].shape == (2, 11)   # "a fine film"
    rows = make_get_batch(data, batch_size=15)("train", torch.Generator().manual_seed(0))
    assert sorted(rows["labels"].tolist()) == sorted(data["labels"].tolist())            # no repeats
    with pytest.raises(ValueError, match=r"`split` should be one of \['train'\], but got str 'val' \(pass val_data"):
        make_get_batch(data)("val", torch.Generator())


def test_predict_in_eval_mode_without_grad_and_restores_mode():
    model = tiny_bert(vocab_size=60, dropout=0.3).train()
    data = encode_examples(EXAMPLES, ToyTokenizer(), max_length=30, pad_id=0)
    preds, probs = predict(model, data, batch_size=2)
    assert model.training and not probs.requires_grad
    assert preds.shape == (5,) and probs.shape == (5, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    model.eval()
    with torch.no_grad():
        one = model(data["input_ids"][2:3, :31], attention_mask=data["attention_mask"][2:3]).logits.softmax(-1)
    torch.testing.assert_close(probs[2:3], one)                    # batching and trimming change nothing
    assert torch.equal(predict(model, data)[1], predict(model, data, batch_size=1)[1]) or torch.allclose(
        predict(model, data)[1], predict(model, data, batch_size=1)[1], atol=1e-6)
    scores = make_eval_fn(data)(model)
    assert set(scores) == {"val_loss", "val_accuracy"}
    assert scores["val_accuracy"] == pytest.approx(accuracy(probs.log(), data["labels"]))


def test_loss_fn_works_for_bert_and_gpt_classifiers():
    data = encode_examples(EXAMPLES, ToyTokenizer(), max_length=30, pad_id=0)
    batch = make_get_batch(data, batch_size=5)("train", torch.Generator().manual_seed(0))
    for model in (tiny_bert(), tiny_gpt_classifier()):
        loss, metrics = classification_loss_fn(model, batch)
        expected = model(batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        torch.testing.assert_close(loss, expected)
        assert 0 <= metrics["accuracy"] <= 1


def test_data_errors_are_explained():
    with pytest.raises(TypeError, match="should be a non-empty list of Example"):
        encode_examples([], ToyTokenizer(), 8)
    with pytest.raises(TypeError, match=r"`examples\[1\]` should be an Example\(text, label\) or a \(str, int\) pair"):
        encode_examples([("ok", 1), ("bad", "negative")], ToyTokenizer(), 8, pad_id=0)
    with pytest.raises(ValueError, match="This tokenizer has no `pad_id`: pass `pad_id=`"):
        encode_examples(EXAMPLES, ToyTokenizer(), 8)
    with pytest.raises(ValueError, match="`max_length` should be an integer >= 3"):
        encode_examples(EXAMPLES, ToyTokenizer(), 2, pad_id=0)
    with pytest.raises(TypeError, match="should be the dict from encode_examples"):
        make_get_batch({"input_ids": torch.zeros(2, 2)})


# --------------------------------------------------------------------------------------------------
# GPT classifier: the last real token
# --------------------------------------------------------------------------------------------------

def test_gpt_hidden_states_feed_the_lm_head():
    gpt = tiny_gpt_classifier().gpt
    x = torch.randint(0, 50, (2, 9))
    torch.testing.assert_close(gpt.lm_head(gpt.hidden_states(x)), gpt(x)[0])


def test_gpt_classifier_reads_the_last_real_token():
    model = tiny_gpt_classifier(pad_id=0)
    x = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    mask = (x != 0).long()
    h = model.gpt.hidden_states(x)
    expected = model.classifier(torch.stack([h[0, 2], h[1, 4]]))
    torch.testing.assert_close(model(x).logits, expected)                          # from pad_id
    torch.testing.assert_close(model(x, attention_mask=mask).logits, expected)     # from the mask
    assert model.last_token_index(x).tolist() == [2, 4]
    no_pad = tiny_gpt_classifier(pad_id=None)
    assert no_pad.last_token_index(x).tolist() == [4, 4]


def test_gpt_classifier_is_invariant_to_extra_right_padding():
    model = tiny_gpt_classifier(pad_id=0)
    x = torch.tensor([[5, 6, 7], [8, 9, 10]])
    padded = torch.cat([x, torch.zeros(2, 6, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded).logits, model(x).logits)
    torch.testing.assert_close(model(padded, attention_mask=(padded != 0).long()).logits, model(x).logits)
    out = model(x, labels=torch.tensor([0, 1]))
    assert isinstance(out, ClassificationOutput) and out.loss.dim() == 0


def test_from_gpt_copies_the_pretrained_body():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=50, block_size=16, n_layers=2, n_heads=2, d_model=16, dropout=0.0))
    model = GPTForSequenceClassification.from_gpt(gpt, num_labels=3, pad_id=0)
    assert all(torch.equal(a, b) for a, b in zip(model.gpt.state_dict().values(), gpt.state_dict().values()))
    assert model.gpt is not gpt and model.classifier.out_features == 3
    with torch.no_grad():
        model.gpt.wte.weight.zero_()
    assert gpt.wte.weight.abs().sum() > 0                             # a copy, not the same tensors


def test_gpt_classifier_errors_are_explained():
    model = tiny_gpt_classifier()
    x = torch.tensor([[0, 0, 5, 6]])
    with pytest.raises(ValueError, match="expects padding on the right"):
        model(x, attention_mask=(x != 0).long())
    with pytest.raises(ValueError, match="at least one real token"):
        model(x, attention_mask=torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"`attention_mask` should have the shape of input_ids \(B, T\) = \(1, 4\)"):
        model(x, attention_mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"`labels` should hold ids in \[0, 1\]"):
        model(x, labels=torch.tensor([2]))
    with pytest.raises(ValueError, match=r"`pad_id` should be None or a token id in \[0, 49\], but got int 50"):
        GPTForSequenceClassification(model.config, pad_id=50)
    with pytest.raises(TypeError, match="`from_gpt` expects a GPT model, but got Linear"):
        GPTForSequenceClassification.from_gpt(nn.Linear(2, 2))


# --------------------------------------------------------------------------------------------------
# A real fine-tune
# --------------------------------------------------------------------------------------------------

def test_fine_tuning_on_real_rotten_tomatoes_beats_chance(wordpiece):
    """A tiny BERT trained on 3,000 real reviews for 200 steps scores well above 50% on 400 test reviews."""
    splits = sentiment_splits("rotten_tomatoes")
    train_data = encode_examples(splits["train"][:3000], wordpiece, max_length=32)
    val_data = encode_examples(splits["validation"][:200], wordpiece, max_length=32)
    test_data = encode_examples(splits["test"][:400], wordpiece, max_length=32)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=wordpiece.vocab_size, d_model=32, n_layers=1, n_heads=2, d_ff=64,
        max_position_embeddings=32, dropout=0.1, attention_dropout=0.0))
    config = TrainConfig(steps=200, lr=3e-3, warmup_steps=20, eval_every=100, device="cpu", progress=False)
    history = train(model, config, make_get_batch(train_data, val_data, batch_size=32), classification_loss_fn,
                    eval_fn=make_eval_fn(val_data))
    preds, _ = predict(model, test_data)
    report = classification_report(preds, test_data["labels"], 2)
    assert report["accuracy"] > 0.6 and report["macro"]["f1"] > 0.6, report
    assert history.eval[-1]["val_accuracy"] > 0.6
