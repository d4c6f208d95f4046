"""The parts of a Wan training run that the LoRA and the full-finetune scripts share.

The scripts in ``training_scripts/`` read top to bottom like diffusers' examples and call these functions for
each stage, so the loop itself stays visible there while every piece here is tested on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
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
from torch.utils.data import DataLoader

from ..model_spec import EXPERT_SUBFOLDERS, WanModelSpec
from ..refusal import SettingRefused
from .checkpoint_hooks import SHARDED_TYPES
from .checkpointing import (
    TrainingState,
    checkpoint_dir,
    clean_incomplete_checkpoints,
    complete_checkpoints,
    finish_checkpoint,
    load_training_state,
    prune_checkpoints,
    resolve_resume_checkpoint,
    staging_dir,
)
from .context_parallel import ContextParallelBatchSampler, ParallelLayout
from .dataset_checks import check_dataset_matches_model
from .experts import SLOTS, WanExperts, expert_modules
from .flow_matching import (
    FlowMatchingConfig,
    flow_matching_loss,
    interpolate,
    make_training_batch,
    sample_generators,
)
from .latent_dataset import (
    LatentDataset,
    SameShapeBatchSampler,
    collate_latents,
    load_latent_dataset,
    read_dataset_card_metadata,
)
from .resume_settings import RUN_SETTINGS_FILE, check_resume_settings, dataset_fingerprint, settings_file_text
from .transformer_inputs import build_transformer_call

logger = logging.getLogger(__name__)
T = TypeVar("T")

WEIGHT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


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


def load_transformer_to_train(
    args: argparse.Namespace, spec: WanModelSpec, dtype: torch.dtype = torch.float32
) -> tuple[torch.nn.Module, str]:
    """(the model to train, its pipeline slot). Wan2.2 A14B needs ``--expert high|low|both``; ``both`` gives
    a ``WanExperts`` holding ``transformer`` and ``transformer_2``.

    Loaded in ``dtype`` by ``from_pretrained``, which keeps the modules diffusers runs in float32 (RoPE, time
    embedding, modulation table, norms: ``_keep_in_fp32_modules``) in float32, as ``WanPipeline`` does at
    inference; a later ``.to(dtype)`` would cast them too and train a LoRA in other numerics than it runs in."""
    from diffusers import WanTransformer3DModel

    expert = getattr(args, "expert", None)
    if spec.has_experts and expert is None:
        raise SettingRefused(
            f"this model has two experts split at timestep {spec.boundary_ratio * 1000:g}: pass --expert high "
            "(transformer, high noise), --expert low (transformer_2, low noise) or --expert both"
        )
    if expert is not None and not spec.has_experts:
        raise SettingRefused(
            f"--expert {expert} is only for two-expert models (Wan2.2 A14B); this model has one transformer: drop it"
        )
    model, revision = args.pretrained_model_name_or_path, args.revision
    if expert == "both":
        high, low = (
            WanTransformer3DModel.from_pretrained(model, subfolder=s, revision=revision, torch_dtype=dtype)
            for s in SLOTS
        )
        return WanExperts(high, low, spec.boundary_ratio), "transformer"
    slot = EXPERT_SUBFOLDERS[expert] if expert else "transformer"
    return WanTransformer3DModel.from_pretrained(model, subfolder=slot, revision=revision, torch_dtype=dtype), slot


# Flags never written to a tracker, a log or a checkpoint.
SECRET_FLAGS = ("hub_token",)


def tracker_config(args: argparse.Namespace) -> dict:
    """The flags logged as the run's hyperparameters (tensorboard's hparams.yml, wandb's config): every flag that
    is set, except secrets and the parser's own notes (``_given``)."""
    return {
        key: value
        for key, value in vars(args).items()
        if value is not None and key not in SECRET_FLAGS and not key.startswith("_")
    }


def resolve_lora_targets(model: torch.nn.Module, names: list[str]) -> list[str]:
    """The ``--lora_target_modules`` names that match a Linear layer of ``model`` (as peft matches them: the
    whole module name or its last dotted parts). Names that match nothing are named in a warning, since peft
    drops them silently; if none match, the run is refused."""
    linear_names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]

    def matches(target: str) -> bool:
        return any(name == target or name.endswith(f".{target}") for name in linear_names)

    matched = [target for target in names if matches(target)]
    unmatched = [target for target in names if target not in matched]
    if not matched:
        examples = sorted({name.split(".", 2)[-1] for name in linear_names if name.startswith("blocks.0.")})
        raise SettingRefused(
            f"--lora_target_modules {','.join(names)}: no Linear layer of this model has these names; "
            f"the layers of a block are: {', '.join(examples)}"
        )
    if unmatched:
        logger.warning("--lora_target_modules: %s match no layer of this model and are ignored", ", ".join(unmatched))
    return matched


