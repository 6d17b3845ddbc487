"""benchmarks/nanogpt_speed.py runs, and its reference is a like-for-like GPT (a smoke test; no timing asserted)."""
import importlib.util
from pathlib import Path

import torch

from ptlm_course.attention import MultiHeadAttention

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "nanogpt_speed.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("nanogpt_speed", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_matches_our_gpt_in_size_and_trains():
    bench = load_benchmark()
    models = bench.build_models()
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    assert len(set(counts.values())) == 1, counts                 # same parameters: one fused q/k/v = three
    assert all(models[name].state_dict().keys() == models["notebooks"].state_dict().keys() for name in bench.ARMS)
    fused = {name: {m.fused for m in models[name].modules() if isinstance(m, MultiHeadAttention)}
             for name in bench.ARMS}
    assert fused == {name: {name != "readable"} for name in bench.ARMS}             # as training.train runs it
    approximations = {name: {m.approximate for m in models[name].modules() if isinstance(m, torch.nn.GELU)}
                      for name in ("reference", *bench.ARMS)}
    assert approximations == {"reference": {"none"}, "notebooks": {"none"}, "readable": {"none"},
                              "same_adamw": {"none"}, "gpt2_gelu": {"tanh"}}     # the notebooks' GELU = nanoGPT's
    optimizers = bench.make_optimizers(models, lr=3e-3)
    fused_adamw = {name: o.defaults["fused"] for name, o in optimizers.items()}
    assert fused_adamw == {"reference": False, "same_adamw": False, "readable": False, "notebooks": True,
                           "gpt2_gelu": True}                                    # on the CPU
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randint(65, (2, 2, 64), generator=generator)
    losses = []
    for name, model in models.items():
        optimizer = optimizers[name]
        first = model(x, y)[1].item()
        for _ in range(5):
            bench.train_step(model, optimizer, x, y)
        losses.append((name, first, model(x, y)[1].item()))
    chance = torch.log(torch.tensor(65.0)).item()                 # loss of a uniform guess
    assert all(abs(first - chance) < 0.2 and last < first - 0.1 for _, first, last in losses), losses


def test_main_reports_both_ratios(capsys):
    ratios = load_benchmark().main(["--repeats", "2", "--warmup", "1"])
    assert set(ratios) == {"notebooks", "readable", "same_adamw", "gpt2_gelu"} and all(r > 0 for r in ratios.values())
    assert "reference / ours" in capsys.readouterr().out
