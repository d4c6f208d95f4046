#!/usr/bin/env python
"""Finetuning of a video diffusion transformer (a LoRA, or every weight) on a precomputed latent dataset.

    accelerate launch training_scripts/train.py --training_type lora \
      --pretrained_model_name_or_path Wan-AI/Wan2.1-T2V-1.3B-Diffusers \
      --dataset_name user/my-latents --output_dir my-lora --max_train_steps 2000

Latents and prompt embeddings come from `fastvideo-hf preprocess`, so only the transformer is in memory. The model's
family (read from its `model_index.json`) answers what differs between families: how its transformer loads and is
called, its pipeline, its default LoRA targets, its LoRA key names. The one choice this script makes is
`--training_type`:

- `lora`: a LoRA on the frozen transformer (memory savers allowed). Outputs: OUT/pytorch_lora_weights.safetensors
  (the pipeline's `load_lora_weights(OUT)`), OUT/pytorch_lora_weights_comfy.safetensors (ComfyUI).
- `full`: every weight, in float32 master weights under --mixed_precision (FSDP / DeepSpeed shard them). Outputs:
  OUT/transformer/ (`from_pretrained(OUT, subfolder="transformer")` of the model's transformer class).

Both write OUT/checkpoint-N/ (resumable) and OUT/validation/. `train_wan_lora.py` and `train_wan.py` are this script
with the type fixed.
"""

import argparse
import logging
import sys

import torch
from accelerate.logging import get_logger
from accelerate.utils import DistributedType, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import cast_training_params
from tqdm.auto import tqdm

from fastvideo_hf.models import expert_modules
from fastvideo_hf.training.accelerator_setup import (
    create_accelerator,
    on_main_process_first,
    tracker_config,
    weight_dtype_for,
)
from fastvideo_hf.training.args import (
    build_training_parser,
    read_training_type,
    run_refusing_in_one_line,
    validate_training_args,
)
from fastvideo_hf.training.checkpoint_hooks import (
    register_full_finetune_hooks,
    register_lora_hooks,
    save_full_outputs,
    save_lora_outputs,
)
from fastvideo_hf.training.context_parallel import (
    check_context_parallel_args,
    check_token_counts,
    enable_context_parallel,
    parallel_layout,
)
from fastvideo_hf.training.data_loading import create_dataloader, load_checked_latent_dataset
from fastvideo_hf.training.hub import push_training_output
from fastvideo_hf.training.memory_savers import (
    accelerate_places_model,
    base_weights_device,
    check_memory_saver_args,
    place_frozen_weights,
)
from fastvideo_hf.training.model_loading import add_lora_adapters, load_transformer_to_train, read_model_spec
from fastvideo_hf.training.resume_settings import run_settings
from fastvideo_hf.training.save_and_resume import resume_state, run_is_complete, save_checkpoint
from fastvideo_hf.training.steps import (
    StepInputs,
    advance,
    compute_loss,
    create_optimizer,
    flow_matching_config,
    step_logs,
    training_length,
)
from fastvideo_hf.training.validation import (
    check_validation_entries,
    latest_validation_videos,
    run_validation,
    validation_entries,
)
from fastvideo_hf.training.vsa_schedule import save_vsa_config, setup_vsa, update_vsa_sparsity

logger = get_logger(__name__)

TRACKER_RUN = {"lora": "lora", "full": "full-finetune"}  # the tracker's project: f"{family.name}-{this}"
RECIPE_FLAGS = {  # the flags a model card's recipe table shows
    "lora": ("rank", "lora_alpha", "learning_rate", "flow_shift"),
    "full": ("learning_rate", "adam_weight_decay", "flow_shift"),
}


def parse_args(
    argv: list[str] | None = None, training_type: str | None = None, description: str | None = None
) -> argparse.Namespace:
    """The run's flags, checked. ``training_type`` fixes LoRA or full finetuning (the entry points that name it);
    without it ``--training_type`` chooses, and the flags of the chosen type are parsed (``--help`` lists them)."""
    chosen = training_type or read_training_type(argv)
    parser = build_training_parser(
        description or __doc__.split("\n")[0], lora=chosen == "lora", choose_training_type=training_type is None
    )
    args = parser.parse_args(argv)
    args.training_type = chosen
    validate_training_args(args)
    # fp8 storage and CPU offload are for the frozen weights of a LoRA: refused here for a full finetune
    check_memory_saver_args(args, lora=chosen == "lora")
    check_context_parallel_args(args)
    return args


