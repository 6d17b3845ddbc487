"""A character-level tokenizer: one token per character (notebook 01).

The vocabulary is the sorted set of characters of a training text. Special tokens (e.g. ``"<|eos|>"``)
take the first ids and are kept whole when they appear in a text; an optional unknown token stands in
for characters the tokenizer has never seen.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

from .validation import describe, is_int

__all__ = ["CharTokenizer"]

_FORMAT = "ptlm_course.CharTokenizer"


class CharTokenizer:
    """Maps each character to an id and back.

    >>> tok = CharTokenizer.from_text("hello")
    >>> tok.encode("hell"), tok.decode([2, 1])
    ([1, 0, 2, 2], 'lh')
    """

    def __init__(self, chars: Iterable[str], special_tokens: Sequence[str] = (), unk_token: str | None = None):
        special_tokens = list(special_tokens)
        if unk_token is not None and unk_token not in special_tokens:
            special_tokens.append(unk_token)
        for token in special_tokens:
            if not isinstance(token, str) or not token:
                raise ValueError(f"special tokens should be non-empty strings, but got {describe(token)}.")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special tokens should be distinct, but got {special_tokens}.")
        chars = sorted(set(chars) - set(special_tokens))
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"the vocabulary should hold single characters, but got {describe(c)}.")
        self.special_tokens = special_tokens
        self.unk_token = unk_token
        self.itos: list[str] = special_tokens + chars                # id -> token
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}  # token -> id
        self.unk_id = None if unk_token is None else self.stoi[unk_token]
        # longest special token first, so "<|a|b|>" wins over "<|a|" if both exist
        by_length = sorted(special_tokens, key=len, reverse=True)
        self._special_re = re.compile("(" + "|".join(map(re.escape, by_length)) + ")") if special_tokens else None

    @classmethod
    def from_text(cls, text: str, special_tokens: Sequence[str] = (), unk_token: str | None = None) -> "CharTokenizer":
        """Build the vocabulary from the characters of ``text`` (sorted, so the ids are reproducible)."""
        if not isinstance(text, str):
            raise TypeError(f"`text` should be a str, but got {describe(text)}.")
        if not text:
            raise ValueError("`text` is empty: a character vocabulary needs at least one character.")
        return cls(text, special_tokens, unk_token)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, special_tokens={self.special_tokens})"

    def encode(self, text: str) -> list[int]:
        """Text -> list of ids. Unknown characters map to ``unk_token`` if there is one, else raise."""
        if not isinstance(text, str):
            raise TypeError(f"`text` should be a str, but got {describe(text)}.")
        pieces = self._special_re.split(text) if self._special_re else [text]
        ids, position = [], 0
        for i, piece in enumerate(pieces):
            if i % 2 == 1:                                   # odd pieces are special tokens
                ids.append(self.stoi[piece])
            else:
                for offset, c in enumerate(piece):
                    ids.append(self._char_id(c, position + offset, text))
            position += len(piece)
        return ids

    def _char_id(self, c: str, position: int, text: str) -> int:
        i = self.stoi.get(c)
        if i is not None:
            return i
        if self.unk_id is not None:
            return self.unk_id
        context = text[max(0, position - 10): position + 10]
        raise ValueError(
            f"character {c!r} (U+{ord(c):04X}) at position {position} is not in the vocabulary "
            f"(near {context!r}); build the tokenizer with unk_token='<unk>' to map unseen characters to it."
        )

    def decode(self, ids: Iterable[int]) -> str:
        """List of ids (or a 1-D tensor) -> text."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        out = []
        for position, i in enumerate(ids):
            if not is_int(i) or not 0 <= i < self.vocab_size:
                raise ValueError(
                    f"token ids should be integers in [0, {self.vocab_size - 1}], "
                    f"but got {describe(i)} at position {position}."
                )
            out.append(self.itos[i])
        return "".join(out)

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON."""
        data = {"format": _FORMAT, "version": 1, "special_tokens": self.special_tokens,
                "unk_token": self.unk_token, "chars": self.itos[len(self.special_tokens):]}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        """Read a tokenizer written by :meth:`save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path} should hold a saved CharTokenizer (format {_FORMAT!r}), but it holds {found!r}.")
        return cls(data["chars"], data["special_tokens"], data["unk_token"])
