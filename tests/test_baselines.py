"""The ladder's lower rungs (majority, bag of words, probes) and the classification protocol of Part 3."""
import pytest
import torch
import torch.nn.functional as F

from ptlm_course.baselines import (BagOfWords, fit_logistic_regression, majority_accuracy, mean_pooled_features,
                                   probe_accuracy, standardise, tuned_logistic_regression, words)
from ptlm_course.bert import BERT, BertConfig, BertForSequenceClassification, mean_pool
from ptlm_course.transfer import ClassifierRecipe, classifier_accuracy, compare_seeds, permutation_p

CONFIG = BertConfig(vocab_size=30, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                    max_position_embeddings=12)


def test_majority_accuracy_uses_the_training_majority():
    assert majority_accuracy([1, 1, 0], [1, 0, 0, 0]) == 0.25
    assert majority_accuracy(torch.tensor([0, 0, 1]), [0, 0, 1, 1]) == 0.5


def test_majority_accuracy_rejects_bad_labels():
    with pytest.raises(TypeError, match="class ids"):
        majority_accuracy([], [1])
    with pytest.raises(TypeError, match="class ids"):
        majority_accuracy([0.5, 1], [1])


def test_words_split_punctuation_and_keep_apostrophes():
    assert words("It's not GOOD, really!") == ["it's", "not", "good", ",", "really", "!"]


def test_bag_of_words_features_by_hand():
    bow = BagOfWords(["a good film", "a bad film", "good good"], min_count=2)
    assert set(bow.vocab) == {"a", "good", "film"}                     # bigrams appear once: left out
    x = bow.features(["good film , good", "nothing here"]).to_dense()
    row = {g: x[0, i].item() for g, i in bow.vocab.items()}
    assert row == {"a": 0.0, "good": 1.0, "film": 1.0}                 # presence, not counts
    assert x[1].sum() == 0
    with_bigrams = BagOfWords(["a good film", "a good day"], min_count=2)
    assert "a good" in with_bigrams.vocab and "good film" not in with_bigrams.vocab


def test_bag_of_words_rejects_a_single_string():
    with pytest.raises(TypeError, match="list of strings"):
        BagOfWords("a good film")


def test_logistic_regression_reaches_the_objective_minimum():
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0]) + 0.3 * torch.randn(200) > 0).long()
    model = fit_logistic_regression(x, y, l2=1e-2)
    w, b = model.weight.detach().requires_grad_(), model.bias.detach().requires_grad_()
    loss = F.cross_entropy(x @ w.t() + b, y) + 1e-2 * w.pow(2).sum()
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert gw.abs().max() < 1e-4 and gb.abs().max() < 1e-4          # a stationary point of a convex objective
    assert (model.predict(x) == y).float().mean() > 0.9


def test_sparse_and_dense_inputs_give_the_same_fit():
    texts = ["good film", "bad film", "good good day", "bad day", "a good one", "a bad one"]
    labels = [1, 0, 1, 0, 1, 0]
    bow = BagOfWords(texts, min_count=1)
    sparse = fit_logistic_regression(bow.features(texts), labels, l2=1e-2)
    dense = fit_logistic_regression(bow.features(texts).to_dense(), labels, l2=1e-2)
    torch.testing.assert_close(sparse.weight, dense.weight, atol=1e-4, rtol=1e-4)


def test_stronger_regularisation_shrinks_the_weights_and_the_grid_picks_on_validation():
    torch.manual_seed(1)
    x = torch.randn(100, 4)
    y = (x[:, 0] > 0).long()
    weak, strong = (fit_logistic_regression(x, y, l2=l2).weight.norm() for l2 in (1e-4, 1.0))
    assert strong < weak
    fit = tuned_logistic_regression((x[:60], y[:60]), (x[60:], y[60:]), l2_grid=(1e-3, 10.0))
    assert fit["val_accuracy"] == max(fit["val_by_l2"].values()) and fit["l2"] == 1e-3


