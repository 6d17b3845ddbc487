"""GPT: same logits and loss as transformers' GPT2LMHeadModel, tied weights, GPT-2 init, clear errors."""
import json
import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ptlm_course.gpt import GPT, GPTConfig  # noqa: E402
import transformers  # noqa: E402
from tiny_gpt2 import TINY_GPT2 as TINY  # noqa: E402

TINY_SIZES = dict(vocab_size=61, block_size=24, n_layers=2, n_heads=4, d_model=32)



@pytest.fixture(scope="module")
def checkpoint(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_gpt2")
    hf_model.save_pretrained(path)
    assert (path / "model.safetensors").is_file()
    return path


def legacy_checkpoint(hf_model, path):
    """A pytorch_model.bin as in the original GPT-2 releases: no `transformer.` prefix, the causal-mask
    buffers `attn.bias` / `attn.masked_bias` saved with the weights, and a copy of the tied lm_head."""
    state = {k.removeprefix("transformer."): v.clone() for k, v in hf_model.state_dict().items()}
    T = TINY["n_positions"]
    for i in range(TINY["n_layer"]):
        state[f"h.{i}.attn.bias"] = torch.ones(T, T).tril()[None, None]
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    state["lm_head.weight"] = state["wte.weight"].clone()
    path.mkdir()
    torch.save(state, path / "pytorch_model.bin")
    (path / "config.json").write_text(json.dumps(hf_model.config.to_dict()))
    return path


def ids(B=3, T=20, seed=1):
    return torch.randint(0, TINY["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))


def test_config_from_hf_config(hf_model):
    config = GPTConfig.from_hf_config(hf_model.config.to_dict())
    assert (config.vocab_size, config.block_size, config.n_layers, config.n_heads, config.d_model) == (61, 24, 2, 4, 32)
    assert config.dropout == pytest.approx(0.1) and config.layer_norm_eps == pytest.approx(1e-5)
    assert config.activation == "gelu_tanh" and GPTConfig().activation == "gelu"   # GPT-2's vs the course's
    with pytest.raises(ValueError, match="activation_function = 'relu'"):
        GPTConfig.from_hf_config({**hf_model.config.to_dict(), "activation_function": "relu"})
    with pytest.raises(ValueError, match="n_positions"):
        GPTConfig.from_hf_config({"vocab_size": 10, "n_layer": 1, "n_head": 1, "n_embd": 4})
    with pytest.raises(ValueError, match="divisible by n_heads"):
        GPTConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="should be one of 'gelu', 'gelu_tanh', 'relu', but got str 'swish'"):
        GPTConfig(activation="swish")


def test_the_activation_is_the_configs(hf_model, tmp_path):
    """GPT-2's checkpoints run the tanh GELU, the course's GPT the exact one; both as transformers runs them."""
    kinds = {name: {m.approximate for m in GPT(GPTConfig(**TINY_SIZES, activation=name)).modules()
                    if isinstance(m, torch.nn.GELU)} for name in ("gelu", "gelu_tanh")}
    assert kinds == {"gelu": {"none"}, "gelu_tanh": {"tanh"}}
    torch.manual_seed(0)
    exact = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY, activation_function="gelu")).eval()
    exact.save_pretrained(tmp_path)
    model = GPT.from_pretrained(tmp_path)
    assert model.config.activation == "gelu"
    x = ids()
    torch.testing.assert_close(model(x)[0], exact(x).logits, atol=1e-5, rtol=1e-5)
    assert (model(x)[0] - hf_model(x).logits).abs().max() > 1e-4      # the activation matters: not vacuous


def test_logits_match_transformers(hf_model, checkpoint):
    model = GPT.from_pretrained(checkpoint)
    assert not model.training
    x = ids()
    logits, loss = model(x)
    assert logits.shape == (3, 20, 61) and loss is None
    torch.testing.assert_close(logits, hf_model(x).logits, atol=1e-5, rtol=1e-5)


def test_loss_matches_transformers(hf_model, checkpoint):
    model = GPT.from_pretrained(checkpoint)
    x = ids()
    labels = x.clone()
    labels[0, 5:9] = -100                                           # ignored positions
    # transformers shifts the labels itself; we take targets already shifted (the last one has no next token)
    targets = torch.cat([labels[:, 1:], torch.full((3, 1), -100)], dim=1)
    _, loss = model(x, targets)
    torch.testing.assert_close(loss, hf_model(x, labels=labels).loss, atol=1e-5, rtol=1e-5)
    # and it is the mean cross-entropy over the positions that are not -100
    logits, _ = model(x)
    keep = targets != -100
    expected = -logits.log_softmax(-1)[keep].gather(-1, targets[keep][:, None]).mean()
    torch.testing.assert_close(loss, expected)


def test_pytorch_model_bin_with_legacy_names(hf_model, tmp_path):
    model = GPT.from_pretrained(legacy_checkpoint(hf_model, tmp_path / "legacy"))
    x = ids(seed=2)
    torch.testing.assert_close(model(x)[0], hf_model(x).logits, atol=1e-5, rtol=1e-5)


def test_weights_are_tied_and_counted_once(hf_model, checkpoint):
    model = GPT.from_pretrained(checkpoint)
    assert model.lm_head.weight is model.wte.weight
    assert model.lm_head.bias is None
    assert model.num_parameters() == sum(p.numel() for p in hf_model.parameters())
    n_embeddings = (61 + 24) * 32
    assert model.num_parameters(exclude_embeddings=True) == model.num_parameters() - n_embeddings
    with torch.no_grad():                                           # one tensor: changing one changes the other
        model.wte.weight[3, 0] += 1.0
    assert model.lm_head.weight[3, 0] == model.wte.weight[3, 0]


