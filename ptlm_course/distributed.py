"""Data-parallel training with ``torch.distributed`` (notebook 16), wrapped around the shared loop.

Launch a script that calls :func:`train` (this module's: the same arguments as
:func:`ptlm_course.training.train`) with ``torchrun --nproc_per_node=N`` and it trains one model on N
processes: torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each one, and the loop, given the
:class:`DataParallel` hooks,

1. joins the process group (:func:`setup`: gloo on the CPU, NCCL on CUDA GPUs, one GPU per process);
2. wraps the model in ``DistributedDataParallel``, which all-reduces (averages) the gradients during
   ``backward``, so every process applies the same update and the copies of the model stay identical;
3. gives each process its share of every global batch (:func:`shard_batch`);
4. averages the logged losses and metrics over the processes (:func:`mean_record`), shows the progress bar
   and writes checkpoints on rank 0 only (:func:`is_main_process`).

The batch contract: every process calls ``get_batch(split, generator)`` with the same seeded generator, so
each draws the same **global** batch, and keeps the rows ``rank, rank + N, rank + 2N, ...`` of it. Every
tensor in a batch must therefore have the batch as its first dimension, of a size divisible by N. When
``loss_fn`` returns a mean over the rows (as GPT's next-token loss does with full-length sequences),
N processes compute exactly what one process computes on the global batch, up to float rounding;
a loss normalised by a count that differs between shards (e.g. the masked tokens of a masked-LM batch)
gives a close but not identical mean of means.

Without torchrun every function here is a no-op (rank 0 of 1 process), so the same script runs unchanged
in one process. The loop itself (``ptlm_course/training.py``) knows nothing of all this: it calls the hooks.
"""
from __future__ import annotations

import atexit
import contextlib
import os
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn

from . import training
from .validation import describe

