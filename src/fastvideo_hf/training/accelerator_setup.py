"""The Accelerator of a training run, and what its processes agree on before the first step.

One place decides how Accelerate is set up for our data (global batches split across processes), which dtype the
frozen weights and inputs take, which flags a tracker may record, and how one process loads first while the others
wait for it, so that the training script only calls these in order.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    DistributedType,
    InitProcessGroupKwargs,
    ProjectConfiguration,
    broadcast_object_list,
)

from ..refusal import SettingRefused

logger = logging.getLogger(__name__)
T = TypeVar("T")

WEIGHT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# Flags never written to a tracker, a log or a checkpoint.
SECRET_FLAGS = ("hub_token",)


def create_accelerator(args: argparse.Namespace) -> Accelerator:
    """An Accelerator whose dataloader splits *global* batches across processes (see ``latent_dataset``).

    On a machine without an accelerator it is told so explicitly: only then does Accelerate treat
    ``torchrun`` processes as one MULTI_CPU (gloo) job instead of N independent runs.
    """
    project_config = ProjectConfiguration(
        project_dir=args.output_dir, logging_dir=str(Path(args.output_dir, args.logging_dir))
    )
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=project_config,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        # Validation runs on the main process while the others wait: give it more than NCCL's 10 minutes.
        kwargs_handlers=[
            InitProcessGroupKwargs(timeout=timedelta(seconds=args.process_group_timeout)),
            # with both experts, a process whose batch holds no sample of one expert leaves its weights unused
            DistributedDataParallelKwargs(find_unused_parameters=getattr(args, "expert", None) == "both"),
        ],
        cpu=not torch.accelerator.is_available(),
    )
    if _launched_with_fsdp() and accelerator.distributed_type != DistributedType.FSDP:
        # Accelerate 1.15 (AcceleratorState) switches to FSDP only for multi-accelerator runs: on CPU processes the
        # launch config's FSDP section is dropped without a word, and the run is plain DDP over gloo.
        logger.warning(
            "the launch config asks for FSDP, but Accelerate runs FSDP only on GPUs (or other accelerators): this "
            "run is %s, every process holds the whole model",
            accelerator.distributed_type,
        )
    if accelerator.state.deepspeed_plugin is not None:
        # Our batch sampler hides the batch size from Accelerate, which DeepSpeed needs.
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = args.train_batch_size
    return accelerator


def _launched_with_fsdp() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def weight_dtype_for(accelerator: Accelerator) -> torch.dtype:
    """dtype of frozen weights and model inputs: the mixed-precision dtype, else float32."""
    return WEIGHT_DTYPES.get(accelerator.mixed_precision, torch.float32)


def tracker_config(args: argparse.Namespace) -> dict:
    """The flags logged as the run's hyperparameters (tensorboard's hparams.yml, wandb's config): every flag that
    is set, except secrets and the parser's own notes (``_given``)."""
    return {
        key: value
        for key, value in vars(args).items()
        if value is not None and key not in SECRET_FLAGS and not key.startswith("_")
    }


def on_main_process_first(accelerator: Accelerator, load: Callable[[], T]) -> T:
    """``load()`` on the main process, then on the others (which then reuse what it cached, as with Accelerate's
    ``main_process_first``); a ``SettingRefused`` of the main process is raised on every process, so that they all
    exit with its one line instead of waiting for it and failing with a traceback when it is gone."""
    refusal, result = None, None
    if accelerator.is_main_process:
        try:
            result = load()
        except SettingRefused as error:
            refusal = error
    if accelerator.num_processes > 1:
        message = [None if refusal is None else str(refusal)]
        broadcast_object_list(message, from_process=0)
        if message[0] is not None and refusal is None:
            refusal = SettingRefused(message[0])
    if refusal is not None:
        raise refusal
    return result if accelerator.is_main_process else load()