def weight_dtype_for(accelerator: Accelerator) -> torch.dtype:
    """dtype of frozen weights and model inputs: the mixed-precision dtype, else float32."""
    return WEIGHT_DTYPES.get(accelerator.mixed_precision, torch.float32)


def flow_matching_config(args: argparse.Namespace, spec: WanModelSpec) -> FlowMatchingConfig:
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
    )


def load_checked_latent_dataset(args: argparse.Namespace, spec: WanModelSpec) -> tuple[LatentDataset, str]:
    """The latent dataset, after checking its card against the model (refusing a mismatch), and its fingerprint
    (which rows, in which order and shapes: what a resume must find unchanged)."""
    card = read_dataset_card_metadata(args.dataset_name, args.dataset_revision)
    problems = check_dataset_matches_model(
        card, args.pretrained_model_name_or_path, spec, allow_mismatch=args.allow_model_mismatch
    )
    for problem in problems:
        logger.warning("dataset/model mismatch allowed by --allow_model_mismatch: %s", problem)
    hf_dataset = load_latent_dataset(args.dataset_name, args.dataset_revision)
    max_sequence_length = (card or {}).get("max_sequence_length", 512)
    dataset = LatentDataset(hf_dataset, spec.latents_mean, spec.latents_std, max_sequence_length)
    return dataset, dataset_fingerprint(hf_dataset, card)


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


def create_dataloader(
    dataset: LatentDataset, args: argparse.Namespace, layout: ParallelLayout
) -> tuple[DataLoader, SameShapeBatchSampler | ContextParallelBatchSampler]:
    """A dataloader of global batches (``train_batch_size`` per process) of equal latent shape; under context
    parallelism each data-parallel slice is repeated for the processes of its group."""
    batch_sampler = SameShapeBatchSampler(
        dataset.shapes, args.train_batch_size * layout.data_parallel_size, seed=args.seed
    )
    if layout.enabled:
        batch_sampler = ContextParallelBatchSampler(batch_sampler, args.train_batch_size, layout.degree)
    dataloader = DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate_latents,
        num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0,  # no worker restart (and wait) at every epoch
        pin_memory=torch.cuda.is_available(),
    )
    return dataloader, batch_sampler


def training_length(args: argparse.Namespace, batches_per_epoch: int) -> tuple[int, int]:
    """(max_train_steps, num_train_epochs), one derived from the other as diffusers' examples do."""
    steps_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        return args.num_train_epochs * steps_per_epoch, args.num_train_epochs
    return args.max_train_steps, math.ceil(args.max_train_steps / steps_per_epoch)


def create_optimizer(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        params,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )


def setup_vsa(model, args: argparse.Namespace) -> list:
    """Install VSA in every trained transformer when ``--attention_backend vsa`` (before any adapter, so the
    gate can carry one); returns their contexts (empty without VSA)."""
    if args.attention_backend != "vsa":
        return []
    from ..vsa import enable_vsa

    return [enable_vsa(expert, sparsity=0.0, backend=args.vsa_backend) for expert in expert_modules(model).values()]


def update_vsa_sparsity(contexts: list, args: argparse.Namespace, global_step: int) -> float | None:
    """Set the sparsity of the ramp for the step after ``global_step`` steps; returns it (None without VSA).

    FastVideo numbers the step being taken from 1 (``step // interval`` for step 1, 2, ...): so do we, so that
    each notch of the ramp comes at the same step as in FastVideo's recipes."""
    if not contexts:
        return None
    from ..vsa import vsa_sparsity_at_step

    sparsity = vsa_sparsity_at_step(
        global_step + 1, args.vsa_sparsity, args.vsa_decay_rate, args.vsa_decay_interval_steps
    )
    for context in contexts:
        context.sparsity = sparsity
    return sparsity


def save_vsa_config(folder: str | Path, args: argparse.Namespace) -> None:
    """``vsa_config.json`` beside the weights: what a user needs to rebuild the VSA model for inference."""
    if args.attention_backend != "vsa":
        return
    config = {"attention_backend": "vsa", "sparsity": args.vsa_sparsity, "tile_size": [4, 4, 4]}
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, "vsa_config.json").write_text(json.dumps(config, indent=2) + "\n")


@dataclass
class StepInputs:
    seed: int
    global_step: int
    micro_step: int


def compute_loss(
    transformer,
    batch: dict[str, torch.Tensor],
    config: FlowMatchingConfig,
    where: StepInputs,
    first_position: int,
    dtype: torch.dtype,
    spec: WanModelSpec,
) -> torch.Tensor:
    """Flow-matching loss of one (per-process) micro-batch; ``first_position`` is its offset in the global batch."""
    latents = batch["latents"]
    positions = list(range(first_position, first_position + latents.shape[0]))
    generators = sample_generators(where.seed, where.global_step, where.micro_step, positions)
    inputs = make_training_batch(latents, batch["prompt_embeds"], config, generators)
    call = build_transformer_call(
        spec,
        inputs.noisy_latents,
        inputs.timesteps,
        inputs.prompt_embeds,
        batch.get("first_frame_latent"),
        batch.get("clip_feature"),
    )
    return flow_matching_loss(call.run(transformer, dtype), inputs.target, call.loss_mask)


