"""The check of exercise 20 accepts correct soft prompts and names the classic mistakes (see also the corpus)."""
import sys
from pathlib import Path

import pytest
import torch.nn as nn

from ptlm_course.checks._core import CheckFailed
from ptlm_course.checks.prompt_tuning import check_soft_prompt

sys.path.insert(0, str(Path(__file__).parent))
from wrong_answers.prompt_tuning import (_by_hand, _not_extended, _prompt_after_text, _prompt_before_cls,  # noqa: E402
                                         _right, _soft_prompt, _text_positions_moved, _zeros_in_front)


@pytest.mark.parametrize("answer", [_soft_prompt(_right), _soft_prompt(_by_hand)], ids=["cat", "by hand"])
def test_correct_soft_prompts_pass(answer, capsys):
    check_soft_prompt(answer)
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("inputs, named", [
    (_text_positions_moved, "positions are shifted"), (_prompt_after_text, "appended after the text"),
    (_prompt_before_cls, r"in front of \[CLS\]"),
    (_not_extended, "mask is not extended"), (_zeros_in_front, "masked out")])
def test_input_mistakes_are_named(inputs, named):
    with pytest.raises(CheckFailed, match=named):
        check_soft_prompt(_soft_prompt(inputs))


@pytest.mark.parametrize("flags, named", [
    ({"freeze": False}, "base model is not frozen"), ({"head": False}, "classifier is frozen"),
    ({"parameter": False}, "not an nn.Parameter"), ({"grad": False}, "not trainable")])
def test_set_up_mistakes_are_named(flags, named):
    with pytest.raises(CheckFailed, match=named):
        check_soft_prompt(_soft_prompt(_right, **flags))


def test_an_unwritten_answer_says_so():
    class Todo(nn.Module):
        def __init__(self, model, n_prompt):
            raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not written yet"):
        check_soft_prompt(Todo)
