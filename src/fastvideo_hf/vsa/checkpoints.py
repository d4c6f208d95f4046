"""VSA gate weights on disk: our key names, FastVideo's, reloading them and the ``vsa_config.json`` beside them.

diffusers' video transformers have no gate, so ``enable_vsa`` hangs one on each self-attention and a finetune
saved with ``save_pretrained`` holds ``blocks.{i}.attn1.to_gate_compress.{weight,bias}``. FastVideo's own Wan DiT
keeps the gate on the block (its VSA block's ``to_gate_compress`` in fastvideo/models/dits/wanvideo.py),
and no entry of its diffusers-name mapping covers it, so its diffusers-format checkpoints (the published
FastWan / Wan-VSA models) hold ``blocks.{i}.to_gate_compress.{weight,bias}``. ``from_pretrained`` drops either
naming as unexpected keys; ``load_vsa_gates`` reads both and ``rename_gate_keys`` converts between them.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch

from .processor import GATE_MODULE, vsa_context

logger = logging.getLogger(__name__)

# naming -> key of block i's gate parameter (weight or bias)
GATE_KEY_FORMATS = {
    "fastvideo-hf": "blocks.{block}.attn1." + GATE_MODULE + ".{param}",
    "fastvideo": "blocks.{block}." + GATE_MODULE + ".{param}",
}
_GATE_KEY = re.compile(r"^blocks\.(?P<block>\d+)\.(?P<attn1>attn1\.)?" + GATE_MODULE + r"\.(?P<param>weight|bias)$")
VSA_CONFIG_NAME = "vsa_config.json"


def gate_key_naming(key: str) -> str | None:
    """``"fastvideo-hf"`` or ``"fastvideo"`` for a gate parameter's key, None for any other key."""
    match = _GATE_KEY.match(key)
    if match is None:
        return None
    return "fastvideo-hf" if match["attn1"] else "fastvideo"


def rename_gate_keys(state_dict: dict[str, torch.Tensor], naming: str) -> dict[str, torch.Tensor]:
    """``state_dict`` with every gate key (either naming) written in ``naming``; other keys are kept as they are."""
    if naming not in GATE_KEY_FORMATS:
        raise ValueError(f"unknown VSA gate naming {naming!r}; choose from {sorted(GATE_KEY_FORMATS)}")
    renamed = {}
    for key, value in state_dict.items():
        match = _GATE_KEY.match(key)
        new_key = GATE_KEY_FORMATS[naming].format(block=match["block"], param=match["param"]) if match else key
        if new_key in renamed:
            raise ValueError(f"{key} and another key both name the VSA gate {new_key}")
        renamed[new_key] = value
    return renamed


def _safetensors_files(folder: str | Path) -> list[Path]:
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {folder}")
    return files


def read_gate_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """The gate tensors (either naming) of ``folder/*.safetensors``, read without loading the other weights."""
    from safetensors import safe_open

    gates = {}
    for path in _safetensors_files(folder):
        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():
                if gate_key_naming(key):
                    gates[key] = handle.get_tensor(key)
    return gates


def vsa_gate_naming(folder: str | Path) -> str | None:
    """Which naming the gate keys in ``folder`` use (``"fastvideo-hf"``, ``"fastvideo"``, or both joined by a
    comma), None when it has none; reads only the key names, not the 14B model's tensors."""
    from safetensors import safe_open

    namings = set()
    for path in _safetensors_files(folder):
        with safe_open(path, framework="pt") as handle:
            namings.update(gate_key_naming(key) for key in handle.keys())
    return ", ".join(sorted(namings - {None})) or None


def _expected_keys_text(num_blocks: int) -> str:
    last = f"i = 0..{num_blocks - 1}"
    ours, theirs = (GATE_KEY_FORMATS[name].format(block="{i}", param="weight") for name in GATE_KEY_FORMATS)
    return f"{ours} / .bias (fastvideo-hf names) or {theirs} / .bias (FastVideo names), {last}"


def load_vsa_gates(transformer, folder: str | Path) -> int:
    """Load the VSA gate weights saved in ``folder`` (``*.safetensors``) into a VSA transformer; returns how many.

    Accepts our names and FastVideo's (one naming per folder) and logs which it found. ``from_pretrained`` drops
    the gates as unexpected keys, so a VSA finetune or a FastVideo VSA model folder is loaded as::

        transformer = <the model's transformer class>.from_pretrained(FOLDER, subfolder="transformer")
        enable_vsa(transformer, sparsity=0.9); load_vsa_gates(transformer, f"{FOLDER}/transformer")
    """
    if vsa_context(transformer) is None:
        raise ValueError("call enable_vsa(transformer) before load_vsa_gates")
    found = read_gate_tensors(folder)
    if not found:
        raise ValueError(
            f"{folder} holds no VSA gate weights; expected {_expected_keys_text(len(transformer.blocks))}"
        )
    namings = sorted({gate_key_naming(key) for key in found})
    if len(namings) > 1:
        raise ValueError(f"{folder} holds VSA gate weights under both namings ({', '.join(namings)}); keep one")
    gates = rename_gate_keys(found, "fastvideo-hf")
    expected = {name for name, _ in transformer.named_parameters() if gate_key_naming(name)}
    if set(gates) != expected:
        missing = sorted(expected - set(gates), key=_block_order)
        extra = sorted(set(gates) - expected, key=_block_order)
        raise ValueError(
            f"{folder} holds {len(gates)} VSA gate tensors ({namings[0]} names), the transformer has "
            f"{len(expected)}: missing {_names(missing, namings[0])}, not in the transformer "
            f"{_names(extra, namings[0])}; expected {_expected_keys_text(len(transformer.blocks))}"
        )
    transformer.load_state_dict(gates, strict=False)
    logger.info("loaded %d VSA gate tensors with %s names from %s", len(gates), namings[0], folder)
    return len(gates)


def _block_order(key: str) -> tuple[int, str]:
    match = _GATE_KEY.match(key)
    return int(match["block"]), match["param"]


def _names(keys: list[str], naming: str, limit: int = 4) -> str:
    """Keys as the file names them, the first few only: a 40-block model would list 80."""
    if not keys:
        return "none"
    shown = list(rename_gate_keys(dict.fromkeys(keys[:limit]), naming))
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def read_vsa_config(folder: str | Path) -> dict | None:
    """``folder/vsa_config.json`` (written by training beside the weights), or None when there is none."""
    path = Path(folder) / VSA_CONFIG_NAME
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    sparsity = config.get("sparsity")
    if not isinstance(sparsity, int | float) or not 0 <= sparsity < 1:
        raise ValueError(f"{path}: 'sparsity' must be a number in [0, 1), got {sparsity!r}")
    return config
