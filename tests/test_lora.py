"""LoRA: a zero-initialised B changes nothing, merged equals unmerged, only adapters (and the head) train."""
import pytest
import torch
import torch.nn as nn

from ptlm_course.bert import BertConfig, BertForSequenceClassification
from ptlm_course.finetuning import count_parameters
from ptlm_course.gpt import GPT, GPTConfig
from ptlm_course.lora import LoRALinear, apply_lora, merge_lora


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                        max_position_embeddings=16, dropout=0.0, attention_dropout=0.0)
    return BertForSequenceClassification(config, num_labels=3).eval()


def ids(B=3, T=7, V=60, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def test_lora_linear_shapes_init_and_formula():
    torch.manual_seed(0)
    base = nn.Linear(10, 6)
    lora = LoRALinear(base, rank=4, alpha=8.0)
    assert lora.lora_A.shape == (4, 10) and lora.lora_B.shape == (6, 4) and lora.scaling == 2.0
    assert torch.all(lora.lora_B == 0) and lora.lora_A.abs().sum() > 0
    assert not base.weight.requires_grad and not base.bias.requires_grad
    x = torch.randn(2, 5, 10)
    assert torch.equal(lora(x), base(x))                       # B = 0: exactly the base layer
    with torch.no_grad():
        lora.lora_B.normal_()
    expected = x @ base.weight.T + base.bias + 2.0 * (x @ lora.lora_A.T) @ lora.lora_B.T
    torch.testing.assert_close(lora(x), expected)
    torch.testing.assert_close(lora.delta_weight(), 2.0 * lora.lora_B @ lora.lora_A)


def test_merged_equals_unmerged_and_leaves_the_base_alone():
    torch.manual_seed(0)
    for bias in (True, False):
        base = nn.Linear(8, 5, bias=bias)
        original = base.weight.detach().clone()
        lora = LoRALinear(base, rank=2, alpha=4.0, dropout=0.3).eval()
        with torch.no_grad():
            lora.lora_B.normal_()
        merged = lora.merged()
        assert isinstance(merged, nn.Linear) and (merged.bias is None) == (not bias)
        x = torch.randn(4, 8)
        torch.testing.assert_close(merged(x), lora(x), atol=1e-6, rtol=1e-5)
        assert torch.equal(base.weight, original)


def test_lora_dropout_only_in_train_mode():
    torch.manual_seed(0)
    lora = LoRALinear(nn.Linear(8, 8), rank=2, dropout=0.5)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(16, 8)
    assert not torch.allclose(lora.train()(x), lora(x))        # a new dropout mask each call
    lora.eval()
    assert torch.equal(lora(x), lora(x))


def test_apply_lora_to_bert_changes_nothing_at_first_and_freezes_the_rest():
    model = tiny_bert()
    x = ids()
    before = model(x).logits
    names = apply_lora(model, targets=("q_proj", "v_proj"), rank=4)
    assert names == ["bert.blocks.0.attn.q_proj", "bert.blocks.0.attn.v_proj",
                     "bert.blocks.1.attn.q_proj", "bert.blocks.1.attn.v_proj"]
    assert all(isinstance(model.get_submodule(n), LoRALinear) for n in names)
    torch.testing.assert_close(model(x).logits, before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_{m}" for n in names for m in "AB"} | {"classifier.weight", "classifier.bias"}
    # 4 adapters x (A: 4x16 + B: 16x4) + classifier 16x3 + 3
    assert count_parameters(model, trainable_only=True) == 4 * (64 + 64) + 51


def test_frozen_weights_get_no_gradient_and_do_not_change_while_adapters_learn():
    model = tiny_bert().train()
    apply_lora(model, targets=("q_proj", "k_proj", "v_proj", "out_proj"), rank=2)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    x, labels = ids(B=8), torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(2))
    for _ in range(3):
        optimizer.zero_grad()
        model(x, labels=labels).loss.backward()
        assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        optimizer.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    assert all(not torch.equal(params[n], v) for n, v in trainable.items())    # B moved from 0, A too


def test_merge_lora_gives_the_same_model_with_plain_linears():
    model = tiny_bert()
    apply_lora(model, targets=("q_proj", "v_proj", "fc1"), rank=2, alpha=4.0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(std=0.5)
    x = ids()
    adapted = model(x).logits
    assert merge_lora(model) is model
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert isinstance(model.bert.blocks[1].attn.q_proj, nn.Linear)
    torch.testing.assert_close(model(x).logits, adapted, atol=1e-5, rtol=1e-4)
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("classifier"))


def test_apply_lora_on_gpt_without_a_head():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=40, block_size=8, n_layers=2, n_heads=2, d_model=16, dropout=0.0)).eval()
    x = ids(V=40, T=8)
    before, _ = gpt(x)
    names = apply_lora(gpt, targets=("attn.q_proj", "attn.v_proj"), rank=2, train_also=())
    assert len(names) == 4
    assert count_parameters(gpt, trainable_only=True) == 4 * (2 * 16 + 16 * 2)
    torch.testing.assert_close(gpt(x)[0], before)


def test_errors_are_explained():
    with pytest.raises(TypeError, match="wraps an nn.Linear layer, but got Conv1d"):
        LoRALinear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="`rank` should be a positive integer, but got int 0"):
        LoRALinear(nn.Linear(2, 2), rank=0)
    with pytest.raises(ValueError, match="`alpha` should be a positive number"):
        LoRALinear(nn.Linear(2, 2), alpha=-1)
    with pytest.raises(ValueError, match=r"`dropout` should be a probability in \[0, 1\)"):
        LoRALinear(nn.Linear(2, 2), dropout=1.0)
    model = tiny_bert()
    with pytest.raises(ValueError, match=r"No module of the model matches targets \('query',\); its nn.Linear "
                                         r"layers are named \['classifier', 'fc1', 'fc2', 'k_proj', 'out_proj', "
                                         r"'pooler', 'q_proj', 'v_proj'\]"):
        apply_lora(model, targets=("query",))
    with pytest.raises(TypeError, match="LoRA applies to nn.Linear layers, but the target 'bert.blocks.0.attn' is a "
                                        "MultiHeadAttention"):
        apply_lora(model, targets=("attn",))
    with pytest.raises(ValueError, match=r"`train_also` names \['head'\], but the model has no such module"):
        apply_lora(model, train_also=("head",))
    assert all(p.requires_grad for p in model.parameters())     # a failed call changed nothing
    with pytest.raises(TypeError, match="should be a tuple of module names"):
        apply_lora(model, targets=[1, 2])
    apply_lora(model)
    with pytest.raises(ValueError, match="already has LoRA: apply_lora was called twice"):
        apply_lora(model)
    with pytest.raises(ValueError, match="no LoRALinear layer to merge"):
        merge_lora(tiny_bert())
