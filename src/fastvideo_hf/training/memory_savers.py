"""Memory savers for one GPU: frozen base weights stored in fp8, and frozen blocks kept on the CPU.

Both are diffusers' own engines on ``ModelMixin`` (``enable_layerwise_casting``, ``enable_group_offload``); this
module only decides where and in which order they are applied for *training* a LoRA, which they were not written
for:

- Layerwise casting is enabled **after** the adapter is added. diffusers' default skip list then covers peft's
  ``lora_A`` / ``lora_B`` modules (so the LoRA stays float32 and trains) and installs the hook that stops peft from
  casting the LoRA's input to the storage dtype. Enabled before the adapter, that second hook is missing.
- Group offloading moves every tensor of a group (a run of blocks, or one leaf layer) to the CPU after its forward.
  A LoRA layer sits inside a block, so as diffusers builds the groups its weights would leave the device after each
  forward (no-stream path) or be reset to their values at the time of the call (the stream path restores pinned CPU
  copies taken then). ``keep_trainable_on_device`` takes every trainable parameter out of the groups, so the LoRA,
  its gradients and the optimizer state stay on the device and only frozen weights travel.
- Under DDP, the fp8 weights are left out of DDP's broadcast of the model from the first process: gloo cannot send
  fp8 ("Invalid scalar type"), and there is nothing to send: every process loads the same frozen weights from the
  same files and casts them the same way (the LoRA, which trains, is still broadcast and its gradients averaged).
- Backward needs the frozen weights again (for the input gradient): autograd keeps the device copy a forward used
  until backward is done with it, so without ``--gradient_checkpointing`` a block's copy lives from its forward to
  its backward and the saving is small; with checkpointing, the recomputation onloads the block again.
"""

from __future__ import annotations

import argparse
import logging

import torch

from ..library_internals import ddp_ignore_parameters, offload_groups, set_group_tensors
from ..models import expert_modules
from ..refusal import SettingRefused
from .args import given_flags

logger = logging.getLogger(__name__)

STORAGE_DTYPES = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}  # --layerwise_casting


def check_memory_saver_args(args: argparse.Namespace, lora: bool) -> None:
    """Refuse the combinations that cannot work, at parse time rather than after the model is loaded."""
    if not lora and args.layerwise_casting is not None:
        raise SettingRefused(
            "--layerwise_casting stores weights in fp8 and is for LoRA training (train_wan_lora.py): a full finetune "
            "trains every weight, and fp8 storage would round away each optimizer update"
        )
    if not lora and args.group_offload is not None:
        raise SettingRefused(
            "--group_offload keeps frozen weights on the CPU and is for LoRA training (train_wan_lora.py): a full "
            "finetune has no frozen weights; shard them with FSDP or DeepSpeed (examples/accelerate_configs) instead"
        )
    if args.offload_blocks_per_group < 1:
        raise SettingRefused(f"--offload_blocks_per_group must be at least 1, got {args.offload_blocks_per_group}")
    if "offload_blocks_per_group" in given_flags(args) and args.group_offload != "block_level":
        raise SettingRefused(
            f"--offload_blocks_per_group counts the blocks of --group_offload block_level, which this run does not "
            f"use (--group_offload {args.group_offload}): add --group_offload block_level, or drop "
            "--offload_blocks_per_group"
        )
    if args.offload_use_stream and args.group_offload is None:
        raise SettingRefused("--offload_use_stream needs --group_offload")
    if args.offload_use_stream and not torch.cuda.is_available():
        raise SettingRefused(
            "--offload_use_stream prefetches on a CUDA stream and needs CUDA, which this machine lacks"
        )


def uses_memory_savers(args: argparse.Namespace) -> bool:
    return getattr(args, "layerwise_casting", None) is not None or getattr(args, "group_offload", None) is not None


def base_weights_device(args: argparse.Namespace, device: torch.device) -> torch.device:
    """Where the frozen weights are loaded before the adapter: the CPU when a memory saver places them later (a 14B
    model in bf16 would not fit the GPU that the savers are for), else the training device."""
    return torch.device("cpu") if uses_memory_savers(args) else device


def accelerate_places_model(args: argparse.Namespace) -> bool:
    """Whether ``accelerator.prepare`` may move the model to the device: not when it is offloaded (that would bring
    every frozen weight to the GPU at once)."""
    return getattr(args, "group_offload", None) is None


def place_frozen_weights(
    model: torch.nn.Module,
    args: argparse.Namespace,
    device: torch.device,
    compute_dtype: torch.dtype,
    num_processes: int = 1,
) -> None:
    """Apply ``--layerwise_casting`` and ``--group_offload`` to every trained transformer (after its adapter and
    ``cast_training_params``), then put on ``device`` what is not offloaded."""
    if not uses_memory_savers(args):
        return
    if args.group_offload is not None and num_processes > 1:
        raise SettingRefused(
            "--group_offload is for one GPU: under DDP each process would keep its own CPU copy and DDP expects the "
            f"model on its device ({num_processes} processes); use FSDP for several GPUs"
        )
    for name, expert in expert_modules(model).items():
        if args.layerwise_casting is not None:
            # after the adapter: the default skip list then covers peft's lora_A / lora_B (see the module docstring)
            expert.enable_layerwise_casting(
                storage_dtype=STORAGE_DTYPES[args.layerwise_casting], compute_dtype=compute_dtype
            )
        if args.group_offload is not None:
            expert.enable_group_offload(
                onload_device=device,
                offload_device=torch.device("cpu"),
                offload_type=args.group_offload,
                num_blocks_per_group=args.offload_blocks_per_group if args.group_offload == "block_level" else None,
                use_stream=args.offload_use_stream,
            )
            keep_trainable_on_device(expert, device)
            logger.info("%s: frozen weights offloaded to the CPU (%s)", name, args.group_offload)
    if args.group_offload is None:
        model.to(device)
    if args.layerwise_casting is not None and num_processes > 1:
        leave_fp8_weights_out_of_ddp_broadcast(model)


def leave_fp8_weights_out_of_ddp_broadcast(model: torch.nn.Module) -> None:
    """Tell DDP (before ``accelerator.prepare`` wraps ``model``) not to broadcast the fp8-stored frozen weights.

    DDP sends every parameter of the first process to the others when it wraps a model; gloo has no fp8 type, and
    every process already holds the same frozen weights (loaded from the same files, cast the same way). Ignored
    parameters are also left out of DDP's gradient buckets, which frozen weights never enter anyway."""
    stored = set(STORAGE_DTYPES.values())
    ddp_ignore_parameters(model, [name for name, param in model.named_parameters() if param.dtype in stored])


def keep_trainable_on_device(module: torch.nn.Module, device: torch.device) -> None:
    """Rewrite each offload group of ``module`` that holds a trainable parameter to list its frozen parameters and
    buffers one by one instead of its modules, then move the trainable parameters back to ``device``.

    A group moves ``module.parameters()`` of its modules at every call, so a LoRA inside a block would travel with
    it; the explicit lists are diffusers' own form for tensors without a module of their own (the top-level group).
    """
    for group in offload_groups(module):
        parameters = [param for group_module in group.modules for param in group_module.parameters()]
        parameters = list(dict.fromkeys([*parameters, *group.parameters]))
        if not any(param.requires_grad for param in parameters):
            continue
        buffers = [buffer for group_module in group.modules for buffer in group_module.buffers()]
        frozen = [param for param in parameters if not param.requires_grad]
        set_group_tensors(group, frozen, list(dict.fromkeys([*buffers, *group.buffers])))
    for param in module.parameters():
        if param.requires_grad:
            param.data = param.data.to(device)
