"""Checks for exercises/15_training_fast.ipynb: the FLOPs of a checkpointed step, and a memory experiment."""
from __future__ import annotations

import torch

from ..flops import token_matmul_weights, training_flops_per_token
from ..gpt import GPT, GPTConfig
from ..speed import disable_activation_checkpointing, enable_activation_checkpointing, peak_memory
from ..validation import is_number
from ._core import CheckFailed, call_student, passed
from ._experiments import expect_conclusion, run_experiment

__all__ = ["check_checkpointed_flops", "memory_experiment_setup", "measure_peak", "check_memory_experiment"]


def _gpt(n_layers: int, d_model: int, vocab: int = 50) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=64, n_layers=n_layers, n_heads=2, d_model=d_model, dropout=0.0))


def check_checkpointed_flops(fn) -> None:
    """Check ``fn(model, T) -> int``: FLOPs per token of a training step with activation checkpointing,
    8 N_mm + 16 L T C (the forward pass runs twice)."""
    check = "check_checkpointed_flops"
    cases = [(2, 32, 16), (3, 64, 64), (1, 16, 8)]                      # (n_layers, d_model, T)
    for L, C, T in cases:
        model = _gpt(L, C)
        got = call_student(check, fn, model, T)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not is_number(got):
            raise CheckFailed(check, f"the FLOPs should be one number, but it is {type(got).__name__}.")
        N = token_matmul_weights(model)
        all_params = sum(p.numel() for p in model.parameters())
        attention = L * T * C
        want = 8 * N + 16 * attention
        where = f" (test: GPT with L={L} blocks, C={C}, T={T}; N_mm = {N:,})"
        if abs(got - want) <= 1e-9 * want + 0.5:
            continue
        mistakes = [
            (6 * N + 12 * attention, "this is a step without checkpointing (6 N_mm + 12 L T C): checkpointing runs "
                                     "each block's forward pass a second time during backward, which adds 2 N_mm + "
                                     "4 L T C."),
            (8 * N + 12 * attention, "the attention term was not recomputed: the second forward pass also redoes "
                                     "q kᵀ and weights @ v, so it is 16 L T C, not 12 L T C."),
            (8 * N, "the attention term 16 L T C is missing (q kᵀ and weights @ v hold no weights, but cost FLOPs)."),
            (12 * N + 24 * attention, "you doubled the whole step; only the forward pass (a third of the step) runs "
                                      "twice: 6 N_mm + 12 L T C plus one more forward, 2 N_mm + 4 L T C."),
            (8 * all_params + 16 * attention, "you counted every parameter (model.parameters()); count the weights a "
                                              "token goes through in matmuls, token_matmul_weights(model): the "
                                              "position "
                                              "embedding, biases and LayerNorms do no matmul."),
            (training_flops_per_token(model, T) * 2, "you doubled the whole step; only the forward pass runs twice."),
        ]
        for value, message in mistakes:
            if abs(got - value) <= 1e-9 * abs(value) + 0.5:
                raise CheckFailed(check, message + where)
        raise CheckFailed(check, f"the FLOPs per token are {got:,.0f}, but they should be {want:,}" + where + ".")
    passed(check, len(cases))


def memory_experiment_setup():
    """The memory experiment's fixed ingredients: a 4-block GPT and one (x, y) batch of 8 x 64 tokens."""
    model = _gpt(4, 64, vocab=65)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 65, (8, 65), generator=g)
    return model, (ids[:, :-1], ids[:, 1:])


def measure_peak(model, batch, checkpointing: bool) -> int:
    """Peak bytes of tensors alive during one forward + backward, with or without activation checkpointing."""
    (enable_activation_checkpointing if checkpointing else disable_activation_checkpointing)(model)
    model.train()
    model.zero_grad(set_to_none=True)
    peak, _ = peak_memory(lambda: model(*batch)[1].backward())
    disable_activation_checkpointing(model)
    return peak


def check_memory_experiment(experiment) -> None:
    """Check the stated results of the activation-checkpointing memory experiment against a re-run."""
    check = "check_memory_experiment"
    results = run_experiment(check, experiment)            # first: an unwritten one fails fast
    model, batch = memory_experiment_setup()
    without, with_ckpt = measure_peak(model, batch, False), measure_peak(model, batch, True)
    saved = 1 - with_ckpt / without
    expect_conclusion(check, results, {"peak_without": without, "peak_with": with_ckpt, "saved_fraction": saved}, {
        "checkpointing_saves_memory": (with_ckpt < without, "the peak with checkpointing is lower: each block keeps "
                                       "only its input for backward."),
        "saves_more_than_half": (saved > 0.5, f"the measured saving is {saved:.0%}."),
    }, rel=0.03)
    passed(check, 5)
