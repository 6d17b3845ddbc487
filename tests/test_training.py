"""Training loop: weight-decay groups, schedule, clipping, evaluation, progress bar, History, atomic
checkpoints and exact resume, and a tiny GPT that really learns."""
import math
import os

import matplotlib
import pytest
import torch
import torch.nn as nn

matplotlib.use("Agg")

from ptlm_course.char_tokenizer import CharTokenizer  # noqa: E402
from ptlm_course.data import shakespeare_text  # noqa: E402
from ptlm_course.gpt import GPT, GPTConfig  # noqa: E402
from ptlm_course.training import (  # noqa: E402
    EarlyStopping, History, TrainConfig, evaluate, load_checkpoint, make_optimizer, make_scheduler, param_groups,
    save_checkpoint, train, warmup_cosine,
)

T = 16  # context length of the tiny GPT


@pytest.fixture(scope="module")
def corpus():
    text = shakespeare_text()[:8000]
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text))
    cut = int(0.9 * len(ids))
    return tok.vocab_size, {"train": ids[:cut], "val": ids[cut:]}


def make_get_batch(splits, batch_size=8):
    def get_batch(split, generator):
        data = splits[split]
        starts = torch.randint(len(data) - T - 1, (batch_size,), generator=generator)
        x = torch.stack([data[s:s + T] for s in starts.tolist()])
        y = torch.stack([data[s + 1:s + T + 1] for s in starts.tolist()])
        return x, y
    return get_batch


def gpt_loss(model, batch):
    x, y = batch
    _, loss = model(x, y)
    return loss, {"n_tokens": x.numel()}


def tiny_gpt(vocab_size, seed=0, dropout=0.1, d_model=32, n_layers=1):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=T, n_layers=n_layers, n_heads=2, d_model=d_model,
                         dropout=dropout))


def quiet(**kwargs):
    return TrainConfig(**{"device": "cpu", "progress": False, "eval_batches": 2, **kwargs})


# --------------------------------------------------------------------------------------------------
# Optimizer groups and schedule
# --------------------------------------------------------------------------------------------------

def test_weight_decay_only_on_weight_matrices(corpus):
    model = tiny_gpt(corpus[0])
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert sorted(decay["names"]) == sorted(
        f"blocks.0.{m}.weight" for m in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj",
                                         "ffn.fc1", "ffn.fc2"))
    assert "wte.weight" in no_decay["names"] and "wpe.weight" in no_decay["names"]   # embeddings
    assert "lm_head.weight" not in decay["names"] + no_decay["names"]                # tied: counted once
    assert "ln_f.weight" in no_decay["names"] and "blocks.0.attn.q_proj.bias" in no_decay["names"]
    assert all(p.dim() >= 2 for p in decay["params"])
    n_params = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n_params == model.num_parameters()


def test_param_groups_skip_frozen_and_reject_bad_input():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    model[0].weight.requires_grad_(False)
    decay, no_decay = param_groups(model, 0.01)
    assert decay["names"] == [] and no_decay["names"] == ["0.bias", "1.weight", "1.bias"]
    with pytest.raises(ValueError, match=r"`weight_decay` should be a number >= 0, but got float -0.1"):
        param_groups(model, -0.1)
    with pytest.raises(TypeError, match=r"`model` should be a torch.nn.Module, but got"):
        param_groups([nn.Linear(2, 2)], 0.1)


def test_make_optimizer_builds_adamw_with_both_groups(corpus):
    opt = make_optimizer(tiny_gpt(corpus[0]), lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert all(g["lr"] == 1e-3 and g["betas"] == (0.9, 0.95) for g in opt.param_groups)
    with pytest.raises(ValueError, match="`lr` should be a positive number, but got int 0"):
        make_optimizer(nn.Linear(2, 2), lr=0)


def test_make_optimizer_fuses_on_request_on_the_cpu_and_matches_the_plain_one(corpus):
    models = [tiny_gpt(corpus[0], dropout=0.0) for _ in range(2)]
    fused, plain = make_optimizer(models[0], lr=1e-2, fused=True), make_optimizer(models[1], lr=1e-2)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]      # default on the CPU: plain
    x = torch.randint(corpus[0], (2, T))
    for model, opt in zip(models, (fused, plain)):
        for _ in range(3):
            opt.zero_grad()
            model(x, x)[1].backward()
            opt.step()
    gap = max((a - b).abs().max().item() for a, b in zip(models[0].parameters(), models[1].parameters()))
    assert 0 <= gap < 1e-4                     # steps of ~1e-2 each: the same update, up to float rounding


