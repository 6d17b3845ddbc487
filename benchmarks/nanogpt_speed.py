"""Our GPT against a nanoGPT-style reference: one training step (forward, backward, AdamW), side by side.

    python benchmarks/nanogpt_speed.py [--repeats 100] [--warmup 5] [--threads 1] [--device cpu] [--no-bias]

The setting is nanoGPT's CPU recipe for Shakespeare characters: 4 layers, 4 heads, 128 wide, context 64,
batch 12, vocabulary 65, no dropout, AdamW. The models train in one process, in turns (one step each per
round, the order reversed every round, the same batch for all), and the median step time of each is kept:

    reference   the GPT nanoGPT's model.py describes, written for this file: pre-LN blocks, one Linear that
                makes q, k and v at once, PyTorch's F.scaled_dot_product_attention with is_causal=True, a
                4x GELU MLP, the output head tied to the token embedding; AdamW as its configure_optimizers
                makes it (decay on the weight matrices only, PyTorch's fused kernel on CUDA only)
    notebooks   ptlm_course.gpt.GPT as the notebooks build and pretrain it (notebooks 06, 08, 11, 16 and
                the course GPT): GPTConfig's defaults (the exact GELU, as nanoGPT's) on train's fast path,
                TrainConfig(fused_attention=True, fused_adamw=True): PyTorch's attention kernel and
                make_optimizer's AdamW with PyTorch's fused kernel, also on the CPU
    readable    the same model on train's default path, which the lessons' own loops and the BERT notebooks
                use: the readable attention of the lessons (it builds the (B, H, T, T) weights) and plain
                AdamW on the CPU (the same results up to float rounding)
    same_adamw  the notebooks' model with the reference's optimizer: the models alone compared
    gpt2_gelu   as notebooks, with GPT-2's tanh approximation of GELU (GPTConfig(activation="gelu_tanh"),
                what GPT.from_pretrained loads GPT-2's checkpoints with): what the activation costs

It prints each median step time and, for each of ours, the median over the rounds of reference step / our
step (both from the same round): above 1.0 our step is faster. All the models have the
same parameter count; biases are on in all (as in GPTConfig; ``--no-bias`` drops them, as nanoGPT's train.py
does by default).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ptlm_course.attention import use_fused_attention
from ptlm_course.gpt import GPT, GPTConfig
from ptlm_course.training import make_optimizer

RECIPE = dict(n_layers=4, n_heads=4, d_model=128, block_size=64, batch_size=12, vocab_size=65)


# --------------------------------------------------------------------------------------------------
# The reference: a compact GPT in nanoGPT's style
# --------------------------------------------------------------------------------------------------

class RefAttention(nn.Module):
    """Causal self-attention with one (C -> 3C) projection for q, k and v and PyTorch's SDPA kernel."""

    def __init__(self, d_model: int, n_heads: int, bias: bool):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                                 # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)           # (B, H, T, d)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))        # (B, T, C)


class RefBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, bias: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, bias=bias)
        self.attn = RefAttention(d_model, n_heads, bias)
        self.ln2 = nn.LayerNorm(d_model, bias=bias)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model, bias=bias), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))                                        # (B, T, C)
        return x + self.mlp(self.ln2(x))                                      # (B, T, C)


class RefGPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layers: int, n_heads: int, d_model: int, bias: bool):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList(RefBlock(d_model, n_heads, bias) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model, bias=bias)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.wte.weight                                    # tied
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))      # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))                                      # (B, T, V)
        return logits, F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------

def build_models(bias: bool = True, device: str = "cpu") -> dict[str, nn.Module]:
    r = RECIPE
    torch.manual_seed(0)
    reference = RefGPT(r["vocab_size"], r["block_size"], r["n_layers"], r["n_heads"], r["d_model"], bias)
    config = GPTConfig(vocab_size=r["vocab_size"], block_size=r["block_size"], n_layers=r["n_layers"],
                       n_heads=r["n_heads"], d_model=r["d_model"], dropout=0.0, bias=bias)
    tanh_config = GPTConfig(**{**vars(config), "activation": "gelu_tanh"})
    ours = {name: GPT(tanh_config if name == "gpt2_gelu" else config) for name in ARMS}
    for name, model in ours.items():
        model.load_state_dict(ours["notebooks"].state_dict())
        use_fused_attention(model, fused=name != "readable")                # as training.train does
    return {name: m.to(device).train() for name, m in (("reference", reference), *ours.items())}


ARMS = ("notebooks", "readable", "same_adamw", "gpt2_gelu")


def nanogpt_adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW as nanoGPT's configure_optimizers builds it: decay on tensors of 2+ dims, fused on CUDA only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), fused=params[0].is_cuda)


def make_optimizers(models: dict[str, nn.Module], lr: float = 1e-3, weight_decay: float = 0.1) -> dict:
    """The reference and same_adamw get nanoGPT's AdamW; the others the course's (training.make_optimizer),
    fused except on the readable arm, as TrainConfig(fused_adamw=True) makes it."""
    return {name: nanogpt_adamw(m, lr, weight_decay) if name in ("reference", "same_adamw")
            else make_optimizer(m, lr, weight_decay, betas=(0.9, 0.99), fused=True if name != "readable" else None)
            for name, m in models.items()}


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One full training step; returns its wall-clock seconds."""
    if x.is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(repeats: int = 100, warmup: int = 5, bias: bool = True,
            device: str = "cpu") -> tuple[dict[str, float], dict[str, float]]:
    """The median seconds per training step of each model, the models taking turns every step; and for each of
    ours the median over the rounds of reference step / our step in the same round (load that comes and goes
    on a shared machine slows both steps of a round alike, so the ratio of a round is steadier)."""
    models = build_models(bias, device)
    optimizers = make_optimizers(models)
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in models}
    r = RECIPE
    for step in range(warmup + repeats):
        xy = torch.randint(r["vocab_size"], (r["batch_size"], r["block_size"] + 1), generator=generator).to(device)
        x, y = xy[:, :-1].contiguous(), xy[:, 1:].contiguous()                # (B, T) each
        order = list(models) if step % 2 == 0 else list(reversed(models))     # no model always goes first
        for name in order:
            seconds = train_step(models[name], optimizers[name], x, y)
            if step >= warmup:
                times[name].append(seconds)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {name: statistics.median(r / o for r, o in zip(times["reference"], t))
              for name, t in times.items() if name != "reference"}
    return medians, ratios


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (1 is steadiest)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-bias", dest="bias", action="store_false")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    medians, ratios = measure(args.repeats, args.warmup, args.bias, args.device)
    r = RECIPE
    print(f"nanoGPT CPU recipe: L={r['n_layers']} H={r['n_heads']} C={r['d_model']} T={r['block_size']} "
          f"B={r['batch_size']} V={r['vocab_size']}, bias={args.bias}, {args.device}, {args.threads} thread(s), "
          f"torch {torch.__version__}; {args.repeats} rounds")
    print(f"  {'model':12s} {'median step':>12s}   reference / ours: median of the rounds' ratios")
    for name, seconds in medians.items():
        ratio = f"{ratios[name]:.3f}x" if name in ratios else "-"
        print(f"  {name:12s} {seconds * 1e3:9.2f} ms   {ratio}")
    return ratios


if __name__ == "__main__":
    main()
