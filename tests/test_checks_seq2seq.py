"""The check of exercise 18 accepts correct beam searches and names the classic mistakes (see also the corpus)."""
import sys
from pathlib import Path

import pytest
import torch

from ptlm_course.checks._core import CheckFailed
from ptlm_course.checks.seq2seq import _CASES, _MISTAKES, check_beam_search, check_model, reference_beam_search

sys.path.insert(0, str(Path(__file__).parent))
from wrong_answers.seq2seq import (beam_all_beams_at_start, beam_drops_finished, beam_expands_finished,  # noqa: E402
                                   beam_length_counts_start, beam_loop, beam_multiplies_probabilities,
                                   beam_no_length_penalty, beam_package, beam_returns_normalised_score,
                                   beam_tensors, beam_top1_per_beam, beam_without_start_token)


@pytest.mark.parametrize("answer", [beam_loop, beam_tensors, beam_package], ids=["loop", "tensors", "package"])
def test_correct_beam_searches_pass(answer, capsys):
    check_beam_search(answer)
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("text, flags", _MISTAKES, ids=[next(iter(f)) for _, f in _MISTAKES])
def test_every_mistake_changes_some_case(text, flags):
    """Each classic mistake gives another target than the reference on at least one of the check's cases."""
    differs = 0
    for seed, K, n, lp in _CASES:
        model = check_model(seed)
        src = torch.randint(3, 10, (1, 6), generator=torch.Generator().manual_seed(seed))
        differs += reference_beam_search(model, src, K, n, lp) != reference_beam_search(model, src, K, n, lp, **flags)
    assert differs, text


@pytest.mark.parametrize("answer, named", [
    (beam_all_beams_at_start, "ONE live beam"), (beam_top1_per_beam, "per beam"),
    (beam_drops_finished, "dropped"), (beam_expands_finished, "keep expanding"),
    (beam_no_length_penalty, "length penalty is missing"), (beam_length_counts_start, "counts the start token"),
    (beam_multiplies_probabilities, "multiplied"), (beam_returns_normalised_score, "length-normalised"),
    (beam_without_start_token, "start with the start token")])
def test_beam_search_mistakes_are_named(answer, named):
    with pytest.raises(CheckFailed, match=named):
        check_beam_search(answer)


def test_an_unwritten_answer_and_a_wrong_return_type_say_so():
    def todo(*args):
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not written yet"):
        check_beam_search(todo)
    with pytest.raises(CheckFailed, match="pair"):
        check_beam_search(lambda *args: [1, 2, 3])