def test_train_runs_the_attention_fused_and_gives_each_layer_its_setting_back(corpus):
    seen = {}

    def spy(step, model, history):
        seen[step] = {m.fused for m in model.modules() if hasattr(m, "fused")}

    losses = {}
    for fused in (True, False):
        model = tiny_gpt(corpus[0], dropout=0.0, n_layers=2)
        model.blocks[1].attn.fused = True                       # a setting of its own, kept afterwards
        seen.clear()
        history = train(model, quiet(steps=3, fused_attention=fused), make_get_batch(corpus[1]), gpt_loss,
                        callbacks=[spy])
        assert seen == {step: {True} if fused else {False, True} for step in (1, 2, 3)}
        assert [b.attn.fused for b in model.blocks] == [False, True]
        losses[fused] = [r["loss"] for r in history.train] + [history.eval[-1]["val_loss"]]
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)   # the kernel changes only the rounding
    with pytest.raises(ValueError, match="TrainConfig.fused_attention should be True or False, but got str"):
        quiet(steps=1, fused_attention="yes")
    with pytest.raises(ValueError, match="TrainConfig.fused_adamw should be None, True or False, but got int"):
        quiet(steps=1, fused_adamw=1)
    assert not TrainConfig(steps=1).fused_attention and TrainConfig(steps=1).fused_adamw is None   # off by default


def test_warmup_cosine_at_key_steps():
    kw = dict(max_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert warmup_cosine(0, **kw) == pytest.approx(0.1)           # 1/10 of the way up: no wasted step
    assert warmup_cosine(4, **kw) == pytest.approx(0.5)
    assert warmup_cosine(9, **kw) == pytest.approx(1.0)           # warm-up ends at the peak
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)          # the cosine starts at the peak
    assert warmup_cosine(60, **kw) == pytest.approx(0.55)         # half-way: (max + min) / 2
    assert warmup_cosine(110, **kw) == pytest.approx(0.1)         # the end: min_lr
    assert warmup_cosine(500, **kw) == pytest.approx(0.1)         # and it stays there
    lrs = [warmup_cosine(s, **kw) for s in range(111)]
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10])) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert warmup_cosine(0, 3.0, 0, 10) == pytest.approx(3.0)      # no warm-up


def test_schedule_errors():
    with pytest.raises(ValueError, match=r"warmup_steps should be an integer in \[0, steps = 10\], but got int 11"):
        warmup_cosine(0, 1.0, 11, 10)
    with pytest.raises(ValueError, match="`step` should be an integer >= 0, but got int -1"):
        warmup_cosine(-1, 1.0, 0, 10)
    with pytest.raises(ValueError, match="Expected 0 <= min_lr <= max_lr"):
        warmup_cosine(0, 1.0, 0, 10, min_lr=2.0)


def test_scheduler_follows_warmup_cosine():
    model = nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.5)
    sched = make_scheduler(opt, warmup_steps=3, total_steps=12, min_lr_ratio=0.2)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([warmup_cosine(s, 0.5, 3, 12, 0.1) for s in range(12)])


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), r"number of steps should be a positive integer, but got int 0"),
    (dict(steps=-5), r"number of steps should be a positive integer, but got int -5"),
    (dict(steps=10, warmup_steps=20), r"warmup_steps should be an integer in \[0, steps = 10\], but got int 20"),
    (dict(steps=10, mixed_precision="fp8"),
     r"mixed_precision should be one of auto, bf16, fp16, off, but got str 'fp8'"),
    (dict(steps=10, grad_accumulation=0), r"grad_accumulation should be an integer >= 1, but got int 0"),
    (dict(steps=10, eval_every=0), r"eval_every should be an integer >= 1, but got int 0"),
    (dict(steps=10, eval_batches=-1), r"eval_batches should be an integer >= 0, but got int -1"),
    (dict(steps=10, lr=-1.0), r"lr should be a positive number, but got float -1.0"),
    (dict(steps=10, grad_clip=0), r"grad_clip should be a positive number or None, but got int 0"),
])
def test_bad_config_is_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_fp16_needs_cuda(corpus):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="mixed_precision='fp16' needs a CUDA GPU, but the device is cpu"):
        train(nn.Linear(2, 2), quiet(steps=1, mixed_precision="fp16"), lambda s, g: None, lambda m, b: None)


