"""Metrics: perplexity, masked-LM accuracy and classification accuracy on hand-checked examples."""
import math

import pytest
import torch
import torch.nn.functional as F

from ptlm_course.metrics import accuracy, masked_accuracy, perplexity


def test_perplexity_of_a_uniform_guess_is_the_vocabulary_size():
    assert perplexity(math.log(65)) == pytest.approx(65)
    assert perplexity(0) == 1.0                                       # certain and right
    assert perplexity(torch.tensor(math.log(2.0))) == pytest.approx(2.0)
    logits = torch.zeros(4, 10)                                       # uniform over 10 classes
    assert perplexity(F.cross_entropy(logits, torch.tensor([0, 3, 5, 9]))) == pytest.approx(10)
    assert perplexity(1e4) == math.inf                                # overflow is infinite, not an error


def test_perplexity_errors():
    with pytest.raises(ValueError, match="never negative, but got -0.5"):
        perplexity(-0.5)
    with pytest.raises(ValueError, match=r"should be one number \(the mean loss\), but got tensor of shape \(3,\)"):
        perplexity(torch.ones(3))
    with pytest.raises(TypeError, match="should be a number .* but got str '2.0'"):
        perplexity("2.0")


def test_masked_accuracy_counts_only_labelled_positions():
    # B=1, T=4, V=3: predictions (argmax) are 2, 0, 1, 1
    logits = torch.tensor([[[0.1, 0.2, 0.9], [2.0, 1.0, 0.0], [0.0, 5.0, 1.0], [0.3, 0.4, 0.2]]])
    labels = torch.tensor([[2, -100, 0, 1]])                        # right, ignored, wrong, right
    assert masked_accuracy(logits, labels) == pytest.approx(2 / 3)
    assert masked_accuracy(logits, torch.tensor([[2, 0, 1, 1]])) == 1.0
    assert masked_accuracy(logits, torch.tensor([[0, 7, 0, 1]]), ignore_index=7) == pytest.approx(1 / 3)
    assert masked_accuracy(logits[0], labels[0]) == pytest.approx(2 / 3)   # flat (N, V) / (N,) works too
    assert math.isnan(masked_accuracy(logits, torch.full((1, 4), -100)))  # nothing to score


def test_accuracy_for_classification():
    logits = torch.tensor([[2.0, -1.0], [0.1, 0.3], [5.0, 4.0], [-2.0, 0.0], [0.0, 1.0]])  # predicts 0 1 0 1 1
    assert accuracy(logits, torch.tensor([0, 1, 1, 1, 0])) == pytest.approx(3 / 5)
    assert accuracy(logits, logits.argmax(-1)) == 1.0