def test_logistic_regression_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="N = 3 rows"):
        fit_logistic_regression(torch.zeros(2, 4), [0, 1, 1], l2=0.1)


def _encoded(lengths):
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, CONFIG.vocab_size, (n,))
        mask[i, :n] = 1
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask,
            "labels": torch.tensor([i % 2 for i in range(len(lengths))])}


def test_mean_pooled_features_ignore_padding_and_batching():
    torch.manual_seed(0)
    encoder = BERT(CONFIG)
    data = _encoded([3, 7, 5, 2])
    feats = mean_pooled_features(encoder, data, batch_size=3)                          # (4, C)
    encoder.eval()
    for i, n in enumerate([3, 7, 5, 2]):                                               # each row alone, unpadded
        alone = encoder(data["input_ids"][i:i + 1, :n]).last_hidden_state
        torch.testing.assert_close(feats[i], mean_pool(alone, None)[0], atol=1e-5, rtol=1e-5)
    assert encoder.training is False


def test_standardise_uses_training_statistics():
    train, other = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0]])
    s_train, s_other = standardise(train, other)
    assert s_other.item() == pytest.approx(0.0, abs=1e-5) and s_train.std().item() == pytest.approx(1.0, rel=1e-4)


def test_probe_accuracy_runs_on_encoded_splits():
    torch.manual_seed(0)
    splits = {name: _encoded([4, 6, 5, 3, 6, 4, 5, 6]) for name in ("train", "val", "test")}
    out = probe_accuracy(BERT(CONFIG), splits, l2_grid=(1e-2,))
    assert 0.0 <= out["test_accuracy"] <= 1.0 and out["l2"] == 1e-2


def test_permutation_p_by_hand():
    assert permutation_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)    # only the two extreme splits
    assert permutation_p([1, 2], [1, 2]) == 1.0
    with pytest.raises(ValueError, match="non-empty"):
        permutation_p([], [1.0])


def test_compare_seeds_picks_the_rate_on_validation_and_scores_every_seed():
    torch.manual_seed(0)
    data = {name: _encoded([4, 6, 5, 3] * 4) for name in ("train", "val", "test")}
    built = []

    def build(seed):
        built.append(seed)
        torch.manual_seed(seed)
        return BertForSequenceClassification(CONFIG, num_labels=2, pooling="mean")

    recipe = ClassifierRecipe(steps=3, batch_size=4, lr_grid=(1e-3, 1e-2))
    out = compare_seeds(build, data, seeds=[7, 8, 9], recipe=recipe)
    assert built == [7, 7, 8, 9]                                       # two tuning runs on the first seed
    assert out["val_by_lr"][out["lr"]] == max(out["val_by_lr"].values())
    assert len(out["test"]) == 3 and out["test"][0] == classifier_accuracy(out["model"], data["test"])
    with pytest.raises(ValueError, match="seeds"):
        compare_seeds(build, data, seeds=[], recipe=recipe)
    with pytest.raises(TypeError, match="'train', 'val' and 'test'"):
        compare_seeds(build, {"train": data["train"]}, seeds=[0], recipe=recipe)


def test_mcnemar_p_by_hand():
    from ptlm_course.transfer import mcnemar_p
    labels = [1] * 10
    a = [1] * 10                                  # A right everywhere
    b = [0] * 2 + [1] * 8                         # B wrong on 2: b = 2, c = 0 -> p = 2 * (1/4) = 0.5
    assert mcnemar_p(a, b, labels) == pytest.approx(0.5)
    b = [0] * 6 + [1] * 4                         # b = 6, c = 0 -> p = 2 / 64
    assert mcnemar_p(a, b, labels) == pytest.approx(2 / 64)
    assert mcnemar_p(a, a, labels) == 1.0         # never disagree
    assert mcnemar_p(b, a, labels) == mcnemar_p(a, b, labels)
    with pytest.raises(ValueError, match="same length"):
        mcnemar_p([1, 0], [1], [1, 0])
