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
