"""scaled_dot_product_attention, causal_mask and padding_mask agree with PyTorch and fail clearly."""
import pytest
import torch
import torch.nn.functional as F

from ptlm_course.attention import causal_mask, padding_mask, scaled_dot_product_attention


def qkv(*lead, T_q=5, T_k=7, d_k=8, d_v=6, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    return make(*lead, T_q, d_k), make(*lead, T_k, d_k), make(*lead, T_k, d_v)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("lead", [(), (3,), (2, 4)])
def test_matches_torch_without_mask(dtype, atol, lead):
    q, k, v = qkv(*lead, dtype=dtype)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (*lead, 5, 6) and weights.shape == (*lead, 5, 7)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=atol, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(*lead, 5, dtype=dtype))


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_matches_torch_causal(dtype, atol):
    q, k, v = qkv(2, 3, T_q=6, T_k=6, dtype=dtype)
    out, weights = scaled_dot_product_attention(q, k, v, mask=causal_mask(6))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=atol, rtol=0)
    assert (weights.triu(1) == 0).all()


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_matches_torch_padding_and_cross_attention(dtype, atol):
    q, k, v = qkv(3, 4, T_q=5, T_k=7, dtype=dtype)     # T_q != T_k
    mask = padding_mask(torch.tensor([7, 4, 1]))           # (3, 1, 1, 7): broadcasts over heads and queries
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=atol, rtol=0)
    assert weights[1, :, :, 4:].abs().max() == 0 and weights[2, :, :, 1:].abs().max() == 0  # padded keys
    torch.testing.assert_close(weights[2, :, :, 0], torch.ones(4, 5, dtype=dtype))


def test_matches_torch_random_bool_mask_broadcast_over_heads():
    q, k, v = qkv(2, 4, T_q=5, T_k=7)
    mask = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(1)) > 0.4
    mask[..., 0] = True                                    # no fully masked rows (torch gives NaN there)
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=0)
    assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()


def test_fully_masked_rows_give_zeros_not_nan():
    q, k, v = qkv(2, T_q=3, T_k=4, dtype=torch.float64)
    q.requires_grad_(True)
    mask = torch.tensor([[True, True, False, False], [False] * 4, [True] * 4])   # (T_q, T_k), row 1 empty
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert (weights[:, 1] == 0).all() and (out[:, 1] == 0).all()
    torch.testing.assert_close(weights[:, [0, 2]].sum(-1), torch.ones(2, 2, dtype=torch.float64))
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_scale_argument_and_dropout():
    q, k, v = qkv(2)
    _, unscaled = scaled_dot_product_attention(q, k, v, scale=1.0)
    torch.testing.assert_close(unscaled, torch.softmax(q @ k.transpose(-2, -1), dim=-1))
    torch.manual_seed(0)
    out_a, w_a = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(0)
    out_b, w_b = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    out_0, w_0 = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out_a, out_b)               # seeded dropout is reproducible
    assert not torch.allclose(out_a, out_0)                # ... and changes the output
    torch.testing.assert_close(w_a, w_0)                   # the returned weights are taken before dropout


def test_gradcheck_float64():
    q, k, v = (t.requires_grad_(True) for t in qkv(2, T_q=3, T_k=4, d_k=5, d_v=3, dtype=torch.float64))
    mask = padding_mask(torch.tensor([4, 2]))[:, 0]        # (2, 1, 4)
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=mask), (q, k, v))


def test_causal_output_ignores_later_tokens():
    q, k, v = qkv(1, T_q=6, T_k=6)
    out, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(6))
    k2, v2 = k.clone(), v.clone()
    k2[:, 4:] += 3.0
    v2[:, 4:] -= 5.0                                       # change tokens 4 and 5 only
    out2, _ = scaled_dot_product_attention(q, k2, v2, mask=causal_mask(6))
    torch.testing.assert_close(out[:, :4], out2[:, :4])    # positions 0..3 cannot see them
    assert not torch.allclose(out[:, 4:], out2[:, 4:])


def test_causal_mask():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(1).dtype == torch.bool
    with pytest.raises(ValueError, match="positive integer"):
        causal_mask(0)


