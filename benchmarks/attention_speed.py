"""How fast is the course's readable attention compared with PyTorch's own?

    python benchmarks/attention_speed.py [--device cpu] [--repeats 20]

Times forward + backward of ``ptlm_course.attention.scaled_dot_product_attention`` against
``torch.nn.functional.scaled_dot_product_attention`` and of our ``MultiHeadAttention`` against
``torch.nn.MultiheadAttention``, all in one run on one device, and prints the ratios (ours / torch;
1.00 = as fast, 2.00 = twice as slow). Ratios measured in one run are what to compare across machines.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ptlm_course import get_device, seed_everything
from ptlm_course.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention


def median_time(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after two warm-up runs."""
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(fn, *inputs):
    def run():
        for x in inputs:
            x.grad = None
        out = fn(*inputs)
        (out[0] if isinstance(out, tuple) else out).sum().backward()
    return run


def bench_function(B, H, T, d, device, repeats):
    q, k, v = (torch.randn(B, H, T, d, device=device, requires_grad=True) for _ in range(3))
    mask = causal_mask(T, device)
    ours = median_time(forward_backward(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=mask), q, k, v),
                       repeats, device)
    theirs = median_time(forward_backward(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                          q, k, v), repeats, device)
    return ours, theirs


def bench_module(B, T, C, H, device, repeats):
    ours_module = MultiHeadAttention(C, H).to(device)
    torch_module = torch.nn.MultiheadAttention(C, H, batch_first=True).to(device)
    x = torch.randn(B, T, C, device=device, requires_grad=True)
    ours = median_time(forward_backward(lambda x: ours_module(x, causal=True), x), repeats, device)
    torch_mask = ~causal_mask(T, device)                  # torch: True = not allowed
    theirs = median_time(forward_backward(lambda x: torch_module(x, x, x, attn_mask=torch_mask), x), repeats, device)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = get_device(args.device)
    seed_everything(0)
    print(f"device: {device}, torch {torch.__version__}, threads: {torch.get_num_threads()}, repeats: {args.repeats}")
    print(f"{'case':44s} {'ours ms':>9s} {'torch ms':>9s} {'ours/torch':>11s}")
    for B, H, T, d in [(8, 4, 64, 32), (8, 8, 128, 32), (4, 8, 256, 64)]:
        ours, theirs = bench_function(B, H, T, d, device, args.repeats)
        print(f"{f'sdpa causal B={B} H={H} T={T} d={d}':44s} {ours*1e3:9.2f} {theirs*1e3:9.2f} {ours/theirs:11.2f}")
    for B, T, C, H in [(8, 64, 128, 4), (8, 128, 256, 8)]:
        ours, theirs = bench_module(B, T, C, H, device, args.repeats)
        label = f"multi-head causal B={B} T={T} C={C} H={H}"
        print(f"{label:44s} {ours*1e3:9.2f} {theirs*1e3:9.2f} {ours/theirs:11.2f}")


if __name__ == "__main__":
    main()