def test_loss_fn_must_return_a_scalar_loss(corpus):
    get_batch = make_get_batch(corpus[1])
    with pytest.raises(TypeError, match=r"should return a scalar loss tensor or \(loss, dict of metrics\), "
                                        r"but returned str 'oops'"):
        train(tiny_gpt(corpus[0]), quiet(steps=1), get_batch, lambda m, b: "oops")


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------

def test_loss_decreases_on_tiny_shakespeare(corpus):
    """A tiny GPT starts at a uniform guess (ln V) and ends well below the character-frequency entropy,
    i.e. it has learned to use the context, on validation text too."""
    vocab_size, splits = corpus
    counts = torch.bincount(splits["train"]).float()
    freqs = counts[counts > 0] / counts.sum()
    unigram_entropy = -(freqs * freqs.log()).sum().item()               # 3.26 nats here; ln V = 4.06
    model = tiny_gpt(vocab_size, dropout=0.0, d_model=48, n_layers=2)
    config = quiet(steps=300, lr=1e-2, warmup_steps=10, eval_every=150, eval_batches=4, log_every=20)
    history = train(model, config, make_get_batch(splits, batch_size=16), gpt_loss)
    _, losses = history.values("loss")
    assert losses[0] > unigram_entropy                                    # the first 20 steps: still guessing
    assert losses[-1] < unigram_entropy - 0.3                             # and at the end it really predicts
    steps, val = history.values("val_loss", "eval")
    assert steps == [150, 300] and val[-1] < unigram_entropy - 0.2
    assert [r["step"] for r in history.train] == list(range(20, 301, 20))
    assert all(r["tokens_per_s"] > 0 for r in history.train)
    assert model.training                                                 # left in train mode


def test_eval_called_at_the_right_steps_in_eval_mode_without_grad(corpus):
    vocab_size, splits = corpus
    calls = []

    def eval_fn(model):
        calls.append((model.training, torch.is_grad_enabled()))
        return {"val_score": torch.tensor(float(len(calls)))}

    model = tiny_gpt(vocab_size)
    history = train(model, quiet(steps=7, eval_every=3), make_get_batch(splits), gpt_loss, eval_fn=eval_fn)
    assert history.values("val_score", "eval") == ([3, 6, 7], [1.0, 2.0, 3.0])   # and after the last step
    assert calls == [(False, False)] * 3
    assert model.training


def test_default_evaluation_uses_the_same_val_batches_each_time(corpus):
    vocab_size, splits = corpus
    seen = []

    def get_batch(split, generator):
        batch = make_get_batch(splits)(split, generator)
        if split == "val":
            seen.append(batch[0])
        return batch

    model = tiny_gpt(vocab_size)
    metrics = evaluate(model, get_batch, gpt_loss, batches=3, seed=5)
    evaluate(model, get_batch, gpt_loss, batches=3, seed=5)
    assert set(metrics) == {"val_loss", "val_n_tokens"} and metrics["val_n_tokens"] == 8 * T
    assert all(torch.equal(a, b) for a, b in zip(seen[:3], seen[3:]))
    assert model.training                                                 # mode restored


def test_clipping_bounds_the_gradient_norm():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    get_batch = lambda split, g: (torch.randn(8, 4, generator=g) * 100, torch.randn(8, 1, generator=g))  # noqa
    loss_fn = lambda m, b: ((m(b[0]) - b[1]) ** 2).mean()  # noqa: E731
    clipped = []

    def after_step(step, model, history):    # gradients are still there after the update
        clipped.append(torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item())

    history = train(model, quiet(steps=3, grad_clip=0.5), get_batch, loss_fn, callbacks=[after_step])
    raw = history.values("grad_norm")[1]
    assert all(norm > 10 for norm in raw)                                  # grad_norm is before clipping
    assert clipped == pytest.approx([0.5] * 3, rel=1e-4)

    unclipped = []
    train(nn.Linear(4, 1), quiet(steps=1, grad_clip=None), get_batch, loss_fn,
          callbacks=[lambda s, m, h: unclipped.append(torch.cat([p.grad.flatten() for p in m.parameters()]).norm())])
    assert unclipped[0] > 10


