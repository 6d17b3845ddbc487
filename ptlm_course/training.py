"""The training loop every later notebook uses: AdamW, warm-up + cosine schedule, clipping, mixed precision,
evaluation, a progress bar, a History to plot, and checkpoints that resume exactly.

    config  = TrainConfig(steps=1000, lr=3e-4, warmup_steps=100, eval_every=100)
    history = train(model, config, get_batch, loss_fn)
    history.plot()

``get_batch(split, generator)`` returns one batch of ``split`` ("train" or "val"); it should draw all of its
randomness from ``generator`` (e.g. ``torch.randint(..., generator=generator)``) so that a resumed run sees
the same batches. ``loss_fn(model, batch)`` returns the loss (a scalar tensor) or ``(loss, metrics)`` with a
dict of extra numbers to record (a ``"n_tokens"`` entry turns on a tokens-per-second column).
Data comes only through ``get_batch``: no DataLoader worker processes, so it runs the same on Windows and Colab.

The loop runs in one process. :mod:`ptlm_course.distributed` wraps it for N processes under torchrun
(``distributed.train``): it hands the loop a ``distributed.DataParallel`` in place of :class:`OneProcess`, the few
hooks where one process and N differ.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .attention import MultiHeadAttention, use_fused_attention
from .runtime import atomic_write, get_device, seed_everything
from .validation import describe, is_int, is_number

__all__ = [
    "param_groups", "make_optimizer", "warmup_cosine", "make_scheduler", "TrainConfig", "History",
    "resolve_precision", "evaluate", "train", "save_checkpoint", "load_checkpoint", "EarlyStopping", "OneProcess",
]

PRECISIONS = ("auto", "bf16", "fp16", "off")


# --------------------------------------------------------------------------------------------------
# Optimizer and learning-rate schedule
# --------------------------------------------------------------------------------------------------

def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ``decay`` holds the weight matrices (Linear weights: dim >= 2), ``no_decay`` the rest.

    No decay on biases and LayerNorm weights (1-D: they set scales and offsets, shrinking them towards 0 only
    hurts) nor on embeddings: each embedding row gets a gradient only when its token appears, so decay would
    mostly shrink the rows of rare tokens. A tied weight (GPT's ``wte`` = ``lm_head``) is one parameter,
    listed once, and counts as an embedding. Each group also has ``names`` to show which is where.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` should be a torch.nn.Module, but got {describe(model)}.")
    if not is_number(weight_decay) or weight_decay < 0:
        raise ValueError(f"`weight_decay` should be a number >= 0, but got {describe(weight_decay)}.")
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = {"names": [], "params": []}, {"names": [], "params": []}
    for name, p in model.named_parameters():          # yields a shared (tied) tensor once
        if not p.requires_grad:
            continue
        group = decay if p.dim() >= 2 and id(p) not in embedding_ids else no_decay
        group["names"].append(name)
        group["params"].append(p)
    return [{**decay, "weight_decay": float(weight_decay)}, {**no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.01,
                   betas: tuple[float, float] = (0.9, 0.999), fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`.

    ``fused=True`` uses PyTorch's fused kernel (one pass over all the parameters instead of a dozen small
    operations per tensor), on the CPU or a CUDA GPU: the same update up to float rounding; on the CPU at
    nanoGPT's size a step of the optimizer takes about 1 ms instead of 7 ms. ``fused=None``: fused when the
    model is on CUDA (the notebooks' stored CPU runs were made with the plain kernel).
    """
    if not is_number(lr) or lr <= 0:
        raise ValueError(f"`lr` should be a positive number, but got {describe(lr)}.")
    groups = param_groups(model, weight_decay)
    if fused is None:
        fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


