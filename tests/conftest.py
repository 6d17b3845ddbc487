"""Fixtures shared by the GPT and generation tests."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import transformers  # noqa: E402

from tiny_gpt2 import TINY_GPT2  # noqa: E402


@pytest.fixture(scope="module")
def hf_model():
    """A small random Hugging Face GPT-2 with a fixed seed, in eval mode."""
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY_GPT2)).eval()