__all__ = [
    "launched_by_torchrun", "is_distributed", "rank", "local_rank", "world_size", "is_main_process",
    "setup", "cleanup", "wrap_model", "unwrap_model", "no_sync", "shard_batch", "sharded_get_batch",
    "all_reduce_mean", "mean_record", "barrier", "DataParallel", "train",
]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """True when the environment variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) are all present."""
    return all(name in os.environ for name in _ENV)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's number, 0 .. world_size - 1 (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """This process's number on its own machine (picks its GPU); 0 without torchrun."""
    return int(os.environ.get("LOCAL_RANK", 0))


_current_rank, _current_world_size = rank, world_size     # shard_batch's arguments shadow the names


def is_main_process() -> bool:
    """Rank 0: the one process that prints, shows progress bars and writes files."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group if launched by torchrun and not done yet; return the device this process uses.

    gloo on the CPU (and MPS), NCCL on CUDA, where process ``LOCAL_RANK`` gets GPU ``LOCAL_RANK``.
    Without torchrun: nothing happens and ``device`` comes back unchanged.
    """
    if device.type == "cuda" and launched_by_torchrun():
        if local_rank() >= torch.cuda.device_count():
            raise RuntimeError(f"Process LOCAL_RANK = {local_rank()} needs its own GPU, but only "
                               f"{torch.cuda.device_count()} are visible: use --nproc_per_node <= the GPU count.")
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if launched_by_torchrun() and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("This PyTorch build has no torch.distributed support, so torchrun cannot be used.")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(cleanup)
    return device


def cleanup() -> None:
    """Leave the process group (safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` in a process group of several processes, else ``model`` itself.

    DDP copies rank 0's weights to every process when it is built, then averages the gradients in backward.
    """
    if not is_distributed():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (the one to save: its state_dict has no ``module.`` prefix)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def no_sync(model: nn.Module, skip: bool):
    """A context in which DDP does not all-reduce the gradients (``skip=True``): for all but the last
    micro-batch of gradient accumulation, which then averages the accumulated sum once."""
    if skip and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def shard_batch(batch, rank: int | None = None, world_size: int | None = None):
    """Keep this process's rows of a global batch: ``t[rank::world_size]`` for every tensor in it.

    ``batch``: a tensor, or a tuple / list / dict / NamedTuple of them (other values pass through). All of
    its tensors need the same first dimension (the batch), divisible by ``world_size``.
    """
    rank = _current_rank() if rank is None else rank
    world_size = _current_world_size() if world_size is None else world_size
    if world_size == 1:
        return batch
    sizes = {t.shape[0] for t in _tensors(batch) if t.dim() > 0}
    if len(sizes) != 1 or next(iter(sizes)) % world_size:
        raise ValueError(f"With {world_size} processes every tensor of a batch should have the batch as its first "
                         f"dimension, one size divisible by {world_size}, but the first dimensions are "
                         f"{sorted(sizes)} in {describe(batch)}. Make get_batch return a global batch of "
                         f"k * {world_size} rows.")
    return _map_tensors(batch, lambda t: t[rank::world_size] if t.dim() > 0 else t)


def sharded_get_batch(get_batch: Callable) -> Callable:
    """``get_batch`` returning only this process's share (``get_batch`` itself in a single process)."""
    if not is_distributed():
        return get_batch
    return lambda split, generator: shard_batch(get_batch(split, generator))


def _tensors(batch) -> list[torch.Tensor]:
    found = []
    _map_tensors(batch, lambda t: found.append(t) or t)
    return found


def _map_tensors(batch, fn):
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):             # a NamedTuple
        return type(batch)(*(_map_tensors(v, fn) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_map_tensors(v, fn) for v in batch)
    return batch


def _reduce_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU ones."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_mean(values: dict[str, float], sums: tuple[str, ...] = ()) -> dict[str, float]:
    """The mean of each number over the processes (the sum for the keys in ``sums``); unchanged in one process.

    Every process must pass the same keys (it is one collective call that all of them join).
    """
    if not is_distributed():
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    n = world_size()
    return {k: (v if k in sums else v / n) for k, v in zip(keys, t.tolist())}


def mean_record(record: dict) -> dict:
    """A training step's record averaged over the processes: losses and metrics are means, ``n_tokens`` the
    total of all processes (so tokens/s counts everyone's tokens), ``seconds`` and ``lr`` stay local."""
    if not is_distributed():
        return record
    local = {k: record[k] for k in ("seconds", "lr") if k in record}
    reduced = all_reduce_mean({k: v for k, v in record.items() if k not in local}, sums=("n_tokens",))
    return {**{k: reduced.get(k, local.get(k)) for k in record}}


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in one process)."""
    if is_distributed():
        dist.barrier()


class DataParallel(training.OneProcess):
    """The loop's hooks for the processes torchrun started: join the group, wrap in DDP, shard every batch,
    average what is logged, let rank 0 alone show progress and write. In one process each is a no-op."""

    @property
    def is_main(self) -> bool:
        return is_main_process()

    def setup(self, device: torch.device) -> torch.device:
        return setup(device)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        return wrap_model(model, device)

    def shard(self, get_batch: Callable) -> Callable:
        return sharded_get_batch(get_batch)

    def no_sync(self, model: nn.Module, skip: bool):
        return no_sync(model, skip)

    def mean_record(self, record: dict) -> dict:
        return mean_record(record)

    def mean(self, metrics: dict) -> dict:
        return all_reduce_mean(metrics)

    def barrier(self) -> None:
        barrier()


def train(model: nn.Module, config: training.TrainConfig, get_batch: Callable, loss_fn: Callable,
          eval_fn: Callable | None = None, callbacks: list[Callable] | None = None) -> training.History:
    """:func:`ptlm_course.training.train` on every process torchrun started, as one data-parallel run.

    ``get_batch`` returns the **global** batch (every tensor's first dimension k * N); ``loss_fn`` must call
    ``model(...)``, which is the DDP wrapper here. Without torchrun: exactly ``training.train``.
    """
    return training.train(model, config, get_batch, loss_fn, eval_fn, callbacks, processes=DataParallel())
