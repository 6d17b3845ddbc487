"""FeedForward and TransformerBlock agree with torch.nn.TransformerEncoderLayer, respect masks and fail clearly."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptlm_course.attention import causal_mask, padding_mask
from ptlm_course.transformer import FeedForward, TransformerBlock

D_MODEL, N_HEADS, D_FF = 16, 4, 40


def pair(norm_first=True, activation="relu", bias=True, dtype=torch.float32, causal=False):
    """Our block and torch's encoder layer with the same weights (torch packs q, k, v into one in_proj)."""
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D_MODEL, N_HEADS, D_FF, dropout=0.0, activation=activation, bias=bias,
                                     batch_first=True, norm_first=norm_first).to(dtype).eval()
    ours = TransformerBlock(D_MODEL, N_HEADS, D_FF, norm_first=norm_first, causal=causal,
                            activation=activation, bias=bias).to(dtype).eval()
    attn = ours.attn
    with torch.no_grad():
        for proj, w in zip((attn.q_proj, attn.k_proj, attn.v_proj), ref.self_attn.in_proj_weight.chunk(3)):
            proj.weight.copy_(w)
        if bias:
            for proj, b in zip((attn.q_proj, attn.k_proj, attn.v_proj), ref.self_attn.in_proj_bias.chunk(3)):
                proj.bias.copy_(b)
        # make LayerNorm's weight and bias non-trivial so that a swapped ln1/ln2 would be caught
        for norm in (ref.norm1, ref.norm2):
            norm.weight.uniform_(0.5, 1.5)
            if bias:
                norm.bias.uniform_(-0.5, 0.5)
    for ours_part, ref_part in ((attn.out_proj, ref.self_attn.out_proj), (ours.ffn.fc1, ref.linear1),
                                (ours.ffn.fc2, ref.linear2), (ours.ln1, ref.norm1), (ours.ln2, ref.norm2)):
        ours_part.load_state_dict(ref_part.state_dict())
    return ours, ref


def inputs(B=3, T=7, dtype=torch.float32, seed=1):
    return torch.randn(B, T, D_MODEL, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("bias", [True, False])
def test_encoder_block_matches_torch(norm_first, activation, bias):
    ours, ref = pair(norm_first, activation, bias)
    x = inputs()
    out = ours(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref(x), atol=1e-5, rtol=0)
    assert ours.attn_weights.shape == (3, N_HEADS, 7, 7)
    torch.testing.assert_close(ours.attn_weights.sum(-1), torch.ones(3, N_HEADS, 7))


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_masks_match_torch(norm_first, activation):
    """torch's bool masks mean the opposite of ours: True = NOT allowed to attend."""
    ours, ref = pair(norm_first, activation)
    x = inputs()
    keep = padding_mask(torch.tensor([7, 4, 2]))                           # (B, 1, 1, T), True = real token
    torch.testing.assert_close(ours(x, mask=keep), ref(x, src_key_padding_mask=~keep[:, 0, 0]),
                               atol=1e-5, rtol=0)
    ours.causal = True
    future = ~causal_mask(7)                                              # torch: True = masked out
    torch.testing.assert_close(ours(x), ref(x, src_mask=future, is_causal=True), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours(x, mask=keep), ref(x, src_mask=future, src_key_padding_mask=~keep[:, 0, 0]),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
def test_matches_torch_in_train_mode_without_dropout(norm_first):
    """With dropout=0 train mode is the same function; torch then takes its slow (Python) path too."""
    ours, ref = pair(norm_first, "gelu")
    ours.train(), ref.train()
    x = inputs().requires_grad_()
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_feed_forward_matches_torch_layers():
    torch.manual_seed(0)
    ffn = FeedForward(8, 24, activation="gelu_tanh")
    assert ffn.fc1.weight.shape == (24, 8) and ffn.fc2.weight.shape == (8, 24)
    x = torch.randn(2, 5, 8)
    expected = ffn.fc2(F.gelu(ffn.fc1(x), approximate="tanh"))
    torch.testing.assert_close(ffn(x), expected)
    assert FeedForward(8).d_ff == 32                                       # default 4 * d_model
    assert ffn(x[0, 0]).shape == (8,)                                      # any leading dims
    dropped = FeedForward(8, 24, dropout=0.5)
    assert not torch.allclose(dropped(x), dropped(x))                      # dropout on the hidden layer
    dropped.eval()
    torch.testing.assert_close(dropped(x), dropped.fc2(F.gelu(dropped.fc1(x))))
    relu = FeedForward(8, 24, activation="relu")
    assert (relu.fc1(x).relu() >= 0).all() and not torch.allclose(relu(x), relu.fc2(relu.fc1(x)))


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
@pytest.mark.parametrize("causal", [True, False], ids=["decoder", "encoder"])
def test_gradcheck_float64(norm_first, causal):
    torch.manual_seed(0)
    block = TransformerBlock(8, 2, 12, norm_first=norm_first, causal=causal).double()
    x = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    mask = padding_mask(torch.tensor([4, 3]))
    assert torch.autograd.gradcheck(lambda x: block(x, mask=mask), (x,))
    params = dict(block.named_parameters())
    w = params["ffn.fc1.weight"].detach().clone().requires_grad_()

    def as_function_of_w(w):
        return torch.func.functional_call(block, {**params, "ffn.fc1.weight": w}, (x.detach(),))

    assert torch.autograd.gradcheck(as_function_of_w, (w,))


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
def test_causal_block_ignores_the_future_and_encoder_does_not(norm_first):
    torch.manual_seed(0)
    decoder = TransformerBlock(D_MODEL, N_HEADS, norm_first=norm_first, causal=True).eval()
    encoder = TransformerBlock(D_MODEL, N_HEADS, norm_first=norm_first, causal=False).eval()
    encoder.load_state_dict(decoder.state_dict())                          # same weights, only the mask differs
    x = inputs(B=2, T=8)
    changed = x.clone()
    changed[:, 5:] = torch.randn(2, 3, D_MODEL)                            # new tokens at positions 5, 6, 7
    dec, dec_changed = decoder(x), decoder(changed)
    assert torch.equal(dec[:, :5], dec_changed[:, :5])                     # the past cannot see the future
    assert (dec[:, 5:] - dec_changed[:, 5:]).abs().amin(dim=-1).gt(0).all()
    enc, enc_changed = encoder(x), encoder(changed)
    assert (enc[:, :5] - enc_changed[:, :5]).abs().max() > 1e-3             # an encoder sees everything
    assert decoder.attn_weights[0, 0].triu(1).abs().max() == 0            # no weight on the future


@pytest.mark.parametrize("causal, side", [(False, "right"), (False, "left"), (True, "left")],
                         ids=["encoder-right-padded", "encoder-left-padded", "decoder-left-padded"])
def test_padded_tokens_do_not_change_real_positions(causal, side):
    """(A causal block never sees right padding anyway, so the decoder case pads on the left.)"""
    torch.manual_seed(0)
    block = TransformerBlock(D_MODEL, N_HEADS, causal=causal).eval()
    x = inputs(B=2, T=6)
    real = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])           # (B, T), 1 = real token
    if side == "left":
        real = real.flip(-1)
    pad = real[1] == 0
    mask = padding_mask(real)                                              # (B, 1, 1, T)
    changed = x.clone()
    changed[1, pad] = 100 * torch.randn(3, D_MODEL)                        # garbage in the padding
    out, out_changed = block(x, mask=mask), block(changed, mask=mask)
    assert torch.equal(out[1, ~pad], out_changed[1, ~pad])
    assert torch.equal(out[0], out_changed[0])
    assert not torch.allclose(block(x)[1, ~pad], block(changed)[1, ~pad])   # without the mask they would leak


