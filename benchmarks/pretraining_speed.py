"""How fast do our GPT and BERT pre-train, as tokens/s and model FLOPs utilisation (MFU)?

    python benchmarks/pretraining_speed.py [--device cpu] [--steps 40] [--model gpt|bert|both]
                                           [--variants readable,fast] [--threads N] [--data random|shakespeare]
                                           [--precision fp32|bf16|fp16] [--compile] [--preset gpt2-small]

On a CUDA GPU, GPT-2 small (124M parameters, T = 1024) in bf16, the course's target being >= 40% MFU:

    python benchmarks/pretraining_speed.py --device cuda --preset gpt2-small --precision bf16 --model gpt \
                                           --variants fast [--compile]

Trains ``ptlm_course.gpt.GPT`` (next-token loss) and ``ptlm_course.bert.BertForPreTraining`` (MLM + NSP loss)
with AdamW for ``--steps`` timed steps (after ``--warmup`` untimed ones; the runs take turns, one step each)
on random token batches (or, for GPT, real Shakespeare character ids) and reports the median step's tokens/s and

    MFU = achieved training FLOP/s / dense fp32 matmul FLOP/s measured in the same run on the same device.

FLOPs per token (the PaLM convention, with the output layer counted as the matmul it is; counted by
``ptlm_course.flops.training_flops_per_token``):

    6 * N_mm + 12 * L * T * C
    N_mm = weights of every nn.Linear applied to each token: the blocks' q, k, v, out, fc1, fc2
           (12 L C^2 with d_ff = 4C), the output layer V*C (tied to the embedding, still a matmul) and,
           for BERT, the MLM head's C*C transform; the pooler / NSP head (once per sequence) are left out.
    12 L T C = the attention's q k^T and weights @ v (2 * 2 T C per token and layer, x3 for forward +
           backward), counted over the full T x T even for a causal model, as PaLM does.
Biases, LayerNorms, GELU, softmax, embeddings lookups and the optimizer count as zero FLOPs: the time they
take is what lowers the MFU.

The matmul reference is a square fp32 matmul whose size is the geometric mean of the model's token-matmul
shape (B*T x C x 4C; 384 for the default GPT). It is timed in turns with the training steps (each round:
one step of every run, then 10 reference matmuls), so both see the same load from other processes, and
its median rate is the MFU's denominator. A large 2048^3 matmul, timed before and after (the higher is
kept), gives a second column: the best this device does on big matrices.

Variants: ``readable`` = the course's code as the notebooks use it (our readable attention, default AdamW);
``fast`` = the same model with ``use_fused_attention`` (PyTorch's fused attention kernel) and
``AdamW(fused=True)`` where the device supports it. Both compute the same losses and gradients
(tests/test_fused_attention.py). ``--compile`` adds ``torch.compile`` to the fast variant.

``--precision bf16`` / ``fp16`` runs forward and loss under autocast (fp16 with a GradScaler, CUDA only); the
reference matmuls then use that dtype too, so the MFU compares like with like. ``--preset gpt2-small`` sets
L = 12, H = 12, C = 768, T = 1024, V = 50257 (BERT: 30522) and B = 8.

On a CPU shared with other jobs, ``--threads 1`` gives the steadiest figures: with every core in use, a step
made of many small parallel operations waits for the busiest core each time, a big matmul much less so.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import time

import torch
import torch.nn as nn

from ptlm_course import get_device, seed_everything
from ptlm_course.attention import use_fused_attention
from ptlm_course.flops import token_matmul_weights, training_flops_per_token
from ptlm_course.bert import BertConfig, BertForPreTraining
from ptlm_course.gpt import GPT, GPTConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn, repeats: int, warmup: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def square_matmuls(n: int, device: torch.device, count: int = 1, dtype: torch.dtype = torch.float32):
    """A function doing ``count`` dense (n x n) @ (n x n) matmuls in ``dtype``, and their FLOPs (2 n^3 each)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def run():
        for _ in range(count):
            torch.mm(a, b, out=out)
    return run, 2 * n**3 * count


def matmul_flops_per_second(n: int, device: torch.device, repeats: int = 30,
                            dtype: torch.dtype = torch.float32) -> float:
    run, flops = square_matmuls(n, device, dtype=dtype)
    return flops / median_seconds(run, repeats, warmup=5, device=device)


# --------------------------------------------------------------------------------------------------
# The two models and their batches
# --------------------------------------------------------------------------------------------------

def shakespeare_ids() -> tuple[torch.Tensor, int]:
    """The Shakespeare corpus as character ids (the course's LM data) and the vocabulary size."""
    from ptlm_course.char_tokenizer import CharTokenizer
    from ptlm_course.data import shakespeare_text
    text = shakespeare_text()
    tokenizer = CharTokenizer.from_text(text)
    return torch.tensor(tokenizer.encode(text)), tokenizer.vocab_size


