"""The checks of exercise 10 accept correct answers and name the classic mistakes (see also the corpus)."""
import sys
from pathlib import Path

import pytest

from ptlm_course.checks._core import CheckFailed
from ptlm_course.checks.pretrained import check_knn_experiment, check_knn_predict

sys.path.insert(0, str(Path(__file__).parent))
from wrong_answers.knn import experiment_ok, experiment_wrong_conclusion, knn_argsort, knn_dot  # noqa: E402


def test_a_correct_classifier_passes(capsys):
    check_knn_predict(knn_argsort)
    assert "✅" in capsys.readouterr().out


def test_dot_products_are_named():
    with pytest.raises(CheckFailed, match="dot products"):
        check_knn_predict(knn_dot)


def test_the_experiment_check_re_measures_and_tests_the_conclusion(capsys):
    check_knn_experiment(experiment_ok)
    assert "✅" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="majority class"):
        check_knn_experiment(experiment_wrong_conclusion)
