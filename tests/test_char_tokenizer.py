"""The character tokenizer: sorted vocabulary, special tokens, unknown characters, save/load."""
import pytest
import torch

from ptlm_course.char_tokenizer import CharTokenizer


def test_vocabulary_is_sorted_and_round_trips():
    tok = CharTokenizer.from_text("hello world")
    assert tok.itos == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.vocab_size == len(tok) == 8
    ids = tok.encode("hello")
    assert ids == [3, 2, 4, 4, 5]
    assert tok.decode(ids) == "hello"
    assert tok.decode(torch.tensor(ids)) == "hello"


def test_special_tokens_come_first_and_stay_whole():
    tok = CharTokenizer.from_text("abc<>", special_tokens=["<eos>", "<pad>"])
    assert tok.itos[:2] == ["<eos>", "<pad>"]
    ids = tok.encode("ab<eos>c<pad>")
    assert ids == [tok.stoi["a"], tok.stoi["b"], 0, tok.stoi["c"], 1]
    assert tok.decode(ids) == "ab<eos>c<pad>"
    assert tok.encode("<a>") == [tok.stoi["<"], tok.stoi["a"], tok.stoi[">"]]   # not a special token


def test_unknown_character_is_named_with_its_position():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"character 'z' \(U\+007A\) at position 3 is not in the vocabulary"):
        tok.encode("abcz")
    with_unk = CharTokenizer.from_text("abc", unk_token="<unk>")
    assert with_unk.encode("azb") == [with_unk.stoi["a"], with_unk.unk_id, with_unk.stoi["b"]]


def test_positions_count_special_tokens_as_written():
    tok = CharTokenizer.from_text("ab", special_tokens=["<s>"])
    with pytest.raises(ValueError, match="at position 4"):
        tok.encode("a<s>?")


def test_save_and_load_round_trip(tmp_path):
    tok = CharTokenizer.from_text("Wherefore art thou, Romeo? 🙂", special_tokens=["<unk>", "<eos>"], unk_token="<unk>")
    tok.save(tmp_path / "tok.json")
    loaded = CharTokenizer.load(tmp_path / "tok.json")
    assert loaded.itos == tok.itos and loaded.unk_id == tok.unk_id == 0
    text = "Romeo<eos>?! x"
    assert loaded.encode(text) == tok.encode(text)


def test_bad_input_is_explained(tmp_path):
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(TypeError, match="should be a str, but got list"):
        tok.encode(["a"])
    with pytest.raises(ValueError, match=r"in \[0, 2\], but got int 3 at position 1"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer.from_text("a", special_tokens=["<s>", "<s>"])
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="should hold a saved CharTokenizer"):
        CharTokenizer.load(tmp_path / "other.json")
