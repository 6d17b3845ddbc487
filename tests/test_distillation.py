"""Knowledge distillation: the loss against its definition and PyTorch's KL divergence, the T^2 gradient
scaling, the data plumbing (teacher rows stay with their examples), errors, and a student that learns to
agree with a teacher."""
import math

import pytest
import torch
import torch.nn.functional as F

from ptlm_course.bert import BertConfig, BertForSequenceClassification
from ptlm_course.data import Example
from ptlm_course.distillation import distillation_loss, make_distillation_loss_fn, with_teacher_logits
from ptlm_course.finetuning import encode_examples, make_get_batch, predict
from ptlm_course.training import TrainConfig, train


class ToyTokenizer:
    def encode(self, text):
        return [1 + ord(c) % 40 for c in text]


def tiny_bert(seed=0, d_model=16):
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=60, d_model=d_model, n_layers=1, n_heads=2, d_ff=2 * d_model,
        max_position_embeddings=32, dropout=0.0, attention_dropout=0.0))


def logits_pair(seed=0, B=5, K=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, K, generator=g) * 2, torch.randn(B, K, generator=g) * 2


@pytest.mark.parametrize("T", [1.0, 2.0, 4.5])
def test_soft_term_equals_t_squared_times_pytorch_kl_divergence(T):
    student, teacher = logits_pair()
    expected = F.kl_div(F.log_softmax(student / T, -1), F.log_softmax(teacher / T, -1), log_target=True,
                        reduction="batchmean") * T ** 2
    torch.testing.assert_close(distillation_loss(student, teacher, temperature=T), expected)


def test_by_hand_on_one_example():
    # teacher (0.8, 0.2), student (0.5, 0.5) at T = 1: KL = 0.8 ln(0.8/0.5) + 0.2 ln(0.2/0.5)
    teacher = torch.log(torch.tensor([[0.8, 0.2]]))
    student = torch.zeros(1, 2)
    expected = 0.8 * math.log(1.6) + 0.2 * math.log(0.4)
    assert distillation_loss(student, teacher, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)


def test_zero_when_the_student_copies_the_teacher_and_positive_otherwise():
    student, teacher = logits_pair()
    assert distillation_loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(teacher + 5.0, teacher).item() == pytest.approx(0.0, abs=1e-5)   # shifted rows
    assert distillation_loss(student, teacher).item() > 0.01


def test_teacher_log_probabilities_work_as_well_as_logits():
    student, teacher = logits_pair(1)
    torch.testing.assert_close(distillation_loss(student, teacher, 3.0),
                               distillation_loss(student, teacher.log_softmax(-1), 3.0))


def test_gradient_is_temperature_times_the_difference_of_softened_probabilities():
    """d/ds [T^2 KL(p_t || p_s)] = T (p_s - p_t) / B: the T^2 factor keeps gradients comparable across T."""
    student, teacher = logits_pair(2)
    for T in (1.0, 3.0):
        s = student.clone().requires_grad_(True)
        distillation_loss(s, teacher, temperature=T).backward()
        expected = T * ((student / T).softmax(-1) - (teacher / T).softmax(-1)) / len(student)
        torch.testing.assert_close(s.grad, expected)


def test_no_gradient_reaches_the_teacher():
    student, teacher = logits_pair(3)
    teacher.requires_grad_(True)
    distillation_loss(student.requires_grad_(True), teacher).backward()
    assert teacher.grad is None


def test_alpha_mixes_in_the_hard_label_cross_entropy():
    student, teacher = logits_pair(4)
    labels = torch.tensor([0, 2, 1, 1, 0])
    ce = F.cross_entropy(student, labels)
    soft = distillation_loss(student, teacher, 2.0)
    torch.testing.assert_close(distillation_loss(student, teacher, 2.0, labels, alpha=0.0), ce)
    torch.testing.assert_close(distillation_loss(student, teacher, 2.0, labels, alpha=0.3), 0.3 * soft + 0.7 * ce)


def test_errors_are_explained():
    student, teacher = logits_pair()
    with pytest.raises(ValueError, match=r"same shape \(B, K\), but got \(5, 3\) and \(4, 3\)"):
        distillation_loss(student, teacher[:4])
    with pytest.raises(TypeError, match=r"`teacher_logits` should be a float tensor of shape \(B, K\)"):
        distillation_loss(student, teacher.argmax(-1))
    with pytest.raises(ValueError, match=r"`temperature` should be a number > 0.0, but got int 0"):
        distillation_loss(student, teacher, temperature=0)
    with pytest.raises(ValueError, match=r"`alpha` should be a number in \[0.0, 1.0\], but got float 1.5"):
        distillation_loss(student, teacher, alpha=1.5)
    with pytest.raises(ValueError, match=r"`labels` should be a \(B,\) = \(5,\) tensor of class ids"):
        distillation_loss(student, teacher, alpha=0.5)
    with pytest.raises(ValueError, match="`temperature` should be a number > 0.0"):
        make_distillation_loss_fn(temperature=-1.0)


EXAMPLES = [Example(t, i % 2) for i, t in enumerate(
    ["a fine film", "dull", "a truly wonderful, moving story", "bad", "not good at all, sadly", "superb",
     "tedious and long", "fun", "a mess", "charming from start to finish"])]


def test_teacher_rows_travel_with_their_examples_through_batching():
    data = encode_examples(EXAMPLES, ToyTokenizer(), max_length=40, pad_id=0)
    marks = torch.arange(len(EXAMPLES), dtype=torch.float).unsqueeze(1).repeat(1, 3)   # row i holds i
    batch = make_get_batch(with_teacher_logits(data, marks), batch_size=4)("train", torch.Generator().manual_seed(1))
    assert batch["teacher_logits"].shape == (4, 3)                     # all 3 columns, though batches are trimmed
    for row, ids in zip(batch["teacher_logits"][:, 0].long().tolist(), batch["input_ids"]):
        n = int((ids != 0).sum())
        assert ids[:n].tolist() == data["input_ids"][row, :n].tolist()
    with pytest.raises(ValueError, match="one row per example: 10 rows, but it has 9"):
        with_teacher_logits(data, marks[:9])
    with pytest.raises(KeyError, match="with_teacher_logits"):
        make_distillation_loss_fn()(tiny_bert(), make_get_batch(data, batch_size=2)("train", torch.Generator()))


def test_a_student_learns_to_agree_with_its_teacher():
    """A different, smaller random BERT is the 'teacher'; distillation alone (no labels) makes a student
    that starts near chance agree with it on most training examples."""
    data = encode_examples(EXAMPLES * 4, ToyTokenizer(), max_length=40, pad_id=0)
    teacher = tiny_bert(seed=7, d_model=8)
    with torch.no_grad():
        teacher.classifier.weight.mul_(30)                             # confident, varied decisions
    _, teacher_probs = predict(teacher, data)
    taught = with_teacher_logits(data, teacher_probs.log())
    student = tiny_bert(seed=0)
    before = (predict(student, data)[0] == teacher_probs.argmax(-1)).float().mean().item()
    config = TrainConfig(steps=150, lr=3e-3, warmup_steps=10, eval_batches=0, seed=0, progress=False, device="cpu")
    history = train(student, config, make_get_batch(taught, batch_size=8), make_distillation_loss_fn(2.0))
    after = (predict(student, data)[0] == teacher_probs.argmax(-1)).float().mean().item()
    assert 0.0 < teacher_probs.argmax(-1).float().mean() < 1.0       # the teacher does not say one class only
    assert after >= 0.9 and after > before, (before, after)
    assert history.train[-1]["loss"] < history.train[0]["loss"]
