"""Checks for exercises/01_tokenization.ipynb: pair counts (in one list, over a word table), merging a pair (in one
list, inside every word of a table), WordPiece on one word and on a sentence.

Each check runs the student's function on varied inputs and compares with the course's reference.
When a wrong answer equals what a known mistake would give, the message names that mistake.
"""
from __future__ import annotations

import random
import re
from collections.abc import Mapping

from ..bpe import get_pair_counts as _reference_pair_counts
from ..bpe import merge as _reference_merge
from ..validation import describe
from ..wordpiece import wordpiece_word as _reference_wordpiece
from ._core import CheckFailed, call_student, expect_equal, passed

__all__ = ["check_pair_counts", "check_merge", "check_merge_words", "check_wordpiece", "check_wordpiece_sentence",
           "check_word_pair_counts"]


# ------------------------------------------------------------------------------------ pair counts
def _pairs_no_last(ids):
    counts = {}
    for i in range(len(ids) - 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def _pairs_no_first(ids):
    counts = {}
    for i in range(1, len(ids) - 1):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


def _pairs_once_each(ids):
    return {pair: 1 for pair in zip(ids, ids[1:])}


def _pairs_no_overlap(ids):
    counts, i = {}, 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if pair[0] == pair[1] else 1
    return counts


def _pairs_stride_two(ids):
    counts = {}
    for i in range(0, len(ids) - 1, 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


_PAIR_MISTAKES = [
    ("pairs overlap when counting: in [7, 7, 7] the pair (7, 7) occurs twice (positions 0-1 and 1-2). "
     "Only *merging* skips overlaps.", _pairs_no_overlap),
    ("the last pair is missing: a list of n ids has n - 1 adjacent pairs, so loop over "
     "`range(len(ids) - 1)` (or `zip(ids, ids[1:])`).", _pairs_no_last),
    ("the first pair is missing: pairs start at position 0, (ids[0], ids[1]), so loop over "
     "`range(len(ids) - 1)` (or `zip(ids, ids[1:])`).", _pairs_no_first),
    ("every pair has count 1: count how often each pair occurs (add 1 each time you see it), "
     "don't just record that it occurs.", _pairs_once_each),
    ("you step two positions at a time: pairs start at every position, (ids[0], ids[1]), "
     "(ids[1], ids[2]), ...", _pairs_stride_two),
]


def _pair_cases():
    rng = random.Random(1)
    return [
        [1, 2, 1, 2, 3],
        [7, 7, 7],
        [7, 7, 7, 7, 1],
        [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5],
        [104, 101, 108, 108, 111],
        [42],
        [],
        [rng.randrange(5) for _ in range(60)],
        [rng.randrange(300) for _ in range(200)],
    ]


def _as_counts(check: str, result) -> dict:
    if not isinstance(result, Mapping):
        raise CheckFailed(check, "should return a dict mapping each pair (a, b) to its count, but it returned "
                                 f"{describe(result)}.")
    counts = {}
    for pair, count in result.items():
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise CheckFailed(check, f"the keys should be pairs (tuples of two ids), but one key is {describe(pair)}.")
        if count:                                  # a Counter may hold zeros; they mean "absent"
            counts[tuple(int(x) for x in pair)] = count
    return counts


def _same(expected, answer) -> bool:
    return (list(expected) == list(answer)) if isinstance(expected, list) else expected == answer


def _consistent_first(mistakes, cases, answers):
    """The mistakes that reproduce the student's answer on every case come first (a mistake that only
    happens to agree on one case is a weaker diagnosis)."""
    everywhere = [m for m in mistakes if all(_same(m[1](*case), answer) for case, answer in zip(cases, answers))]
    return everywhere + [m for m in mistakes if m not in everywhere]


def check_pair_counts(fn) -> None:
    """Check ``fn(ids) -> {(a, b): count}`` (a dict or a Counter) on varied lists of ids."""
    check = "check_pair_counts"
    cases = _pair_cases()
    answers = []
    for ids in cases:
        original = list(ids)
        result = call_student(check, fn, ids)
        if ids != original:
            raise CheckFailed(check, f"`{getattr(fn, '__name__', 'fn')}` changed the list it was given; only read it.")
        answers.append(_as_counts(check, result))
    mistakes = _consistent_first(_PAIR_MISTAKES, [(ids,) for ids in cases], answers)
    for ids, counts in zip(cases, answers):
        expect_equal(check, counts, _reference_pair_counts(ids), f"the pair counts of {describe(ids)}",
                     [(message, wrong(ids)) for message, wrong in mistakes])
    passed(check, len(cases))


# ------------------------------------------------------------------------------------ merge
def _merge_overlapping(ids, pair, new_id):
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        elif not (i > 0 and (ids[i - 1], ids[i]) == pair):
            out.append(ids[i])
    return out


def _merge_pairwise_overlap(ids, pair, new_id):
    # "i += 1" after a match: the second id of the pair is kept and may start another match
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1
    return out


def _merge_drop_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return list(ids[:i]) + [new_id] + list(ids[i + 2:])
    return list(ids)


def _merge_keep_both(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out += [new_id, ids[i + 1]]
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_as_text(ids, pair, new_id):
    # merging by text replacement on " ".join(ids): "11 2".replace("1 2", "9") == "19"
    text = " ".join(str(i) for i in ids).replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(t) for t in text.split()]


def _merge_as_padded_text(ids, pair, new_id):
    # the same with spaces around each id: no more collisions, but back-to-back matches share a space
    text = f" {' '.join(str(i) for i in ids)} ".replace(f" {pair[0]} {pair[1]} ", f" {new_id} ")
    return [int(t) for t in text.split()]


_SECOND_ID_KEPT = ("the pair's second id is still there: new_id replaces *both* ids, so after a match "
                   "jump two positions ahead (i += 2).")
_MERGE_MISTAKES = [
    ("overlapping occurrences were both merged: in [5, 5, 5] the pair (5, 5) can be merged only once "
     "(-> [new, 5]); after a match, jump two positions ahead.", _merge_overlapping),
    (_SECOND_ID_KEPT, _merge_pairwise_overlap),
    ("the last element went missing: when the loop stops one short of the end (to look at ids[i + 1]), "
     "the final id still has to be appended.", _merge_drop_last),
    ("only the first occurrence was merged: replace *every* occurrence, left to right.", _merge_first_only),
    (_SECOND_ID_KEPT, _merge_keep_both),
    ("you merged by text replacement on the joined ids: joined as text, the ids 11 and 2 read '11 2' (or '11,2'), "
     "which contains '1 2' (or '1,2'), so multi-digit ids collide. Compare ids, not text: scan the list and test "
     "(ids[i], ids[i + 1]) == pair.", _merge_as_text),
    ("you merged by text replacement on the joined ids, with spaces around them: back-to-back occurrences "
     "share a space, so in ' 1 2 1 2 ' str.replace(' 1 2 ', ...) finds only the first one (the match used up "
     "the space the second needs). Compare ids, not text: scan the list and test (ids[i], ids[i + 1]) == pair.",
     _merge_as_padded_text),
]


def _merge_cases():
    rng = random.Random(2)
    random_ids = [rng.randrange(4) for _ in range(80)]
    return [
        ([1, 2, 3, 1, 2], (1, 2), 9),
        ([5, 5, 5], (5, 5), 9),
        ([5, 5, 5, 5], (5, 5), 9),
        ([3, 1, 2], (1, 2), 9),
        ([3, 1, 2, 4], (1, 2), 256),
        ([1, 2], (2, 1), 9),
        ([1, 2, 1, 2, 1], (2, 1), 300),
        ([11, 2, 3, 1, 2], (1, 2), 9),
        ([1, 21, 4, 1, 2], (1, 2), 30),
        ([12, 31, 2, 1, 23], (1, 2), 7),
        (random_ids, (1, 2), 4),
        (random_ids, (0, 0), 4),
        ([7], (7, 7), 9),                # the edge cases last, so that an answer which fails on them alone
        ([], (1, 2), 9),                 # is first judged on the others (see check_merge)
    ]


def check_merge(fn) -> None:
    """Check ``fn(ids, pair, new_id) -> new list`` (a list or tuple) on varied inputs."""
    check = "check_merge"
    cases = _merge_cases()
    answers = []
    for ids, pair, new_id in cases:
        given = list(ids)
        try:
            result = call_student(check, fn, given, pair, new_id)
        except CheckFailed:
            _compare_merges(check, cases[:len(answers)], answers)   # a known mistake on earlier cases explains more
            raise
        if given != ids:
            raise CheckFailed(check, "the input list was changed: build and return a new list instead of "
                                     "modifying `ids` (the caller may still need it).")
        if result is None:
            raise CheckFailed(check, "it returned None: return the new list of ids.")
        if not isinstance(result, (list, tuple)):
            raise CheckFailed(check, f"should return a list of ids, but it returned {describe(result)}.")
        answers.append(list(result))
    _compare_merges(check, cases, answers)
    passed(check, len(cases))


def _compare_merges(check: str, cases: list, answers: list, in_words: bool = False) -> None:
    """Fail on the first answer that differs from the reference, naming the mistake that explains the most."""
    mistakes = _consistent_first(_MERGE_MISTAKES, cases, answers)
    for (ids, pair, new_id), result in zip(cases, answers):
        shown = ids if len(ids) <= 12 else describe(ids)
        what = (f"the word {tuple(shown) if len(ids) <= 12 else shown} merged with {pair} -> {new_id}" if in_words
                else f"merge({shown}, {pair}, {new_id})")
        expect_equal(check, result, _reference_merge(ids, pair, new_id), what,
                     [(message, wrong(ids, pair, new_id)) for message, wrong in mistakes])


# ------------------------------------------------------------------------------------ merging inside a word table
_TABLE_CASES = [
    ({(1, 2, 3): 5, (3, 1, 2): 2, (4,): 1, (1, 2, 1, 2): 4}, (1, 2), 9),
    ({(7, 7, 7): 3, (7,): 2, (8, 7, 7): 6}, (7, 7), 300),
    ({(10, 4): 1, (4, 10): 2}, (4, 10), 11),
]


def _merge_table(word_freqs, pair, new_id):
    return {tuple(_reference_merge(list(word), pair, new_id)): freq for word, freq in word_freqs.items()}


def _as_table(check: str, result, given: dict) -> dict:
    if result is None:
        raise CheckFailed(check, "it returned None: return the new table {word (a tuple of ids): frequency}.")
    if not isinstance(result, Mapping):
        raise CheckFailed(check, f"should return a dict {{word (a tuple of ids): frequency}}, but it returned "
                                 f"{describe(result)}.")
    for word in result:
        if not isinstance(word, tuple):
            raise CheckFailed(check, f"the keys should be words as tuples of ids (a list cannot be a dict key), but "
                                     f"one key is {describe(word)}: use tuple(merged).")
    return {tuple(int(i) for i in word): freq for word, freq in result.items()}


def check_merge_words(fn) -> None:
    """Check ``fn(word_freqs, pair, new_id) -> new table``: every word merged by the lesson's rule, frequencies kept."""
    check = "check_merge_words"
    cases = _merge_cases()
    answers = []
    for ids, pair, new_id in cases:                     # one word at a time: the merge rule itself
        table = {tuple(ids): 3}
        given = dict(table)
        try:
            result = _as_table(check, call_student(check, fn, given, pair, new_id), table)
        except CheckFailed:
            _compare_merges(check, cases[:len(answers)], answers, in_words=True)
            raise
        if given != table:
            raise CheckFailed(check, "the table it was given was changed: build and return a new dict.")
        if not result and pair not in zip(ids, ids[1:]):
            raise CheckFailed(check, f"the word {tuple(ids)} does not contain {pair} and disappeared: words without "
                                     f"the pair stay in the table, unchanged.")
        if len(result) != 1:
            raise CheckFailed(check, f"a table of one word {tuple(ids)} gave back {len(result)} words: each word of "
                                     f"the table becomes exactly one merged word.")
        (word, freq), = result.items()
        if freq != 3:
            raise CheckFailed(check, f"the word {tuple(ids)} occurs 3 times, but its merged word has frequency "
                                     f"{freq}: keep each word's frequency.")
        answers.append(list(word))
    _compare_merges(check, cases, answers, in_words=True)
    for word_freqs, pair, new_id in _TABLE_CASES:       # whole tables
        given = dict(word_freqs)
        result = _as_table(check, call_student(check, fn, given, pair, new_id), word_freqs)
        expected = _merge_table(word_freqs, pair, new_id)
        missing = [w for w, f in word_freqs.items() if pair not in zip(w, w[1:]) and w not in result]
        if missing:
            raise CheckFailed(check, f"the word {missing[0]} does not contain {pair} and disappeared: words without "
                                     f"the pair stay in the table, unchanged.")
        expect_equal(check, result, expected, f"the table {word_freqs} merged with {pair} -> {new_id}", [
            ("the frequencies were lost: each merged word keeps the frequency of the word it came from.",
             {w: 1 for w in expected}),
        ])
    passed(check, len(cases) + len(_TABLE_CASES))


# ------------------------------------------------------------------------------------ WordPiece
def _wp_shortest(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(start + 1, len(word) + 1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def _wp_greedy(word, vocab, prefix="##", on_stuck="unk"):
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                break
        else:
            if on_stuck == "partial":
                return pieces
            if on_stuck == "append_unk":
                return pieces + ["[UNK]"]
            if on_stuck == "skip":
                start += 1
                continue
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def _wp_bare_fallback(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end]
            if start > 0 and "##" + piece in vocab:
                piece = "##" + piece
                break
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def _wp_bare_fallback_sorted(word, vocab):
    # try the whole '##' candidates first, then the bare ones
    pieces, start = [], 0
    while start < len(word):
        found = None
        for prefix in (("##", "") if start > 0 else ("",)):
            for end in range(len(word), start, -1):
                if prefix + word[start:end] in vocab:
                    found = (prefix + word[start:end], end)
                    break
            if found:
                break
        if not found:
            return ["[UNK]"]
        pieces.append(found[0])
        start = found[1]
    return pieces


def _wp_bare_before_prefixed(word, vocab):
    # at each length, the bare piece is tried before the '##' one
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end]
            if piece not in vocab and start > 0:
                piece = "##" + piece
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def _wp_prefix_everywhere(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            if "##" + word[start:end] in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append("##" + word[start:end])
        start = end
    return pieces


_WORDPIECE_MISTAKES = [
    ("shortest match first: WordPiece takes the *longest* vocabulary piece at each step "
     "(start with the whole rest of the word and shrink it).", _wp_shortest),
    ("the '##' prefix is missing: pieces after the first one are looked up (and returned) as '##' + piece.",
     lambda w, v: _wp_greedy(w, v, prefix="")),
    ("the first piece should have no '##': only pieces that continue a word carry the prefix.",
     _wp_prefix_everywhere),
    ("a continuation piece was taken without its '##' (you fell back to the bare piece when the '##' piece is "
     "missing): after the first piece, only '##' pieces may be used; if none fits, the word is ['[UNK]'].",
     _wp_bare_fallback),
    ("a continuation piece was taken without its '##' (you fell back to the bare piece when no '##' piece fits): "
     "after the first piece, only '##' pieces may be used; if none fits, the word is ['[UNK]'].",
     _wp_bare_fallback_sorted),
    ("a continuation piece was taken without its '##' (you tried the bare piece before the '##' one): after the "
     "first piece, only '##' pieces may be used; if none fits, the word is ['[UNK]'].", _wp_bare_before_prefixed),
    ("when no piece fits, the whole word becomes ['[UNK]']; here the pieces found so far were returned.",
     lambda w, v: _wp_greedy(w, v, on_stuck="partial")),
    ("when no piece fits, the whole word becomes ['[UNK]'], not the pieces so far plus '[UNK]'.",
     lambda w, v: _wp_greedy(w, v, on_stuck="append_unk")),
    ("when no piece fits, the whole word becomes ['[UNK]']; here the stuck character was skipped.",
     lambda w, v: _wp_greedy(w, v, on_stuck="skip")),
]

_VOCAB = {
    "un", "una", "##aff", "##ffa", "##able", "##ble", "##a", "##b", "##l", "##e", "a", "b", "u", "##n",
    "play", "##ing", "##in", "##g", "##s", "p", "##ay", "##y", "pl", "##er", "##ers",
    "token", "##izer", "##ize", "##i", "##z", "##r", "to", "##ken", "##k", "##o", "t", "##t",
    "x", "##x", "hug", "##gi", "##ng", "h", "##u",
}


def _wordpiece_cases():
    return [
        ("unaffable", _VOCAB), ("playing", _VOCAB), ("players", _VOCAB), ("plays", _VOCAB),
        ("tokenizer", _VOCAB), ("tokenizers", _VOCAB), ("token", _VOCAB), ("a", _VOCAB),
        ("hugging", _VOCAB), ("xxx", _VOCAB), ("qplay", _VOCAB), ("tokenqizer", _VOCAB), ("playq", _VOCAB),
        ("tokenplay", _VOCAB), ("unplay", _VOCAB), ("xplay", _VOCAB),
        ("abab", {"a", "ab", "##a", "##ab", "##b"}), ("aaaa", {"a", "##a", "##aa", "aaa"}),
    ]


def check_wordpiece(fn) -> None:
    """Check ``fn(word, vocab) -> list of pieces``: greedy longest-match-first, '##' continuations,
    ``["[UNK]"]`` for a word that cannot be split."""
    check = "check_wordpiece"
    cases = _wordpiece_cases()
    answers = []
    for word, vocab in cases:
        given = set(vocab)
        result = call_student(check, fn, word, given)
        if given != vocab:
            raise CheckFailed(check, "the vocabulary was changed: only look pieces up in it.")
        if result is None:
            raise CheckFailed(check, f"it returned None for {word!r}: return the list of pieces.")
        if isinstance(result, str) or not isinstance(result, (list, tuple)):
            raise CheckFailed(check, f"should return a list of pieces (strings), but for {word!r} it returned "
                                     f"{describe(result)}.")
        answers.append(list(result))
    mistakes = _consistent_first(_WORDPIECE_MISTAKES, cases, answers)
    for (word, vocab), pieces in zip(cases, answers):
        expect_equal(check, pieces, _reference_wordpiece(word, vocab), f"the pieces of {word!r}",
                     [(message, wrong(word, vocab)) for message, wrong in mistakes])
    passed(check, len(cases))



# ------------------------------------------------------------------------------------ WordPiece on a sentence
_SENTENCE_VOCAB = _VOCAB | {",", "!", ".", "'", "?"}


def _split_words(text: str) -> list[str]:
    """BERT's basic split: lower case, then runs of letters/digits, and each punctuation mark on its own."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _reference_sentence(text, vocab, lower=True, punctuation=True, drop_punctuation=False, whole_unk=False):
    text = text.lower() if lower else text
    words = re.findall(r"\w+|[^\w\s]" if punctuation else r"\S+", text)
    if drop_punctuation:
        words = [w for w in words if re.fullmatch(r"\w+", w)]
    pieces = [p for w in words for p in _reference_wordpiece(w, vocab)]
    return ["[UNK]"] if whole_unk and "[UNK]" in pieces else pieces


_SENTENCE_CASES = [
    "Playing, tokenizers!",
    "un playing .",
    "Hugging  tokens?",
    "xxx plays, unaffable players.",
    "tokenplay's tokenizer",
]

_SENTENCE_MISTAKES = [
    ("the text was not lower-cased: BERT (uncased) lower-cases before splitting, so 'Playing' is found as 'play'.",
     lambda t, v: _reference_sentence(t, v, lower=False)),
    ("punctuation stays glued to its word ('playing,' is one word, and no piece '##,' exists, so it becomes [UNK]): "
     "split punctuation marks into words of their own, e.g. re.findall(r\"\\w+|[^\\w\\s]\", text).",
     lambda t, v: _reference_sentence(t, v, punctuation=False)),
    ("the punctuation marks were dropped: each one is a word of its own and gets its own piece (',' is in the "
     "vocabulary).", lambda t, v: _reference_sentence(t, v, drop_punctuation=True)),
    ("one unknown word turned the whole sentence into ['[UNK]']: only that word becomes [UNK]; the other words keep "
     "their pieces.", lambda t, v: _reference_sentence(t, v, whole_unk=True)),
    ("punctuation stays glued to its word, and the text was not lower-cased: lower-case first, then split the "
     "punctuation marks into words of their own.",
     lambda t, v: _reference_sentence(t, v, lower=False, punctuation=False)),
    ("the whole text was looked up as one word (spaces included), so it became ['[UNK]']: split it into words "
     "first, then run WordPiece on each word.", lambda t, v: _reference_wordpiece(t.lower(), v)),
]


def check_wordpiece_sentence(fn) -> None:
    """Check ``fn(text, vocab) -> pieces``: lower-case, split into words and punctuation marks, WordPiece each word."""
    check = "check_wordpiece_sentence"
    cases = _wordpiece_cases()
    answers = []
    for word, vocab in cases:                           # one-word texts: the greedy rule itself
        given = set(vocab)
        result = call_student(check, fn, word, given)
        if given != vocab:
            raise CheckFailed(check, "the vocabulary was changed: only look pieces up in it.")
        if isinstance(result, str) or not isinstance(result, (list, tuple)):
            raise CheckFailed(check, f"should return a list of pieces (strings), but for {word!r} it returned "
                                     f"{describe(result)}.")
        answers.append(list(result))
    mistakes = _consistent_first(_WORDPIECE_MISTAKES, cases, answers)
    for (word, vocab), pieces in zip(cases, answers):
        expect_equal(check, pieces, _reference_wordpiece(word, vocab), f"the pieces of the one-word text {word!r}",
                     [(message, wrong(word, vocab)) for message, wrong in mistakes])
    answers = [call_student(check, fn, text, set(_SENTENCE_VOCAB)) for text in _SENTENCE_CASES]
    answers = [list(a) if isinstance(a, (list, tuple)) else a for a in answers]
    cases = [(text, _SENTENCE_VOCAB) for text in _SENTENCE_CASES]
    mistakes = _consistent_first(_SENTENCE_MISTAKES, cases, answers)
    for text, pieces in zip(_SENTENCE_CASES, answers):
        expect_equal(check, pieces, _reference_sentence(text, _SENTENCE_VOCAB), f"the pieces of {text!r}",
                     [(message, wrong(text, _SENTENCE_VOCAB)) for message, wrong in mistakes])
    passed(check, len(_wordpiece_cases()) + len(_SENTENCE_CASES))


# ------------------------------------------------------------------------------------ pair counts over words
def _word_pairs(word_freqs, weighted=True, once_per_word=False, across_words=False, overwrite=False):
    """Reference pair counts over a {word (tuple of ids): frequency} table, plus classic mistakes."""
    if across_words:                                    # one long list: pairs straddle word boundaries
        ids = [i for word, freq in word_freqs.items() for _ in range(freq) for i in word]
        return _reference_pair_counts(ids)
    counts = {}
    for word, freq in word_freqs.items():
        pairs = list(zip(word, word[1:]))
        if once_per_word:
            pairs = list(dict.fromkeys(pairs))
        for pair in pairs:
            add = freq if weighted else 1
            counts[pair] = add if overwrite else counts.get(pair, 0) + add
    return counts


_WORD_PAIR_MISTAKES = [
    ("the word frequencies are ignored: a word that occurs 5 times contributes each of its pairs 5 times "
     "(add `freq`, not 1).", lambda wf: _word_pairs(wf, weighted=False)),
    ("pairs cross word boundaries: BPE never merges across words, so count pairs inside each word only.",
     lambda wf: _word_pairs(wf, across_words=True)),
    ("a pair that occurs twice in one word was counted once: count every occurrence inside the word, "
     "times the word's frequency.", lambda wf: _word_pairs(wf, once_per_word=True)),
    ("a later word overwrote the count of an earlier one (counts[pair] = freq): add to it, "
     "counts[pair] = counts.get(pair, 0) + freq.", lambda wf: _word_pairs(wf, overwrite=True)),
]


def _word_pair_cases():
    rng = random.Random(4)
    big = {tuple(rng.randrange(6) for _ in range(rng.randrange(1, 7))): rng.randrange(1, 9) for _ in range(40)}
    return [
        {(1, 2, 3): 5, (2, 3): 2},
        {(7, 7, 7): 3, (1,): 4},
        {(104, 105): 1, (105, 104): 2, (104, 105, 104, 105): 3},
        {(3, 1): 2, (4, 3, 1): 1, (1, 4): 6},
        {},
        big,
    ]


def check_word_pair_counts(fn) -> None:
    """Check ``fn(word_freqs) -> {(a, b): count}``: pairs inside each word, weighted by the word's frequency."""
    check = "check_word_pair_counts"
    cases = _word_pair_cases()
    answers = []
    for word_freqs in cases:
        given = dict(word_freqs)
        result = call_student(check, fn, given)
        if given != word_freqs:
            raise CheckFailed(check, f"`{getattr(fn, '__name__', 'fn')}` changed the table it was given; only read it.")
        answers.append(_as_counts(check, result))
    mistakes = _consistent_first(_WORD_PAIR_MISTAKES, [(wf,) for wf in cases], answers)
    for word_freqs, counts in zip(cases, answers):
        expect_equal(check, counts, _word_pairs(word_freqs), f"the pair counts of {_short_table(word_freqs)}",
                     [(message, wrong(word_freqs)) for message, wrong in mistakes])
    passed(check, len(cases))


def _short_table(word_freqs) -> str:
    text = repr(word_freqs)
    return text if len(text) <= 80 else f"a table of {len(word_freqs)} words"
