"""Token and position embeddings: the sinusoid formula and its rotation property, shapes, gradients, errors."""
import math

import pytest
import torch

from ptlm_course.embeddings import (LearnedPositionalEmbedding, SinusoidalPositionalEncoding,
                                    TokenAndPositionEmbedding, sinusoidal_table)


def test_sinusoidal_values_follow_the_formula():
    d, pe = 16, SinusoidalPositionalEncoding(16, max_len=50).pe
    assert pe.shape == (50, 16) and pe.dtype == torch.float32
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0] * 8))  # position 0: sin 0 = 0, cos 0 = 1


def test_shifting_by_k_is_the_same_rotation_for_every_position():
    # PE(p + k) = R_k PE(p): each (sin, cos) pair turns by the angle k * w_i, whatever p is.
    d, k = 8, 5
    pe = sinusoidal_table(100, d).double()
    w = 1 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    rotation = torch.zeros(d, d, dtype=torch.float64)
    for i, wi in enumerate(w):
        c, s = math.cos(k * wi), math.sin(k * wi)
        rotation[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c, -s], [s, c]])  # on (sin, cos) rows
    assert torch.allclose(pe[:-k] @ rotation, pe[k:], atol=1e-5)
    # ... and that matrix is what least squares finds from the table alone (long enough for the slow pairs).
    long = sinusoidal_table(5000, d).double()
    fitted = torch.linalg.lstsq(long[:-k], long[k:]).solution
    assert torch.allclose(fitted, rotation, atol=1e-4)


def test_forward_adds_the_first_t_rows():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 12)
    sinus = SinusoidalPositionalEncoding(12, max_len=20)
    assert torch.equal(sinus(x), x + sinus.pe[:7])
    learned = LearnedPositionalEmbedding(max_len=20, d_model=12)
    assert torch.equal(learned(x), x + learned.embedding.weight[:7])
    assert len(list(sinus.parameters())) == 0 and "pe" in dict(sinus.named_buffers())


def test_token_and_position_embedding_shapes_and_gradients():
    torch.manual_seed(0)
    embed = TokenAndPositionEmbedding(vocab_size=30, d_model=8, max_len=10, positional="learned")
    ids = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
    out = embed(ids)
    assert out.shape == (2, 4, 8)
    assert torch.equal(out, embed.token(ids) + embed.position.embedding.weight[:4])
    out.pow(2).sum().backward()
    grad = embed.position.embedding.weight.grad
    assert grad[:4].abs().sum() > 0 and torch.equal(grad[4:], torch.zeros(6, 8))  # only used positions learn
    # The same token at two positions gets two different vectors.
    assert not torch.allclose(out[0, 0], out[1, 3])


def test_sinusoidal_choice_and_dropout():
    torch.manual_seed(0)
    embed = TokenAndPositionEmbedding(30, 8, 10, positional="sinusoidal", dropout=0.5)
    ids = torch.randint(0, 30, (3, 6))
    embed.eval()
    assert torch.allclose(embed(ids), embed.token(ids) + sinusoidal_table(10, 8)[:6])
    embed.train()
    assert (embed(ids) == 0).float().mean() > 0.3  # dropout is applied in training mode


def test_errors_are_clear():
    with pytest.raises(ValueError, match="sequence is longer.*T = 12.*max_len = 10"):
        SinusoidalPositionalEncoding(8, max_len=10)(torch.zeros(1, 12, 8))
    with pytest.raises(ValueError, match="sequence is longer.*T = 11"):
        TokenAndPositionEmbedding(5, 8, 10)(torch.zeros(1, 11, dtype=torch.long))
    with pytest.raises(ValueError, match="d_model` should be even.*got 7"):
        SinusoidalPositionalEncoding(7)
    with pytest.raises(ValueError, match=r"token ids in \[0, 4\].*contains \[5, -1\]"):
        TokenAndPositionEmbedding(5, 8, 10)(torch.tensor([[0, 5, -1]]))
    with pytest.raises(TypeError, match="integer token ids.*float32"):
        TokenAndPositionEmbedding(5, 8, 10)(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"`ids` should have 2 dimensions \(B, T\).*got shape \(3,\)"):
        TokenAndPositionEmbedding(5, 8, 10)(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"`x` should have 3 dimensions \(B, T, C\).*got shape \(4, 8\)"):
        LearnedPositionalEmbedding(10, 8)(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="d_model = 8 in dimension -1.*size 6"):
        LearnedPositionalEmbedding(10, 8)(torch.zeros(1, 4, 6))
    with pytest.raises(ValueError, match="`positional` should be one of learned, sinusoidal, but got 'rope'"):
        TokenAndPositionEmbedding(5, 8, 10, positional="rope")
    with pytest.raises(ValueError, match="`max_len` should be a positive integer, but got int 0"):
        LearnedPositionalEmbedding(0, 8)
