#!/usr/bin/env python
"""LoRA finetuning of a Wan2.1 / Wan2.2 text-to-video transformer on a precomputed latent dataset.

    accelerate launch training_scripts/train_wan_lora.py \
      --pretrained_model_name_or_path Wan-AI/Wan2.1-T2V-1.3B-Diffusers \
      --dataset_name user/my-latents --output_dir wan-lora --max_train_steps 2000

Latents and prompt embeddings come from `fastvideo-hf preprocess`, so only the transformer is in memory.
Outputs: OUT/pytorch_lora_weights.safetensors (`WanPipeline.load_lora_weights(OUT)`),
OUT/pytorch_lora_weights_comfy.safetensors (ComfyUI), OUT/checkpoint-N/ (resumable), OUT/validation/.
"""

import logging
import sys

import torch
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import cast_training_params
from peft import LoraConfig
from tqdm.auto import tqdm

from fastvideo_hf.model_spec import WanModelSpec
from fastvideo_hf.training.args import build_training_parser, run_refusing_in_one_line, validate_training_args
from fastvideo_hf.training.checkpoint_hooks import register_lora_hooks, save_lora_outputs
from fastvideo_hf.training.context_parallel import (
    check_context_parallel_args,
    check_token_counts,
    enable_context_parallel,
    parallel_layout,
)
from fastvideo_hf.training.experts import expert_modules
from fastvideo_hf.training.hub import push_training_output
from fastvideo_hf.training.memory_savers import (
    accelerate_places_model,
    base_weights_device,
    check_memory_saver_args,
    place_frozen_weights,
)
from fastvideo_hf.training.resume_settings import run_settings
from fastvideo_hf.training.stages import (
    StepInputs,
    advance,
    compute_loss,
    create_accelerator,
    create_dataloader,
    create_optimizer,
    flow_matching_config,
    load_checked_latent_dataset,
    load_transformer_to_train,
    on_main_process_first,
    resolve_lora_targets,
    resume_state,
    run_is_complete,
    save_checkpoint,
    save_vsa_config,
    setup_vsa,
    step_logs,
    tracker_config,
    training_length,
    update_vsa_sparsity,
    weight_dtype_for,
)
from fastvideo_hf.training.validation import (
    check_validation_entries,
    latest_validation_videos,
    run_validation,
    validation_entries,
)

logger = get_logger(__name__)


def parse_args(argv=None):
    parser = build_training_parser(__doc__.split("\n")[0], lora=True)
    args = parser.parse_args(argv)
    validate_training_args(args)
    check_memory_saver_args(args, lora=True)
    check_context_parallel_args(args)
    return args


def main(args):
    accelerator = create_accelerator(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    # processes per sample (--context_parallel_*) must divide the run's: refused before any weight is read
    layout = parallel_layout(args, accelerator.num_processes, accelerator.process_index)
    set_seed(args.seed)  # identical LoRA initialisation on every process
    if accelerator.is_main_process:
        accelerator.init_trackers("wan-lora", config=tracker_config(args))  # never the token

    # Only the transformer is loaded: latents and prompt embeddings come precomputed from the dataset.
    model, revision = args.pretrained_model_name_or_path, args.revision
    spec = WanModelSpec.from_pretrained(model, revision)  # T2V / I2V / Wan2.2 experts / TI2V, from the config
    # One transformer in its pipeline slot, or both Wan2.2 A14B experts (--expert both) routed by timestep
    weight_dtype = weight_dtype_for(accelerator)
    # frozen weights in the mixed-precision dtype; the modules Wan keeps in float32 stay so, as in WanPipeline
    transformer, slot = load_transformer_to_train(args, spec, weight_dtype)
    transformer.requires_grad_(False)
    # on the CPU when --layerwise_casting / --group_offload place the frozen weights below, after the adapter
    transformer.to(base_weights_device(args, accelerator.device))
    vsa = setup_vsa(transformer, args)  # adds the zero gate projection to every self-attention

    # names that match no layer are named in a warning (peft drops them silently); none matching is refused
    requested = [name.strip() for name in args.lora_target_modules.split(",") if name.strip()]
    target_modules = resolve_lora_targets(next(iter(expert_modules(transformer).values())), requested)
    if vsa:
        target_modules.append("to_gate_compress")  # the gate trains as a LoRA on its zero base, saved with it
    for expert in expert_modules(transformer).values():
        expert.add_adapter(
            LoraConfig(r=args.rank, lora_alpha=args.lora_alpha, init_lora_weights=True, target_modules=target_modules)
        )
        if args.gradient_checkpointing:
            expert.enable_gradient_checkpointing()
    cast_training_params(transformer, dtype=torch.float32)  # LoRA weights train in fp32 under any mixed precision
    # fp8 storage of the frozen weights and/or their CPU offload; the LoRA stays fp32 on the device
    place_frozen_weights(transformer, args, accelerator.device, weight_dtype, accelerator.num_processes)
    register_lora_hooks(accelerator, slot)
    # --context_parallel_*: each sample's tokens sharded over a group of processes (diffusers' hooks)
    enable_context_parallel(transformer, layout, accelerator.device, weight_dtype)

    lora_parameters = [param for param in transformer.parameters() if param.requires_grad]
    optimizer = create_optimizer(lora_parameters, args)
    # one process builds the datasets cache, the others reuse it (or share its refusal of the dataset)
    dataset, fingerprint = on_main_process_first(accelerator, lambda: load_checked_latent_dataset(args, spec))
    # validation sizes the pipeline takes, and sequences that split evenly over a context-parallel group: refused
    # now, not at the first validation or the first batch of an odd shape, hours in
    entries = validation_entries(args, dataset.task)
    check_validation_entries(entries, transformer, spec)
    check_token_counts(transformer, dataset.shapes, entries, spec, layout)
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
        transformer,
        optimizer,
        dataloader,
        lr_scheduler,
        device_placement=[accelerate_places_model(args), True, True, True],  # an offloaded model stays where it is
    )

    # What a resume must find unchanged (data order, what a step is, the adapter's shape); recorded per checkpoint
    settings = run_settings(
        args, "lora", accelerator.num_processes, fingerprint, len(dataset), target_modules, layout.data_parallel_size
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
                    grad_norm = accelerator.clip_grad_norm_(lora_parameters, args.max_grad_norm)
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
                    accelerator, args, transformer, state.global_step, weight_dtype, slot, dataset.task
                )
            if state.global_step >= max_train_steps:
                break
        if state.global_step >= max_train_steps:
            break

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_lora_outputs(args.output_dir, accelerator.unwrap_model(transformer), slot)
        save_vsa_config(args.output_dir, args)
    if state.global_step % args.validation_steps and not complete:
        videos = run_validation(accelerator, args, transformer, state.global_step, weight_dtype, slot, dataset.task)
    if accelerator.is_main_process:
        if args.push_to_hub:
            recipe = {key: getattr(args, key) for key in ("rank", "lora_alpha", "learning_rate", "flow_shift")}
            push_training_output(args, lora=True, recipe=recipe, steps=state.global_step, videos=videos)
    accelerator.end_training()
    logger.info(f"done after {state.global_step} steps: LoRA in {args.output_dir}")


if __name__ == "__main__":
    sys.exit(run_refusing_in_one_line(main, parse_args))