def warmup_cosine(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate for update ``step`` (counted from 0).

    Linear warm-up: steps 0 .. warmup_steps-1 climb from max_lr/warmup_steps to max_lr (no step is wasted
    at lr 0); then a half cosine falls from max_lr (at step warmup_steps) to min_lr (at step total_steps)
    and stays there. Plain floats in and out, so ``[warmup_cosine(s, ...) for s in range(n)]`` plots it.
    """
    if not is_int(step) or step < 0:
        raise ValueError(f"`step` should be an integer >= 0, but got {describe(step)}.")
    _check_schedule(warmup_steps, total_steps)
    if not 0 <= min_lr <= max_lr:
        raise ValueError(f"Expected 0 <= min_lr <= max_lr, but got min_lr = {min_lr!r} and max_lr = {max_lr!r}.")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))   # 0 -> 1
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def _check_schedule(warmup_steps, total_steps) -> None:
    if not is_int(total_steps) or total_steps <= 0:
        raise ValueError(f"The number of steps should be a positive integer, but got {describe(total_steps)}.")
    if not is_int(warmup_steps) or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps should be an integer in [0, steps = {total_steps}], "
                         f"but got {describe(warmup_steps)}.")


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                   min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`warmup_cosine`: each group's lr is its initial lr times the schedule's factor.

    Call ``scheduler.step()`` after each ``optimizer.step()``. ``min_lr_ratio`` = min_lr / max_lr.
    """
    _check_schedule(warmup_steps, total_steps)
    if not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"`min_lr_ratio` should be in [0, 1], but got {describe(min_lr_ratio)}.")
    factor = lambda step: warmup_cosine(step, 1.0, warmup_steps, total_steps, min_lr_ratio)  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------------------------------
# Early stopping
# --------------------------------------------------------------------------------------------------

