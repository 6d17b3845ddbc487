"""Prompt and prefix tuning: only the new vectors (and the head) train, removing them gives the base model back,
a prefix layer is attention over the concatenated keys/values, padding stays masked, bad input is refused."""
import copy

import pytest
import torch
import torch.nn.functional as F

from ptlm_course.attention import padding_mask
from ptlm_course.bert import BertConfig, BertForSequenceClassification
from ptlm_course.finetuning import classification_loss_fn, count_parameters
from ptlm_course.prompt_tuning import PrefixAttention, PrefixTuning, PromptTuning


def tiny_bert(seed=0, pooling="mean"):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                        max_position_embeddings=16, dropout=0.0, attention_dropout=0.0)
    return BertForSequenceClassification(config, num_labels=3, pooling=pooling).eval()


def batch(B=3, T=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 60, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, 5:] = 0
    mask[1, 3:] = 0
    ids[mask == 0] = 0
    return ids, torch.zeros_like(ids), mask


def trainable(module):
    return sorted(name for name, p in module.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_prompt_tuning_trains_only_the_prompt_and_the_head(pooling):
    model = tiny_bert(pooling=pooling)
    tuned = PromptTuning(model, n_prompt=4, seed=0)
    assert trainable(tuned) == ["model.classifier.bias", "model.classifier.weight", "prompt"]
    assert count_parameters(tuned, trainable_only=True) == 4 * 16 + 16 * 3 + 3
    ids, types, mask = batch()
    loss, _ = classification_loss_fn(tuned, {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
                                             "labels": torch.tensor([0, 1, 2])})
    loss.backward()
    assert tuned.prompt.grad is not None and tuned.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.bert.named_parameters())


def test_prompt_inputs_prepend_the_prompt_keep_text_positions_and_extend_the_mask():
    model = tiny_bert()
    tuned = PromptTuning(model, n_prompt=4, seed=0)
    ids, types, mask = batch()
    x, ext = tuned.inputs(ids, types, mask)
    assert x.shape == (3, 4 + 7, 16) and ext.shape == (3, 4 + 7)
    assert torch.equal(x[:, :4], tuned.prompt.expand(3, -1, -1))
    torch.testing.assert_close(x[:, 4:], model.bert.embeddings(ids, types), rtol=0, atol=0)
    assert torch.equal(ext[:, :4], torch.ones(3, 4, dtype=ext.dtype)) and torch.equal(ext[:, 4:], mask)


def test_prompt_tuning_without_a_visible_prompt_is_the_base_model():
    model = tiny_bert()
    ids, types, mask = batch()
    with torch.no_grad():
        base = model(ids, types, mask).logits
        tuned = PromptTuning(model, n_prompt=4, seed=0)
        x, ext = tuned.inputs(ids, types, mask)
        ext[:, :4] = 0                                              # hide the prompt from every token
        for block in model.bert.blocks:
            x = block(x, mask=padding_mask(ext))
        hidden = x[:, 4:]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        torch.testing.assert_close(model.classifier(pooled), base, atol=1e-6, rtol=0)
        assert not torch.allclose(tuned(ids, types, mask).logits, base, atol=1e-4)   # the prompt does something
    original = copy.deepcopy(model)
    restored = tuned.remove()
    assert restored is model and all(p.requires_grad for p in model.parameters())
    assert not hasattr(model, "_prompt_marker")
    with torch.no_grad():
        assert torch.equal(restored(ids, types, mask).logits, original(ids, types, mask).logits)


def test_prompt_tuning_keeps_padding_masked():
    model = tiny_bert()
    tuned = PromptTuning(model, n_prompt=3, seed=0)
    ids, types, mask = batch()
    other = ids.clone()
    other[mask == 0] = 7                                            # change only the padded tokens
    with torch.no_grad():
        torch.testing.assert_close(tuned(other, types, mask).logits, tuned(ids, types, mask).logits,
                                   atol=1e-6, rtol=0)


def test_prefix_tuning_trains_only_the_prefix_and_the_head_and_counts_right():
    model = tiny_bert()
    direct = PrefixTuning(model, n_prefix=5)
    assert trainable(direct) == ["model.classifier.bias", "model.classifier.weight", "prefix"]
    assert count_parameters(direct, trainable_only=True) == 2 * 2 * 5 * 16 + 16 * 3 + 3
    assert direct.prefix_kv().shape == (2, 2, 5, 16)
    direct.remove()
    mlp = PrefixTuning(model, n_prefix=5, reparam_hidden=8)
    assert trainable(mlp) == ["mlp.0.bias", "mlp.0.weight", "mlp.2.bias", "mlp.2.weight",
                              "model.classifier.bias", "model.classifier.weight", "table"]
    assert count_parameters(mlp, trainable_only=True) == 5 * 16 + (16 * 8 + 8) + (8 * 64 + 64) + 16 * 3 + 3
    ids, types, mask = batch()
    mlp(ids, types, mask, labels=torch.tensor([0, 1, 2])).loss.backward()
    assert mlp.table.grad.abs().sum() > 0 and all(p.grad is None for p in model.bert.parameters())
    with torch.no_grad():
        before = mlp(ids, types, mask).logits
        mlp.bake()
        assert mlp.mlp is None and mlp.prefix.shape == (2, 2, 5, 16)
        torch.testing.assert_close(mlp(ids, types, mask).logits, before, atol=1e-6, rtol=0)


