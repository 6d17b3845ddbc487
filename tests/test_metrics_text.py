"""chrF equals sacreBLEU's (values computed with sacreBLEU 2.6.0, and compared live when it is installed);
entity-level F1 on hand-checked BIO examples."""
import pytest

from ptlm_course.metrics import bio_spans, chrf, entity_f1

HYPS = ["Now, fair Hippolyta our nuptial hour", "draws on apace four happy days bring in", "abc",
        "the cat sat on the mat", ""]
REFS = ["Now, fair Hippolyta, our nuptial hour", "Draws on apace; four happy days bring in", "xyz",
        "the cat is on the mat", "nothing"]
SACREBLEU = [88.3570112979728, 85.44384789758466, 0.0, 64.5779420625287, 0.0]     # CHRF().sentence_score
SACREBLEU_CORPUS = 77.95112744695149                                                 # CHRF().corpus_score


def test_chrf_equals_sacrebleus_sentence_and_corpus_scores():
    for hyp, ref, expected in zip(HYPS, REFS, SACREBLEU):
        assert chrf([hyp], [ref]) == pytest.approx(expected, abs=1e-9)
    assert chrf(HYPS, REFS) == pytest.approx(SACREBLEU_CORPUS, abs=1e-9)
    assert chrf(["same text"], ["same text"]) == pytest.approx(100.0)
    assert chrf(["a b c"], ["abc"]) == pytest.approx(100.0)                          # whitespace is ignored


def test_chrf_equals_sacrebleu_live_when_installed():
    sacrebleu = pytest.importorskip("sacrebleu")
    scorer = sacrebleu.metrics.CHRF()
    assert chrf(HYPS, REFS) == pytest.approx(scorer.corpus_score(HYPS, [REFS]).score, abs=1e-9)


def test_chrf_bad_input():
    with pytest.raises(TypeError, match="lists of strings"):
        chrf("a sentence", "a sentence")
    with pytest.raises(ValueError, match="same length"):
        chrf(["a"], ["a", "b"])


def test_bio_spans_read_as_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-PER", "O", "B-PER"]
    assert bio_spans(tags) == {("PER", 0, 1), ("LOC", 3, 4), ("LOC", 5, 5), ("PER", 6, 6), ("PER", 8, 8)}
    assert bio_spans(["O", "O"]) == set()
    with pytest.raises(ValueError, match="tag 1"):
        bio_spans(["O", "PER"])


def test_entity_f1_counts_exact_spans_only():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-PER"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["O", "B-PER"]]          # the first PER is cut short: a miss
    scores = entity_f1(pred, gold)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert entity_f1(gold, gold)["f1"] == 1.0
    assert entity_f1([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="Sentence 0 has 1 predicted tags but 2 gold"):
        entity_f1([["O"]], [["O", "O"]])
