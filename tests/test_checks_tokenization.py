"""The tokenization checks accept every correct solution and name each classic mistake."""
import re
from collections import Counter, defaultdict

import pytest

from ptlm_course.checks import CheckFailed
from ptlm_course.checks.tokenization import (check_merge, check_merge_words, check_pair_counts, check_wordpiece,
                                            check_wordpiece_sentence)


def not_written(*args):
    raise NotImplementedError()


# ------------------------------------------------------------------------------------ pair counts
def counts_with_counter(ids):
    return Counter(zip(ids, ids[1:]))


def counts_with_index_loop(ids):
    counts = defaultdict(int)
    for i in range(len(ids) - 1):
        counts[ids[i], ids[i + 1]] += 1
    return counts


def counts_with_get(ids):
    counts = {}
    for a, b in zip(ids[:-1], ids[1:]):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts


def counts_missing_last(ids):
    return Counter((ids[i], ids[i + 1]) for i in range(len(ids) - 2))


def counts_as_set(ids):
    return {pair: 1 for pair in set(zip(ids, ids[1:]))}


def counts_without_overlaps(ids):
    counts, i = Counter(), 0
    while i < len(ids) - 1:
        counts[(ids[i], ids[i + 1])] += 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def counts_in_steps_of_two(ids):
    return Counter(zip(ids[::2], ids[1::2]))


def counts_as_list(ids):
    return sorted(Counter(zip(ids, ids[1:])).items())


def counts_that_pop(ids):
    counts = Counter()
    while len(ids) > 1:
        counts[(ids[0], ids[1])] += 1
        ids.pop(0)
    return counts