def test_grad_accumulation_matches_one_big_batch():
    """Two micro-batches of 4 give the loss, gradient and update of one batch of 8 (the loss is a mean)."""
    data = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))

    def run(accumulation):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        chunks = iter(data.split(8 // accumulation))
        history = train(model, quiet(steps=1, grad_accumulation=accumulation, lr=0.1, eval_batches=0),
                        lambda s, g: next(chunks), lambda m, b: (m(b) + 1).pow(2).mean())
        assert history.eval == []                                     # eval_batches=0: no evaluation
        return model.weight.detach().clone(), history.train[0]["loss"], history.train[0]["grad_norm"]

    (w1, loss1, norm1), (w2, loss2, norm2) = run(1), run(2)
    assert torch.allclose(w1, w2, atol=1e-6)
    assert loss1 == pytest.approx(loss2, rel=1e-6) and norm1 == pytest.approx(norm2, rel=1e-6)


def test_progress_bar_on_and_off(corpus, capsys):
    vocab_size, splits = corpus
    train(tiny_gpt(vocab_size), quiet(steps=2, progress=True), make_get_batch(splits), gpt_loss)
    shown = capsys.readouterr().err
    assert "training" in shown and "2/2" in shown and "loss=" in shown
    train(tiny_gpt(vocab_size), quiet(steps=2, progress=False), make_get_batch(splits), gpt_loss)
    assert capsys.readouterr().err == ""


def test_same_seed_same_run_other_seed_other_run(corpus):
    vocab_size, splits = corpus

    def losses(seed):
        history = train(tiny_gpt(vocab_size), quiet(steps=4, seed=seed), make_get_batch(splits), gpt_loss)
        return history.values("loss")[1]

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


# --------------------------------------------------------------------------------------------------
# History and checkpoints
# --------------------------------------------------------------------------------------------------

def test_history_round_trip_and_plot():
    history = History(train=[{"step": 1, "loss": 2.0, "lr": 0.1}, {"step": 2, "loss": 1.5, "lr": 0.2}],
                      eval=[{"step": 2, "val_loss": 1.7}])
    again = History.from_dict(history.to_dict())
    assert again == history and again.train is not history.train
    ax_loss, ax_lr = history.plot()
    assert [line.get_label() for line in ax_loss.get_lines()] == ["train", "validation"]
    assert list(ax_loss.get_lines()[1].get_ydata()) == [1.7]
    assert list(ax_lr.get_lines()[0].get_ydata()) == [0.1, 0.2]
    with pytest.raises(ValueError, match="Expected a dict with 'train' and 'eval' lists"):
        History.from_dict({"train": []})


def test_resume_gives_exactly_the_uninterrupted_run(corpus, tmp_path):
    """N steps in one go == N/2 steps, a crash, then a fresh model and optimizer resuming to N."""
    vocab_size, splits = corpus
    N = 8
    common = dict(steps=N, lr=3e-3, warmup_steps=2, eval_every=2, grad_accumulation=2, seed=7)

    full_model = tiny_gpt(vocab_size, seed=1)                         # dropout on: the RNG state matters too
    full = train(full_model, quiet(**common), make_get_batch(splits), gpt_loss)

    path = tmp_path / "run" / "ckpt.pt"

    def crash(step, model, history):
        if step == N // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_gpt(vocab_size, seed=1), quiet(**common, checkpoint_path=path, checkpoint_every=N // 2),
              make_get_batch(splits), gpt_loss, callbacks=[crash])
    assert load_checkpoint(path)["step"] == N // 2

    resumed_model = tiny_gpt(vocab_size, seed=99)                     # different weights: all come from the file
    resumed = train(resumed_model, quiet(**common, checkpoint_path=path, checkpoint_every=N // 2),
                    make_get_batch(splits), gpt_loss)

    assert resumed.values("loss") == full.values("loss")              # exact, not approximate
    assert resumed.values("val_loss", "eval") == full.values("val_loss", "eval")
    assert resumed.values("lr") == full.values("lr")
    for (name, a), (_, b) in zip(full_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name
    assert load_checkpoint(path)["step"] == N


def test_finished_run_resumes_to_nothing(corpus, tmp_path):
    vocab_size, splits = corpus
    config = quiet(steps=2, checkpoint_path=tmp_path / "c.pt")
    first = train(tiny_gpt(vocab_size), config, make_get_batch(splits), gpt_loss)
    calls = []
    again = train(tiny_gpt(vocab_size), config, make_get_batch(splits), gpt_loss,
                  callbacks=[lambda *a: calls.append(a)])
    assert calls == [] and again == first


def test_checkpoint_round_trip_restores_everything(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = make_optimizer(model, 0.1)
    sched = make_scheduler(opt, 1, 5)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(11)
    expected_draw = torch.rand(3)
    torch.manual_seed(11)
    history = History(train=[{"step": 1, "loss": 0.5}])
    save_checkpoint(tmp_path / "c.pt", model, opt, sched, 1, history, gen)

    model2 = nn.Linear(3, 2)
    opt2 = make_optimizer(model2, 0.1)
    sched2 = make_scheduler(opt2, 1, 5)
    gen2 = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    checkpoint = load_checkpoint(tmp_path / "c.pt", model2, opt2, sched2, generator=gen2, restore_rng=True)
    assert checkpoint["step"] == 1 and History.from_dict(checkpoint["history"]) == history
    assert torch.equal(model.weight, model2.weight)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], opt2.state_dict()["state"][0]["exp_avg"])
    assert sched2.last_epoch == 1 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert torch.equal(gen2.get_state(), gen.get_state())
    assert torch.equal(torch.rand(3), expected_draw)                  # global RNG restored


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    opt = make_optimizer(model, 0.1)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, opt, None, 1, History(), torch.Generator())
    good = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt, None, 2, History(), torch.Generator())
    assert os.listdir(tmp_path) == ["ckpt.pt"]                        # no temporary file left behind
    assert path.read_bytes() == good                                  # the old checkpoint is intact

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "new.pt", model, opt, None, 1, History(), torch.Generator())
    assert os.listdir(tmp_path) == ["ckpt.pt"]                        # and no half-written new file


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Expected a checkpoint file at .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a checkpoint written by save_checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_bf16_autocast_runs_on_cpu_and_auto_is_off_there(corpus):
    from ptlm_course.training import resolve_precision
    assert resolve_precision("auto", torch.device("cpu")) == "off"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    vocab_size, splits = corpus
    seen = []
    loss_fn = lambda m, b: seen.append(m(b[0])[0].dtype) or gpt_loss(m, b)  # noqa: E731
    history = train(tiny_gpt(vocab_size), quiet(steps=2, mixed_precision="bf16", eval_batches=1),
                    make_get_batch(splits), loss_fn)
    assert seen[0] == torch.bfloat16                                   # the forward ran in bfloat16
    assert all(math.isfinite(x) for x in history.values("loss")[1] + history.values("val_loss", "eval")[1])


