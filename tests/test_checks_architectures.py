"""The check of exercise 21 accepts correct decoder-only batches and names the classic mistakes (see also the
corpus in tests/wrong_answers/architectures.py)."""
import sys
from pathlib import Path

import pytest

from ptlm_course.checks._core import CheckFailed
from ptlm_course.checks.architectures import _MISTAKES, _batch, _cases, check_prompted_batch

sys.path.insert(0, str(Path(__file__).parent))
from wrong_answers.architectures import batch_with_lists, batch_with_pad_sequence, batch_with_tensors  # noqa: E402


@pytest.mark.parametrize("answer", [batch_with_lists, batch_with_tensors, batch_with_pad_sequence])
def test_correct_batches_pass(answer, capsys):
    check_prompted_batch(answer)
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("text, flag", _MISTAKES, ids=[next(iter(f)) for _, f in _MISTAKES])
def test_each_mistake_is_named(text, flag):
    with pytest.raises(CheckFailed) as failure:
        check_prompted_batch(lambda pairs, sep, pad: _batch(pairs, sep, pad, **flag))
    assert text in failure.value.message


def test_every_mistake_changes_some_batch():
    """A mistake that left every case unchanged could never be caught: each one must differ somewhere."""
    for _, flag in _MISTAKES:
        assert any(_batch(pairs, **flag) != _batch(pairs) for pairs in _cases()), flag


def test_an_unwritten_answer_says_so():
    def todo(pairs, sep_id, pad_id):
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="NotImplementedError|not written|YOUR CODE"):
        check_prompted_batch(todo)
