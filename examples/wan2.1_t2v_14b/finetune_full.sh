#!/usr/bin/env bash
# Full finetune of Wan2.1 T2V 14B on the crush-smol latents (made by preprocess_t2v.sh in this folder).
# FastVideo has no T2V-14B crush-smol finetune; the values come from its 14B crush-smol full finetune
# (examples/training/finetune/wan_i2v_14B_480p/crush_smol/finetune_i2v.{sh,yaml}) and, where text-to-video differs
# from image-to-video (sampling steps, guidance), from its T2V-14B recipe
# (examples/training/finetune/Wan2.1-VSA/Wan-Syn-Data/T2V-14B-VSA.yaml) and diffusers' WanPipeline defaults.
# Hardware: 8 GPUs with 80 GB (H100/A100), FSDP full sharding (examples/accelerate_configs/fsdp.yaml): fp32 master
# weights, gradients and AdamW states of 14B are ~224 GB, ~28 GB per GPU, plus activations (estimate).
# Output: OUT/transformer/ (WanTransformer3DModel.from_pretrained(OUT, subfolder="transformer")), OUT/checkpoint-N/.
#
# Run from the repository root; override any variable from the environment and any flag by appending it
# (bash <this file> --max_train_steps 500: the last value of a flag wins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

MODEL="${MODEL:-Wan-AI/Wan2.1-T2V-14B-Diffusers}"
DATA="${DATA:-data/crush-smol_latents_t2v_14b}"     # folder written by preprocess_t2v.sh, or its Hub dataset id
OUT="${OUT:-checkpoints/wan2.1_t2v_14b_full}"
NUM_GPUS="${NUM_GPUS:-8}"                           # FastVideo 14B example: NUM_GPUS=8
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/examples/accelerate_configs/fsdp.yaml}"
REPORT_TO="${REPORT_TO:-tensorboard}"               # FastVideo logs to wandb; tensorboard needs no account
HUB_MODEL_ID="${HUB_MODEL_ID:-}"                    # set to user/name to push OUT/transformer with a model card

# FastVideo: train_batch_size 1 x gradient_accumulation_steps 1 on 8 GPUs with sp_size 8, i.e. all 8 GPUs share one
# clip (sequence parallel): global batch 1. Our default is data parallel: each GPU takes its own clip, so the
# global batch is NUM_GPUS (8) per step. The learning rate is kept at FastVideo's 1e-5. FastVideo's exact setup
# (--context_parallel_ulysses 8, which divides the 40 heads of 14B; global batch 1) is
# finetune_full_context_parallel.sh in this folder.
TRAIN_BATCH_SIZE=1
GRAD_ACCUM=1

launch=(accelerate launch --config_file "$ACCELERATE_CONFIG" --num_processes "$NUM_GPUS")

args=(
  --pretrained_model_name_or_path "$MODEL"
  --dataset_name "$DATA"
  --output_dir "$OUT"
  --seed 42                              # finetrainers crush-smol example: --seed 42
  --train_batch_size "$TRAIN_BATCH_SIZE" # FastVideo 14B: training.data.train_batch_size 1
  --gradient_accumulation_steps "$GRAD_ACCUM"  # FastVideo 14B: training.loop.gradient_accumulation_steps 1
  --max_train_steps 2000                 # FastVideo 14B: training.loop.max_train_steps 2000
  --learning_rate 1e-5                   # FastVideo 14B: training.optimizer.learning_rate 1.0e-05 (docs: 1e-5..5e-5 full)
  --lr_scheduler constant                # FastVideo default lr_scheduler (the yaml sets none)
  --lr_warmup_steps 0                    # no warmup with a constant schedule
  --adam_beta1 0.9                       # FastVideo AdamW betas "0.9,0.999"
  --adam_beta2 0.999
  --adam_weight_decay 1e-4               # FastVideo 14B: training.optimizer.weight_decay 0.0001
  --adam_epsilon 1e-8                    # FastVideo AdamW eps
  --max_grad_norm 1.0                    # FastVideo 14B: training.optimizer.max_grad_norm 1.0
  --mixed_precision bf16                 # FastVideo: bf16 compute over fp32 master weights (engine.precision.dit fp32)
  --gradient_checkpointing               # FastVideo 14B: training.model.enable_gradient_checkpointing_type full
  --weighting_scheme uniform             # FastVideo default timestep density
  --flow_shift 3.0                       # 480p: diffusers WanPipeline (3.0 for 480p, 5.0 for 720p); FastVideo new stack 3.
                                         # FastVideo's T2V-14B VSA recipe uses 5.0, but at 720x1280
  --caption_dropout 0.1                  # FastVideo 14B: training.data.training_cfg_rate 0.1
  --checkpointing_steps 1000             # FastVideo 14B: training.checkpoint.training_state_checkpointing_steps 1000
  --checkpoints_total_limit 3            # FastVideo 14B: training.checkpoint.checkpoints_total_limit 3
  --resume_from_checkpoint latest        # re-run to continue after an interruption (fresh start if OUT has none)
  --validation_file "$HERE/validation.json"
  --validation_steps 100                 # FastVideo 14B: training.validation.every_steps 100
  --validation_num_inference_steps 50    # FastVideo T2V-14B yaml: sampling_steps [50] (its I2V-14B example: 40)
  --validation_guidance_scale 5.0        # FastVideo T2V-14B yaml: guidance_scale 5.0 = WanPipeline default (I2V: 6.0)
  --validation_height 480                # FastVideo 14B: num_height 480
  --validation_width 832                 # FastVideo 14B: num_width 832
  --validation_num_frames 77             # FastVideo 14B: num_frames 77
  --dataloader_num_workers 1             # FastVideo 14B: training.data.dataloader_num_workers 1
  --report_to "$REPORT_TO"
)
if [[ -n "$HUB_MODEL_ID" ]]; then
  args+=(--push_to_hub --hub_model_id "$HUB_MODEL_ID")  # token from `hf auth login`, never on the command line
fi

"${launch[@]}" "$REPO/training_scripts/train_wan.py" "${args[@]}" "$@"
