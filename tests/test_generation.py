"""Generation: filters on hand-checked logits, greedy = argmax, cache = no cache, same tokens as transformers."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ptlm_course.generation import apply_temperature, generate, sample_next, top_k_filter, top_p_filter  # noqa: E402
from ptlm_course.gpt import GPT  # noqa: E402



@pytest.fixture(scope="module")
def model(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_gpt2")
    hf_model.save_pretrained(path)
    return GPT.from_pretrained(path)


def prompt(B=2, T=5, seed=1):
    return torch.randint(0, 61, (B, T), generator=torch.Generator().manual_seed(seed))


def kept(logits):
    """Indices of the logits a filter left finite, per row."""
    return [torch.nonzero(torch.isfinite(row)).flatten().tolist() for row in logits]


# ---- filters ---------------------------------------------------------------------------------------

def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0],
                           [0.0, -1.0, 7.0, 2.0, 6.0]])
    out = top_k_filter(logits, 2)
    assert kept(out) == [[1, 3], [2, 4]]
    assert torch.equal(out[0, [1, 3]], logits[0, [1, 3]])                # the kept logits are unchanged
    assert len(kept(top_k_filter(torch.zeros(1, 6), 4))[0]) == 4       # exactly k even when all tie
    assert kept(top_k_filter(logits, 10)) == [[0, 1, 2, 3, 4]] * 2      # k > V keeps everything


def test_top_p_keeps_the_nucleus():
    # probabilities 0.05, 0.5, 0.15, 0.3 (shuffled, so the filter must map back from sorted order)
    logits = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).log() + 2.0
    assert kept(top_p_filter(logits, 0.3)) == [[1]]          # the top token alone already has 0.5 >= 0.3
    assert kept(top_p_filter(logits, 0.79)) == [[1, 3]]      # 0.5 + 0.3 = 0.8 >= 0.79
    assert kept(top_p_filter(logits, 0.81)) == [[1, 2, 3]]   # needs 0.15 too: 0.95
    assert kept(top_p_filter(logits, 1.0)) == [[0, 1, 2, 3]]
    assert kept(top_p_filter(torch.tensor([[9.0, 0.0, 0.0]]), 1e-6)) == [[0]]   # the top token is always kept
    two_rows = torch.stack([logits[0], logits[0].flip(0)])
    assert kept(top_p_filter(two_rows, 0.79)) == [[1, 3], [0, 2]]              # rows are independent


def test_temperature_scales_the_logits():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    torch.testing.assert_close(apply_temperature(logits, 2.0), logits / 2)
    entropy = lambda x: -(x.softmax(-1) * x.log_softmax(-1)).sum().item()  # noqa: E731
    assert entropy(apply_temperature(logits, 0.5)) < entropy(logits) < entropy(apply_temperature(logits, 2.0))
    assert apply_temperature(logits, 1e-3).softmax(-1)[0, 0] == pytest.approx(1.0)   # -> argmax as T -> 0


def test_sample_next_greedy_is_argmax_and_sampling_respects_filters():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_next(logits, greedy=True), logits.argmax(-1, keepdim=True))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, top_k=1, generator=g), logits.argmax(-1, keepdim=True))
    top3 = logits.topk(3, dim=-1).indices
    draws = torch.cat([sample_next(logits, top_k=3, generator=g) for _ in range(200)], dim=1)  # (4, 200)
    assert all(set(draws[b].tolist()) <= set(top3[b].tolist()) for b in range(4))
    assert len(set(draws[0].tolist())) == 3                   # and it does sample, not always the top one


def test_sampling_frequencies_follow_the_probabilities():
    probs = torch.tensor([0.6, 0.3, 0.1])
    g = torch.Generator().manual_seed(0)
    draws = sample_next(probs.log().expand(20000, 3).contiguous(), generator=g).flatten()
    frequencies = torch.bincount(draws, minlength=3) / 20000
    torch.testing.assert_close(frequencies, probs, atol=0.015, rtol=0)


# ---- generate ----------------------------------------------------------------------------------------

def test_greedy_generate_is_repeated_argmax(model):
    x = prompt()
    out = generate(model, x, 8, greedy=True, use_cache=False)
    assert out.shape == (2, 13) and torch.equal(out[:, :5], x)
    expected = x
    for _ in range(8):
        logits, _ = model(expected)
        expected = torch.cat([expected, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, expected)


def test_greedy_generate_matches_transformers(model, hf_model):
    x = prompt()
    ours = generate(model, x, 15, greedy=True)
    theirs = hf_model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=15, do_sample=False,
                               pad_token_id=0)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("settings", [dict(greedy=True), dict(temperature=1.5, top_k=20, top_p=0.9)])
def test_cache_gives_the_same_tokens(model, settings):
    # 5 + 40 tokens > block_size = 24: also covers the switch from cached to cropped, uncached steps
    x = prompt()
    runs = [generate(model, x, 40, use_cache=use_cache, generator=torch.Generator().manual_seed(3), **settings)
            for use_cache in (True, False)]
    assert runs[0].shape == (2, 45)
    assert torch.equal(runs[0], runs[1])


def test_same_seed_same_tokens(model):
    x = prompt()
    run = lambda seed: generate(model, x, 20, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_generate_runs_in_eval_mode_and_restores_training(model):
    x = prompt()
    model.train()
    try:
        a, b = generate(model, x, 10, greedy=True), generate(model, x, 10, greedy=True)
        assert torch.equal(a, b)                                  # no dropout while generating
        assert model.training
    finally:
        model.eval()


def test_eos_stops_and_pads_finished_sequences(model):
    x = prompt()
    free = generate(model, x, 10, greedy=True)
    eos = free[0, 7].item()                                       # a token sequence 0 generates

    def end(row):                                                 # the position just after the first eos
        hits = (row[5:] == eos).nonzero()
        return hits[0].item() + 6 if len(hits) else len(row)

    one = generate(model, x[:1], 10, greedy=True, eos_token_id=eos)
    assert torch.equal(one[0], free[0, :end(free[0])])            # stops right after its eos
    both = generate(model, x, 10, greedy=True, eos_token_id=eos)
    assert both.shape[1] == max(end(free[0]), end(free[1]))      # runs until every sequence has finished
    for b in range(2):
        stop = end(free[b])
        assert torch.equal(both[b, :stop], free[b, :stop])
        assert torch.all(both[b, stop:] == eos)                   # then only eos, as padding


def test_errors(model):
    x = prompt()
    with pytest.raises(ValueError, match="`temperature` should be > 0, but got 0.*greedy=True"):
        generate(model, x, 3, temperature=0)
    with pytest.raises(ValueError, match="`top_k` should be an integer >= 1.*0"):
        generate(model, x, 3, top_k=0)
    for p in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"`top_p` should be a probability in \(0, 1\]"):
            top_p_filter(torch.zeros(1, 3), p)
    with pytest.raises(ValueError, match="`max_new_tokens` should be a non-negative integer"):
        generate(model, x, -1)
    with pytest.raises(ValueError, match="token ids in"):
        generate(model, torch.tensor([[3, 99]]), 2)
    with pytest.raises(ValueError, match=r"`logits` should have 2 dimensions \(B, V\)"):
        sample_next(torch.zeros(5))
    with pytest.raises(TypeError, match="floating-point"):
        top_k_filter(torch.zeros(1, 5, dtype=torch.long), 2)
    assert torch.equal(generate(model, x, 3, temperature=0, greedy=True), generate(model, x, 3, greedy=True))
