"""Pre-training data: exact invariants, rates within binomial tolerances, reproducible seeds, clear errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from ptlm_course.data import load_play, load_shakespeare
from ptlm_course.pretraining_data import (
    IGNORE_INDEX, NSPExample, SegmentId, bert_pretraining_batch, causal_lm_batch, causal_lm_blocks,
    encode_nsp_batch, make_nsp_examples, mask_tokens, nsp_segments,
)
from ptlm_course.wordpiece import WordPieceTokenizer

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = {PAD, UNK, CLS, SEP, MASK}
V = 50


def within(count, n, p, sigmas=5.0):
    """count ~ Binomial(n, p) within ``sigmas`` standard deviations."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# --- causal LM ---------------------------------------------------------------------------------------

def test_causal_lm_batch_targets_are_the_next_tokens():
    ids = torch.randint(0, 1000, (500,), generator=torch.Generator().manual_seed(0))
    x, y = causal_lm_batch(ids, block_size=16, batch_size=64, generator=torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (64, 16) and x.dtype == torch.long
    text = ids.tolist()
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        starts = [s for s in range(len(text) - 16) if text[s:s + 16] == row_x]
        assert any(text[s + 1:s + 17] == row_y for s in starts)


def test_causal_lm_batch_covers_both_ends_and_is_seeded():
    ids = torch.arange(11)                                   # block 4: starts 0..6, last target is token 10
    x, y = causal_lm_batch(ids, 4, 2000, torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == set(range(7))
    assert torch.equal(y, x + 1)
    again = causal_lm_batch(ids, 4, 2000, torch.Generator().manual_seed(0))
    other = causal_lm_batch(ids, 4, 2000, torch.Generator().manual_seed(1))
    assert torch.equal(x, again[0]) and not torch.equal(x, other[0])


def test_causal_lm_blocks_are_non_overlapping_and_in_order():
    x, y = causal_lm_blocks(torch.arange(20), 6)
    assert x.tolist() == [list(range(0, 6)), list(range(6, 12)), list(range(12, 18))]
    assert torch.equal(y, x + 1)
    x, y = causal_lm_blocks(torch.arange(19), 6)             # 18 needs token 19 as its target: 2 blocks
    assert x.shape == (3, 6) and y[-1, -1] == 18
    assert causal_lm_blocks(torch.arange(18), 6)[0].shape == (2, 6)


def test_causal_lm_blocks_loss_matches_gpt_loss_on_whole_text():
    ids = torch.randint(0, 7, (25,), generator=torch.Generator().manual_seed(0))
    x, y = causal_lm_blocks(ids, 8)
    logits = torch.randn(*x.shape, 7, generator=torch.Generator().manual_seed(1))
    manual = torch.stack([F.cross_entropy(logits[b, t], ids[b * 8 + t + 1]) for b in range(3) for t in range(8)])
    assert torch.allclose(F.cross_entropy(logits.flatten(0, 1), y.flatten()), manual.mean())


@pytest.mark.parametrize("call, message", [
    (lambda: causal_lm_batch(torch.arange(8), 8, 2), r"at least block_size \+ 1 = 9 tokens.*holds 8"),
    (lambda: causal_lm_blocks(torch.arange(5), 5), r"at least block_size \+ 1 = 6 tokens"),
    (lambda: causal_lm_batch(torch.arange(8.0), 2, 2), "integer token ids"),
    (lambda: causal_lm_batch(torch.arange(8).view(2, 4), 2, 2), r"should have 1 dimensions"),
    (lambda: causal_lm_batch(torch.arange(8), 0, 2), "`block_size` should be a positive integer"),
    (lambda: causal_lm_batch(torch.arange(8), 2, 0), "`batch_size` should be a positive integer"),
])
def test_causal_lm_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


# --- masked LM ---------------------------------------------------------------------------------------

def mlm_inputs(B=400, T=64, seed=0):
    """[CLS] a [SEP] b [SEP] [PAD]...: rows of random lengths, ordinary ids in [5, V)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    lengths = torch.randint(6, T + 1, (B,), generator=g)
    for r, n in enumerate(lengths.tolist()):
        ids[r, 0], ids[r, n // 2], ids[r, n - 1], ids[r, n:] = CLS, SEP, SEP, PAD
    return ids


def test_mask_tokens_invariants_hold_exactly():
    ids = mlm_inputs()
    before = ids.clone()
    masked, labels = mask_tokens(ids, SPECIAL, V, MASK, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, before)                                       # not modified in place
    chosen = labels != IGNORE_INDEX
    special = torch.isin(ids, torch.tensor(sorted(SPECIAL)))
    assert not (chosen & special).any()                                   # specials and padding never chosen
    assert torch.equal(masked[special], ids[special])
    assert torch.equal(labels[chosen], ids[chosen])                       # labels: the original ids there
    assert torch.equal(masked[~chosen], ids[~chosen])                     # nothing else changes
    replaced = chosen & (masked != MASK) & (masked != ids)
    assert not torch.isin(masked[replaced], torch.tensor(sorted(SPECIAL))).any()   # random ids are never special
    assert ((masked >= 0) & (masked < V)).all()


def test_mask_tokens_rates_are_15_percent_and_80_10_10():
    ids = mlm_inputs()
    masked, labels = mask_tokens(ids, SPECIAL, V, MASK, generator=torch.Generator().manual_seed(1))
    eligible = int((~torch.isin(ids, torch.tensor(sorted(SPECIAL)))).sum())
    chosen = labels != IGNORE_INDEX
    n_chosen = int(chosen.sum())
    assert within(n_chosen, eligible, 0.15)
    n_mask = int((masked[chosen] == MASK).sum())
    n_same = int((masked[chosen] == ids[chosen]).sum())
    n_random = n_chosen - n_mask - n_same
    p_random = 0.1 * (1 - 1 / (V - 5))                                   # a random pick can equal the original
    assert within(n_mask, n_chosen, 0.8) and within(n_random, n_chosen, p_random)
    assert within(n_same, n_chosen, 1 - 0.8 - p_random)
    assert abs(n_chosen / eligible - 0.15) < 0.01 and abs(n_mask / n_chosen - 0.8) < 0.03   # tolerances are tight


def test_mask_tokens_special_tokens_mask_and_mask_prob():
    ids = mlm_inputs(B=50)
    protect = torch.zeros_like(ids, dtype=torch.bool)
    protect[:, 1:4] = True
    masked, labels = mask_tokens(ids, SPECIAL, V, MASK, mask_prob=1.0, generator=torch.Generator().manual_seed(0),
                                 special_tokens_mask=protect)
    eligible = ~torch.isin(ids, torch.tensor(sorted(SPECIAL))) & ~protect
    assert torch.equal(labels != IGNORE_INDEX, eligible)                  # mask_prob=1 chooses all eligible
    nothing = mask_tokens(ids, SPECIAL, V, MASK, mask_prob=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(nothing[0], ids) and (nothing[1] == IGNORE_INDEX).all()


def test_mask_tokens_is_seeded():
    ids = mlm_inputs(B=20)
    run = lambda seed: mask_tokens(ids, SPECIAL, V, MASK, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_ids=torch.tensor([[2, 60, 3]])), r"token ids in \[0, 49\].*contains \[60\]"),
    (dict(input_ids=torch.tensor([2, 7, 3])), "should have 2 dimensions"),
    (dict(input_ids=torch.tensor([[2.0, 7, 3]])), "integer token ids"),
    (dict(mask_id=50), r"`mask_id` should be the \[MASK\] token's id"),
    (dict(mask_prob=1.5), r"`mask_prob` should be a probability in \[0, 1\], but got float 1.5"),
    (dict(special_ids=3), "`special_ids` should be a collection of token ids"),
    (dict(special_tokens_mask=torch.zeros(1, 2, dtype=torch.bool)), r"shape of input_ids \(1, 3\)"),
])
def test_mask_tokens_errors(kwargs, message):
    args = dict(input_ids=torch.tensor([[2, 7, 3]]), special_ids=SPECIAL, vocab_size=V, mask_id=MASK) | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        mask_tokens(**args)


# --- next-sentence prediction ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plays():
    return load_shakespeare()


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer.from_pretrained_minilm()


def test_nsp_segments_are_the_speeches_of_each_scene():
    play = load_play("Macbeth")
    segments = nsp_segments(play)
    assert len(segments) == len(play.scenes)
    assert segments[0][0] == play.scenes[0].speeches[0].text


def test_make_nsp_examples_pairs_are_real_next_or_from_another_play(plays):
    examples = make_nsp_examples(plays, 2000, generator=torch.Generator().manual_seed(0))
    by_slug = {p.slug: nsp_segments(p) for p in plays}
    text = lambda where: by_slug[where.play][where.scene][where.speech]  # noqa: E731
    for e in examples:
        assert e.text_a == text(e.source_a) and e.text_b == text(e.source_b)
        if e.is_next:
            assert e.source_b == SegmentId(e.source_a.play, e.source_a.scene, e.source_a.speech + 1)
            assert e.label == 0
        else:
            assert e.source_b.play != e.source_a.play and e.label == 1
    assert within(sum(e.is_next for e in examples), 2000, 0.5)
    assert len({e.source_a.play for e in examples if not e.is_next}) == len(plays)      # every play is used
    assert len({e.source_b.play for e in examples if not e.is_next}) == len(plays)


def test_make_nsp_examples_is_seeded(plays):
    assert make_nsp_examples(plays[:3], 50, 7) == make_nsp_examples(plays[:3], 50, torch.Generator().manual_seed(7))
    assert make_nsp_examples(plays[:3], 50, 7) != make_nsp_examples(plays[:3], 50, 8)


@pytest.mark.parametrize("args, message", [
    (lambda p: (p[:1], 5), "at least 2 plays"),
    (lambda p: (p[0], 5), "list of Play objects"),
    (lambda p: (p[:2], 0), "`n` should be a positive integer"),
    (lambda p: (p[:2], 5, "seed"), "torch.Generator or an int seed"),
])
def test_make_nsp_examples_errors(plays, args, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_nsp_examples(*args(plays))


def example(a, b, is_next=True):
    return NSPExample(a, b, is_next, SegmentId("x", 0, 0), SegmentId("x", 0, 1))


def test_encode_nsp_batch_layout(tokenizer):
    batch = encode_nsp_batch([example("Good morrow, sir.", "Adieu!", True), example("Ay.", "No.", False)],
                             tokenizer, max_length=12)
    ids, types, attention = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    assert ids.shape == types.shape == attention.shape == (2, 12)
    a, b = (tokenizer.encode(text, add_special_tokens=False) for text in ("Good morrow, sir.", "Adieu!"))
    row = [tokenizer.cls_id, *a, tokenizer.sep_id, *b, tokenizer.sep_id]
    assert ids[0].tolist() == row + [tokenizer.pad_id] * (12 - len(row))
    assert types[0].tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * (12 - len(row))
    assert attention[0].tolist() == [1] * len(row) + [0] * (12 - len(row))
    assert batch["nsp_labels"].tolist() == [0, 1]


def test_encode_nsp_batch_truncates_longest_first_and_keeps_special_tokens(tokenizer, plays):
    examples = make_nsp_examples(plays, 64, generator=1)
    batch = encode_nsp_batch(examples, tokenizer, max_length=24)
    for ids, types, attention, e in zip(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], examples):
        n = int(attention.sum())
        ids, types = ids[:n].tolist(), types[:n].tolist()
        seps = [i for i, t in enumerate(ids) if t == tokenizer.sep_id]
        assert ids[0] == tokenizer.cls_id and len(seps) == 2 and seps[1] == n - 1
        assert types == [0] * (seps[0] + 1) + [1] * (n - seps[0] - 1)     # [SEP] after A has type 0
        a, b = (tokenizer.encode(t, add_special_tokens=False) for t in (e.text_a, e.text_b))
        kept_a, kept_b = ids[1:seps[0]], ids[seps[0] + 1:n - 1]
        assert kept_a == a[:len(kept_a)] and kept_b == b[:len(kept_b)]   # truncation cuts the ends
        if len(a) + len(b) > 21:
            assert n == 24
            if len(kept_a) < len(a) and len(kept_b) < len(b):
                assert abs(len(kept_a) - len(kept_b)) <= 1              # both long: shared evenly
            elif len(kept_a) < len(a):
                assert len(a) > len(b)                                  # only the longer one is cut


def test_bert_pretraining_batch_runs_through_bert_for_pretraining(tokenizer, plays):
    from ptlm_course.bert import BertConfig, BertForPreTraining

    examples = make_nsp_examples(plays, 8, generator=2)
    batch = bert_pretraining_batch(examples, tokenizer, 32, generator=torch.Generator().manual_seed(0))
    plain = encode_nsp_batch(examples, tokenizer, 32)
    chosen = batch["mlm_labels"] != IGNORE_INDEX
    assert torch.equal(batch["input_ids"][~chosen], plain["input_ids"][~chosen])
    assert torch.equal(batch["mlm_labels"][chosen], plain["input_ids"][chosen])
    assert not chosen[plain["attention_mask"] == 0].any()
    config = BertConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_layers=1,
                        n_heads=2, d_ff=32, max_position_embeddings=32)
    out = BertForPreTraining(config)(**batch)
    assert torch.isfinite(out.loss)


def test_encode_nsp_batch_errors(tokenizer):
    with pytest.raises(TypeError, match="list of NSPExample"):
        encode_nsp_batch([("a", "b", True)], tokenizer, 16)
    with pytest.raises(ValueError, match="`max_length` should be an int >= 3"):
        encode_nsp_batch([example("a", "b")], tokenizer, 2)
