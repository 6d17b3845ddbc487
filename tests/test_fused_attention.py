"""The fused attention path (PyTorch's F.scaled_dot_product_attention) gives what the readable one gives."""
import copy

import pytest
import torch

from ptlm_course.attention import KVCache, MultiHeadAttention, padding_mask, use_fused_attention
from ptlm_course.bert import BertConfig, BertForPreTraining
from ptlm_course.gpt import GPT, GPTConfig
from ptlm_course.transformer import TransformerBlock


def _pair(seed=0, d_model=32, n_heads=4):
    torch.manual_seed(seed)
    readable = MultiHeadAttention(d_model, n_heads)
    fused = copy.deepcopy(readable)
    fused.fused = True
    return readable, fused


def _forward_backward(module, x, **kwargs):
    x = x.clone().requires_grad_(True)
    out, weights = module(x, **kwargs)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out, weights, x.grad, module.q_proj.weight.grad


@pytest.mark.parametrize("kind", ["none", "causal", "padding", "causal+padding"])
def test_fused_matches_readable_outputs_and_gradients(kind):
    readable, fused = _pair()
    x = torch.randn(3, 7, 32)
    kwargs = {"causal": "causal" in kind}
    if "padding" in kind:
        kwargs["mask"] = padding_mask(torch.tensor([7, 4, 1]), T=7)     # (B, 1, 1, T)
    out_r, weights_r, dx_r, dw_r = _forward_backward(readable, x, **kwargs)
    out_f, weights_f, dx_f, dw_f = _forward_backward(fused, x, **kwargs)
    assert weights_r.shape == (3, 4, 7, 7) and weights_f is None          # weights on the readable path only
    torch.testing.assert_close(out_f, out_r, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx_f, dx_r, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dw_f, dw_r, atol=1e-5, rtol=1e-5)


def test_fused_fully_masked_query_rows_give_zero_like_readable():
    readable, fused = _pair()
    x = torch.randn(2, 5, 32)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, 2] = False                                               # query 2 of sequence 1 sees nothing
    out_r, _ = readable(x, mask=mask)
    out_f, _ = fused(x, mask=mask)
    assert not out_f.isnan().any()
    torch.testing.assert_close(out_f, out_r, atol=1e-5, rtol=1e-5)


def test_fused_cross_attention_and_kv_cache_match_readable():
    readable, fused = _pair(seed=1)
    x, context = torch.randn(2, 4, 32), torch.randn(2, 6, 32)
    torch.testing.assert_close(fused(x, context=context)[0], readable(x, context=context)[0], atol=1e-5, rtol=1e-5)
    cache_r, cache_f = KVCache(), KVCache()
    for chunk in (x[:, :3], x[:, 3:]):                                  # prompt, then one new token
        out_r, _ = readable(chunk, causal=True, kv_cache=cache_r)
        out_f, _ = fused(chunk, causal=True, kv_cache=cache_f)
        torch.testing.assert_close(out_f, out_r, atol=1e-5, rtol=1e-5)


def test_fused_checks_the_mask_like_readable():
    _, fused = _pair()
    with pytest.raises(TypeError, match="bool"):
        fused(torch.randn(2, 5, 32), mask=torch.ones(2, 1, 1, 5))
    with pytest.raises(ValueError, match="broadcast"):
        fused(torch.randn(2, 5, 32), mask=torch.ones(2, 1, 1, 4, dtype=torch.bool))


def test_fused_flag_default_off_and_block_weights_none():
    assert MultiHeadAttention(16, 2).fused is False
    assert "fused=True" in repr(MultiHeadAttention(16, 2, fused=True))
    block = TransformerBlock(16, 2, causal=True)
    block(torch.randn(1, 3, 16))
    assert block.attn_weights.shape == (1, 2, 3, 3)
    use_fused_attention(block)
    block(torch.randn(1, 3, 16))
    assert block.attn.fused and block.attn_weights is None


def test_use_fused_attention_keeps_gpt_and_bert_outputs():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=50, block_size=16, n_layers=2, n_heads=4, d_model=32, dropout=0.0)).eval()
    input_ids = torch.randint(0, 50, (2, 16))
    logits, loss = gpt(input_ids, input_ids)
    fused_logits, fused_loss = use_fused_attention(copy.deepcopy(gpt))(input_ids, input_ids)
    torch.testing.assert_close(fused_logits, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_loss, loss)

    bert = BertForPreTraining(BertConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4,
                                         d_ff=64, max_position_embeddings=16)).eval()
    attention_mask = torch.tensor([[1] * 16, [1] * 9 + [0] * 7])
    out = bert(input_ids, attention_mask=attention_mask)
    fused_out = use_fused_attention(copy.deepcopy(bert))(input_ids, attention_mask=attention_mask)
    torch.testing.assert_close(fused_out.mlm_logits, out.mlm_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_out.nsp_logits, out.nsp_logits, atol=1e-5, rtol=1e-5)


def _loss_and_grads(model, loss_fn):
    model.train().zero_grad(set_to_none=True)
    loss = loss_fn(model)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_fused_gpt_and_bert_train_the_same_losses_and_gradients():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=50, block_size=16, n_layers=2, n_heads=4, d_model=32, dropout=0.0))
    input_ids = torch.randint(0, 50, (3, 16))
    bert = BertForPreTraining(BertConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4,
                                         d_ff=64, max_position_embeddings=16, dropout=0.0,
                                         attention_dropout=0.0))
    attention_mask = torch.tensor([[1] * 16, [1] * 9 + [0] * 7, [1] * 4 + [0] * 12])
    mlm_labels = torch.where(torch.rand(3, 16) < 0.3, input_ids, -100)
    cases = [(gpt, lambda m: m(input_ids, input_ids.roll(-1, dims=1))[1]),
             (bert, lambda m: m(input_ids, attention_mask=attention_mask, mlm_labels=mlm_labels,
                                nsp_labels=torch.tensor([1, 0, 1])).loss)]
    for model, loss_fn in cases:
        loss, grads = _loss_and_grads(model, loss_fn)
        fused_loss, fused_grads = _loss_and_grads(use_fused_attention(copy.deepcopy(model)), loss_fn)
        torch.testing.assert_close(fused_loss, loss, atol=1e-5, rtol=1e-5)
        assert fused_grads.keys() == grads.keys()
        for name in grads:
            torch.testing.assert_close(fused_grads[name], grads[name], atol=1e-5, rtol=1e-4,
                                       msg=lambda m: f"{type(model).__name__} {name}: {m}")
