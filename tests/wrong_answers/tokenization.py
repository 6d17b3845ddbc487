"""Answers to the tokenization checks: pair counts, merge, WordPiece."""
from collections import Counter, defaultdict

from ._registry import correct, wrong

# ------------------------------------------------------------------------------------ pair counts


@correct("check_pair_counts")
def pairs_counter(ids):
    return Counter(zip(ids, ids[1:]))


@correct("check_pair_counts")
def pairs_defaultdict(ids):
    counts = defaultdict(int)
    for i in range(len(ids) - 1):
        counts[ids[i], ids[i + 1]] += 1
    return dict(counts)


@wrong("check_pair_counts", "last pair is missing")
def pairs_range_minus_two(ids):
    counts = {}
    for i in range(len(ids) - 2):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


@wrong("check_pair_counts", "first pair is missing")
def pairs_from_one(ids):
    counts = {}
    for i in range(1, len(ids) - 1):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
    return counts


@wrong("check_pair_counts", "count 1")
def pairs_set(ids):
    return {pair: 1 for pair in set(zip(ids, ids[1:]))}


@wrong("check_pair_counts", "overlap")
def pairs_skip_after_repeat(ids):
    counts, i = Counter(), 0
    while i < len(ids) - 1:
        counts[(ids[i], ids[i + 1])] += 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


@wrong("check_pair_counts", "two positions")
def pairs_stride_two(ids):
    return Counter(zip(ids[::2], ids[1::2]))


@wrong("check_pair_counts", "changed the list")
def pairs_pop(ids):
    counts = Counter()
    while len(ids) > 1:
        counts[(ids[0], ids[1])] += 1
        ids.pop(0)
    return counts


@wrong("check_pair_counts", "keys should be pairs")
def pairs_string_keys(ids):
    return Counter(f"{a},{b}" for a, b in zip(ids, ids[1:]))


# ------------------------------------------------------------------------------------ merge


@correct("check_merge")
def merge_for_with_skip(ids, pair, new_id):
    out, skip = [], False
    for i, token in enumerate(ids):
        if skip:
            skip = False
            continue
        if i < len(ids) - 1 and token == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            skip = True
        else:
            out.append(token)
    return out


@correct("check_merge")
def merge_recursive_tuple(ids, pair, new_id):
    ids = tuple(ids)
    if len(ids) < 2:
        return ids
    if ids[:2] == tuple(pair):
        return (new_id,) + tuple(merge_recursive_tuple(ids[2:], pair, new_id))
    return ids[:1] + tuple(merge_recursive_tuple(ids[1:], pair, new_id))


@wrong("check_merge", "text replacement", "multi-digit")
def merge_by_string(ids, pair, new_id):
    text = " ".join(map(str, ids)).replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(t) for t in text.split()] if text else []


@wrong("check_merge", "overlapping")
def merge_overlapping(ids, pair, new_id):
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        elif i > 0 and (ids[i - 1], ids[i]) == pair:
            continue
        else:
            out.append(ids[i])
    return out