def test_dropout_is_active_in_training_only_and_seeded():
    block = TransformerBlock(D_MODEL, N_HEADS, dropout=0.3)
    x = inputs()
    torch.manual_seed(5)
    a = block(x)
    torch.manual_seed(5)
    assert torch.equal(a, block(x))                                        # same seed, same mask
    assert not torch.allclose(a, block(x))                                 # new draw, new mask
    block.eval()
    assert torch.equal(block(x), block(x))


def test_module_names_and_defaults():
    block = TransformerBlock(12, 3)
    names = {name for name, _ in block.named_children()}
    assert {"attn", "ln1", "ln2", "ffn"} <= names
    assert block.ffn.d_ff == 48 and block.norm_first and not block.causal
    assert isinstance(block.ln1, nn.LayerNorm) and block.ln1.eps == 1e-5
    assert TransformerBlock(12, 3, layer_norm_eps=1e-6).ln2.eps == 1e-6
    assert TransformerBlock(12, 3, bias=False).ffn.fc1.bias is None


@pytest.mark.parametrize("make, x, message", [
    (lambda: TransformerBlock(16, 4), torch.randn(7, 16), r"3 dimensions \(B, T, C\).*\(7, 16\)"),
    (lambda: TransformerBlock(16, 4), torch.randn(2, 7, 12), r"d_model = 16.*\(2, 7, 12\)"),
    (lambda: TransformerBlock(16, 4), torch.ones(2, 7, 16, dtype=torch.long), r"floating-point.*int64"),
    (lambda: TransformerBlock(16, 4), [[0.0] * 16], r"torch.Tensor.*list"),
    (lambda: FeedForward(16), torch.randn(3, 8), r"d_model = 16.*\(3, 8\)"),
])
def test_wrong_inputs_say_what_was_expected(make, x, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()(x)


def test_wrong_masks_and_settings_say_what_was_expected():
    block = TransformerBlock(16, 4)
    x = torch.randn(2, 5, 16)
    with pytest.raises(TypeError, match="bool"):
        block(x, mask=torch.ones(2, 1, 1, 5))
    with pytest.raises(ValueError, match=r"padding_mask"):
        block(x, mask=torch.ones(2, 5, dtype=torch.bool).view(2, 1, 5, 1).expand(2, 1, 5, 3))
    with pytest.raises(ValueError, match=r"divisible by n_heads.*d_model = 16 and n_heads = 3"):
        TransformerBlock(16, 3)
    with pytest.raises(ValueError, match=r"activation.*'gelu'.*'swish'"):
        TransformerBlock(16, 4, activation="swish")
    with pytest.raises(ValueError, match=r"probability in \[0, 1\).*1.5"):
        TransformerBlock(16, 4, dropout=1.5)
    with pytest.raises(ValueError, match=r"d_ff.*positive integer.*-4"):
        FeedForward(16, d_ff=-4)


def test_separate_dropout_rates():
    block = TransformerBlock(16, 2, dropout=0.1, attention_dropout=0.2, ffn_dropout=0.0)
    assert block.attn.dropout == 0.2 and block.ffn.dropout.p == 0.0
    assert block.dropout1.p == block.dropout2.p == 0.1
    default = TransformerBlock(16, 2, dropout=0.3)                 # one rate everywhere, as in torch's layer
    assert default.attn.dropout == default.ffn.dropout.p == default.dropout1.p == 0.3
    with pytest.raises(ValueError, match=r"`ffn_dropout` should be a probability in \[0, 1\), but got float 1.5"):
        TransformerBlock(16, 2, ffn_dropout=1.5)
