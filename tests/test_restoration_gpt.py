"""The punctuation task for a decoder-only model (notebook 21): prompted examples, the loss on the target
only, fine-tuning, and batched greedy generation equal to one line at a time."""
import pytest
import torch

import ptlm_course.course_models as cm
from ptlm_course.gpt import GPT, GPTConfig
from ptlm_course.restoration import (Seq2SeqRecipe, encode_prompted, encode_restoration, fine_tune_gpt_restorer,
                                     generate_gpt_texts, gpt_restorer_loss, prompted_example, reference_texts,
                                     row_batches)

EXAMPLES = [(["Stand", "forth", "Demetrius"], [0, 1, 2]), (["Is", "all", "our", "company", "here"], [0, 0, 0, 0, 4]),
            (["What", "say", "you", "Hermia"], [0, 0, 1, 4]), (["Be", "advised", "fair", "maid"], [1, 0, 0, 6])]


@pytest.fixture(scope="module")
def tok():
    return cm.shakespeare_wordpiece(300)


def tiny_gpt(tok, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layers=1, n_heads=2, d_model=32, dropout=0.0))


def test_prompted_example_shifts_once_and_masks_the_prompt():
    x, y = prompted_example([5, 6], [5, 7, 6], sep_id=3)
    assert x == [5, 6, 3, 5, 7, 6] and y == [-100, -100, 5, 7, 6, 3]        # y[t] is the token after x[t]
    full = [5, 6, 3, 5, 7, 6, 3]
    assert all(t == -100 or t == full[i + 1] for i, t in enumerate(y))


def test_encode_prompted_rows_match_the_seq2seq_encoding(tok):
    data = encode_prompted(EXAMPLES, tok)
    s2s = encode_restoration(EXAMPLES, tok)
    assert data["input_ids"].shape == data["targets"].shape and data["prompt_length"].shape == (len(EXAMPLES),)
    for row, (src, tgt, n) in enumerate(zip(s2s["input_ids"].tolist(), s2s["labels"].tolist(),
                                            data["prompt_length"].tolist())):
        src = [i for i in src if i != tok.pad_id]                        # source ... [SEP]
        tgt = [i for i in tgt if i != -100]                              # target ... [SEP]
        assert data["input_ids"][row, :n].tolist() == src and n == len(src)
        assert [i for i in data["targets"][row].tolist() if i != -100] == tgt
        assert (data["input_ids"][row, len(src) + len(tgt) - 1:] == tok.pad_id).all()     # padding at the end
    with pytest.raises(ValueError, match="non-empty list of \\(words, labels\\)"):
        encode_prompted([], tok)


def test_long_lines_fit_the_block(tok):
    long = (["word"] * 60, [0] * 59 + [2])
    data = encode_prompted([long], tok, block_size=32)
    assert data["input_ids"].shape[1] <= 32 and int(data["prompt_length"][0]) == 16


def test_loss_counts_target_tokens_only_and_ignores_padding(tok):
    model = tiny_gpt(tok)
    data = encode_prompted(EXAMPLES, tok)
    loss, info = gpt_restorer_loss(model, data)
    assert info["n_tokens"] == int((data["targets"] != -100).sum())
    logits, _ = model(data["input_ids"])
    keep = data["targets"] != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], data["targets"][keep])
    assert torch.allclose(loss, expected, atol=1e-6)
    one, _ = gpt_restorer_loss(model, encode_prompted(EXAMPLES[:1], tok))          # no padding at all
    row0 = {k: v[:1] for k, v in data.items()}                                      # padded to the batch
    assert torch.allclose(one, gpt_restorer_loss(model, row0)[0], atol=1e-6)


def test_row_batches_keep_whole_rows(tok):
    data = encode_restoration(EXAMPLES, tok)
    batch = row_batches(data, 2)("train", torch.Generator().manual_seed(0))
    assert batch["labels"].shape == (2, data["labels"].shape[1]) and batch["input_ids"].shape[1] == \
        data["input_ids"].shape[1]


def test_fine_tuning_learns_to_write_the_targets(tok):
    data = encode_prompted(EXAMPLES, tok)
    start = tiny_gpt(tok).state_dict()
    before = gpt_restorer_loss(tiny_gpt(tok), data)[0].item()
    model = fine_tune_gpt_restorer(tiny_gpt(tok).config, start, data, lr=3e-3, seed=0,
                                   recipe=Seq2SeqRecipe(steps=150, batch_size=4))
    assert not model.training and gpt_restorer_loss(model, data)[0].item() < 0.1 * before
    texts = generate_gpt_texts(model, data, tok)
    assert texts == reference_texts(encode_restoration(EXAMPLES, tok), tok)       # memorised four lines


def test_batched_generation_equals_one_line_at_a_time(tok):
    model = tiny_gpt(tok, seed=1)
    with torch.no_grad():                                   # a random model far from "always [SEP]"
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    data = encode_prompted(EXAMPLES * 3, tok)
    batched = generate_gpt_texts(model, data, tok, batch_size=5)
    one_by_one = [generate_gpt_texts(model, {k: v[i:i + 1] for k, v in data.items()}, tok)[0]
                  for i in range(len(EXAMPLES) * 3)]
    assert batched == one_by_one and len(set(batched)) > 1


def test_seq2seq_data_is_refused_with_a_clear_error(tok):
    s2s = encode_restoration(EXAMPLES, tok)
    with pytest.raises(TypeError, match="dict from encode_prompted"):
        generate_gpt_texts(tiny_gpt(tok), s2s, tok)
    with pytest.raises(TypeError, match="dict from encode_prompted"):
        fine_tune_gpt_restorer(tiny_gpt(tok).config, None, s2s, lr=1e-3, seed=0)
