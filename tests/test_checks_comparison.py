"""The checks of exercise 08 accept a correct answer and name the classic mistakes (see also the corpus)."""
import sys
from pathlib import Path

import pytest

from ptlm_course.checks._core import CheckFailed
from ptlm_course.checks.comparison import check_word_masked_nll, check_word_pll_experiment

sys.path.insert(0, str(Path(__file__).parent))
from wrong_answers.comparison import (experiment_ok, experiment_wrong_conclusion, gather_style,  # noqa: E402
                                      lesson_rule, whole_word)


def test_a_correct_rule_passes(capsys):
    check_word_masked_nll(gather_style)
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("answer, named", [(lesson_rule, "masked only token i"), (whole_word, "earlier ones too")])
def test_masking_mistakes_are_named(answer, named):
    with pytest.raises(CheckFailed, match=named):
        check_word_masked_nll(answer)


def test_the_experiment_check_re_measures_and_tests_the_conclusion(capsys):
    check_word_pll_experiment(experiment_ok)
    assert "✅" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="the measurements say"):
        check_word_pll_experiment(experiment_wrong_conclusion)