def test_prefix_layer_equals_attention_over_concatenated_keys_and_values():
    model = tiny_bert()
    tuned = PrefixTuning(model, n_prefix=4)
    wrapper = model.bert.blocks[0].attn
    assert isinstance(wrapper, PrefixAttention)
    attn = wrapper.attn
    torch.manual_seed(3)
    x = torch.randn(3, 7, 16)
    _, _, mask = batch()
    pk, pv = torch.randn(4, 16), torch.randn(4, 16)
    wrapper.prefix = (pk, pv)
    for fused in (False, True):
        attn.fused = fused
        out, _ = wrapper(x, mask=padding_mask(mask))

        def heads(t):
            return t.view(3, -1, 2, 8).transpose(1, 2)                          # (B, H, S, d)
        q = heads(attn.q_proj(x))
        k = heads(torch.cat([pk.expand(3, -1, -1), attn.k_proj(x)], dim=1))
        v = heads(torch.cat([pv.expand(3, -1, -1), attn.v_proj(x)], dim=1))
        keep = torch.cat([torch.ones(3, 4, dtype=torch.bool), mask.bool()], dim=1)[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        expected = attn.out_proj(y.transpose(1, 2).reshape(3, 7, 16))
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    attn.fused = False
    wrapper.prefix = None
    torch.testing.assert_close(wrapper(x)[0], attn(x)[0], atol=0, rtol=0)
    tuned.remove()


def test_prefix_layer_causal_mask_lets_every_query_see_the_prefix():
    model = tiny_bert()
    PrefixTuning(model, n_prefix=2)
    wrapper = model.bert.blocks[0].attn
    wrapper.prefix = (torch.randn(2, 16), torch.randn(2, 16))
    _, weights = wrapper(torch.randn(1, 4, 16), causal=True)                    # (1, H, 4, 2 + 4)
    assert torch.all(weights[..., :2] > 0)
    assert torch.all(weights[..., 2:].triu(diagonal=1) == 0)


def test_prefix_tuning_removed_is_the_base_model_and_keeps_padding_masked():
    model = tiny_bert()
    original = copy.deepcopy(model)
    tuned = PrefixTuning(model, n_prefix=3, reparam_hidden=8)
    ids, types, mask = batch()
    other = ids.clone()
    other[mask == 0] = 9
    with torch.no_grad():
        torch.testing.assert_close(tuned(other, types, mask).logits, tuned(ids, types, mask).logits,
                                   atol=1e-6, rtol=0)
        assert not torch.allclose(tuned(ids, types, mask).logits, original(ids, types, mask).logits, atol=1e-4)
        assert all(w.prefix is None for w in tuned.wrappers())              # cleared after the call
        restored = tuned.remove()
        assert not any(isinstance(m, PrefixAttention) for m in restored.modules())
        assert torch.equal(restored(ids, types, mask).logits, original(ids, types, mask).logits)
    assert all(p.requires_grad for p in restored.parameters())


def test_bad_input_gets_a_clear_error():
    model = tiny_bert()
    with pytest.raises(TypeError, match="BertForSequenceClassification"):
        PromptTuning(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="n_prompt.*positive integer"):
        PromptTuning(model, n_prompt=0)
    with pytest.raises(ValueError, match="n_prefix.*positive integer"):
        PrefixTuning(model, n_prefix=2.5)
    tuned = PromptTuning(model, n_prompt=2)
    with pytest.raises(ValueError, match="already has a soft prompt or a prefix"):
        PrefixTuning(model)
    ids, types, mask = batch()
    with pytest.raises(ValueError, match="attention_mask.*same shape"):
        tuned(ids, types, mask[:, :3])
    with pytest.raises(ValueError, match="input_ids"):
        tuned(ids[0])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        tuned(torch.ones(1, 17, dtype=torch.long))
    tuned.remove()
    prefix = PrefixTuning(model, n_prefix=2)
    wrapper = model.bert.blocks[0].attn
    wrapper.prefix = (torch.randn(2, 15), torch.randn(2, 15))
    with pytest.raises(ValueError, match=r"prefix should be \(n, C\).*C = 16"):
        wrapper(torch.randn(1, 4, 16))
    wrapper.prefix = (torch.randn(2, 16), torch.randn(2, 16))
    with pytest.raises(ValueError, match="self-attention without a cache"):
        wrapper(torch.randn(1, 4, 16), context=torch.randn(1, 3, 16))
    with pytest.raises(ValueError, match="bool tensor with T = 4"):
        wrapper(torch.randn(1, 4, 16), mask=torch.ones(1, 1, 1, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="dtype of the module's weights"):
        wrapper(torch.randn(1, 4, 16, dtype=torch.float64))
    with pytest.raises(TypeError, match="wraps a MultiHeadAttention"):
        PrefixAttention(torch.nn.Linear(2, 2))
    prefix.remove()
