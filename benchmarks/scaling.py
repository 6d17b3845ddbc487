"""Data-parallel scaling on the CPU: training tokens/s of the course's loop in 1 process and in N under torchrun.

    python benchmarks/scaling.py [--processes 1,2] [--threads 1] [--steps 30] [--batch-size 16]
                                 [--n-layers 4] [--d-model 128] [--block-size 64]

Trains ``ptlm_course.gpt.GPT`` with ``ptlm_course.distributed.train`` (the shared loop wrapped in gloo
DistributedDataParallel under torchrun) on random character ids, with the same **global** batch in every
run: N processes each take B / N rows. Each process uses ``--threads`` CPU threads, so N processes use
N x threads cores. Reports the median tokens/s of the steps after the first ``--warmup`` (all processes'
tokens, as the loop logs them), the speed-up over 1 process and the scaling efficiency = speed-up / N.
Run it on an otherwise idle machine with at least max(N) x threads cores: on a shared machine the figures
say more about the other jobs than about DDP.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def worker(args) -> None:
    """One process of a run (launched by :func:`run`): train, and rank 0 writes the tokens/s to --out."""
    import torch

    from ptlm_course import distributed
    from ptlm_course.gpt import GPT, GPTConfig
    from ptlm_course.distributed import train
    from ptlm_course.training import TrainConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    V, T, B = 65, args.block_size, args.batch_size
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layers=args.n_layers, n_heads=args.n_heads,
                          d_model=args.d_model, dropout=0.0))
    data = torch.randint(0, V, (4096, T + 1), generator=torch.Generator().manual_seed(1))

    def get_batch(split, generator):                        # the global batch (B, T + 1) -> inputs, targets
        rows = data[torch.randint(0, len(data), (B,), generator=generator)]
        return rows[:, :-1], rows[:, 1:]

    def loss_fn(model, batch):
        inputs, targets = batch
        return model(inputs, targets)[1], {"n_tokens": inputs.numel()}

    config = TrainConfig(steps=args.steps, lr=1e-3, eval_batches=0, progress=False, device="cpu")
    history = train(model, config, get_batch, loss_fn)
    rates = [r["tokens_per_s"] for r in history.train[args.warmup:]]
    if distributed.is_main_process():
        Path(args.out).write_text(json.dumps({"tokens_per_s": statistics.median(rates),
                                              "final_loss": history.train[-1]["loss"],
                                              "processes": distributed.world_size()}))


def run(n: int, args, out: Path) -> dict:
    """Launch a run of ``n`` processes (torchrun for n > 1) and read what rank 0 wrote."""
    forwarded = ["--worker", "--out", str(out), "--threads", str(args.threads), "--steps", str(args.steps),
                 "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--n-layers", str(args.n_layers),
                 "--n-heads", str(args.n_heads), "--d-model", str(args.d_model), "--block-size", str(args.block_size)]
    launcher = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                               f"--nproc_per_node={n}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run([*launcher, __file__, *forwarded], check=True, env=env, timeout=1800)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts, e.g. 1,2")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the median")
    parser.add_argument("--batch-size", type=int, default=16, help="the global batch B (divisible by each N)")
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    counts = [int(n) for n in args.processes.split(",")]
    if any(n < 1 or args.batch_size % n for n in counts):
        parser.error(f"--batch-size {args.batch_size} should be divisible by every process count in {counts}")
    if args.steps <= args.warmup:
        parser.error("--steps should be larger than --warmup")
    print(f"GPT L={args.n_layers} H={args.n_heads} C={args.d_model} T={args.block_size}, global batch "
          f"B={args.batch_size}, {args.threads} thread(s) per process, {args.steps} steps (median after "
          f"{args.warmup}), CPU cores visible: {os.cpu_count()}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for n in counts:
            results[n] = run(n, args, Path(folder) / f"run{n}.json")
    base = results[counts[0]]["tokens_per_s"] / counts[0]       # tokens/s of one process
    print(f"{'processes':>9s} {'tokens/s':>9s} {'speed-up':>9s} {'efficiency':>10s} {'final loss':>10s}")
    for n, r in results.items():
        speedup = r["tokens_per_s"] / base
        print(f"{n:9d} {r['tokens_per_s']:9,.0f} {speedup:8.2f}x {speedup / n:10.0%} {r['final_loss']:10.4f}")


if __name__ == "__main__":
    main()
