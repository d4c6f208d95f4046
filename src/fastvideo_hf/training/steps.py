"""What one optimizer step of a run is: its sigmas, its loss, its optimizer, its count, and what it logs.

The loss of a micro-batch is the flow-matching loss of the prediction the family's transformer call makes
(``spec.family.transformer_call``: the noisy latents plus the batch's conditioning, as the family's pipeline feeds
its transformer at inference), with every random draw seeded by the step and the sample's position in the global
batch. The rest is the bookkeeping around it: how many steps a run has, where the data position is after one, and
the numbers each one logs (a loss that is not finite stops the run).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from ..models import ModelSpec
from ..refusal import SettingRefused
from .checkpointing import TrainingState
from .flow_matching import FlowMatchingConfig, flow_matching_loss, make_training_batch, sample_generators
from .latent_dataset import image_conditioning


def flow_matching_config(args: argparse.Namespace, spec: ModelSpec) -> FlowMatchingConfig:
    """The sigma distribution of ``--weighting_scheme`` and ``--flow_shift``, within the sigmas of ``--expert``."""
    min_sigma, max_sigma = spec.sigma_range(getattr(args, "expert", None))
    return FlowMatchingConfig(
        min_sigma=min_sigma,
        max_sigma=max_sigma,
        weighting_scheme=args.weighting_scheme,
        logit_mean=args.logit_mean,
        logit_std=args.logit_std,
        mode_scale=args.mode_scale,
        flow_shift=args.flow_shift,
        caption_dropout=args.caption_dropout,
        timestep_scale=spec.family.timestep_scale,
    )


def create_optimizer(params: Iterable[torch.nn.Parameter], args: argparse.Namespace) -> torch.optim.Optimizer:
    """AdamW over ``params`` with the run's ``--learning_rate`` and ``--adam_*`` flags."""
    return torch.optim.AdamW(
        params,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )


def training_length(args: argparse.Namespace, batches_per_epoch: int) -> tuple[int, int]:
    """(max_train_steps, num_train_epochs), one derived from the other as diffusers' examples do."""
    steps_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        return args.num_train_epochs * steps_per_epoch, args.num_train_epochs
    return args.max_train_steps, math.ceil(args.max_train_steps / steps_per_epoch)


@dataclass
class StepInputs:
    """Where a micro-batch is in the run: what seeds the random draws of its samples."""

    seed: int
    global_step: int
    micro_step: int


def compute_loss(
    transformer: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    config: FlowMatchingConfig,
    where: StepInputs,
    first_position: int,
    dtype: torch.dtype,
    spec: ModelSpec,
) -> torch.Tensor:
    """Flow-matching loss of one (per-process) micro-batch; ``first_position`` is its offset in the global batch."""
    latents = batch["latents"]
    positions = list(range(first_position, first_position + latents.shape[0]))
    generators = sample_generators(where.seed, where.global_step, where.micro_step, positions)
    inputs = make_training_batch(latents, batch["prompt_embeds"], config, generators)
    call = spec.family.transformer_call(
        spec, inputs.noisy_latents, inputs.timesteps, inputs.prompt_embeds, image_conditioning(batch)
    )
    return flow_matching_loss(call.run(transformer, dtype), inputs.target, call.loss_mask)


def advance(state: TrainingState, epoch: int, batches_done: int, batches_per_epoch: int) -> TrainingState:
    """The position after an optimizer step; after an epoch's last batch, the next epoch from its start."""
    if batches_done == batches_per_epoch:
        return TrainingState(state.global_step + 1, epoch + 1, 0)
    return TrainingState(state.global_step + 1, epoch, batches_done)


def step_logs(
    accelerator: Accelerator,
    loss: torch.Tensor,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_norm: torch.Tensor | float | None,
    vsa_sparsity: float | None,
    progress: tqdm,
) -> dict[str, float]:
    """What each optimizer step logs: loss (mean over processes), lr, grad norm, steps/s, VSA sparsity.

    A loss that is not finite stops the run here, before the step's checkpoint: once NaN the weights never recover,
    and a run that went on would save (and push) an all-NaN model that samples black videos with exit 0."""
    logs = {"loss": accelerator.reduce(loss.detach(), "mean").item(), "lr": lr_scheduler.get_last_lr()[0]}
    if not math.isfinite(logs["loss"]):
        raise SettingRefused(
            f"the training loss is {logs['loss']} at step {progress.n}: the run diverged, so it stops without saving "
            "this step (earlier checkpoints are kept); lower --learning_rate or --lora_alpha, or keep "
            "--max_grad_norm clipping on"
        )
    if grad_norm is not None:
        logs["grad_norm"] = float(grad_norm)
    logs["steps_per_s"] = progress.format_dict["rate"] or 0.0
    if vsa_sparsity is not None:
        logs["vsa_sparsity"] = vsa_sparsity
    return logs