# --------------------------------------------------------------------------------------------------
# Early stopping
# --------------------------------------------------------------------------------------------------

def test_early_stopping_rule():
    stopper = EarlyStopping(patience=2)
    assert [stopper.update(v) for v in (1.0, 0.8, 0.9, 0.85)] == [False, False, False, True]
    assert stopper.best == 0.8 and stopper.bad_evals == 2
    stopper = EarlyStopping(patience=2, mode="max")
    assert [stopper.update(v) for v in (0.5, 0.6, 0.55, 0.7, 0.65, 0.6)] == [False] * 5 + [True]
    stopper = EarlyStopping(patience=1, min_delta=0.1)                    # 0.95 is not enough of a gain
    assert [stopper.update(v) for v in (1.0, 0.95)] == [False, True]
    stopper = EarlyStopping(patience=2)
    assert [stopper.update(v) for v in (float("nan"), 1.0, float("nan"), float("nan"))] == [False, False, False, True]
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(EarlyStopping(patience=2).state_dict())
    assert restored.best is None and restored.bad_evals == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(patience=0), r"`patience` should be an integer >= 1 .* but got int 0"),
    (dict(patience=2, mode="maximum"), "`mode` should be 'min' .* or 'max' .* but got str 'maximum'"),
    (dict(patience=2, min_delta=-0.1), "`min_delta` should be a number >= 0"),
])
def test_early_stopping_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)


def scripted_eval(values, start=0):
    """An eval_fn returning values[0], values[1], ... (from values[start])."""
    calls = [start]

    def eval_fn(model):
        calls[0] += 1
        return {"val_loss": values[calls[0] - 1], "val_accuracy": -values[calls[0] - 1]}
    return eval_fn


def weights_at(steps):
    """A callback keeping a copy of the weights at the given steps."""
    kept = {}

    def callback(step, model, history):
        if step in steps:
            kept[step] = {k: v.clone() for k, v in model.state_dict().items()}
    return kept, callback


