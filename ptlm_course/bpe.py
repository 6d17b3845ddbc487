"""Byte-level byte-pair encoding (BPE), written from scratch (notebook 01).

Every text is first turned into UTF-8 bytes, so the 256 byte values are the base tokens and any text
can be encoded. Training repeatedly finds the most frequent adjacent pair of tokens and merges it into
a new token. A regular expression first splits the text into word-like chunks, and merges never cross
chunk borders (so " the" can become one token, but "e." never does).

Building blocks: :func:`get_pair_counts` and :func:`merge`. The tokenizer: :class:`BPETokenizer`.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from .validation import describe, is_int

__all__ = ["SPLIT_PATTERN", "get_pair_counts", "merge", "BPETokenizer"]

# Word-like chunks: English contractions, an optional space + letters, an optional space + up to 3
# digits, an optional space + a run of other symbols, and runs of whitespace (the last space of a run
# is left to stick to the next word). Together the alternatives match every character of any text.
SPLIT_PATTERN = (
    r"'(?:s|t|d|m|ll|ve|re)\b"
    r"| ?[^\W\d_]+"
    r"| ?\d{1,3}"
    r"| ?(?:[^\s\w]|_)+"
    r"|\s+(?!\S)"
    r"|\s+"
)
_FORMAT = "ptlm_course.BPETokenizer"


def get_pair_counts(ids: Sequence[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair occurs: ``[1, 2, 1, 2] -> {(1, 2): 2, (2, 1): 1}``."""
    counts: dict[tuple[int, int], int] = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id`` (a new list).

    Occurrences do not overlap: ``merge([5, 5, 5], (5, 5), 9) == [9, 5]``.
    """
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """Byte-level BPE: ``train`` it on a text, then ``encode`` / ``decode``.

    Ids 0-255 are the bytes, 256... the merges in the order they were learned, then the special tokens.
    """

    def __init__(self, pattern: str = SPLIT_PATTERN):
        self.pattern = pattern
        self._split = re.compile(pattern)
        self.merges: dict[tuple[int, int], int] = {}        # (left id, right id) -> new id, in order
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}  # id -> the bytes it stands for
        self.special_tokens: dict[str, int] = {}             # "<|endoftext|>" -> id
        self._special_re = None
        self._cache: dict[str, list[int]] = {}               # chunk -> ids, speeds up encoding
        self.train_seconds = 0.0

    # ----------------------------------------------------------------------------------- training
    def train(self, text: str, vocab_size: int, special_tokens: Sequence[str] = (),
              verbose: bool = False) -> "BPETokenizer":
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        Pairs are counted over the distinct chunks weighted by how often each occurs, and after each
        merge only the chunks that contain the merged pair are recounted. Ties between equally frequent
        pairs go to the smallest pair ``(left, right)``, so training is deterministic. Training stops
        early if no pair occurs at least twice.
        """
        _expect_text(text, "text")
        special_tokens = list(special_tokens)
        for token in special_tokens:
            if not isinstance(token, str) or not token:
                raise ValueError(f"special tokens should be non-empty strings, but got {describe(token)}.")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special tokens should be distinct, but got {special_tokens}.")
        smallest = 256 + len(special_tokens)
        if not is_int(vocab_size) or vocab_size < smallest:
            raise ValueError(
                f"`vocab_size` should be an int >= {smallest} (256 bytes + {len(special_tokens)} special tokens), "
                f"but got {describe(vocab_size)}."
            )
        start = time.perf_counter()
        self.__init__(self.pattern)
        n_merges = vocab_size - smallest

        # distinct chunks (special tokens are cut out of the training text first) and their frequencies
        pieces = re.split("|".join(map(re.escape, special_tokens)), text) if special_tokens else [text]
        chunk_counts = Counter(c for piece in pieces for c in self._split.findall(piece))
        words = [list(c.encode("utf-8")) for c in chunk_counts]    # each chunk as a list of ids
        freqs = list(chunk_counts.values())

        pair_counts: dict[tuple[int, int], int] = defaultdict(int)  # pair -> weighted count
        where: dict[tuple[int, int], set[int]] = defaultdict(set)   # pair -> indices of words with it
        for w, (ids, freq) in enumerate(zip(words, freqs)):
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += freq
                where[pair].add(w)

        for k in range(n_merges):
            if not pair_counts:
                break
            best = max(pair_counts, key=lambda p: (pair_counts[p], -p[0], -p[1]))
            count = pair_counts[best]
            if count < 2:
                break
            new_id = 256 + k
            for w in where.pop(best):
                ids, freq = words[w], freqs[w]
                for pair in zip(ids, ids[1:]):                       # forget this word's old pairs
                    pair_counts[pair] -= freq
                    if pair_counts[pair] == 0:
                        del pair_counts[pair]
                ids = words[w] = merge(ids, best, new_id)
                for pair in zip(ids, ids[1:]):                       # count its new pairs
                    pair_counts[pair] += freq
                    where[pair].add(w)
            self.merges[best] = new_id
            self.vocab[new_id] = self.vocab[best[0]] + self.vocab[best[1]]
            if verbose and (k < 10 or (k + 1) % 100 == 0):
                print(f"merge {k + 1}/{n_merges}: {best} -> {new_id} {self.vocab[new_id]!r} (count {count})")
        # pairs that no longer occur may linger in `where`; they are never looked up again
        self._set_special_tokens(special_tokens)
        self.train_seconds = time.perf_counter() - start
        return self

    def _set_special_tokens(self, special_tokens: Sequence[str]) -> None:
        first = 256 + len(self.merges)
        self.special_tokens = {token: first + i for i, token in enumerate(special_tokens)}
        for token, i in self.special_tokens.items():
            self.vocab[i] = token.encode("utf-8")
        by_length = sorted(special_tokens, key=len, reverse=True)   # longest first wins
        self._special_re = re.compile("(" + "|".join(map(re.escape, by_length)) + ")") if special_tokens else None
        self._cache = {}

    # ----------------------------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges) + len(self.special_tokens)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Text -> ids. Special tokens written in the text become their single id (unless ``allow_special=False``)."""
        _expect_text(text, "text")
        pieces = self._special_re.split(text) if (self._special_re and allow_special) else [text]
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            if i % 2 == 1:                                      # odd pieces are special tokens
                ids.append(self.special_tokens[piece])
                continue
            for chunk in self._split.findall(piece):
                if chunk not in self._cache:
                    self._cache[chunk] = self._encode_chunk(chunk.encode("utf-8"))
                ids.extend(self._cache[chunk])
        return ids

    def _encode_chunk(self, data: bytes) -> list[int]:
        """Apply the learned merges to one chunk, earliest-learned merge first."""
        ids = list(data)
        while len(ids) >= 2:
            pairs = set(zip(ids, ids[1:]))
            pair = min(pairs, key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break
            ids = merge(ids, pair, self.merges[pair])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids (a list or 1-D tensor) -> text. Byte sequences that are not valid UTF-8 become '�'."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"`ids` should be a list of token ids, but got {describe(ids)}.")
        out = []
        for position, i in enumerate(ids):
            if not is_int(i) or i not in self.vocab:
                raise ValueError(
                    f"token ids should be integers in [0, {self.vocab_size - 1}], "
                    f"but got {describe(i)} at position {position}."
                )
            out.append(self.vocab[i])
        return b"".join(out)

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Each id as readable text (partial UTF-8 characters show as '�'), for printing tokenizations."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return [self.decode([i]) for i in ids]

    # ----------------------------------------------------------------------------------- saving
    def save(self, path: str | Path) -> None:
        """Write pattern, merges (in order) and special tokens as JSON."""
        data = {"format": _FORMAT, "version": 1, "pattern": self.pattern,
                "merges": [list(pair) for pair in self.merges],
                "special_tokens": list(self.special_tokens)}
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        """Read a tokenizer written by :meth:`save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path} should hold a saved BPETokenizer (format {_FORMAT!r}), but it holds {found!r}.")
        tok = cls(data["pattern"])
        for k, (left, right) in enumerate(data["merges"]):
            new_id = 256 + k
            if left not in tok.vocab or right not in tok.vocab:
                raise ValueError(f"{path}: merge {k} uses ids {left}, {right}, but only ids < {new_id} exist by then.")
            tok.merges[(left, right)] = new_id
            tok.vocab[new_id] = tok.vocab[left] + tok.vocab[right]
        tok._set_special_tokens(data["special_tokens"])
        return tok


def _expect_text(text, name: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"`{name}` should be a str, but got {describe(text)}.")