@pytest.mark.parametrize("fn", [counts_with_counter, counts_with_index_loop, counts_with_get])
def test_correct_pair_counts_pass(fn, capsys):
    check_pair_counts(fn)
    assert "✅ check_pair_counts" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (counts_missing_last, "the last pair is missing"),
    (counts_as_set, "every pair has count 1"),
    (counts_without_overlaps, "pairs overlap when counting"),
    (counts_in_steps_of_two, "two positions at a time"),
    (counts_as_list, "should return a dict mapping each pair"),
    (counts_that_pop, "changed the list it was given"),
    (not_written, "not written yet"),
])
def test_pair_count_mistakes_are_named(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_pair_counts(fn)


# ------------------------------------------------------------------------------------ merge
def merge_while(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if ids[i:i + 2] == list(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_tuple_result(ids, pair, new_id):
    out, skip = [], False
    for i, x in enumerate(ids):
        if skip:
            skip = False
        elif i + 1 < len(ids) and (x, ids[i + 1]) == tuple(pair):
            out.append(new_id)
            skip = True
        else:
            out.append(x)
    return tuple(out)


def merge_recursive(ids, pair, new_id):
    if len(ids) < 2:
        return list(ids)
    if (ids[0], ids[1]) == pair:
        return [new_id] + merge_recursive(ids[2:], pair, new_id)
    return [ids[0]] + merge_recursive(ids[1:], pair, new_id)


def merge_every_position(ids, pair, new_id):
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        elif i == 0 or (ids[i - 1], ids[i]) != pair:
            out.append(ids[i])
    return out


def merge_forgets_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_step_one(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        out.append(new_id if (i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair) else ids[i])
        i += 1
    return out


def merge_in_place(ids, pair, new_id):
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            ids[i:i + 2] = [new_id]
        i += 1
    return ids


def merge_in_place_no_return(ids, pair, new_id):
    merge_in_place(ids, pair, new_id)


def merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


@pytest.mark.parametrize("fn", [merge_while, merge_tuple_result, merge_recursive])
def test_correct_merges_pass(fn, capsys):
    check_merge(fn)
    assert "✅ check_merge" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (merge_every_position, "overlapping occurrences were both merged"),
    (merge_forgets_last, "the last element went missing"),
    (merge_step_one, "second id is still there"),
    (merge_in_place, "the input list was changed"),
    (merge_in_place_no_return, "the input list was changed"),
    (merge_first_only, "only the first occurrence"),
    (not_written, "not written yet"),
])
def test_merge_mistakes_are_named(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_merge(fn)


def test_merge_returning_none_is_named():
    def returns_nothing(ids, pair, new_id):
        _ = [new_id]

    with pytest.raises(CheckFailed, match="returned None"):
        check_merge(returns_nothing)


# ------------------------------------------------------------------------------------ WordPiece
def wordpiece_loop(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in vocab:
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(word[start:end] if start == 0 else "##" + word[start:end])
        start = end
    return pieces


def wordpiece_recursive(word, vocab, prefix=""):
    if not word:
        return ()
    for end in range(len(word), 0, -1):
        if prefix + word[:end] in vocab:
            rest = wordpiece_recursive(word[end:], vocab, "##")
            return ("[UNK]",) if rest == ("[UNK]",) else (prefix + word[:end],) + rest
    return ("[UNK]",)


def wordpiece_shortest(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(start + 1, len(word) + 1):
            candidate = ("##" if start else "") + word[start:end]
            if candidate in vocab:
                pieces.append(candidate)
                start = end
                break
        else:
            return ["[UNK]"]
    return pieces


def wordpiece_no_prefix(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            if word[start:end] in vocab:
                pieces.append(word[start:end])
                start = end
                break
        else:
            return ["[UNK]"]
    return pieces


def wordpiece_partial_when_stuck(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            candidate = ("##" if start else "") + word[start:end]
            if candidate in vocab:
                pieces.append(candidate)
                start = end
                break
        else:
            break
    return pieces


def wordpiece_unk_piece_when_stuck(word, vocab):
    pieces = wordpiece_partial_when_stuck(word, vocab)
    return pieces if "".join(p.removeprefix("##") for p in pieces) == word else pieces + ["[UNK]"]


@pytest.mark.parametrize("fn", [wordpiece_loop, wordpiece_recursive])
def test_correct_wordpiece_passes(fn, capsys):
    check_wordpiece(fn)
    assert "✅ check_wordpiece" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (wordpiece_shortest, "shortest match first"),
    (wordpiece_no_prefix, "the '##' prefix is missing"),
    (wordpiece_partial_when_stuck, "pieces found so far were returned"),
    (wordpiece_unk_piece_when_stuck, r"not the pieces so far plus '\[UNK\]'"),
    (lambda word, vocab: "".join(wordpiece_loop(word, vocab)), "should return a list of pieces"),
    (not_written, "not written yet"),
])
def test_wordpiece_mistakes_are_named(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_wordpiece(fn)


def test_crash_in_student_code_is_reported_kindly():
    def crashes(word, vocab):
        return [vocab[0]]

    with pytest.raises(CheckFailed, match=r"raised TypeError: 'set' object is not subscriptable"):
        check_wordpiece(crashes)


# --- the next steps (exercise 01): merging inside a word table, WordPiece on a sentence ---------------------

def _merge(word, pair, new_id):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def test_merge_words_check_accepts_a_correct_answer(capsys):
    check_merge_words(lambda wf, pair, new_id: {_merge(w, pair, new_id): f for w, f in wf.items()})
    assert "✅ check_merge_words" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda wf, pair, new_id: {_merge(w, pair, new_id): 1 for w in wf}, "keep each word's frequency"),
    (lambda wf, pair, new_id: {_merge(w, pair, new_id): f for w, f in wf.items() if pair in zip(w, w[1:])},
     "disappeared"),
    (lambda wf, pair, new_id: [(_merge(w, pair, new_id), f) for w, f in wf.items()], "should return a dict"),
])
def test_merge_words_check_names_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_merge_words(fn)


def _pieces(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def test_wordpiece_sentence_check_accepts_a_correct_answer(capsys):
    check_wordpiece_sentence(lambda text, vocab: [p for w in re.findall(r"\w+|[^\w\s]", text.lower())
                                                  for p in _pieces(w, vocab)])
    assert "✅ check_wordpiece_sentence" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda text, vocab: [p for w in text.lower().split() for p in _pieces(w, vocab)], "punctuation stays glued"),
    (lambda text, vocab: [p for w in re.findall(r"\w+|[^\w\s]", text) for p in _pieces(w, vocab)], "lower-cased"),
])
def test_wordpiece_sentence_check_names_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_wordpiece_sentence(fn)
