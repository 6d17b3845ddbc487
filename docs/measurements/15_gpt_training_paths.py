"""Training-step time of a GPT on the old path (readable attention, plain AdamW, GPT-2's tanh GELU) and the new
one (PyTorch's attention kernel, fused AdamW, exact GELU), and the two changes alone, the arms taking turns.

    python docs/measurements/15_gpt_training_paths.py THREADS ROUNDS N_LAYERS D_MODEL BLOCK_SIZE BATCH VOCAB

Used for README's speed section: notebook 06's character GPT (1 60 4 128 64 16 75) and the course GPT
(2 40 2 128 64 32 4000); output in 15_gpt_training_paths.txt.
"""
import statistics
import sys
import time

import torch

from ptlm_course.attention import use_fused_attention
from ptlm_course.gpt import GPT, GPTConfig
from ptlm_course.training import make_optimizer

threads, rounds, L, C, T, B, V = map(int, sys.argv[1:8])
torch.set_num_threads(threads)
arms = {}
for path in ("readable", "fast"):
    for activation in ("gelu_tanh", "gelu"):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layers=L, n_heads=4, d_model=C, dropout=0.0,
                              activation=activation)).train()
        use_fused_attention(model, path == "fast")
        optimizer = make_optimizer(model, 2e-3, 0.01, fused=True if path == "fast" else None)
        arms[path, activation] = (model, optimizer)
generator = torch.Generator().manual_seed(0)
times = {arm: [] for arm in arms}
for step in range(rounds + 5):                                        # 5 warm-up rounds, not kept
    xy = torch.randint(V, (B, T + 1), generator=generator)
    x, y = xy[:, :-1].contiguous(), xy[:, 1:].contiguous()          # (B, T) each
    for arm in (list(arms) if step % 2 else list(reversed(arms))):
        model, optimizer = arms[arm]
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(x, y)[1].backward()
        optimizer.step()
        if step >= 5:
            times[arm].append(time.perf_counter() - started)
old = times["readable", "gelu_tanh"]
print(f"L={L} C={C} T={T} B={B} V={V}, {threads} thread(s), {rounds} rounds, torch {torch.__version__}")
for (path, activation), t in times.items():
    ratio = statistics.median(o / n for o, n in zip(old, t))
    print(f"  {path:9s} {activation:10s} {statistics.median(t) * 1e3:7.2f} ms   old path / this, median of rounds: {ratio:.2f}x")