def test_padding_mask_from_attention_mask_and_lengths():
    from_lengths = padding_mask(torch.tensor([3, 1]), T=4)
    from_mask = padding_mask(torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]]))
    assert from_lengths.shape == (2, 1, 1, 4) and from_lengths.dtype == torch.bool
    assert torch.equal(from_lengths, from_mask)
    assert from_lengths[:, 0, 0].tolist() == [[True, True, True, False], [True, False, False, False]]
    assert padding_mask([2, 3]).shape == (2, 1, 1, 3)      # T defaults to the longest length
    assert torch.equal(padding_mask(torch.tensor([[True, False]])), torch.tensor([[[[True, False]]]]))


@pytest.mark.parametrize("bad, T, message", [
    (torch.tensor([[0.0, 1.0]]), None, "1/0 or True/False"),
    (torch.tensor([[1, 2, 0]]), None, "only 0 and 1"),
    (torch.tensor([5, 2]), 4, "longer than T = 4"),
    (torch.tensor([[1, 1, 0]]), 4, "T = 4 was asked for"),
    ("hello", None, "but got str"),
])
def test_padding_mask_errors(bad, T, message):
    with pytest.raises(ValueError, match=message):
        padding_mask(bad, T)


def _error_cases():
    q, k, v = qkv(2)
    return [
        ("q of rank 1", (torch.randn(8), k, v), {}, ValueError, r"`q` should have at least 2 dimensions.*\(8,\)"),
        ("not a tensor", ([[1.0]], k, v), {}, TypeError, "`q` should be a torch.Tensor.*got list"),
        ("integer values", (q.long(), k, v), {}, TypeError, "floating-point.*torch.int64"),
        ("d_k mismatch", (torch.randn(2, 5, 4), k, v), {}, ValueError, r"same d_k.*d_k = 4.*d_k = 8"),
        ("T_k mismatch", (q, k, torch.randn(2, 3, 6)), {}, ValueError,
         r"same number of positions T_k.*T_k = 7.*T_k = 3"),
        ("batch mismatch", (torch.randn(3, 5, 8), k, v), {}, ValueError, "leading.*should match or broadcast"),
        ("float 0/1 mask", (q, k, v), {"mask": torch.ones(5, 7)}, TypeError,
         r"bool tensor with True = may attend.*float32.*mask.bool\(\)"),
        ("int mask", (q, k, v), {"mask": torch.ones(5, 7, dtype=torch.long)}, TypeError, "True = may attend.*int64"),
        ("mask wrong shape", (q, k, v), {"mask": torch.ones(5, 6, dtype=torch.bool)}, ValueError,
         r"broadcast to.*\(2, 5, 7\).*shape \(5, 6\)"),
        ("mask adds dims", (q, k, v), {"mask": torch.ones(4, 2, 5, 7, dtype=torch.bool)}, ValueError,
         r"\(4, 2, 5, 7\)"),
        ("mask is a list", (q, k, v), {"mask": [[True]]}, TypeError, "bool tensor.*got list"),
        ("bad dropout", (q, k, v), {"dropout_p": 1.5}, ValueError, r"\[0, 1\).*1.5"),
    ]


@pytest.mark.parametrize("case", _error_cases(), ids=lambda c: c[0])
def test_errors_say_what_was_expected(case):
    _, args, kwargs, error, message = case
    with pytest.raises(error, match=message):
        scaled_dot_product_attention(*args, **kwargs)


def test_causal_layers_share_one_mask_and_match_an_explicit_mask():
    from ptlm_course.attention import MultiHeadAttention, _shared_causal_mask
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4)
    for T in (8, 3, 12, 5):                                      # longer, then shorter than the stored mask
        x = torch.randn(2, T, 16)
        assert torch.equal(_shared_causal_mask(T, x.device), causal_mask(T))
        out, weights = mha(x, causal=True)
        ref_out, ref_weights = mha(x, mask=causal_mask(T))
        assert torch.equal(out, ref_out) and torch.equal(weights, ref_weights)


def test_skipping_the_nan_fix_without_fully_masked_rows_changes_nothing():
    import ptlm_course.attention as attention
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4) for _ in range(3))
    mask = causal_mask(6)
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    scores = (q @ k.transpose(-2, -1)) / 2.0
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1).masked_fill(~mask, 0.0)
    assert torch.equal(weights, expected) and torch.equal(out, expected @ v)
    assert not attention._may_block_whole_rows(~mask) and attention._may_block_whole_rows(~torch.zeros(2, 2).bool())
