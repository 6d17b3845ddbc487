"""Reading a Hugging Face checkpoint directory (shared by ``gpt.py``, ``bert.py`` and ``bart.py``)."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def read_hf_checkpoint(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``config.json`` (as a dict) and the weights (``model.safetensors`` or ``pytorch_model.bin``) of a directory."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"Expected a checkpoint directory with config.json and model.safetensors "
                                f"(or pytorch_model.bin), but {str(path)!r} is not a directory.")
    contents = sorted(p.name for p in path.iterdir())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"Expected a config.json in {str(path)!r}, but it holds only {contents}.")
    hf_config = json.loads((path / "config.json").read_text())
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file
        state = load_file(path / "model.safetensors")
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"Expected weights in {str(path)!r} as model.safetensors or pytorch_model.bin, "
                                f"but the directory holds only {contents} (sharded checkpoints are not supported).")
    return hf_config, state
