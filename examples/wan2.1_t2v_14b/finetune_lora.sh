#!/usr/bin/env bash
# LoRA finetune of Wan2.1 T2V 14B on the crush-smol latents (made by preprocess_t2v.sh in this folder).
# FastVideo has no T2V-14B crush-smol LoRA; the values come from its 14B crush-smol LoRA
# (examples/training/finetune/wan_i2v_14B_480p/crush_smol/finetune_i2v_lora.{sh,yaml}) and, where text-to-video
# differs from image-to-video (sampling steps, guidance), from its T2V-14B recipe
# (examples/training/finetune/Wan2.1-VSA/Wan-Syn-Data/T2V-14B-VSA.yaml) and diffusers' WanPipeline defaults.
# Hardware: 4 GPUs with 80 GB (H100/A100) as in FastVideo's script, DDP: each GPU holds the frozen 14B base in bf16
# (~29 GB) plus activations with gradient checkpointing. One GPU also works (NUM_GPUS=1).
# Output: OUT/pytorch_lora_weights.safetensors (WanPipeline.load_lora_weights(OUT)),
# OUT/pytorch_lora_weights_comfy.safetensors (ComfyUI), OUT/checkpoint-N/.
#
# Run from the repository root; override any variable from the environment and any flag by appending it
# (bash <this file> --learning_rate 1e-4: the last value of a flag wins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

MODEL="${MODEL:-Wan-AI/Wan2.1-T2V-14B-Diffusers}"
DATA="${DATA:-data/crush-smol_latents_t2v_14b}"     # folder written by preprocess_t2v.sh, or its Hub dataset id
OUT="${OUT:-checkpoints/wan2.1_t2v_14b_lora}"
NUM_GPUS="${NUM_GPUS:-4}"                           # FastVideo 14B LoRA: NUM_GPUS=4
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/examples/accelerate_configs/ddp.yaml}"  # used when NUM_GPUS > 1
REPORT_TO="${REPORT_TO:-tensorboard}"               # FastVideo logs to wandb; tensorboard needs no account
HUB_MODEL_ID="${HUB_MODEL_ID:-}"                    # set to user/name to push the LoRA with a model card

# FastVideo: train_batch_size 1 x gradient_accumulation_steps 1 on 4 GPUs with sp_size 4, i.e. the 4 GPUs share one
# clip (sequence parallel): global batch 1. Our default is data parallel: each GPU takes its own clip, so the
# global batch is NUM_GPUS per step (NUM_GPUS=1 reproduces FastVideo's batch of 1). FastVideo's exact setup is
# bash <this file> --context_parallel_ulysses 4: the 4 GPUs share each clip (4 divides the 40 heads of 14B and the
# 31,200 tokens of 480x832x77), global batch 1. One 24 GB GPU: finetune_lora_24gb.sh.
TRAIN_BATCH_SIZE=1
GRAD_ACCUM=1

launch=(accelerate launch --num_processes "$NUM_GPUS")
if (( NUM_GPUS > 1 )); then
  launch+=(--config_file "$ACCELERATE_CONFIG")
else
  launch+=(--num_machines 1 --mixed_precision bf16 --dynamo_backend no)
fi

args=(
  --pretrained_model_name_or_path "$MODEL"
  --dataset_name "$DATA"
  --output_dir "$OUT"
  --seed 42                              # finetrainers crush-smol example: --seed 42
  --rank 32                              # FastVideo 14B LoRA: training.lora.rank 32
  --lora_alpha 32                        # FastVideo: alpha defaults to the rank (scale 1)
  --lora_target_modules to_q,to_k,to_v,to_out.0  # FastVideo default targets to_q/to_k/to_v/to_out (self- and
                                         # cross-attention); finetrainers: blocks.*(to_q|to_k|to_v|to_out.0)
  --train_batch_size "$TRAIN_BATCH_SIZE" # FastVideo 14B LoRA: training.data.train_batch_size 1
  --gradient_accumulation_steps "$GRAD_ACCUM"  # FastVideo 14B LoRA: training.loop.gradient_accumulation_steps 1
  --max_train_steps 2000                 # FastVideo 14B LoRA: training.loop.max_train_steps 2000
  --learning_rate 1e-5                   # FastVideo 14B LoRA: training.optimizer.learning_rate 1.0e-05; FastVideo's docs
                                         # recommend 1e-4..2e-4 for LoRA
  --lr_scheduler constant                # FastVideo default lr_scheduler (the yaml sets none)
  --lr_warmup_steps 0
  --adam_beta1 0.9                       # FastVideo AdamW betas "0.9,0.999"
  --adam_beta2 0.999
  --adam_weight_decay 1e-4               # FastVideo 14B LoRA: training.optimizer.weight_decay 0.0001
  --adam_epsilon 1e-8                    # FastVideo AdamW eps
  --max_grad_norm 1.0                    # FastVideo 14B LoRA: training.optimizer.max_grad_norm 1.0
  --mixed_precision bf16                 # frozen base in bf16, LoRA weights in fp32
  --gradient_checkpointing               # needed for 14B at 480x832x77 (31,200 tokens) with a whole clip per GPU
  --weighting_scheme uniform             # FastVideo default timestep density
  --flow_shift 3.0                       # 480p: diffusers WanPipeline (3.0 for 480p, 5.0 for 720p); FastVideo new stack 3.
                                         # FastVideo's T2V-14B VSA recipe uses 5.0, but at 720x1280
  --caption_dropout 0.1                  # FastVideo 14B LoRA: training.data.training_cfg_rate 0.1
  --checkpointing_steps 1000             # FastVideo 14B LoRA: training.checkpoint.training_state_checkpointing_steps 1000
  --checkpoints_total_limit 3            # FastVideo 14B LoRA: training.checkpoint.checkpoints_total_limit 3
  --resume_from_checkpoint latest        # re-run to continue after an interruption (fresh start if OUT has none)
  --validation_file "$HERE/validation.json"
  --validation_steps 100                 # FastVideo 14B LoRA: training.validation.every_steps 100
  --validation_num_inference_steps 50    # FastVideo T2V-14B yaml: sampling_steps [50] (its I2V-14B example: 40)
  --validation_guidance_scale 5.0        # FastVideo T2V-14B yaml: guidance_scale 5.0 = WanPipeline default (I2V: 6.0)
  --validation_height 480                # FastVideo 14B LoRA: num_height 480
  --validation_width 832                 # FastVideo 14B LoRA: num_width 832
  --validation_num_frames 77             # FastVideo 14B LoRA: num_frames 77
  --dataloader_num_workers 1             # FastVideo 14B LoRA: training.data.dataloader_num_workers 1
  --report_to "$REPORT_TO"
)
if [[ -n "$HUB_MODEL_ID" ]]; then
  args+=(--push_to_hub --hub_model_id "$HUB_MODEL_ID")  # token from `hf auth login`, never on the command line
fi

"${launch[@]}" "$REPO/training_scripts/train_wan_lora.py" "${args[@]}" "$@"