@wrong("check_merge", "second id")
def merge_step_one(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1
    return out


@wrong("check_merge", "last element")
def merge_while_short(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


@wrong("check_merge", "only the first occurrence")
def merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


@wrong("check_merge", "input list was changed")
def merge_in_place(ids, pair, new_id):
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            ids[i:i + 2] = [new_id]
        i += 1
    return ids


@wrong("check_merge", "returned none")
def merge_no_return(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1


@wrong("check_merge", "second id")
def merge_keep_second(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out += [new_id, ids[i + 1]]
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


# ------------------------------------------------------------------------------------ WordPiece


@correct("check_wordpiece")
def wordpiece_recursive(word, vocab):
    def split(rest, first):
        if not rest:
            return []
        for end in range(len(rest), 0, -1):
            piece = rest[:end] if first else "##" + rest[:end]
            if piece in vocab:
                tail = split(rest[end:], False)
                return None if tail is None else [piece] + tail
        return None
    pieces = split(word, True)
    return ["[UNK]"] if pieces is None else pieces


@correct("check_wordpiece")
def wordpiece_candidates(word, vocab):
    pieces, start = [], 0
    while start < len(word):
        prefix = "##" if start else ""
        matches = [end for end in range(start + 1, len(word) + 1) if prefix + word[start:end] in vocab]
        if not matches:
            return ["[UNK]"]
        end = max(matches)
        pieces.append(prefix + word[start:end])
        start = end
    return pieces


def _greedy(word, vocab, prefix="##", shortest=False, stuck="unk", prefix_first=False, bare_fallback=False):
    pieces, start = [], 0
    while start < len(word):
        ends = range(start + 1, len(word) + 1) if shortest else range(len(word), start, -1)
        found = None
        for end in ends:
            pre = prefix if (start > 0 or prefix_first) else ""
            if pre + word[start:end] in vocab:
                found = (pre + word[start:end], end)
                break
            if bare_fallback and start > 0 and word[start:end] in vocab:
                found = (word[start:end], end)
                break
        if found is None:
            if stuck == "partial":
                return pieces
            if stuck == "append":
                return pieces + ["[UNK]"]
            if stuck == "skip":
                start += 1
                continue
            return ["[UNK]"]
        pieces.append(found[0])
        start = found[1]
    return pieces


@wrong("check_wordpiece", "without its '##'")
def wordpiece_bare_fallback(word, vocab):
    return _greedy(word, vocab, bare_fallback=True)


@wrong("check_wordpiece", "longest")
def wordpiece_shortest(word, vocab):
    return _greedy(word, vocab, shortest=True)


@wrong("check_wordpiece", "'##' prefix is missing")
def wordpiece_no_prefix(word, vocab):
    return _greedy(word, vocab, prefix="")


@wrong("check_wordpiece", "first piece should have no '##'")
def wordpiece_prefix_first(word, vocab):
    return _greedy(word, vocab, prefix_first=True)


@wrong("check_wordpiece", "pieces found so far")
def wordpiece_partial(word, vocab):
    return _greedy(word, vocab, stuck="partial")


@wrong("check_wordpiece", "not the pieces so far plus")
def wordpiece_append_unk(word, vocab):
    return _greedy(word, vocab, stuck="append")


@wrong("check_wordpiece", "skipped")
def wordpiece_skip(word, vocab):
    return _greedy(word, vocab, stuck="skip")


@wrong("check_wordpiece", "list of pieces")
def wordpiece_joined(word, vocab):
    return " ".join(_greedy(word, vocab))


@wrong("check_wordpiece", "returned none")
def wordpiece_print(word, vocab):
    print(_greedy(word, vocab))


@correct("check_merge")
def merge_index_loop_tuple_pair(ids, pair, new_id):
    a, b = pair
    result, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            result.append(new_id)
            i += 2
            continue
        result.append(ids[i])
        i += 1
    return tuple(result)


@correct("check_pair_counts")
def pairs_counter_update(ids):
    counts = Counter()
    counts.update((a, b) for a, b in zip(ids[:-1], ids[1:]))
    return counts


# ------------------------------------------------------------------------------------ pair counts over words


@correct("check_word_pair_counts")
def word_pairs_counter(word_freqs):
    counts = Counter()
    for word, freq in word_freqs.items():
        for a, b in zip(word, word[1:]):
            counts[a, b] += freq
    return counts


@correct("check_word_pair_counts")
def word_pairs_sum_of_counters(word_freqs):
    total = Counter()
    for word, freq in word_freqs.items():
        total.update({pair: n * freq for pair, n in Counter(zip(word, word[1:])).items()})
    return total


@wrong("check_word_pair_counts", "frequencies are ignored")
def word_pairs_unweighted(word_freqs):
    counts = Counter()
    for word in word_freqs:
        counts.update(zip(word, word[1:]))
    return counts


@wrong("check_word_pair_counts", "cross word boundaries")
def word_pairs_flattened(word_freqs):
    ids = []
    for word, freq in word_freqs.items():
        ids += list(word) * freq
    return Counter(zip(ids, ids[1:]))


@wrong("check_word_pair_counts", "counted once")
def word_pairs_set(word_freqs):
    counts = Counter()
    for word, freq in word_freqs.items():
        for pair in set(zip(word, word[1:])):
            counts[pair] += freq
    return counts


@wrong("check_word_pair_counts", "overwrote")
def word_pairs_overwrite(word_freqs):
    counts = {}
    for word, freq in word_freqs.items():
        for pair in zip(word, word[1:]):
            counts[pair] = freq
    return counts


@wrong("check_word_pair_counts", "keys should be pairs")
def word_pairs_by_word(word_freqs):
    return {word: freq for word, freq in word_freqs.items()}


# ------------------------------------------------------------------------------------ merge inside a word table


def _merge_one(word, pair, new_id):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


@correct("check_merge_words")
def merge_words_comprehension(word_freqs, pair, new_id):
    return {tuple(_merge_one(w, pair, new_id)): f for w, f in word_freqs.items()}


@correct("check_merge_words")
def merge_words_counter(word_freqs, pair, new_id):
    from collections import Counter
    out = Counter()
    for word, freq in word_freqs.items():
        merged, skip = [], False
        for a, b in zip(word, list(word[1:]) + [None]):
            if skip:
                skip = False
                continue
            if (a, b) == pair:
                merged.append(new_id)
                skip = True
            else:
                merged.append(a)
        out[tuple(merged)] += freq
    return out


@wrong("check_merge_words", "frequency", "keep")
def merge_words_freq_one(word_freqs, pair, new_id):
    return {tuple(_merge_one(w, pair, new_id)): 1 for w in word_freqs}


@wrong("check_merge_words", "disappeared")
def merge_words_only_changed(word_freqs, pair, new_id):
    return {tuple(_merge_one(w, pair, new_id)): f for w, f in word_freqs.items() if pair in zip(w, w[1:])}


@wrong("check_merge_words", "text replacement")
def merge_words_as_text(word_freqs, pair, new_id):
    out = {}
    for word, freq in word_freqs.items():
        text = " ".join(map(str, word)).replace(f"{pair[0]} {pair[1]}", str(new_id))
        out[tuple(int(t) for t in text.split())] = freq
    return out


@wrong("check_merge_words", "tuple")
def merge_words_list_keys(word_freqs, pair, new_id):
    return [(_merge_one(w, pair, new_id), f) for w, f in word_freqs.items()]


@wrong("check_merge_words", "changed", "new dict")
def merge_words_in_place(word_freqs, pair, new_id):
    for word in list(word_freqs):
        word_freqs[tuple(_merge_one(word, pair, new_id))] = word_freqs.pop(word)
    return word_freqs


@wrong("check_merge_words", "jump two positions")
def merge_words_overlapping(word_freqs, pair, new_id):
    out = {}
    for word, freq in word_freqs.items():
        merged, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                merged.append(new_id)
                i += 1                                       # steps one: overlapping matches
            else:
                merged.append(word[i])
                i += 1
        out[tuple(merged)] = freq
    return out


# ------------------------------------------------------------------------------------ WordPiece on a sentence


def _wp_cut(word, vocab):
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


@correct("check_wordpiece_sentence")
def sentence_regex(text, vocab):
    import re
    return [p for w in re.findall(r"\w+|[^\w\s]", text.lower()) for p in _wp_cut(w, vocab)]


@correct("check_wordpiece_sentence")
def sentence_char_loop(text, vocab):
    words, current = [], ""
    for ch in text.lower():
        if ch.isalnum() or ch == "_":
            current += ch
            continue
        if current:
            words.append(current)
            current = ""
        if not ch.isspace():
            words.append(ch)
    if current:
        words.append(current)
    out = []
    for w in words:
        out.extend(_wp_cut(w, vocab))
    return out


@wrong("check_wordpiece_sentence", "lower-cased")
def sentence_no_lower(text, vocab):
    import re
    return [p for w in re.findall(r"\w+|[^\w\s]", text) for p in _wp_cut(w, vocab)]


@wrong("check_wordpiece_sentence", "punctuation stays glued")
def sentence_split_only(text, vocab):
    return [p for w in text.lower().split() for p in _wp_cut(w, vocab)]


@wrong("check_wordpiece_sentence", "punctuation marks were dropped")
def sentence_words_only(text, vocab):
    import re
    return [p for w in re.findall(r"\w+", text.lower()) for p in _wp_cut(w, vocab)]


@wrong("check_wordpiece_sentence", "whole sentence")
def sentence_one_unk_for_all(text, vocab):
    import re
    pieces = [p for w in re.findall(r"\w+|[^\w\s]", text.lower()) for p in _wp_cut(w, vocab)]
    return ["[UNK]"] if "[UNK]" in pieces else pieces


@wrong("check_wordpiece_sentence", "as one word")
def sentence_not_split(text, vocab):
    return _wp_cut(text.lower(), vocab)


@wrong("check_wordpiece_sentence", "'##'")
def sentence_bare_fallback(text, vocab):
    import re
    out = []
    for word in re.findall(r"\w+|[^\w\s]", text.lower()):
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                sub = word[start:end]
                piece = sub if start == 0 else ("##" + sub if "##" + sub in vocab else sub)
                if piece in vocab:
                    break
            else:
                pieces = ["[UNK]"]
                break
            pieces.append(piece)
            start = end
        out += pieces
    return out
