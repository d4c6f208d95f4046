"""Accelerate save/load hooks that store the trained model in the form users load, inside each checkpoint.

LoRA checkpoints hold ``pytorch_lora_weights.safetensors`` (+ the ComfyUI file) instead of a pickled copy of the
whole transformer; full-finetune checkpoints hold ``transformer/`` (or ``transformer_2/`` for a two-expert
model's low-noise expert, or both) written by ``save_pretrained``. The final outputs are written by the same
functions. Either can be loaded by diffusers straight from ``checkpoint-N/``. With FSDP or DeepSpeed the hooks
are not installed and Accelerate saves its sharded state itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from accelerate.utils import DistributedType

from ..models import expert_modules

if TYPE_CHECKING:
    from ..models import ModelFamily

logger = logging.getLogger(__name__)

SHARDED_TYPES = (DistributedType.FSDP, DistributedType.DEEPSPEED)


def lora_file_names(slot: str, both_experts: bool) -> tuple[str, str]:
    """(diffusers, ComfyUI) file names of one trained transformer's LoRA.

    A single transformer (any expert) writes the standard names; with ``--expert both`` the low-noise expert's
    files get a ``_transformer_2`` suffix and load with ``load_into_transformer_2=True``.
    """
    suffix = "_transformer_2" if both_experts and slot == "transformer_2" else ""
    return f"pytorch_lora_weights{suffix}.safetensors", f"pytorch_lora_weights{suffix}_comfy.safetensors"


def save_lora_outputs(output_dir, model, slot: str, family: ModelFamily) -> None:
    """Write the LoRA of every trained transformer of ``model`` (unwrapped, of ``family``) to ``output_dir``."""
    from .lora_formats import save_lora

    experts = expert_modules(model, slot)
    for name, expert in experts.items():
        weight_name, comfy_weight_name = lora_file_names(name, len(experts) > 1)
        save_lora(output_dir, expert, family, weight_name=weight_name, comfy_weight_name=comfy_weight_name)


def save_full_outputs(output_dir, model, slot: str, state_dict: dict | None = None) -> None:
    """``save_pretrained`` of every trained transformer of ``model`` into ``output_dir/<slot>/``."""
    experts = expert_modules(model, slot)
    for name, expert in experts.items():
        expert_state = state_dict
        if state_dict is not None and len(experts) > 1:
            expert_state = {
                key[len(name) + 1 :]: value for key, value in state_dict.items() if key.startswith(f"{name}.")
            }
        expert.save_pretrained(f"{output_dir}/{name}", state_dict=expert_state)


def register_lora_hooks(accelerator, family: ModelFamily, slot: str = "transformer") -> None:
    """Save the LoRA files of ``family`` in each checkpoint, and load them back on resume (not with FSDP or
    DeepSpeed, whose sharded states Accelerate saves itself)."""
    from peft import set_peft_model_state_dict

    pipeline_class = family.pipeline_class("t2v")  # reads the diffusers LoRA file of any task

    if accelerator.distributed_type in SHARDED_TYPES:
        return

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                save_lora_outputs(output_dir, accelerator.unwrap_model(model), slot, family)
        weights.clear()  # the LoRA file is the model state: do not pickle the frozen base

    def load_model_hook(models, input_dir):
        prefix = "transformer."
        while models:
            experts = expert_modules(accelerator.unwrap_model(models.pop()), slot)
            for name, expert in experts.items():
                weight_name, _ = lora_file_names(name, len(experts) > 1)
                state_dict = pipeline_class.lora_state_dict(input_dir, weight_name=weight_name)
                state_dict = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
                result = set_peft_model_state_dict(expert, state_dict, adapter_name="default")
                unexpected = getattr(result, "unexpected_keys", None)
                if unexpected:
                    raise ValueError(f"checkpoint {input_dir} has LoRA keys this model lacks: {unexpected[:5]}")

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


def register_full_finetune_hooks(accelerator, slot: str = "transformer") -> None:
    """Save ``save_pretrained`` folders in each checkpoint, and load them back on resume (not with FSDP or
    DeepSpeed, whose sharded states Accelerate saves itself)."""
    from ..safetensors_io import read_safetensors_folder

    if accelerator.distributed_type in SHARDED_TYPES:
        return

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                save_full_outputs(output_dir, accelerator.unwrap_model(model), slot)
        weights.clear()

    def load_model_hook(models, input_dir):
        while models:
            for name, expert in expert_modules(accelerator.unwrap_model(models.pop()), slot).items():
                expert.load_state_dict(read_safetensors_folder(f"{input_dir}/{name}"))  # strict: gates included

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