class EarlyStopping:
    """Stop when the validation metric has not improved for ``patience`` evaluations in a row.

    ``mode="min"`` for a loss, ``"max"`` for an accuracy. A value improves on the best so far only when it
    beats it by more than ``min_delta``; an improvement resets the count of bad evaluations to 0. NaN never
    improves. ``update(value)`` records one evaluation and returns True when training should stop.

    >>> stopper = EarlyStopping(patience=2)
    >>> [stopper.update(v) for v in (1.0, 0.8, 0.9, 0.85)]      # 0.9 and 0.85 do not beat 0.8
    [False, False, False, True]
    """

    def __init__(self, patience: int, mode: str = "min", min_delta: float = 0.0):
        if not is_int(patience) or patience < 1:
            raise ValueError(f"`patience` should be an integer >= 1 (evaluations without improvement "
                             f"before stopping), but got {describe(patience)}.")
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` should be 'min' (e.g. a loss) or 'max' (e.g. an accuracy), "
                             f"but got {describe(mode)}.")
        if not is_number(min_delta) or not min_delta >= 0:
            raise ValueError(f"`min_delta` should be a number >= 0, but got {describe(min_delta)}.")
        self.patience, self.mode, self.min_delta = patience, mode, float(min_delta)
        self.best: float | None = None     # the best value so far
        self.bad_evals = 0                 # evaluations since the last improvement
        self.improved = False              # did the last update improve on the best?

    def update(self, value: float) -> bool:
        """Record one evaluation; return True when it is time to stop."""
        value = _number(value)
        if self.best is None:
            self.improved = not math.isnan(value)
        elif self.mode == "min":
            self.improved = value < self.best - self.min_delta
        else:
            self.improved = value > self.best + self.min_delta
        if self.improved:
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
        return self.bad_evals >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals, "improved": self.improved}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_evals, self.improved = state["best"], state["bad_evals"], state["improved"]

    def __repr__(self) -> str:
        return (f"EarlyStopping(patience={self.patience}, mode={self.mode!r}, min_delta={self.min_delta}, "
                f"best={self.best}, bad_evals={self.bad_evals})")


class _EarlyStoppingRun:
    """Early stopping inside :func:`train`: the rule, the best weights so far, and their checkpoint state."""

    def __init__(self, config: "TrainConfig"):
        self.metric, self.keep_best = config.early_stopping_metric, config.restore_best
        self.rule = EarlyStopping(config.early_stopping_patience, config.early_stopping_mode,
                                  config.early_stopping_min_delta)
        self.best_weights: dict | None = None            # a CPU copy of the best evaluation's state_dict

    def update(self, model: nn.Module, history: "History", step: int) -> bool:
        """Read the evaluation just recorded at ``step``; keep the weights if best; return True to stop."""
        if not history.eval or history.eval[-1]["step"] != step:
            raise ValueError("Early stopping needs an evaluation every eval_every steps, but none ran: "
                             "pass eval_fn or set TrainConfig.eval_batches > 0.")
        record = history.eval[-1]
        if self.metric not in record:
            raise ValueError(f"TrainConfig.early_stopping_metric is {self.metric!r}, but the evaluation returned "
                             f"only {sorted(k for k in record if k != 'step')}.")
        stop = self.rule.update(record[self.metric])
        if self.rule.improved:
            history.best_step = step
            if self.keep_best:
                self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if stop:
            history.stopped_step = step
        return stop

    def restore_best(self, model: nn.Module) -> None:
        if self.keep_best and self.best_weights is not None:
            model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {"rule": self.rule.state_dict(), "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state["rule"])
        self.best_weights = state["best_weights"]


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Everything :func:`train` needs to know besides the model and the data.

    ``mixed_precision``: ``"auto"`` picks bf16 autocast on CUDA GPUs that support it, fp16 autocast with a
    GradScaler (which rescales the loss so small gradients do not underflow) on older CUDA GPUs, and plain
    float32 on the CPU and Apple's MPS. ``"bf16"``, ``"fp16"`` (CUDA only) and ``"off"`` force a choice.
    """
    steps: int                          # optimizer updates in total
    lr: float = 3e-4                    # peak learning rate (after warm-up)
    weight_decay: float = 0.01          # AdamW decay on weight matrices (see param_groups)
    warmup_steps: int = 0
    min_lr: float = 0.0                 # the cosine ends here
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0       # largest gradient norm; None = no clipping
    eval_every: int | None = None       # evaluate every n steps; always after the last step
    eval_batches: int = 10              # validation batches per default evaluation; 0 = none (no "val" data)
    log_every: int = 1                  # record the mean train loss of every n steps
    mixed_precision: str = "auto"
    checkpoint_path: str | Path | None = None   # save here; resume from here if it exists
    checkpoint_every: int | None = None         # save every n steps (and after the last one)
    seed: int = 0
    device: str | None = None           # None: get_device() picks CUDA, MPS or the CPU
    grad_accumulation: int = 1          # micro-batches per update: a larger batch in the same memory
    progress: bool = True               # show a progress bar with the live loss
    early_stopping_patience: int | None = None   # stop after this many evaluations without improvement
    early_stopping_metric: str = "val_loss"      # a key of the evaluation results
    early_stopping_mode: str = "min"             # "min" for a loss, "max" for an accuracy
    early_stopping_min_delta: float = 0.0        # smaller changes do not count as improvements
    restore_best: bool = True                    # with early stopping: end with the best evaluation's weights
    fused_attention: bool = False                # train with PyTorch's attention kernel (see train)
    fused_adamw: bool | None = None              # PyTorch's fused AdamW; None: on CUDA only (make_optimizer)

    def __post_init__(self):
        _check_schedule(self.warmup_steps, self.steps)
        for name in ("log_every", "grad_accumulation"):
            _expect_int(self, name, minimum=1)
        _expect_int(self, "eval_batches", minimum=0)
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) is not None:
                _expect_int(self, name, minimum=1)
        _expect_int(self, "seed", minimum=None)
        if not is_number(self.lr) or self.lr <= 0:
            raise ValueError(f"TrainConfig.lr should be a positive number, but got {describe(self.lr)}.")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig.min_lr should be in [0, lr = {self.lr}], but got {describe(self.min_lr)}.")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay should be >= 0, but got {describe(self.weight_decay)}.")
        if self.grad_clip is not None and not (isinstance(self.grad_clip, (int, float)) and self.grad_clip > 0):
            raise ValueError(f"TrainConfig.grad_clip should be a positive number or None, "
                             f"but got {describe(self.grad_clip)}.")
        if not isinstance(self.fused_attention, bool):
            raise ValueError(f"TrainConfig.fused_attention should be True or False, "
                             f"but got {describe(self.fused_attention)}.")
        if self.fused_adamw is not None and not isinstance(self.fused_adamw, bool):
            raise ValueError(f"TrainConfig.fused_adamw should be None, True or False, "
                             f"but got {describe(self.fused_adamw)}.")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.mixed_precision should be one of {', '.join(PRECISIONS)}, "
                             f"but got {describe(self.mixed_precision)}.")
        if self.early_stopping_patience is not None:
            EarlyStopping(self.early_stopping_patience, self.early_stopping_mode, self.early_stopping_min_delta)
            if self.eval_every is None:
                raise ValueError("Early stopping (TrainConfig.early_stopping_patience) needs regular evaluations, "
                                 "but TrainConfig.eval_every is None: set eval_every, e.g. to 50.")


def _expect_int(config, name: str, minimum: int | None) -> None:
    value = getattr(config, name)
    if not is_int(value) or (minimum is not None and value < minimum):
        wanted = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ValueError(f"TrainConfig.{name} should be {wanted}, but got {describe(value)}.")


def resolve_precision(mixed_precision: str, device: torch.device) -> str:
    """``"bf16"``, ``"fp16"`` or ``"off"``: what ``mixed_precision`` means on ``device``."""
    if mixed_precision == "auto":
        if device.type != "cuda":
            return "off"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mixed_precision == "fp16" and device.type != "cuda":
        raise ValueError(f"mixed_precision='fp16' needs a CUDA GPU, but the device is {device}; "
                         "use 'bf16' or 'off'.")
    return mixed_precision


def _autocast(device: torch.device, precision: str):
    if precision == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


# --------------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------------

@dataclass
class History:
    """What happened during training: one dict per logged step in ``train`` and per evaluation in ``eval``.

    ``train`` records hold step, loss, lr, grad_norm (before clipping), the loss_fn's metrics and, when
    ``n_tokens`` is reported, tokens_per_s; ``eval`` records hold step and e.g. val_loss.
    ``step`` counts the updates done so far (1 = after the first update).
    With early stopping, ``best_step`` is the step of the best evaluation and ``stopped_step`` the step
    at which training stopped early (None when it ran all its steps).
    """
    train: list[dict] = field(default_factory=list)
    eval: list[dict] = field(default_factory=list)
    best_step: int | None = None
    stopped_step: int | None = None

    def values(self, key: str, which: str = "train") -> tuple[list[int], list[float]]:
        """(steps, values) of one column, e.g. ``history.values("val_loss", "eval")``."""
        if which not in ("train", "eval"):
            raise ValueError(f"`which` should be 'train' or 'eval', but got {describe(which)}.")
        records = [r for r in getattr(self, which) if key in r]
        return [r["step"] for r in records], [r[key] for r in records]

    def to_dict(self) -> dict:
        return {"train": [dict(r) for r in self.train], "eval": [dict(r) for r in self.eval],
                "best_step": self.best_step, "stopped_step": self.stopped_step}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        if not isinstance(d, dict) or not {"train", "eval"} <= set(d):
            raise ValueError(f"Expected a dict with 'train' and 'eval' lists (from History.to_dict), "
                             f"but got {describe(d)}.")
        return cls(train=[dict(r) for r in d["train"]], eval=[dict(r) for r in d["eval"]],
                   best_step=d.get("best_step"), stopped_step=d.get("stopped_step"))

    def plot(self, axes=None):
        """Loss curves (train and validation) on the left, the learning rate on the right. Returns the axes."""
        import matplotlib.pyplot as plt

        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        ax_loss, ax_lr = axes
        ax_loss.plot(*self.values("loss"), label="train", alpha=0.8)
        if self.values("val_loss", "eval")[0]:
            ax_loss.plot(*self.values("val_loss", "eval"), "o-", label="validation")
        ax_loss.set(xlabel="step", ylabel="loss", title="Loss")
        ax_loss.legend()
        ax_lr.plot(*self.values("lr"))
        ax_lr.set(xlabel="step", ylabel="learning rate", title="Learning rate")
        return axes


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------

def _rng_states() -> dict:
    """Every global random state, as tensors and plain numbers (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_states(states: dict) -> None:
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in states["python"]))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class OneProcess:
    """Where the loop runs: this one process, so every hook below changes nothing.

    :class:`ptlm_course.distributed.DataParallel` overrides them to train on N processes (notebook 16).
    """
    is_main = True                                          # the process that shows progress and writes files

    def setup(self, device: torch.device) -> torch.device:   # join a process group; the device to use
        return device

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:   # what forward and backward run through
        return model

    def shard(self, get_batch: Callable) -> Callable:       # this process's share of every batch
        return get_batch

    def no_sync(self, model: nn.Module, skip: bool):         # accumulate a micro-batch without reducing gradients
        return contextlib.nullcontext()

    def mean_record(self, record: dict) -> dict:            # a step's losses and metrics over the processes
        return record

    def mean(self, metrics: dict) -> dict:                  # evaluation metrics over the processes
        return dict(metrics)

    def barrier(self) -> None:                              # wait for the other processes
        pass


def save_checkpoint(path, model: nn.Module, optimizer, scheduler, step: int, history: History,
                    generator: torch.Generator, scaler=None, config: TrainConfig | None = None,
                    early_stopping: dict | None = None, processes: OneProcess | None = None) -> None:
    """Save everything needed to resume exactly, atomically: a temporary file in the same folder is renamed
    over ``path`` only once fully written, so a crash never leaves a half-written checkpoint.
    ``early_stopping``: the early-stopping state (counter, best value, best weights), when there is one.
    ``processes``: with several (:mod:`ptlm_course.distributed`), the main one writes and the others wait."""
    processes = processes or OneProcess()
    if not processes.is_main:
        processes.barrier()
        return
    state = {
        "model": _unwrap(model).state_dict(),             # no DDP "module." prefix: loads anywhere
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "step": step,
        "history": history.to_dict(),
        "generator": generator.get_state(),
        "rng": _rng_states(),
        "config": _config_dict(config) if config else None,
        "early_stopping": early_stopping,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    processes.barrier()


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (its ``.module``), or the model itself."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# Settings that do not change what a run computes: a run may resume with other values of these.
RESUME_ANYWHERE = ("progress", "checkpoint_path", "checkpoint_every", "device", "fused_attention",
                   "fused_adamw")                       # the last two change float rounding only


def _config_dict(config: TrainConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def _expect_same_config(path, saved: dict | None, config: TrainConfig) -> None:
    """Refuse to resume a checkpoint with other settings: the run would silently keep the checkpoint's."""
    if not isinstance(saved, dict):
        return
    now = _config_dict(config)
    plain = lambda v: list(v) if isinstance(v, (list, tuple)) else v   # noqa: E731 - betas: tuple or list
    differ = [f"{k}={saved[k]!r} in the checkpoint but {now[k]!r} now" for k in now
              if k in saved and k not in RESUME_ANYWHERE and plain(saved[k]) != plain(now[k])]
    if differ:
        raise ValueError(f"Cannot resume from {str(path)!r}: it was written with a different TrainConfig "
                         f"({'; '.join(differ)}). Resuming would keep the checkpoint's schedule and step count, not "
                         "yours: pass the same settings to continue that run, or set another checkpoint_path (or "
                         "delete the file) to start afresh.")


def load_checkpoint(path, model: nn.Module | None = None, optimizer=None, scheduler=None, scaler=None,
                    generator: torch.Generator | None = None, restore_rng: bool = False,
                    config: TrainConfig | None = None) -> dict:
    """Read a checkpoint from :func:`save_checkpoint`; load it into the objects given. Returns the dict
    (``checkpoint["step"]``, ``History.from_dict(checkpoint["history"])``, ...). With ``config``, first check
    that the checkpoint was written with the same settings (else ValueError naming what differs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected a checkpoint file at {str(path)!r}, but there is none.")
    size = path.stat().st_size
    restart = "Delete it (or set another checkpoint_path) to start afresh."
    if size == 0:
        raise ValueError(f"The checkpoint {str(path)!r} is empty (0 bytes): its run was probably killed while it "
                         f"was being copied. {restart}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:                    # truncated zip, random bytes, text, another pickle, ...
        raise ValueError(f"{str(path)!r} ({size} bytes) is not a readable checkpoint written by save_checkpoint: "
                         f"it is truncated or another kind of file ({type(error).__name__}). {restart}") from None
    needed = ["model", "optimizer", "step", "history"] + ["generator"] * (generator is not None) + ["rng"] * restore_rng
    missing = [key for key in needed if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise ValueError(f"{str(path)!r} is not a checkpoint written by save_checkpoint (it lacks "
                         f"{', '.join(repr(k) for k in missing)}). {restart}")
    if config is not None:
        _expect_same_config(path, checkpoint.get("config"), config)
    if model is not None:
        model.load_state_dict(checkpoint["model"])
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint["scheduler"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None and checkpoint.get("scaler") is not None:
        scaler.load_state_dict(checkpoint["scaler"])
    if generator is not None:
        generator.set_state(checkpoint["generator"])
    if restore_rng:
        _set_rng_states(checkpoint["rng"])
    return checkpoint


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------

def _to_device(batch, device: torch.device):
    """Move the tensors of a batch (a tensor, or a tuple / list / dict of them) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):             # a NamedTuple
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _loss_and_metrics(result) -> tuple[torch.Tensor, dict]:
    """Accept ``loss`` or ``(loss, metrics)`` from loss_fn."""
    loss, metrics = result if isinstance(result, tuple) and len(result) == 2 else (result, {})
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not isinstance(metrics, dict):
        raise TypeError(f"`loss_fn(model, batch)` should return a scalar loss tensor or (loss, dict of metrics), "
                        f"but returned {describe(result)}.")
    return loss.reshape(()), metrics


def _number(x) -> float:
    return x.item() if isinstance(x, torch.Tensor) else float(x)


@torch.no_grad()
def evaluate(model: nn.Module, get_batch: Callable, loss_fn: Callable, batches: int, seed: int = 0,
             device: torch.device | None = None, precision: str = "off") -> dict[str, float]:
    """Mean loss (and metrics) over ``batches`` validation batches: ``{"val_loss": ..., "val_<metric>": ...}``.

    The batches come from a generator seeded with ``seed``, so every evaluation sees the same ones and
    the points of a validation curve compare like with like. Runs in eval mode, then restores the mode.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    totals: dict[str, float] = {}
    try:
        for _ in range(batches):
            batch = get_batch("val", generator)
            with _autocast(device or torch.device("cpu"), precision):
                loss, metrics = _loss_and_metrics(loss_fn(model, _to_device(batch, device) if device else batch))
            for key, value in {"loss": loss, **metrics}.items():
                totals[key] = totals.get(key, 0.0) + _number(value)
    finally:
        model.train(was_training)
    return {f"val_{key}": total / batches for key, total in totals.items()}


def train(model: nn.Module, config: TrainConfig, get_batch: Callable, loss_fn: Callable,
          eval_fn: Callable | None = None, callbacks: list[Callable] | None = None,
          processes: OneProcess | None = None) -> History:
    """Train ``model`` for ``config.steps`` AdamW updates; return the :class:`History`.

    Each update: ``grad_accumulation`` micro-batches from ``get_batch("train", generator)``, backward of
    ``loss_fn`` (under autocast), clip the gradient norm, optimizer step, scheduler step.
    Every ``eval_every`` steps and after the last one: ``eval_fn(model)`` (a dict of numbers) in eval mode
    without gradients, or by default :func:`evaluate` on ``eval_batches`` validation batches (0: no evaluation).
    After each update: ``callback(step, model, history)`` for each callback.

    A fresh run seeds every random generator with ``config.seed``; with ``config.checkpoint_path`` set and
    the file present, training resumes from it instead (weights, optimizer, schedule, history, random states),
    giving the same result as an uninterrupted run.

    Early stopping (``config.early_stopping_patience``): after each evaluation, :class:`EarlyStopping` reads
    ``config.early_stopping_metric``; training stops once it has not improved for ``patience`` evaluations,
    and with ``config.restore_best`` the model ends with the weights of its best evaluation
    (``history.best_step``; ``history.stopped_step`` says where it stopped).

    ``config.fused_attention=True``: the model's attention layers run PyTorch's fused kernel
    (:func:`~ptlm_course.attention.use_fused_attention`) while it trains and evaluates: the same outputs up to
    float rounding, faster, and no attention weights are stored. Afterwards each layer gets back its own setting,
    so the readable attention of the lessons, which returns its weights, is what a call to the model runs. With
    ``fused_adamw=True`` as well this is the fast path (benchmarks/nanogpt_speed.py), which the GPT notebooks and
    the course GPT pretrain with. Both are off by default, so the lessons' own loops and the BERT notebooks match
    their stored runs: rounding differences would change their digits.

    ``processes``: where the loop runs (default: this one process). To train on N processes under torchrun,
    call :func:`ptlm_course.distributed.train`, which passes the loop its :class:`DataParallel` hooks.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` should be a TrainConfig, but got {describe(config)}.")
    processes = processes or _one_process_only()
    device = processes.setup(get_device(config.device))
    precision = resolve_precision(config.mixed_precision, device)
    model.to(device).train()
    optimizer = make_optimizer(model, config.lr, config.weight_decay, config.betas, fused=config.fused_adamw)
    scheduler = make_scheduler(optimizer, config.warmup_steps, config.steps, config.min_lr / config.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    generator = torch.Generator()                          # on the CPU: get_batch moves nothing itself
    history, start = History(), 0
    early = _EarlyStoppingRun(config) if config.early_stopping_patience is not None else None
    if config.checkpoint_path is not None and Path(config.checkpoint_path).is_file():
        checkpoint = load_checkpoint(config.checkpoint_path, model, optimizer, scheduler, scaler, generator,
                                     restore_rng=True, config=config)
        history, start = History.from_dict(checkpoint["history"]), checkpoint["step"]
        if early is not None and checkpoint.get("early_stopping") is not None:
            early.load_state_dict(checkpoint["early_stopping"])
        if history.stopped_step is not None:               # that run had stopped early: nothing left to do
            start = config.steps
    else:
        seed_everything(config.seed)
        generator.manual_seed(config.seed)

    def run_eval(step: int) -> None:
        if eval_fn is None and config.eval_batches == 0:
            return
        model.eval()
        try:
            with torch.no_grad():
                metrics = eval_fn(model) if eval_fn is not None else evaluate(
                    model, get_batch, loss_fn, config.eval_batches, config.seed, device, precision)
        finally:
            model.train()
        history.eval.append({"step": step, **processes.mean({k: _number(v) for k, v in metrics.items()})})

    wrapped = processes.wrap(model, device)                # forward and backward run through this one
    get_batch = processes.shard(get_batch)
    bar = tqdm(total=config.steps, initial=start, desc="training", dynamic_ncols=True,
               disable=not config.progress or not processes.is_main)
    window: list[dict] = []                                # the records since the last log
    own_attention = {m: m.fused for m in model.modules() if isinstance(m, MultiHeadAttention)}
    if config.fused_attention:
        use_fused_attention(model)
    try:
        for step in range(start + 1, config.steps + 1):    # step = updates done once this one is done
            stop = False
            window.append(processes.mean_record(_train_step(
                wrapped, config, get_batch, loss_fn, optimizer, scheduler, scaler, generator, device, precision,
                processes)))
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                history.train.append(_summarise(window, step))
                window = []
                bar.set_postfix(loss=f"{history.train[-1]['loss']:.4f}", lr=f"{history.train[-1]['lr']:.2e}",
                                refresh=False)
            if (config.eval_every and step % config.eval_every == 0) or step == config.steps:
                run_eval(step)
                if history.eval and "val_loss" in history.eval[-1]:
                    bar.set_postfix(loss=f"{history.train[-1]['loss']:.4f}",
                                    val_loss=f"{history.eval[-1]['val_loss']:.4f}", refresh=False)
                stop = early is not None and early.update(model, history, step)
            if config.checkpoint_path is not None and (stop or
                    (config.checkpoint_every and step % config.checkpoint_every == 0) or step == config.steps):
                save_checkpoint(config.checkpoint_path, model, optimizer, scheduler, step, history, generator,
                                scaler, config, early.state_dict() if early is not None else None, processes)
            for callback in callbacks or []:
                callback(step, model, history)
            if stop:
                break
    finally:
        bar.close()                                        # also when interrupted
        for attention, fused in own_attention.items():
            attention.fused = fused                        # each layer's own setting back
    if early is not None:
        early.restore_best(model)                          # the weights of the best evaluation
    return history


_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def _one_process_only() -> OneProcess:
    """The default hooks, refusing to run as N independent copies when torchrun started N processes."""
    if all(name in os.environ for name in _TORCHRUN_ENV) and int(os.environ["WORLD_SIZE"]) > 1:
        raise RuntimeError(f"torchrun started {os.environ['WORLD_SIZE']} processes, but training.train runs the "
                           "loop in one process: each would train its own copy. Call ptlm_course.distributed.train "
                           "(same arguments) to train one model on all of them.")
    return OneProcess()


def _train_step(model, config: TrainConfig, get_batch, loss_fn, optimizer, scheduler, scaler, generator,
                device, precision, processes: OneProcess) -> dict:
    """One update: accumulate gradients over micro-batches, clip, step. Returns the step's record."""
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss_sum, metric_sums = 0.0, {}
    for i in range(config.grad_accumulation):
        batch = _to_device(get_batch("train", generator), device)
        with processes.no_sync(model, skip=i < config.grad_accumulation - 1):    # reduce at the last one only
            with _autocast(device, precision):
                loss, metrics = _loss_and_metrics(loss_fn(model, batch))
            scaler.scale(loss / config.grad_accumulation).backward()   # the mean over micro-batches
        loss_sum += loss.item()
        for key, value in metrics.items():
            metric_sums[key] = metric_sums.get(key, 0.0) + _number(value)
    if not math.isfinite(loss_sum):
        raise FloatingPointError(f"The training loss became {loss_sum} at step {scheduler.last_epoch + 1}: "
                                 "try a lower learning rate (TrainConfig.lr) or a smaller grad_clip.")
    scaler.unscale_(optimizer)                              # clip the true gradients, not the scaled ones
    max_norm = config.grad_clip if config.grad_clip is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    lr = optimizer.param_groups[0]["lr"]                     # the lr this update uses
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    n = config.grad_accumulation
    record = {"loss": loss_sum / n, "lr": lr, "grad_norm": grad_norm.item(),
              **{k: (v if k == "n_tokens" else v / n) for k, v in metric_sums.items()}}
    record["seconds"] = time.perf_counter() - started
    return record


def _summarise(window: list[dict], step: int) -> dict:
    """One History record for the steps since the last log: means, but lr of the last step, tokens/s overall."""
    record = {"step": step}
    for key in window[0]:
        if key not in ("seconds", "n_tokens"):
            values = [r[key] for r in window]
            record[key] = values[-1] if key == "lr" else sum(values) / len(values)
    if "n_tokens" in window[0]:
        record["tokens_per_s"] = sum(r["n_tokens"] for r in window) / sum(r["seconds"] for r in window)
    return record
