"""Read every tensor of a folder written by ``save_pretrained`` (one file or shards), by the file names."""

from __future__ import annotations

from pathlib import Path

import torch


def read_safetensors_folder(folder: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of ``folder/*.safetensors``; unlike ``from_pretrained`` this keeps keys the class lacks
    (the VSA gates), which is what an exact resume needs."""
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {folder}")
    state_dict: dict[str, torch.Tensor] = {}
    for path in files:
        state_dict.update(load_file(path))
    return state_dict
