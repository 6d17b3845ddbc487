"""MultiHeadAttention, split_heads and merge_heads agree with torch.nn.MultiheadAttention and fail clearly."""
import pytest
import torch
import torch.nn as nn

from ptlm_course.attention import MultiHeadAttention, causal_mask, merge_heads, padding_mask, split_heads


def pair(d_model=12, n_heads=3, bias=True, dtype=torch.float32):
    """Our module and torch's, with the same weights (torch packs q, k, v into one in_proj)."""
    torch.manual_seed(0)
    ours = MultiHeadAttention(d_model, n_heads, bias=bias).to(dtype)
    ref = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True).to(dtype)
    with torch.no_grad():
        for proj, w in zip((ours.q_proj, ours.k_proj, ours.v_proj), ref.in_proj_weight.chunk(3)):
            proj.weight.copy_(w)
        ours.out_proj.weight.copy_(ref.out_proj.weight)
        if bias:
            for proj, b in zip((ours.q_proj, ours.k_proj, ours.v_proj), ref.in_proj_bias.chunk(3)):
                proj.bias.copy_(b)
            ours.out_proj.bias.copy_(ref.out_proj.bias)
    return ours, ref


def inputs(B=2, T=5, S=7, C=12, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, T, C, generator=g, dtype=dtype), torch.randn(B, S, C, generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_matches_torch(dtype, atol, bias):
    ours, ref = pair(bias=bias, dtype=dtype)
    x, _ = inputs(dtype=dtype)
    out, weights = ours(x)
    ref_out, ref_weights = ref(x, x, x, average_attn_weights=False)
    assert out.shape == (2, 5, 12) and weights.shape == (2, 3, 5, 5)
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=atol, rtol=0)
    _, averaged = ref(x, x, x)                             # torch's default: averaged over heads
    torch.testing.assert_close(weights.mean(1), averaged, atol=atol, rtol=0)


def test_cross_attention_with_padding_matches_torch():
    ours, ref = pair()
    x, context = inputs(T=4, S=7)
    lengths = torch.tensor([7, 3])
    out, weights = ours(x, context=context, mask=padding_mask(lengths))
    # torch's bool masks mean the opposite: True = NOT allowed to attend
    ref_out, ref_weights = ref(x, context, context, key_padding_mask=~padding_mask(lengths)[:, 0, 0],
                               average_attn_weights=False)
    assert weights.shape == (2, 3, 4, 7)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=0)
    assert weights[1, :, :, 3:].abs().max() == 0           # padded context positions get zero weight


def test_causal_and_padding_match_torch_attn_mask():
    ours, ref = pair()
    x, _ = inputs(T=6)
    lengths = torch.tensor([6, 4])
    out, weights = ours(x, mask=padding_mask(lengths), causal=True)
    ref_out, ref_weights = ref(x, x, x, attn_mask=~causal_mask(6), key_padding_mask=~padding_mask(lengths)[:, 0, 0],
                               average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=0)
    # causal=True is the same as passing the causal mask yourself
    torch.testing.assert_close(ours(x, mask=causal_mask(6) & padding_mask(lengths))[0], out)


def test_causal_output_ignores_later_tokens():
    ours, _ = pair()
    x, _ = inputs(T=6)
    x2 = x.clone()
    x2[:, 3:] = torch.randn(2, 3, 12)
    out, _ = ours(x, causal=True)
    out2, _ = ours(x2, causal=True)
    torch.testing.assert_close(out[:, :3], out2[:, :3])
    assert not torch.allclose(out[:, 3:], out2[:, 3:])


def test_gradcheck_module_float64():
    ours, _ = pair(d_model=6, n_heads=2, dtype=torch.float64)
    x, context = inputs(B=2, T=3, S=4, C=6, dtype=torch.float64)
    x.requires_grad_(True)
    context.requires_grad_(True)
    mask = padding_mask(torch.tensor([4, 2]))
    assert torch.autograd.gradcheck(lambda x, c: ours(x, context=c, mask=mask)[0], (x, context))
    assert torch.autograd.gradcheck(lambda x: ours(x, causal=True)[0], (x,))


def test_dropout_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, dropout=0.5)
    x, _ = inputs(C=8)
    mha.eval()
    torch.testing.assert_close(mha(x)[0], mha(x)[0])
    mha.train()
    assert not torch.allclose(mha(x)[0], mha.eval()(x)[0])


def test_parameter_count():
    assert sum(p.numel() for p in MultiHeadAttention(64, 8).parameters()) == 4 * (64 * 64 + 64)
    assert sum(p.numel() for p in MultiHeadAttention(64, 8, bias=False).parameters()) == 4 * 64 * 64


def test_split_and_merge_heads():
    x = torch.arange(2 * 3 * 6).reshape(2, 3, 6).float()   # (B, T, C)
    heads = split_heads(x, 2)                              # (B, H, T, C/H)
    assert heads.shape == (2, 2, 3, 3)
    assert heads[0, 1, 2].tolist() == x[0, 2, 3:].tolist()  # head 1 of token 2 = channels 3..5 of token 2
    assert torch.equal(merge_heads(heads), x)
    assert merge_heads(heads).is_contiguous()


@pytest.mark.parametrize("call, error, message", [
    (lambda: MultiHeadAttention(10, 3), ValueError, "divisible by n_heads.*d_model = 10 and n_heads = 3"),
    (lambda: MultiHeadAttention(8, 0), ValueError, "`n_heads` should be a positive integer"),
    (lambda: MultiHeadAttention(8, 2, dropout=1.0), ValueError, r"\[0, 1\)"),
    (lambda: MultiHeadAttention(12, 3)(torch.randn(5, 12)), ValueError, r"3 dimensions \(B, T, C\).*\(5, 12\)"),
    (lambda: MultiHeadAttention(12, 3)(torch.randn(2, 5, 10)), ValueError, r"d_model = 12.*\(2, 5, 10\)"),
    (lambda: MultiHeadAttention(12, 3)(torch.randn(2, 5, 12), context=torch.randn(2, 7, 8)), ValueError,
     r"`context` should have shape \(B, S, C\) = \(2, S, 12\).*\(2, 7, 8\)"),
    (lambda: MultiHeadAttention(12, 3)(torch.randn(2, 5, 12), context=torch.randn(2, 7, 12), causal=True),
     ValueError, "T = 5 queries and S = 7 keys"),
    (lambda: MultiHeadAttention(12, 3)(torch.randn(2, 5, 12), mask=torch.ones(2, 5)), TypeError, "True = may attend"),
    (lambda: MultiHeadAttention(12, 3)(torch.randn(2, 5, 12), mask=torch.ones(2, 5, dtype=torch.bool)),
     ValueError, r"\(2, 3, 5, 5\).*padding_mask"),
    (lambda: split_heads(torch.randn(2, 3, 7), 2), ValueError, "C = 7 should be divisible by n_heads = 2"),
    (lambda: merge_heads(torch.randn(2, 3, 7)), ValueError, r"4 dimensions \(B, H, T, d\)"),
])
def test_errors_say_what_was_expected(call, error, message):
    with pytest.raises(error, match=message):
        call()