def same_weights(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("metric, mode", [("val_loss", "min"), ("val_accuracy", "max")])
def test_training_stops_at_the_right_step_and_restores_the_best_weights(corpus, metric, mode):
    vocab_size, splits = corpus
    model = tiny_gpt(vocab_size)
    kept, callback = weights_at({4, 8})
    config = quiet(steps=20, lr=1e-2, eval_every=2, early_stopping_patience=2, early_stopping_metric=metric,
                   early_stopping_mode=mode)
    history = train(model, config, make_get_batch(splits), gpt_loss,
                    eval_fn=scripted_eval([1.0, 0.8, 0.9, 0.85, 0.1, 0.1]), callbacks=[callback])
    assert (history.best_step, history.stopped_step) == (4, 8)          # evaluations at 2, 4, 6, 8: 0.8 is best
    assert history.train[-1]["step"] == 8 and [r["step"] for r in history.eval] == [2, 4, 6, 8]
    assert same_weights(model, kept[4]) and not same_weights(model, kept[8])


def test_restore_best_off_keeps_the_last_weights_and_no_stop_still_restores(corpus):
    vocab_size, splits = corpus
    model = tiny_gpt(vocab_size)
    kept, callback = weights_at({4, 8})
    config = quiet(steps=20, lr=1e-2, eval_every=2, early_stopping_patience=2, restore_best=False)
    history = train(model, config, make_get_batch(splits), gpt_loss,
                    eval_fn=scripted_eval([1.0, 0.8, 0.9, 0.85]), callbacks=[callback])
    assert history.stopped_step == 8 and same_weights(model, kept[8])
    model = tiny_gpt(vocab_size)
    kept, callback = weights_at({4, 6})
    history = train(model, quiet(steps=6, lr=1e-2, eval_every=2, early_stopping_patience=5),
                    make_get_batch(splits), gpt_loss, eval_fn=scripted_eval([1.0, 0.5, 0.7]), callbacks=[callback])
    assert (history.best_step, history.stopped_step) == (4, None) and same_weights(model, kept[4])


def test_early_stopping_survives_a_resume(corpus, tmp_path):
    vocab_size, splits = corpus
    values = [1.0, 0.8, 0.9, 0.85, 0.1]
    common = dict(steps=20, lr=1e-2, eval_every=2, early_stopping_patience=2, seed=3)
    full_model = tiny_gpt(vocab_size, seed=1)
    full = train(full_model, quiet(**common), make_get_batch(splits), gpt_loss, eval_fn=scripted_eval(values))

    path = tmp_path / "ckpt.pt"

    def crash(step, model, history):
        if step == 6:                                                   # after the best (4), before the stop (8)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_gpt(vocab_size, seed=1), quiet(**common, checkpoint_path=path, checkpoint_every=2),
              make_get_batch(splits), gpt_loss, eval_fn=scripted_eval(values), callbacks=[crash])
    done = len(load_checkpoint(path)["history"]["eval"])
    resumed_model = tiny_gpt(vocab_size, seed=99)
    resumed = train(resumed_model, quiet(**common, checkpoint_path=path, checkpoint_every=2),
                    make_get_batch(splits), gpt_loss, eval_fn=scripted_eval(values, start=done))
    assert (resumed.best_step, resumed.stopped_step) == (full.best_step, full.stopped_step) == (4, 8)
    assert resumed.values("loss") == full.values("loss")
    assert same_weights(resumed_model, full_model.state_dict())
    assert load_checkpoint(path)["step"] == 8                           # saved when it stopped
    calls = []                                                          # a stopped run resumes to nothing
    again = train(tiny_gpt(vocab_size), quiet(**common, checkpoint_path=path), make_get_batch(splits), gpt_loss,
                  eval_fn=scripted_eval(values), callbacks=[lambda *a: calls.append(a)])
    assert calls == [] and again.stopped_step == 8


def test_early_stopping_config_errors(corpus):
    vocab_size, splits = corpus
    with pytest.raises(ValueError, match="needs regular evaluations, but TrainConfig.eval_every is None"):
        quiet(steps=4, early_stopping_patience=2)
    with pytest.raises(ValueError, match="`mode` should be 'min'"):
        quiet(steps=4, eval_every=2, early_stopping_patience=2, early_stopping_mode="up")
    with pytest.raises(ValueError, match=r"early_stopping_metric is 'val_acc', but the evaluation returned only "
                                         r"\['val_accuracy', 'val_loss'\]"):
        train(tiny_gpt(vocab_size), quiet(steps=4, eval_every=2, early_stopping_patience=2,
                                          early_stopping_metric="val_acc"),
              make_get_batch(splits), gpt_loss, eval_fn=scripted_eval([1.0, 2.0]))
    with pytest.raises(ValueError, match="Early stopping needs an evaluation every eval_every steps, but none ran"):
        train(tiny_gpt(vocab_size), quiet(steps=4, eval_every=2, eval_batches=0, early_stopping_patience=2),
              make_get_batch(splits), gpt_loss)