def test_shape_and_type_mismatches_are_explained():
    with pytest.raises(ValueError, match=r"the shape of `labels` plus one last dimension.*logits \(2, 4, 5\) "
                                         r"and labels \(2, 3\)"):
        masked_accuracy(torch.zeros(2, 4, 5), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits \(3, 2\) and labels \(4,\)"):
        accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`logits` should have 2 dimensions \(B, K\), but got shape \(3,\)"):
        accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="`labels` should hold integer class ids .* but its dtype is torch.float32"):
        accuracy(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(TypeError, match="`logits` should hold floating-point numbers"):
        masked_accuracy(torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"`logits` should be a torch.Tensor \(B, K\), but got list"):
        accuracy([[0.1, 0.9]], torch.tensor([1]))


# --------------------------------------------------------------------------------------------------
# Confusion matrix, precision, recall, F1 (scikit-learn's definitions, checked by hand)
# --------------------------------------------------------------------------------------------------

from ptlm_course.metrics import (  # noqa: E402
    classification_report, confusion_matrix, format_report, plot_confusion_matrix, precision_recall_f1,
)

# 7 examples, 3 classes. By hand:
#   class 0: true at 0, 5, 6; predicted at 0, 6      -> TP 2, FP 0, FN 1: P = 1,   R = 2/3, F1 = 0.8
#   class 1: true at 1, 4;    predicted at 1, 2      -> TP 1, FP 1, FN 1: P = 1/2, R = 1/2, F1 = 0.5
#   class 2: true at 2, 3;    predicted at 3, 4, 5   -> TP 1, FP 2, FN 1: P = 1/3, R = 1/2, F1 = 0.4
PREDS = [0, 1, 1, 2, 2, 2, 0]
LABELS = [0, 1, 2, 2, 1, 0, 0]


def test_confusion_matrix_rows_are_the_true_class():
    cm = confusion_matrix(torch.tensor(PREDS), torch.tensor(LABELS), 3)
    assert cm.tolist() == [[2, 0, 1],
                           [0, 1, 1],
                           [0, 1, 1]]
    assert confusion_matrix([1, 1], [0, 1], 2).tolist() == [[0, 1], [0, 1]]
    assert confusion_matrix([1, 1], [0, 1], 4).shape == (4, 4)


def test_precision_recall_f1_per_class_and_macro():
    p, r, f = precision_recall_f1(PREDS, LABELS, 3, average=None)
    torch.testing.assert_close(p, torch.tensor([1, 1 / 2, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(r, torch.tensor([2 / 3, 1 / 2, 1 / 2], dtype=torch.float64))
    torch.testing.assert_close(f, torch.tensor([0.8, 0.5, 0.4], dtype=torch.float64))
    macro = precision_recall_f1(PREDS, LABELS, 3)
    assert macro == pytest.approx(((1 + 1 / 2 + 1 / 3) / 3, (2 / 3 + 1 / 2 + 1 / 2) / 3, (0.8 + 0.5 + 0.4) / 3))


def test_binary_scores_class_one():
    # TP = 2 (positions 0, 3), FP = 1 (position 1), FN = 2 (positions 4, 5)
    preds, labels = [1, 1, 0, 1, 0, 0], [1, 0, 0, 1, 1, 1]
    assert precision_recall_f1(preds, labels, 2, average="binary") == pytest.approx((2 / 3, 2 / 4, 4 / 7))


def test_zero_division_gives_zero_as_scikit_learn():
    # class 1 is never predicted (precision 0/0 -> 0) and class 2 never occurs (recall 0/0 -> 0)
    p, r, f = precision_recall_f1([0, 0, 2], [0, 1, 1], 3, average=None)
    # class 0: TP 1, FP 1, FN 0 -> P = 1/2, R = 1, F1 = 2/3; class 2 is predicted once but never true: P = 0
    assert p.tolist() == [0.5, 0.0, 0.0] and r.tolist() == [1.0, 0.0, 0.0]
    assert f.tolist() == pytest.approx([2 / 3, 0.0, 0.0])
    assert precision_recall_f1([0, 0], [0, 0], 2, average="binary") == (0.0, 0.0, 0.0)


def test_classification_report_and_its_table():
    report = classification_report(PREDS, LABELS, 3, class_names=["neg", "neutral", "pos"])
    assert report["accuracy"] == pytest.approx(4 / 7)
    assert report["per_class"]["neg"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert report["per_class"]["pos"]["support"] == 2 and report["macro"]["support"] == 7
    assert report["macro"]["f1"] == pytest.approx(1.7 / 3)
    assert report["confusion_matrix"] == [[2, 0, 1], [0, 1, 1], [0, 1, 1]]
    table = format_report(report)
    assert "neutral" in table and "0.567" in table and table.splitlines()[-1].split() == ["accuracy", "0.571"]
    assert list(classification_report([0, 1], [0, 1], 2)["per_class"]) == ["0", "1"]


def test_plot_confusion_matrix_labels_every_cell():
    import matplotlib
    matplotlib.use("Agg")
    ax = plot_confusion_matrix(confusion_matrix(PREDS, LABELS, 3), ["a", "b", "c"])
    assert [t.get_text() for t in ax.texts] == ["2", "0", "1", "0", "1", "1", "0", "1", "1"]
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    ax = plot_confusion_matrix(torch.tensor([[3, 1], [0, 4]]), normalize=True)
    assert [t.get_text() for t in ax.texts] == ["0.75", "0.25", "0.00", "1.00"]


def test_classification_metric_errors():
    with pytest.raises(ValueError, match=r"`preds` should hold class ids in \[0, 1\], but contains \[2\]"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(TypeError, match=r"integer class ids, but its dtype is torch.float32 \(for logits, pass "
                                        r"logits.argmax\(-1\)\)"):
        confusion_matrix(torch.zeros(3, 2), [0, 1, 1], 2)
    with pytest.raises(ValueError, match="3 predictions and 2 labels"):
        confusion_matrix([0, 1, 1], [0, 1], 2)
    with pytest.raises(ValueError, match="`num_classes` should be an integer >= 2"):
        confusion_matrix([0], [0], 1)
    with pytest.raises(ValueError, match="average='binary' needs num_classes = 2"):
        precision_recall_f1(PREDS, LABELS, 3, average="binary")
    with pytest.raises(ValueError, match="`average` should be 'macro', 'binary' or None, but got str 'micro'"):
        precision_recall_f1(PREDS, LABELS, 3, average="micro")
    with pytest.raises(ValueError, match=r"one name per class \(3\)"):
        classification_report(PREDS, LABELS, 3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="`labels` is empty"):
        confusion_matrix([], [], 2)