def main(args: argparse.Namespace) -> None:
    """One run, in the order it happens: processes, model, trained parameters, data, resume, the loop, outputs."""
    accelerator = create_accelerator(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    # processes per sample (--context_parallel_*) must divide the run's: refused before any weight is read
    layout = parallel_layout(args, accelerator.num_processes, accelerator.process_index)
    set_seed(args.seed)  # identical LoRA initialisation on every process

    # The model's facts from its configs (family, T2V / I2V, experts, VAE, text length): no weight read yet
    spec = read_model_spec(args)
    family, lora = spec.family, args.training_type == "lora"
    if lora and args.lora_target_modules is None:
        args.lora_target_modules = ",".join(family.default_lora_targets)
    if accelerator.is_main_process:
        tracker_project = f"{family.name}-{TRACKER_RUN[args.training_type]}"
        accelerator.init_trackers(tracker_project, config=tracker_config(args))  # never the token

    # Only the transformer is loaded: latents and prompt embeddings come precomputed from the dataset. One transformer
    # in its pipeline slot, or both experts of a two-expert model (--expert both) routed by timestep.
    weight_dtype = weight_dtype_for(accelerator)
    if lora:
        # frozen weights in the mixed-precision dtype; the modules the family keeps in float32 stay so, as in its
        # pipeline
        transformer, slot = load_transformer_to_train(args, spec, weight_dtype)
        transformer.requires_grad_(False)
        # on the CPU when --layerwise_casting / --group_offload place the frozen weights below, after the adapter
        transformer.to(base_weights_device(args, accelerator.device))
        vsa = setup_vsa(transformer, args)  # adds the zero gate projection to every self-attention
        # names that match no layer are named in a warning; the VSA gate trains as a LoRA on its zero base
        target_modules = add_lora_adapters(transformer, args, vsa_gates=bool(vsa))
        cast_training_params(transformer, dtype=torch.float32)  # LoRA weights train in fp32 under any mixed precision
        # fp8 storage of the frozen weights and/or their CPU offload; the LoRA stays fp32 on the device
        place_frozen_weights(transformer, args, accelerator.device, weight_dtype, accelerator.num_processes)
        register_lora_hooks(accelerator, family, slot)
        trained_parameters = [param for param in transformer.parameters() if param.requires_grad]
        device_placement = [accelerate_places_model(args), True, True, True]  # an offloaded model stays where it is
    else:
        transformer, slot = load_transformer_to_train(args, spec)
        target_modules = None
        transformer.requires_grad_(True)
        transformer.to(dtype=torch.float32)  # master weights; autocast computes in weight_dtype
        if accelerator.distributed_type != DistributedType.FSDP:
            transformer.to(accelerator.device)  # FSDP moves each shard itself: no full copy on every GPU
        vsa = setup_vsa(transformer, args)  # adds the zero gate projection (trained with the rest)
        if args.gradient_checkpointing:
            for expert in expert_modules(transformer).values():
                expert.enable_gradient_checkpointing()
        register_full_finetune_hooks(accelerator, slot)
        trained_parameters = list(transformer.parameters())
        device_placement = None  # Accelerate's own: under FSDP the model is not moved whole
    # --context_parallel_*: each sample's tokens sharded over a group of processes (diffusers' hooks)
    enable_context_parallel(transformer, layout, accelerator.device, weight_dtype)

    optimizer = create_optimizer(trained_parameters, args)
    # one process builds the datasets cache, the others reuse it (or share its refusal of the dataset)
    dataset, fingerprint = on_main_process_first(accelerator, lambda: load_checked_latent_dataset(args, spec))
    # validation sizes the pipeline takes, and sequences that split evenly over a context-parallel group: refused
    # now, not at the first validation or the first batch of an odd shape, hours in
    entries = validation_entries(args, dataset.task)
    check_validation_entries(entries, spec)
    check_token_counts(dataset.shapes, entries, spec, layout)
    dataloader, batch_sampler = create_dataloader(dataset, args, layout)
    max_train_steps, num_train_epochs = training_length(args, len(batch_sampler))
    # Global batches are split across processes, so the prepared scheduler steps once per optimizer step
    # (diffusers' examples multiply by num_processes because their batches are per process).
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps,
        num_training_steps=max_train_steps,
    )
    transformer, optimizer, dataloader, lr_scheduler = accelerator.prepare(
        transformer, optimizer, dataloader, lr_scheduler, device_placement=device_placement
    )

    # What a resume must find unchanged (data order, what a step is, the adapter's shape); recorded per checkpoint
    settings = run_settings(
        args,
        args.training_type,
        accelerator.num_processes,
        fingerprint,
        len(dataset),
        target_modules,
        layout.data_parallel_size,
    )
    state, settings = resume_state(accelerator, args, settings)
    complete = run_is_complete(state, max_train_steps)  # a re-run of a finished run changes no weight
    flow_config = flow_matching_config(args, spec)  # an expert's sigmas stay on its side of the boundary
    logger.info(
        f"{len(dataset)} clips, {len(batch_sampler)} global batches of {args.train_batch_size} x "
        f"{layout.data_parallel_size} per epoch; {max_train_steps} steps from step {state.global_step}"
    )
    progress = tqdm(
        total=max_train_steps, initial=state.global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    micro_step, videos = 0, latest_validation_videos(args.output_dir) if complete else []
    for epoch in [] if complete else range(state.epoch, num_train_epochs):
        transformer.train()
        dataloader.set_epoch(epoch)  # Accelerate's own epoch counter, also used by skip_first_batches
        batch_sampler.set_epoch(epoch)
        skip = state.batches_in_epoch if epoch == state.epoch else 0
        batches = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        for batches_done, batch in enumerate(batches, start=skip + 1):
            sparsity = update_vsa_sparsity(vsa, args, state.global_step)
            with accelerator.accumulate(transformer):
                where = StepInputs(args.seed, state.global_step, micro_step)
                first = layout.first_position(args.train_batch_size)  # one context-parallel group: same rows
                loss = compute_loss(transformer, batch, flow_config, where, first, weight_dtype, spec)
                accelerator.backward(loss * layout.loss_scale)
                grad_norm = None
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(trained_parameters, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            micro_step += 1
            if not accelerator.sync_gradients:
                continue
            micro_step = 0
            state = advance(state, epoch, batches_done, len(dataloader))
            progress.update(1)
            logs = step_logs(accelerator, loss, lr_scheduler, grad_norm, sparsity, progress)
            progress.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}")
            accelerator.log(logs, step=state.global_step)

            if state.global_step % args.checkpointing_steps == 0 or state.global_step == max_train_steps:
                save_checkpoint(accelerator, args, state, settings)
            if state.global_step % args.validation_steps == 0:
                videos = run_validation(
                    accelerator, args, transformer, family, state.global_step, weight_dtype, slot, dataset.task
                )
            if state.global_step >= max_train_steps:
                break
        if state.global_step >= max_train_steps:
            break

    accelerator.wait_for_everyone()
    if lora:
        if accelerator.is_main_process:
            save_lora_outputs(args.output_dir, accelerator.unwrap_model(transformer), slot, family)
            save_vsa_config(args.output_dir, args)
    else:
        state_dict = accelerator.get_state_dict(transformer)  # gathers FSDP / DeepSpeed shards on every process
        if accelerator.is_main_process:
            trained = accelerator.unwrap_model(transformer)
            save_full_outputs(args.output_dir, trained, slot, state_dict)
            for name in expert_modules(trained, slot):
                save_vsa_config(f"{args.output_dir}/{name}", args)
    if state.global_step % args.validation_steps and not complete:
        videos = run_validation(
            accelerator, args, transformer, family, state.global_step, weight_dtype, slot, dataset.task
        )
    if accelerator.is_main_process and args.push_to_hub:
        recipe = {key: getattr(args, key) for key in RECIPE_FLAGS[args.training_type]}
        push_training_output(args, family, lora=lora, recipe=recipe, steps=state.global_step, videos=videos)
    accelerator.end_training()
    where_saved = args.output_dir if lora else f"{args.output_dir}/transformer"
    logger.info(f"done after {state.global_step} steps: {'LoRA' if lora else 'transformer'} in {where_saved}")


if __name__ == "__main__":
    sys.exit(run_refusing_in_one_line(main, parse_args))
