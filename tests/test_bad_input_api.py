"""Bad input to the public API gets a clear error (what was expected, what came) or a correct result."""
import pickle

import pytest
import torch
import torch.nn as nn

from ptlm_course.attention import MultiHeadAttention
from ptlm_course.bert import BERT, BertConfig
from ptlm_course.generation import sample_next
from ptlm_course.training import TrainConfig, load_checkpoint, train
from ptlm_course.transformer import FeedForward, TransformerBlock


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("make", [lambda: MultiHeadAttention(8, 2), lambda: TransformerBlock(8, 2, 16),
                                  lambda: FeedForward(8, 16)])
def test_input_of_another_dtype_than_the_weights_says_both(make, dtype):
    module = make()
    x = torch.randn(2, 3, 8, dtype=dtype)
    with pytest.raises(TypeError, match=rf"dtype of the module's weights, torch.float32, but its dtype is {dtype}"):
        module(x)
    converted = make().to(dtype)                                     # the fix the message suggests works
    out = converted(x)
    assert (out[0] if isinstance(out, tuple) else out).dtype == dtype


def test_cross_attention_context_of_another_dtype():
    with pytest.raises(TypeError, match="`context` should have the dtype of the module's weights"):
        MultiHeadAttention(8, 2)(torch.randn(1, 3, 8), context=torch.randn(1, 4, 8, dtype=torch.float64))


def test_autocast_may_mix_dtypes():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = MultiHeadAttention(8, 2)(torch.randn(1, 3, 8, dtype=torch.bfloat16))
    assert out.shape == (1, 3, 8)


def test_empty_batch_to_bert():
    model = BERT(BertConfig(vocab_size=20, d_model=8, n_layers=1, n_heads=2, d_ff=16,
                            max_position_embeddings=16))
    with pytest.raises(ValueError, match=r"at least one token per sequence .* but got shape \(2, 0\)"):
        model(torch.zeros(2, 0, dtype=torch.long))


def test_sample_next_on_float16_logits_at_a_tiny_temperature():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, 4.0]], dtype=torch.float16)
    ids = sample_next(logits, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    assert ids.tolist() == [[1], [2]]                                # the argmax: nearly greedy
    ids = sample_next(logits.to(torch.bfloat16), temperature=1e-4)
    assert ids.tolist() == [[1], [2]]


def _linear_run(path, **overrides):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = torch.randn(16, 3)

    def get_batch(split, generator):
        rows = torch.randint(0, 16, (4,), generator=generator)
        return data[rows], data[rows].sum(1, keepdim=True)

    settings = dict(steps=4, lr=1e-2, eval_batches=0, progress=False, device="cpu", checkpoint_path=path)
    config = TrainConfig(**{**settings, **overrides})
    return train(model, config, get_batch, lambda m, b: nn.functional.mse_loss(m(b[0]), b[1])), model


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content, what", [
    (b"", "is empty"),
    (None, "truncated or another kind of file"),                     # the first half of a real checkpoint
    (bytes(range(256)) * 8, "truncated or another kind of file"),    # random bytes
    (b"step: 3\nmodel: weights\n", "truncated or another kind of file"),
    (pickle.dumps({"step": 3}), "truncated or another kind of file"),   # a pickle, not a torch checkpoint
])
def test_resuming_from_a_broken_checkpoint_says_so(tmp_path, content, what):
    path = tmp_path / "ckpt.pt"
    if content is None:
        _linear_run(path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=what) as error:
        _linear_run(path)
    assert "Delete it" in str(error.value) and "weights_only" not in str(error.value)


def test_a_checkpoint_without_its_parts(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {}, "optimizer": {}, "step": 3}, path)
    with pytest.raises(ValueError, match="lacks 'history', 'generator', 'rng'"):
        _linear_run(path)


def test_resuming_with_another_train_config_names_what_differs(tmp_path):
    path = tmp_path / "ckpt.pt"
    _linear_run(path)
    before = load_checkpoint(path)["model"]
    with pytest.raises(ValueError, match=r"steps=4 in the checkpoint but 2 now; lr=0.01 in the checkpoint but 0.1 now"):
        _linear_run(path, lr=0.1, steps=2)
    assert all(torch.equal(a, b) for a, b in zip(before.values(), load_checkpoint(path)["model"].values()))
    history, _ = _linear_run(path, progress=True, checkpoint_every=2)   # settings that change nothing may differ
    assert history.values("loss")[0] == [1, 2, 3, 4]                  # the finished run, resumed to nothing


def test_models_check_their_input_where_it_enters_and_their_layers_do_not_check_again(monkeypatch):
    """A layer called on its own checks its input; inside a block, GPT or BERT only the entry point checks."""
    from ptlm_course import attention, transformer, validation
    from ptlm_course.embeddings import TokenAndPositionEmbedding
    from ptlm_course.gpt import GPT, GPTConfig

    gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layers=2, n_heads=2, d_model=8, dropout=0.0))
    bert = BERT(BertConfig(vocab_size=20, d_model=8, n_layers=2, n_heads=2, d_ff=16,
                           max_position_embeddings=8))
    block = TransformerBlock(8, 2, 16)
    assert MultiHeadAttention(8, 2).check_inputs and FeedForward(8).check_inputs and block.check_inputs
    assert not block.attn.check_inputs and not block.ffn.check_inputs
    assert not any(m.check_inputs for model in (gpt, bert) for m in model.modules() if hasattr(m, "check_inputs"))
    assert not TokenAndPositionEmbedding(20, 8, 8).position.check_inputs
    calls = []
    real = validation.expect_module_dtype
    for module in (attention, transformer):                       # count the layers' dtype checks
        monkeypatch.setattr(module, "expect_module_dtype", lambda *a: calls.append(1) or real(*a))
    ids = torch.randint(0, 20, (2, 5))
    gpt(ids, ids)
    bert(ids, attention_mask=torch.ones(2, 5, dtype=torch.long))
    assert calls == []
    block(torch.randn(2, 5, 8))
    assert calls == [1]                                           # the block once, not its attention and FFN
    with pytest.raises(ValueError, match=r"`mask` should broadcast to the attention scores' shape"):
        block(torch.randn(2, 5, 8), mask=torch.ones(3, 1, 1, 5, dtype=torch.bool))   # checked at the block
    with pytest.raises(ValueError, match=r"`input_ids` should hold token ids in \[0, 19\]"):
        gpt(torch.tensor([[1, 20]]))
    with pytest.raises(ValueError, match=r"`attention_mask` should have the same shape as input_ids"):
        bert(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
