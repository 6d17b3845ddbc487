"""check_gpt_forward and check_gpt_step (exercise 06): correct answers pass, classic mistakes are named."""
import pytest
import torch

from ptlm_course.checks import CheckFailed
from ptlm_course.checks.gpt import check_gpt_forward, check_gpt_step


def step(kind="ok"):
    def gpt_step(model, input_ids, kv_cache):
        T = input_ids.shape[1]
        past = {"from_zero": 0, "len": len(kv_cache)}.get(kind, kv_cache[0].length)
        x = model.wte(input_ids) + model.wpe(torch.arange(past, past + T))
        caches = [None] * len(kv_cache) if kind == "no_cache" else kv_cache
        for block, cache in zip(model.blocks, caches):
            x = block(x, kv_cache=cache)
        logits = model.lm_head(model.ln_f(x))
        return logits.softmax(-1) if kind == "softmax" else logits
    return gpt_step


def test_gpt_step_check_accepts_a_correct_step(capsys):
    check_gpt_step(step())
    assert "✅ check_gpt_step" in capsys.readouterr().out


@pytest.mark.parametrize("kind, message", [
    ("from_zero", "positions 0, 1"),
    ("len", "len\\(kv_cache\\), the number of blocks"),
    ("no_cache", "should hold 5 positions"),
    ("softmax", "probabilities"),
])
def test_gpt_step_check_names_mistakes(kind, message):
    with pytest.raises(CheckFailed, match=message):
        check_gpt_step(step(kind))


def test_gpt_step_check_refuses_the_models_own_forward():
    with pytest.raises(CheckFailed, match="called model"):
        check_gpt_step(lambda model, input_ids, kv_cache: model(input_ids, kv_cache=kv_cache)[0])


def test_gpt_step_check_reports_unwritten_code():
    def gpt_step(model, input_ids, kv_cache):
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not written yet"):
        check_gpt_step(gpt_step)


def test_gpt_forward_check_still_accepts_the_forward_pass(capsys):
    def gpt_logits(model, input_ids):
        x = model.wte(input_ids) + model.wpe(torch.arange(input_ids.shape[1]))
        for block in model.blocks:
            x = block(x)
        return model.lm_head(model.ln_f(x))
    check_gpt_forward(gpt_logits)
    assert "✅ check_gpt_forward" in capsys.readouterr().out
