"""Accelerate save/load hooks that store the trained model in the form users load, inside each checkpoint.

LoRA checkpoints hold ``pytorch_lora_weights.safetensors`` (+ the ComfyUI file) instead of a pickled copy of the
whole transformer; full-finetune checkpoints hold ``transformer/`` written by ``save_pretrained``. Either can be
loaded by diffusers straight from ``checkpoint-N/``. With FSDP or DeepSpeed the hooks are not installed and
Accelerate saves its sharded state itself.
"""

from __future__ import annotations

import logging

from accelerate.utils import DistributedType

logger = logging.getLogger(__name__)

SHARDED_TYPES = (DistributedType.FSDP, DistributedType.DEEPSPEED)


def register_lora_hooks(accelerator) -> None:
    from diffusers import WanPipeline
    from peft import set_peft_model_state_dict

    from .lora_formats import save_wan_lora

    if accelerator.distributed_type in SHARDED_TYPES:
        return

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                save_wan_lora(output_dir, accelerator.unwrap_model(model))
        weights.clear()  # the LoRA file is the model state: do not pickle the frozen base

    def load_model_hook(models, input_dir):
        prefix = "transformer."
        state_dict = WanPipeline.lora_state_dict(input_dir)
        state_dict = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
        while models:
            model = accelerator.unwrap_model(models.pop())
            result = set_peft_model_state_dict(model, state_dict, adapter_name="default")
            unexpected = getattr(result, "unexpected_keys", None)
            if unexpected:
                raise ValueError(f"checkpoint {input_dir} has LoRA keys this model lacks: {unexpected[:5]}")

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


def register_full_finetune_hooks(accelerator) -> None:
    from .safetensors_io import read_safetensors_folder

    if accelerator.distributed_type in SHARDED_TYPES:
        return

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                accelerator.unwrap_model(model).save_pretrained(f"{output_dir}/transformer")
        weights.clear()

    def load_model_hook(models, input_dir):
        while models:
            model = accelerator.unwrap_model(models.pop())
            model.load_state_dict(read_safetensors_folder(f"{input_dir}/transformer"))  # strict: gates included

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
