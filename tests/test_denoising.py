"""T5's span corruption and BART's text infilling: exact invariants, rates over many draws, bad input."""
import pytest
import torch

from ptlm_course.denoising import random_partition, span_corruption, text_infilling

SENTINELS = list(range(1000, 1100))
MASK = 999


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_random_partition_sums_and_is_positive():
    for seed in range(50):
        parts = random_partition(20, 6, gen(seed))
        assert len(parts) == 6 and sum(parts) == 20 and min(parts) >= 1
    assert random_partition(5, 5) == [1] * 5 and random_partition(7, 1) == [7]


def rebuild(inputs, target):
    """Put the hidden spans back into the input: the inverse of span corruption."""
    spans, current = {}, None
    for t in target:
        if t in SENTINELS:
            current = t
            spans[current] = []
        else:
            spans[current].append(t)
    return [x for t in inputs for x in (spans[t] if t in SENTINELS else [t])]


@pytest.mark.parametrize("n, density, mean", [(100, 0.15, 3.0), (37, 0.3, 2.0), (8, 0.15, 3.0), (50, 0.5, 5.0)])
def test_span_corruption_hides_the_right_number_and_can_be_undone(n, density, mean):
    ids = list(range(n))
    for seed in range(20):
        inputs, target = span_corruption(ids, SENTINELS, density, mean, gen(seed))
        n_spans = sum(t in SENTINELS for t in inputs)
        hidden = [t for t in target if t not in SENTINELS]
        assert len(hidden) == max(1, round(n * density))
        assert target[0] == SENTINELS[0] and target[-1] == SENTINELS[n_spans]
        assert [t for t in inputs if t in SENTINELS] == SENTINELS[:n_spans]
        assert rebuild(inputs, target) == ids


def test_span_corruption_mean_span_length_and_seed():
    ids = list(range(400))
    lengths = []
    for seed in range(30):
        inputs, target = span_corruption(ids, SENTINELS, 0.15, 3.0, gen(seed))
        lengths.append(60 / sum(t in SENTINELS for t in inputs))
    assert abs(sum(lengths) / len(lengths) - 3.0) < 0.1            # 60 hidden tokens in 20 spans
    assert span_corruption(ids, SENTINELS, generator=gen(1)) == span_corruption(ids, SENTINELS, generator=gen(1))
    assert span_corruption(ids, SENTINELS, generator=gen(1)) != span_corruption(ids, SENTINELS, generator=gen(2))


def test_text_infilling_hides_about_the_ratio_in_poisson_spans():
    ids = list(range(200))
    hidden, masks = 0, 0
    for seed in range(40):
        noised, target = text_infilling(ids, MASK, 0.3, 3.0, gen(seed))
        assert target == ids
        kept = [t for t in noised if t != MASK]
        assert kept == [t for t in ids if t in set(kept)]             # the kept tokens, in order
        hidden += len(ids) - len(kept)
        masks += noised.count(MASK)
    assert abs(hidden / (40 * 200) - 0.3) < 0.01                      # the budget is met (up to merged spans)
    assert 1.5 < hidden / masks < 4.0                                 # spans of about 3 tokens collapse to one mask


def test_text_infilling_is_reproducible_and_masks_are_single_per_span():
    ids = list(range(60))
    a = text_infilling(ids, MASK, generator=gen(3))
    assert a == text_infilling(ids, MASK, generator=gen(3)) and a != text_infilling(ids, MASK, generator=gen(4))
    noised = a[0]
    assert len(noised) < len(ids)


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="integer ids"):
        span_corruption([1.5, 2.0], SENTINELS)
    with pytest.raises(ValueError, match="noise_density"):
        span_corruption(list(range(10)), SENTINELS, noise_density=1.5)
    with pytest.raises(ValueError, match="sentinel ids"):
        span_corruption(list(range(100)), [5, 6])
    with pytest.raises(ValueError, match="mask_ratio"):
        text_infilling(list(range(10)), MASK, mask_ratio=0)
    with pytest.raises(ValueError, match="positive parts"):
        random_partition(3, 5)