def test_gpt2_initialisation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=500, block_size=64, n_layers=8, n_heads=4, d_model=64))
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    residual_std = 0.02 / math.sqrt(2 * 8)
    for block in model.blocks:
        assert block.attn.out_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
        assert block.ffn.fc2.weight.std().item() == pytest.approx(residual_std, rel=0.05)
        assert torch.all(block.attn.q_proj.bias == 0) and torch.all(block.ffn.fc1.bias == 0)
    assert torch.all(model.ln_f.weight == 1) and torch.all(model.ln_f.bias == 0)


def test_gradients_flow_to_every_parameter():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=61, block_size=24, n_layers=2, n_heads=4, d_model=32, dropout=0.0))
    x = ids()
    _, loss = model(x[:, :-1], x[:, 1:])
    assert loss.item() == pytest.approx(math.log(61), rel=0.05)    # small init: close to uniform guessing
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_causal_later_tokens_do_not_change_earlier_logits(checkpoint):
    model = GPT.from_pretrained(checkpoint)
    x = ids(B=1)
    changed = x.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 61
    a, b = model(x)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_dropout_only_in_training(checkpoint):
    model = GPT.from_pretrained(checkpoint)
    x = ids(B=1)
    torch.testing.assert_close(model(x)[0], model(x)[0])
    model.train()
    assert not torch.allclose(model(x)[0], model(x)[0])


def test_input_errors(checkpoint):
    model = GPT.from_pretrained(checkpoint)
    with pytest.raises(ValueError, match=r"token ids in \[0, 60\].*\[61\]"):
        model(torch.tensor([[1, 2, 61]]))
    with pytest.raises(ValueError, match="block_size = 24.*T = 25"):
        model(ids(B=1, T=25))
    with pytest.raises(ValueError, match="2 dimensions"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.rand(1, 3))
    with pytest.raises(ValueError, match=r"`targets` should have the same shape as `input_ids` \(1, 3\)"):
        model(torch.tensor([[1, 2, 3]]), torch.tensor([[2, 3]]))
    with pytest.raises(ValueError, match="targets"):
        model(torch.tensor([[1, 2, 3]]), torch.tensor([[2, 3, 99]]))
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"vocab_size": 10})


def test_checkpoint_errors(hf_model, tmp_path):
    path = legacy_checkpoint(hf_model, tmp_path / "ckpt")
    state = torch.load(path / "pytorch_model.bin", weights_only=True)
    del state["h.1.mlp.c_fc.bias"]
    state["h.0.attn.rotary.weight"] = torch.zeros(3)
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"missing .*blocks\.1\.ffn\.fc1\.bias(.|\n)*unexpected .*h\.0\.attn\.rotary"):
        GPT.from_pretrained(path)

    state = torch.load(path / "pytorch_model.bin", weights_only=True)
    state["lm_head.weight"] = state["wte.weight"] + 1.0
    torch.save(state, path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="lm_head.weight differs from wte.weight"):
        GPT.from_pretrained(path)

    del state["lm_head.weight"]
    torch.save(state, path / "pytorch_model.bin")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    with pytest.raises(ValueError, match=r"shapes differ(.|\n)*wte\.weight \(61, 32\) \(ours \(61, 64\)\)"):
        GPT.from_pretrained(path)

    (path / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors or pytorch_model.bin.*config.json"):
        GPT.from_pretrained(path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        GPT.from_pretrained(tmp_path / "nowhere")


def test_kv_cache_gives_the_same_logits(checkpoint):
    model = GPT.from_pretrained(checkpoint)
    x = ids(B=2, T=20)
    full, _ = model(x)                                              # (B, T, V) in one pass
    cache = model.new_kv_cache()
    pieces = [model(x[:, :5], kv_cache=cache)[0],                   # the prompt,
              model(x[:, 5:8], kv_cache=cache)[0]]                  # a chunk of 3 (causal within it),
    pieces += [model(x[:, t:t + 1], kv_cache=cache)[0] for t in range(8, 20)]   # then one token at a time
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    assert [c.length for c in cache] == [20, 20]
    assert cache[0].k.shape == (2, 4, 20, 8)                        # (B, H, S_past, d)

    with pytest.raises(ValueError, match=r"block_size = 24.*20 cached \+ 5 new = 25"):
        model(x[:, :5], kv_cache=cache)
    with pytest.raises(ValueError, match="list of 2 per-block caches"):
        model(x[:, :1], kv_cache=cache[:1])
    with pytest.raises(ValueError, match=r"\(B, H\) = \(2, 4\).*\(1, 4\)"):
        model(x[:1, :1], kv_cache=cache)


def test_kv_cache_errors_in_attention():
    from ptlm_course.attention import KVCache, MultiHeadAttention
    attn = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(TypeError, match="`kv_cache` should be a KVCache, but got list"):
        attn(x, causal=True, kv_cache=[])
    with pytest.raises(ValueError, match="self-attention only"):
        attn(x, context=torch.randn(1, 4, 8), kv_cache=KVCache())
    out, weights = attn(x, causal=True, kv_cache=(cache := KVCache()))
    assert cache.length == 3 and weights.shape == (1, 2, 3, 3)
    out, weights = attn(torch.randn(1, 1, 8), causal=True, kv_cache=cache)
    assert cache.length == 4 and weights.shape == (1, 2, 1, 4)     # the new query sees all 4 positions
    assert torch.all(weights > 0)


def test_gpt2_dropout_placement():
    from ptlm_course.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layers=1, n_heads=2, d_model=8, dropout=0.1))
    block = model.blocks[0]
    assert block.attn.dropout == block.dropout1.p == block.dropout2.p == 0.1
    assert block.ffn.dropout.p == 0.0                              # GPT-2's MLP has no inner dropout