def gpt_case(args, device):
    """A GPT and a function giving (inputs, targets) batches of shape (B, T)."""
    B, T = args.batch_size, args.block_size
    if args.data == "shakespeare":
        ids, vocab_size = shakespeare_ids()
    else:
        ids, vocab_size = None, args.vocab_size
    config = GPTConfig(vocab_size=vocab_size, block_size=T, n_layers=args.n_layers, n_heads=args.n_heads,
                       d_model=args.d_model, dropout=args.dropout)
    model = GPT(config).to(device)
    generator = torch.Generator().manual_seed(0)

    def batch():
        if ids is None:
            x = torch.randint(0, vocab_size, (B, T + 1), generator=generator)
        else:
            starts = torch.randint(0, len(ids) - T - 1, (B,), generator=generator)
            x = torch.stack([ids[s:s + T + 1] for s in starts.tolist()])
        x = x.to(device)
        return (x[:, :-1], x[:, 1:]), {}                     # next-token targets, (B, T) each

    def loss_fn(inputs, _):
        return model(*inputs)[1]
    return model, batch, loss_fn, training_flops_per_token(model, T)


def bert_case(args, device):
    """A BertForPreTraining and a function giving MLM + NSP batches (15% of the positions masked)."""
    B, T = args.batch_size, args.block_size
    config = BertConfig(vocab_size=args.bert_vocab_size, d_model=args.d_model, n_layers=args.n_layers,
                        n_heads=args.n_heads, d_ff=4 * args.d_model, max_position_embeddings=T,
                        dropout=args.dropout, attention_dropout=args.dropout)
    model = BertForPreTraining(config).to(device)
    generator = torch.Generator().manual_seed(0)
    V = args.bert_vocab_size

    def batch():
        ids = torch.randint(5, V, (B, T), generator=generator)
        segments = (torch.arange(T) >= T // 2).long().expand(B, T)
        masked = torch.rand(B, T, generator=generator) < 0.15
        mlm_labels = torch.where(masked, ids, torch.full_like(ids, -100))
        nsp_labels = torch.randint(0, 2, (B,), generator=generator)
        inputs = torch.where(masked, torch.full_like(ids, 4), ids)          # id 4 plays [MASK]
        return (inputs.to(device), segments.to(device)), {"mlm_labels": mlm_labels.to(device),
                                                          "nsp_labels": nsp_labels.to(device)}

    def loss_fn(inputs, labels):
        return model(*inputs, **labels).loss
    return model, batch, loss_fn, training_flops_per_token(model, T)


# --------------------------------------------------------------------------------------------------
# Training and reporting
# --------------------------------------------------------------------------------------------------

def make_optimizer(model: nn.Module, variant: str, device: torch.device) -> torch.optim.Optimizer:
    if variant == "fast":
        try:
            return torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        except RuntimeError:                                     # no fused kernel for this device
            return torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    return torch.optim.AdamW(model.parameters(), lr=1e-3)


def training_step(case, variant: str, args, device):
    """A function doing one training step (forward, backward, AdamW step), and the model's figures."""
    seed_everything(0)
    model, batch, loss_fn, flops = case(args, device)
    if variant == "fast":
        use_fused_attention(model)
    model.train()
    optimizer = make_optimizer(model, variant, device)
    batches = itertools.cycle([batch() for _ in range(8)])     # made before timing: data loading is not timed
    forward = torch.compile(loss_fn) if variant == "fast" and args.compile else loss_fn
    autocast = (torch.autocast(device.type, dtype=DTYPES[args.precision]) if args.precision != "fp32"
                else contextlib.nullcontext())
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")

    def step():
        inputs, labels = next(batches)
        with autocast:
            loss = forward(inputs, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step, {"params": sum(p.numel() for p in model.parameters()), "n_mm": token_matmul_weights(model),
                  "flops_per_token": flops}


def interleaved_step_seconds(steps: list, repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Median seconds per step of each function, timed in turns (one step of each per round), so that a
    burst of load from other processes slows all of them alike instead of one variant."""
    for step in steps:
        for _ in range(warmup):
            step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, t in zip(steps, times):
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--model", choices=["gpt", "bert", "both"], default="both")
    parser.add_argument("--variants", default="readable,fast", help="comma-separated: readable, fast")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per run (median reported)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--data", choices=["random", "shakespeare"], default="random",
                        help="GPT batches: random ids or Shakespeare characters (BERT always random)")
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=64, help="T, tokens per sequence")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--vocab-size", type=int, default=65, help="GPT vocabulary (65 ~ Shakespeare characters)")
    parser.add_argument("--bert-vocab-size", type=int, default=2000)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="reference square matmul size (default: model-sized, see the docstring)")
    parser.add_argument("--big-matmul", type=int, default=None,
                        help="size of the 'best this device does' matmul (default 2048 on CPU, 8192 on CUDA)")
    parser.add_argument("--precision", choices=list(DTYPES), default="fp32",
                        help="fp32, or autocast to bf16 / fp16 (fp16: CUDA only, with a GradScaler)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast variant's forward + loss")
    parser.add_argument("--preset", choices=["gpt2-small"], default=None,
                        help="gpt2-small: L=12 H=12 C=768 T=1024 V=50257 (BERT 30522), B=8")
    args = parser.parse_args()
    if args.preset == "gpt2-small":
        args.n_layers, args.n_heads, args.d_model, args.block_size = 12, 12, 768, 1024
        args.vocab_size, args.bert_vocab_size, args.batch_size = 50257, 30522, 8
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not set(variants) <= {"readable", "fast"}:
        parser.error(f"--variants should list readable and/or fast, but got {args.variants!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    if args.precision == "fp16" and device.type != "cuda":
        parser.error("--precision fp16 needs a CUDA GPU; use bf16 or fp32")
    dtype = DTYPES[args.precision]
    big_n = args.big_matmul or (8192 if device.type == "cuda" else 2048)
    cases = {"gpt": gpt_case, "bert": bert_case}
    names = list(cases) if args.model == "both" else [args.model]

    # Model-sized reference: the geometric mean of the token matmul (B*T) x C x 4C, rounded to 32.
    C, tokens = args.d_model, args.batch_size * args.block_size
    n_ref = args.matmul_size or max(32, 32 * round((tokens * C * 4 * C) ** (1 / 3) / 32))
    print(f"device: {device}, torch {torch.__version__}, threads: {torch.get_num_threads()}, "
          f"steps: {args.steps} (+{args.warmup} warm-up), B={args.batch_size}, T={args.block_size}, "
          f"L={args.n_layers}, H={args.n_heads}, C={C}, dropout={args.dropout}, data: {args.data}, "
          f"precision: {args.precision}{', compiled' if args.compile else ''}")
    big_before = matmul_flops_per_second(big_n, device, repeats=10, dtype=dtype)
    runs = [(name, variant, *training_step(cases[name], variant, args, device))
            for name in names for variant in variants]
    reference_run, reference_flops = square_matmuls(n_ref, device, count=10, dtype=dtype)
    *seconds, reference_seconds = interleaved_step_seconds([run[2] for run in runs] + [reference_run],
                                                           args.steps, args.warmup, device)
    reference = reference_flops / reference_seconds
    big = max(big_before, matmul_flops_per_second(big_n, device, repeats=10, dtype=dtype))
    print(f"{args.precision} matmul {n_ref}^3 (model-sized, timed in turns with the steps): "
          f"{reference / 1e9:.1f} GFLOP/s; {big_n}^3: {big / 1e9:.1f} GFLOP/s")
    tokens = args.batch_size * args.block_size
    results = [(name, variant, {**info, "ms": s * 1e3, "tokens_per_s": tokens / s,
                                "flops_per_s": info["flops_per_token"] * tokens / s})
               for (name, variant, _, info), s in zip(runs, seconds)]
    print("FLOPs per token = 6 * N_mm + 12 * L * T * C (N_mm: weights of the per-token matmuls incl. output layer)")
    header = (f"{'model':6s} {'variant':9s} {'params':>9s} {'N_mm':>9s} {'ms/step':>8s} {'tokens/s':>9s} "
              f"{'GFLOP/s':>8s} {'matmul GFLOP/s':>15s} {'MFU':>6s} {'MFU vs big mm':>14s}")
    print(header)
    print("-" * len(header))
    for name, variant, r in results:
        print(f"{name:6s} {variant:9s} {r['params']:9,d} {r['n_mm']:9,d} {r['ms']:8.1f} {r['tokens_per_s']:9,.0f} "
              f"{r['flops_per_s'] / 1e9:8.1f} {reference / 1e9:15.1f} {r['flops_per_s'] / reference:6.1%} "
              f"{r['flops_per_s'] / big:14.1%}")
        if args.preset == "gpt2-small" and name == "gpt" and device.type == "cuda" and args.precision == "bf16":
            mfu = r["flops_per_s"] / big
            print(f"  target: GPT-2 small in bf16 at >= 40% MFU (vs the {big_n}^3 bf16 matmul): "
                  f"{'met' if mfu >= 0.40 else 'NOT met'} ({mfu:.1%})")


if __name__ == "__main__":
    main()
