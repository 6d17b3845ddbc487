"""The checks of exercise 13 accept correct answers and name each classic mistake; the experiments' checks
verify the stated numbers by re-running the experiment."""
import pytest

from ptlm_course.checks import CheckFailed
from ptlm_course.checks.adaptation import (check_coverage_experiment, check_fragmented_share,
                                           check_lr_sweep_experiment, continued_mlm, coverage_setup, held_out_losses,
                                           lr_sweep_setup)


def fails_with(check, fn, message):
    with pytest.raises(CheckFailed, match=message):
        check(fn)


def not_written(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("check", [check_fragmented_share, check_coverage_experiment, check_lr_sweep_experiment])
def test_unwritten_code_is_reported(check):
    fails_with(check, not_written, "is not written yet")


# --- fragmented share -------------------------------------------------------------------------------

def share(kind="ok"):
    def fn(texts, tokenize, min_pieces=3):
        words = [w for t in texts for w in t.split()]
        if kind == "set":
            words = list(set(words))
        n = [len(tokenize(w)) for w in words]
        if kind == "strict":
            return sum(k > min_pieces for k in n) / len(n)
        if kind == "count":
            return sum(k >= min_pieces for k in n)
        return sum(k >= min_pieces for k in n) / len(n)
    return fn


def test_fragmented_share_accepts_correct_answer(capsys):
    check_fragmented_share(share())
    assert "✅" in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [("strict", "MORE than"), ("count", "divide by the number of words"),
                                           ("set", "distinct word")])
def test_fragmented_share_names_mistakes(kind, message):
    fails_with(check_fragmented_share, share(kind), message)


def test_fragmented_share_rejects_a_non_number():
    fails_with(check_fragmented_share, lambda texts, tokenize, min_pieces: "20%", "number between 0 and 1")


# --- the coverage experiment ------------------------------------------------------------------------

def coverage(**changes):
    tokenize, corpora = coverage_setup()
    plays, reviews = (share()(corpora[name], tokenize, 3) for name in ("shakespeare", "reviews"))
    out = {"share_shakespeare": plays, "share_reviews": reviews, "reviews_fragment_more": reviews > plays,
           "more_than_twice_as_often": reviews > 2 * plays}
    return {**out, **changes}


def test_coverage_experiment_accepts_measured_results(capsys):
    check_coverage_experiment(coverage)
    assert "✅" in capsys.readouterr().out


def test_coverage_experiment_rejects_a_wrong_conclusion_and_swapped_corpora():
    results = coverage()
    fails_with(check_coverage_experiment, {**results, "reviews_fragment_more": not results["reviews_fragment_more"]},
               "reviews_fragment_more")
    swapped = {**results, "share_shakespeare": results["share_reviews"], "share_reviews": results["share_shakespeare"]}
    fails_with(check_coverage_experiment, swapped, "swapped")


# --- the learning-rate sweep (small budget: seconds) ------------------------------------------------

@pytest.fixture(scope="module")
def sweep(monkeypatch_module):
    setup = lr_sweep_setup()
    before = held_out_losses(setup, setup.bert)
    after = {lr: held_out_losses(setup, continued_mlm(setup, lr)) for lr in setup.lr_grid}
    review = {lr: a["reviews"] for lr, a in after.items()}
    plays = {lr: a["shakespeare"] for lr, a in after.items()}
    best = min(review, key=review.get)
    return {"review_loss_before": before["reviews"], "shakespeare_loss_before": before["shakespeare"],
            "review_loss": review, "shakespeare_loss": plays, "best_lr": best,
            "adaptation_lowers_review_loss": review[best] < before["reviews"],
            "best_lr_forgets_shakespeare": plays[best] > before["shakespeare"],
            "largest_lr_is_best": best == max(setup.lr_grid)}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    mp.setenv("PTLM_BUDGET", "small")
    yield mp
    mp.undo()


def test_sweep_setup_is_deterministic(monkeypatch_module):
    setup = lr_sweep_setup()
    a = held_out_losses(setup, continued_mlm(setup, 5e-4))
    b = held_out_losses(setup, continued_mlm(setup, 5e-4))
    assert a == b


def test_lr_sweep_accepts_the_measured_results(sweep, capsys):
    check_lr_sweep_experiment(dict(sweep))
    assert "✅" in capsys.readouterr().out


def test_lr_sweep_names_a_wrong_pick_and_wrong_numbers(sweep):
    worst = max(sweep["review_loss"], key=sweep["review_loss"].get)
    fails_with(check_lr_sweep_experiment, {**sweep, "best_lr": worst}, "HIGHEST")
    fails_with(check_lr_sweep_experiment, {**sweep, "best_lr": 3e-3}, "one of the grid")
    made_up = {lr: v + 0.5 for lr, v in sweep["review_loss"].items()}
    fails_with(check_lr_sweep_experiment, {**sweep, "review_loss": made_up}, "re-running the experiment gives")
    flipped = {**sweep, "largest_lr_is_best": not sweep["largest_lr_is_best"]}
    fails_with(check_lr_sweep_experiment, flipped, "largest_lr_is_best")
    missing = {k: v for k, v in sweep.items() if k != "best_lr_forgets_shakespeare"}
    fails_with(check_lr_sweep_experiment, missing, "miss the key")
