"""The exercise checks on a corpus of realistic answers (tests/wrong_answers/).

Targets (issue 18): every correct style accepted; of the wrong answers at least 98% rejected and at least
85% rejected with a message that names the mistake (contains the answer's key words).
``python -m wrong_answers.measure [batch ...]`` (from tests/) prints the same rates for one batch.
"""
import pytest

from wrong_answers import CORRECT, WRONG
from wrong_answers.measure import label, measure, run


def test_corpus_is_large_enough():
    assert len(WRONG) >= 150, len(WRONG)
    assert len(CORRECT) >= 50, len(CORRECT)
    assert len({label(e) for e in WRONG}) == len(WRONG), "each wrong answer has its own name"


@pytest.mark.parametrize("check_name, answer", CORRECT, ids=[label(e) for e in CORRECT])
def test_every_correct_style_is_accepted(check_name, answer):
    message = run(check_name, answer)
    assert message is None, f"{check_name} rejected a correct answer: {message}"


def test_wrong_answers_are_rejected_and_named(capsys):
    rejected, named, accepted, unnamed = measure(WRONG)
    with capsys.disabled():
        print(f"\n{len(WRONG)} wrong answers: {rejected:.1%} rejected, {named:.1%} with a message naming the mistake")
    report = "\n".join(["accepted:"] + accepted + ["not named:"] + unnamed)
    assert rejected >= 0.98, report
    assert named >= 0.85, report


def test_no_message_names_a_mistake_by_quoting_the_answers_name():
    """A key word found only in the function's own name (quoted by an error message) names nothing."""
    for check_name, keywords, answer in WRONG:
        message = run(check_name, answer)
        if message and answer.__name__ in message:
            rest = message.replace(answer.__name__, "").lower()
            assert all(word.lower() in rest for word in keywords), f"{label((check_name, answer))}: {message}"
