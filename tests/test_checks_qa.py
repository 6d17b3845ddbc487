"""The check of exercise 17 accepts correct decoders and names the classic mistakes (see also the corpus)."""
import sys
from pathlib import Path

import pytest

from ptlm_course.checks._core import CheckFailed
from ptlm_course.checks.qa import check_decode_batch
from ptlm_course.qa import best_spans

sys.path.insert(0, str(Path(__file__).parent))
from wrong_answers.qa import (decode_exclusive_end, decode_limit_inclusive, decode_loops,  # noqa: E402
                              decode_never_null, decode_no_order, decode_threshold_zero)


@pytest.mark.parametrize("answer", [best_spans, decode_loops], ids=["package", "loops"])
def test_correct_decoders_pass(answer, capsys):
    check_decode_batch(answer)
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("answer, named", [
    (decode_no_order, "end before they start"), (decode_limit_inclusive, "off by one"),
    (decode_never_null, "'no answer' case is ignored"), (decode_threshold_zero, "null_threshold is ignored"),
    (decode_exclusive_end, "inclusive")])
def test_decoding_mistakes_are_named(answer, named):
    with pytest.raises(CheckFailed, match=named):
        check_decode_batch(answer)


def test_an_unwritten_answer_says_so():
    def todo(*args):
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not written yet"):
        check_decode_batch(todo)
