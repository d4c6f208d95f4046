"""Write a trained LoRA in the two formats people load.

Training adds a PEFT adapter to a diffusers transformer, so the adapter's keys use diffusers module names
(``blocks.0.attn1.to_q``). Two files are written because no single one serves every user:

* **diffusers format** (``transformer.blocks.0.attn1.to_q.lora_A.weight``, with the adapter's ``LoraConfig`` in
  the safetensors header under ``lora_adapter_metadata``). The family pipeline's ``load_lora_weights`` rebuilds the
  exact config from that header, so ``lora_alpha != r``, ``rank_pattern`` and ``alpha_pattern`` survive.
* **ComfyUI / original format** (``diffusion_model.blocks.0.self_attn.q.lora_A.weight`` for Wan, plus a per-module
  ``.alpha``). ComfyUI keys LoRAs by the original checkpoint's module names, which the family maps
  (``ModelFamily.original_lora_key``); a diffusers-format LoRA silently does nothing there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..library_internals import lora_pattern_key

if TYPE_CHECKING:
    from peft import LoraConfig

    from ..models.family import ModelFamily

VSA_GATE_MODULE = "to_gate_compress"
_LORA_WEIGHT_SUFFIXES = (".lora_A.weight", ".lora_B.weight")


def _lora_scale(lora_config: LoraConfig, module_name: str, rank: int) -> float:
    """PEFT's factor on ``lora_B @ lora_A`` in this module; ``alpha_pattern`` is matched the way PEFT matches it."""
    alpha_key = lora_pattern_key(list(lora_config.alpha_pattern.keys()), module_name)
    alpha = lora_config.alpha_pattern.get(alpha_key, lora_config.lora_alpha)
    return alpha / math.sqrt(rank) if lora_config.use_rslora else alpha / rank


def comfy_state_dict(
    peft_state_dict: dict[str, torch.Tensor], lora_config: LoraConfig, family: ModelFamily
) -> dict[str, torch.Tensor]:
    """Convert ``get_peft_model_state_dict`` output to the ComfyUI / original keys of ``family``.

    Modules that carry an alpha in that format get their ``lora_A`` / ``lora_B`` as trained plus an ``.alpha``
    (0-dim float32) chosen so that ``alpha / rank`` is PEFT's scale for that module (this covers ``alpha_pattern``
    and rsLoRA). The others (for Wan, the modules outside the blocks: diffusers' converter reads alpha only for
    block modules and rejects a leftover alpha key) get their scale folded into ``lora_B`` instead; ComfyUI uses
    scale 1 without an alpha, so both loaders see the same weights. Anything but ``lora_A`` / ``lora_B`` weights
    (DoRA magnitudes, LoRA biases) raises ``ValueError`` rather than being dropped, except the VSA gate
    (``to_gate_compress``), which has no place in an original model and is left to the diffusers file. The tensors
    are copies: diffusers' converter scales some of them in place, which must not reach the trained model's parameters.
    """
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in peft_state_dict.items():
        if not key.endswith(_LORA_WEIGHT_SUFFIXES):
            raise ValueError(
                f"{key!r} is not a lora_A/lora_B weight; the ComfyUI format has no place for it "
                f"(DoRA, lora_bias and trainable non-LoRA modules are not supported)."
            )
        module_name, matrix, _ = key.rsplit(".", 2)
        modules.setdefault(module_name, {})[matrix] = tensor

    converted = {}
    for module_name, matrices in sorted(modules.items()):
        if module_name.endswith(f".{VSA_GATE_MODULE}"):
            continue  # VSA's gate exists only in fastvideo-hf's VSA attention, which ComfyUI does not run
        if set(matrices) != {"lora_A", "lora_B"}:
            raise ValueError(f"LoRA module {module_name!r} has {sorted(matrices)} but needs both lora_A and lora_B.")
        original_name, takes_alpha = family.original_lora_key(module_name)
        original = family.comfy_key_prefix + original_name
        down, up = (matrices[matrix].detach().clone() for matrix in ("lora_A", "lora_B"))
        rank = down.shape[0]
        scale = _lora_scale(lora_config, module_name, rank)
        converted[f"{original}.lora_A.weight"] = down
        if takes_alpha:
            converted[f"{original}.lora_B.weight"] = up
            converted[f"{original}.alpha"] = torch.tensor(scale * rank, dtype=torch.float32)
        else:
            converted[f"{original}.lora_B.weight"] = up * scale
    return converted


def _json_ready_config(lora_config: LoraConfig) -> dict:
    """``LoraConfig.to_dict()`` with sets as sorted lists, so the JSON header is valid and the same on every run."""
    return {key: sorted(value) if isinstance(value, set) else value for key, value in lora_config.to_dict().items()}


def save_lora(
    output_dir: str | Path,
    transformer: torch.nn.Module,
    family: ModelFamily,
    adapter_name: str = "default",
    weight_name: str = "pytorch_lora_weights.safetensors",
    comfy_weight_name: str = "pytorch_lora_weights_comfy.safetensors",
    lora_key_prefix: str = "transformer",
) -> tuple[Path, Path]:
    """Write ``adapter_name`` of a PEFT-adapted transformer of ``family`` in diffusers and ComfyUI format; returns
    both paths.

    Call it on the main process with the unwrapped transformer. ``lora_key_prefix`` is the diffusers key prefix:
    the pipeline's ``load_lora_weights`` reads ``"transformer"`` (also for Wan2.2's second expert, with
    ``load_into_transformer_2=True``); another prefix is read with ``transformer.load_lora_adapter(dir, prefix=...)``.
    """
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    peft_config = getattr(transformer, "peft_config", {})
    if adapter_name not in peft_config:
        raise ValueError(f"The transformer has no LoRA adapter {adapter_name!r} (it has {sorted(peft_config)}).")
    lora_config = peft_config[adapter_name]
    state_dict = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    comfy = comfy_state_dict(state_dict, lora_config, family)

    output_dir = Path(output_dir)
    # What the pipeline's save_lora_weights does, with the prefix left to the caller instead of fixed to "transformer".
    family.pipeline_class("t2v").write_lora_layers(
        state_dict={f"{lora_key_prefix}.{key}": value for key, value in state_dict.items()},
        save_directory=str(output_dir),
        is_main_process=True,
        weight_name=weight_name,
        save_function=None,
        safe_serialization=True,
        lora_adapter_metadata={
            f"{lora_key_prefix}.{key}": value for key, value in _json_ready_config(lora_config).items()
        },
    )
    comfy_path = output_dir / comfy_weight_name
    header = {
        "format": "pt",
        "base_model_format": family.comfy_base_model_format,
        "lora_key_format": "comfyui",
        "lora_rank": str(lora_config.r),
        "lora_alpha": str(lora_config.lora_alpha),
        "rank_pattern": json.dumps(lora_config.rank_pattern, sort_keys=True),
        "alpha_pattern": json.dumps(lora_config.alpha_pattern, sort_keys=True),
    }
    save_file({key: value.contiguous() for key, value in comfy.items()}, comfy_path, metadata=header)
    return output_dir / weight_name, comfy_path
