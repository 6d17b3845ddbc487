"""Activation checkpointing changes memory, not results; the CPU memory tracker counts what it should."""
import copy

import pytest
import torch

from ptlm_course.bert import BertConfig, BertForPreTraining
from ptlm_course.gpt import GPT, GPTConfig
from ptlm_course.speed import (TensorMemoryTracker, disable_activation_checkpointing,
                               enable_activation_checkpointing, peak_memory)


def tiny_gpt(dropout=0.1, n_layers=3):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, block_size=32, n_layers=n_layers, n_heads=2, d_model=32, dropout=dropout))


def tiny_bert(dropout=0.1):
    torch.manual_seed(0)
    return BertForPreTraining(BertConfig(vocab_size=40, d_model=32, n_layers=3, n_heads=2,
                                         d_ff=64, max_position_embeddings=32, dropout=dropout,
                                         attention_dropout=dropout))


def gpt_loss(model):
    input_ids = torch.randint(0, 40, (4, 32), generator=torch.Generator().manual_seed(1))
    return model(input_ids, input_ids.roll(-1, dims=1))[1]


def bert_loss(model):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 40, (4, 32), generator=g)
    attention_mask = torch.ones(4, 32, dtype=torch.long)
    attention_mask[1, 20:] = 0
    mlm_labels = torch.where(torch.rand(4, 32, generator=g) < 0.3, ids, -100)
    return model(ids, attention_mask=attention_mask, mlm_labels=mlm_labels, nsp_labels=torch.tensor([0, 1, 1, 0])).loss


def loss_and_grads(model, loss_fn, seed=3):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)                               # the same dropout masks for both runs
    loss = loss_fn(model)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("make, loss_fn", [(tiny_gpt, gpt_loss), (tiny_bert, bert_loss)], ids=["gpt", "bert"])
def test_checkpointing_gives_the_same_loss_and_gradients_with_dropout(make, loss_fn):
    model = make()
    loss, grads = loss_and_grads(model, loss_fn)
    enable_activation_checkpointing(model)
    loss_ckpt, grads_ckpt = loss_and_grads(model, loss_fn)
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=1e-6)
    assert grads_ckpt.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_checkpointing_really_recomputes_and_can_be_undone():
    model = enable_activation_checkpointing(tiny_gpt(dropout=0.0))
    calls = []
    model.blocks[0].ffn.register_forward_pre_hook(lambda *_: calls.append(1))   # (recomputation stops early)
    gpt_loss(model).backward()
    assert len(calls) == 2                                # forward, then again during backward
    keys = set(model.state_dict())
    disable_activation_checkpointing(model)
    calls.clear()
    gpt_loss(model).backward()
    assert len(calls) == 1 and set(model.state_dict()) == keys


def test_checkpointing_leaves_evaluation_and_the_kv_cache_alone():
    model = tiny_gpt(dropout=0.0).eval()
    reference = copy.deepcopy(model)
    enable_activation_checkpointing(model)
    input_ids = torch.randint(0, 40, (2, 10))
    cache, cache_ref = model.new_kv_cache(), reference.new_kv_cache()
    with torch.no_grad():
        for chunk in (input_ids[:, :6], input_ids[:, 6:7], input_ids[:, 7:]):
            torch.testing.assert_close(model(chunk, kv_cache=cache)[0], reference(chunk, kv_cache=cache_ref)[0])
    assert cache[0].length == 10
    copied = copy.deepcopy(model)                         # the copy's blocks checkpoint themselves, not the original
    assert copied.blocks[0].forward.__self__ is copied.blocks[0]


def test_checkpointing_rejects_a_model_without_blocks():
    with pytest.raises(ValueError, match="TransformerBlock"):
        enable_activation_checkpointing(torch.nn.Linear(3, 3))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        enable_activation_checkpointing("gpt")


def test_tracker_counts_creation_and_freeing_exactly():
    def work():
        a = torch.ones(1000)                              # 4,000 bytes
        b = torch.ones(2000)                              # 8,000 bytes: 12,000 alive
        del a
        c = b[:10] * 2                                    # 40 bytes; the view b[:10] allocates nothing
        return c

    with TensorMemoryTracker() as tracker:
        kept = work()
    assert tracker.peak == 12_000 and tracker.live == 40 and kept.numel() == 10
    peak, result = peak_memory(lambda: torch.zeros(256, 256).sum())
    assert peak == 256 * 256 * 4 + 4 and result.item() == 0


def test_checkpointing_lowers_the_peak_memory_of_a_training_step():
    model = tiny_gpt(dropout=0.0, n_layers=4)
    without, _ = peak_memory(lambda: gpt_loss(model).backward())
    model.zero_grad(set_to_none=True)
    enable_activation_checkpointing(model)
    with_ckpt, _ = peak_memory(lambda: gpt_loss(model).backward())
    assert with_ckpt < 0.75 * without, (with_ckpt, without)