def advance(state: TrainingState, epoch: int, batches_done: int, batches_per_epoch: int) -> TrainingState:
    """The position after an optimizer step; after an epoch's last batch, the next epoch from its start."""
    if batches_done == batches_per_epoch:
        return TrainingState(state.global_step + 1, epoch + 1, 0)
    return TrainingState(state.global_step + 1, epoch, batches_done)


def step_logs(accelerator: Accelerator, loss, lr_scheduler, grad_norm, vsa_sparsity, progress) -> dict[str, float]:
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


def resume_state(accelerator: Accelerator, args: argparse.Namespace, settings: dict) -> tuple[TrainingState, dict]:
    """Load the checkpoint named by ``--resume_from_checkpoint`` (if any); returns where to continue and the
    settings in effect (the checkpoint's optimizer values win over new flags).

    First the main process clears what interrupted saves left behind; a checkpoint whose ``settings`` differ in
    what defines the data order or a step is refused before any weight is read.
    """
    if accelerator.is_main_process:
        clean_incomplete_checkpoints(args.output_dir)
    accelerator.wait_for_everyone()
    path = resolve_resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if path is None:
        earlier = complete_checkpoints(args.output_dir)
        if earlier:  # a new run here would prune them in favour of its own, or mix with them on the next resume
            raise SettingRefused(
                f"{args.output_dir} holds checkpoints of an earlier run ({', '.join(p.name for p in earlier)}): pass "
                "--resume_from_checkpoint latest to continue it, or use another --output_dir"
            )
        return TrainingState(), settings
    settings = check_resume_settings(path, settings, sharded=accelerator.distributed_type in SHARDED_TYPES)
    logger.info("resuming from %s", path)
    accelerator.load_state(str(path))
    return load_training_state(path), settings


def run_is_complete(state: TrainingState, max_train_steps: int) -> bool:
    """True when a resumed run has no step left: it then only rewrites its final outputs (job schedulers re-run
    finished jobs, and a 41st step would overwrite the final weights of a 40-step run). A checkpoint past
    ``max_train_steps`` is refused: its weights are not those of a ``max_train_steps`` run."""
    if state.global_step > max_train_steps:
        raise SettingRefused(
            f"the checkpoint is at step {state.global_step}, past --max_train_steps {max_train_steps}: pass a "
            "--max_train_steps of at least that to continue it, or use another --output_dir"
        )
    if state.global_step == max_train_steps:
        logger.info("the run is already complete at step %d: rewriting the final outputs only", state.global_step)
        return True
    return False


def save_checkpoint(accelerator: Accelerator, args: argparse.Namespace, state: TrainingState, settings: dict) -> Path:
    """``checkpoint-{step}`` with model, optimizer, scheduler, RNG, the data position and the run's settings.

    Written into ``checkpoint-{step}.tmp`` by every process and renamed by the main process once complete, so a
    kill at any moment leaves the previous checkpoints intact; old checkpoints are pruned only afterwards.
    """
    path, staging = checkpoint_dir(args.output_dir, state.global_step), staging_dir(args.output_dir, state.global_step)
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()  # every process's part (RNG states, shards) is written
    if accelerator.is_main_process:
        finish_checkpoint(staging, path, state, {RUN_SETTINGS_FILE: settings_file_text(settings)})
        prune_checkpoints(args.output_dir, args.checkpoints_total_limit, keep=path)
    accelerator.wait_for_everyone()
    logger.info("saved %s", path)
    return path


@torch.no_grad()
def held_out_loss(
    transformer, dataset: LatentDataset, spec: WanModelSpec, sigmas: list[float], seed: int = 0, dtype=torch.float32
) -> float:
    """Mean flow-matching loss over every row of ``dataset`` at fixed ``sigmas`` and fixed noise.

    Training draws random sigmas and noise; this fixes both (and never drops captions), so two evaluations
    of the same weights give the same number and a drop means the model learned, not luck.
    """
    was_training = transformer.training
    transformer.eval()
    device = next(transformer.parameters()).device
    total, count = 0.0, 0
    for index in range(len(dataset)):
        row = {name: value.to(device) for name, value in collate_latents([dataset[index]]).items()}
        latents = row["latents"]
        for sigma_index, sigma in enumerate(sigmas):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index * 1_009 + sigma_index)
            noise = torch.randn(latents.shape, generator=generator).to(device)
            noisy, timesteps, target = interpolate(latents, noise, torch.full((1,), sigma, device=device))
            call = build_transformer_call(
                spec, noisy, timesteps, row["prompt_embeds"], row.get("first_frame_latent"), row.get("clip_feature")
            )
            total += flow_matching_loss(call.run(transformer, dtype), target, call.loss_mask).item()
            count += 1
    transformer.train(was_training)
    return total / count
