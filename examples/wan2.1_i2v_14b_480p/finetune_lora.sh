#!/usr/bin/env bash
# LoRA finetune of Wan2.1 I2V 14B 480P on the crush-smol image-to-video latents (made by preprocess_i2v.sh).
# Mirrors FastVideo's examples/training/finetune/wan_i2v_14B_480p/crush_smol/finetune_i2v_lora.{sh,yaml}; each
# value below names its source. The transformer gets [noisy latents, first-frame mask, first-frame latent] and the
# CLIP features of the first frame, as WanImageToVideoPipeline feeds it (the training script reads this from the
# model folder).
# Hardware: 4 GPUs with 80 GB (H100/A100) as in FastVideo's script, DDP: each GPU holds the frozen I2V transformer in
# bf16 (~33 GB: the 14B T2V blocks plus 2 x 5120x5120 image key/value projections per block) plus activations with
# gradient checkpointing (estimate, not measured). One GPU also works (NUM_GPUS=1).
# Validation needs the conditioning images that validation.json points at (images/first_frame_*.jpg next to it,
# not shipped: put your own there, e.g. first frames of held-out clips; see examples/README.md), or VALIDATION_FILE=
# (empty) to train without validation.
# Output: OUT/pytorch_lora_weights.safetensors (WanImageToVideoPipeline.load_lora_weights(OUT)),
# OUT/pytorch_lora_weights_comfy.safetensors (ComfyUI), OUT/checkpoint-N/.
#
# Run from the repository root; override any variable from the environment and any flag by appending it
# (bash <this file> --learning_rate 1e-4: the last value of a flag wins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

MODEL="${MODEL:-Wan-AI/Wan2.1-I2V-14B-480P-Diffusers}"
DATA="${DATA:-data/crush-smol_latents_i2v_14b_480p}"  # folder written by preprocess_i2v.sh, or its Hub dataset id
OUT="${OUT:-checkpoints/wan2.1_i2v_14b_480p_lora}"
NUM_GPUS="${NUM_GPUS:-4}"                           # FastVideo I2V-14B LoRA: NUM_GPUS=4
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/examples/accelerate_configs/ddp.yaml}"  # used when NUM_GPUS > 1
REPORT_TO="${REPORT_TO:-tensorboard}"               # FastVideo logs to wandb; tensorboard needs no account
HUB_MODEL_ID="${HUB_MODEL_ID:-}"                    # set to user/name to push the LoRA with a model card
VALIDATION_FILE="${VALIDATION_FILE-$HERE/validation.json}"  # set to empty to skip validation

# Image-to-video validation reads the images of validation.json: fail now, not at the first validation step.
if [[ -n "$VALIDATION_FILE" ]]; then
  missing="$(python - "$VALIDATION_FILE" <<'PY'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
content = json.loads(path.read_text())
for item in content.get("data", []) if isinstance(content, dict) else content:
    if item.get("image_path") and not (path.parent / item["image_path"]).is_file():
        print(path.parent / item["image_path"])
PY
)"
  if [[ -n "$missing" ]]; then
    echo "validation images not found (put a first frame per entry there, or run with VALIDATION_FILE= to skip" \
         "validation):" >&2
    echo "$missing" >&2
    exit 2
  fi
fi

# FastVideo: train_batch_size 1 x gradient_accumulation_steps 1 on 4 GPUs with sp_size 4, i.e. the 4 GPUs share one
# clip (sequence parallel): global batch 1. Our default is data parallel: each GPU takes its own clip, so the
# global batch is NUM_GPUS per step (NUM_GPUS=1 reproduces FastVideo's batch of 1). FastVideo's exact setup is
# bash <this file> --context_parallel_ulysses 4: the 4 GPUs share each clip (4 divides the 40 heads of 14B and the
# 31,200 tokens of 480x832x77), global batch 1.
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
  --rank 32                              # FastVideo I2V-14B LoRA: training.lora.rank 32
  --lora_alpha 32                        # FastVideo: alpha defaults to the rank (scale 1)
  --lora_target_modules to_q,to_k,to_v,to_out.0,add_k_proj,add_v_proj  # FastVideo's default targets are substrings
                                         # (to_q/to_k/to_v/to_out, k_proj/v_proj...); in its Wan I2V model they also
                                         # hit the image cross-attention's add_k_proj/add_v_proj (from reading its code)
  --train_batch_size "$TRAIN_BATCH_SIZE" # FastVideo I2V-14B LoRA: training.data.train_batch_size 1
  --gradient_accumulation_steps "$GRAD_ACCUM"  # FastVideo I2V-14B LoRA: gradient_accumulation_steps 1
  --max_train_steps 2000                 # FastVideo I2V-14B LoRA: training.loop.max_train_steps 2000
  --learning_rate 1e-5                   # FastVideo I2V-14B LoRA: learning_rate 1.0e-05; FastVideo's docs recommend
                                         # 1e-4..2e-4 for LoRA (DiffSynth's Wan2.1-I2V-14B-480P LoRA: 1e-4)
  --lr_scheduler constant                # FastVideo default lr_scheduler (the yaml sets none)
  --lr_warmup_steps 0
  --adam_beta1 0.9                       # FastVideo AdamW betas "0.9,0.999"
  --adam_beta2 0.999
  --adam_weight_decay 1e-4               # FastVideo I2V-14B LoRA: training.optimizer.weight_decay 0.0001
  --adam_epsilon 1e-8                    # FastVideo AdamW eps
  --max_grad_norm 1.0                    # FastVideo I2V-14B LoRA: training.optimizer.max_grad_norm 1.0
  --mixed_precision bf16                 # frozen base in bf16, LoRA weights in fp32
  --gradient_checkpointing               # needed for 14B at 480x832x77 (31,200 tokens) with a whole clip per GPU
  --weighting_scheme uniform             # FastVideo default timestep density
  --flow_shift 3.0                       # FastVideo I2V-14B VSA recipe --flow_shift 3; diffusers: 3.0 for 480p;
                                         # Wan2.1's own I2V 480p sampling shift 3.0
  --caption_dropout 0.1                  # FastVideo I2V-14B LoRA: training.data.training_cfg_rate 0.1
  --checkpointing_steps 1000             # FastVideo I2V-14B LoRA: training_state_checkpointing_steps 1000
  --checkpoints_total_limit 3            # FastVideo I2V-14B LoRA: training.checkpoint.checkpoints_total_limit 3
  --resume_from_checkpoint latest        # re-run to continue after an interruption (fresh start if OUT has none)
  --validation_steps 100                 # FastVideo I2V-14B LoRA: training.validation.every_steps 100
  --validation_num_inference_steps 40    # FastVideo I2V-14B LoRA: validation sampling_steps [40]
  --validation_guidance_scale 6.0        # FastVideo I2V-14B LoRA: validation guidance_scale 6.0
  --validation_height 480                # FastVideo I2V-14B LoRA: num_height 480
  --validation_width 832                 # FastVideo I2V-14B LoRA: num_width 832
  --validation_num_frames 77             # FastVideo I2V-14B LoRA: num_frames 77
  --validation_fps 16                    # Wan2.1's frame rate
  --dataloader_num_workers 1             # FastVideo I2V-14B LoRA: training.data.dataloader_num_workers 1
  --report_to "$REPORT_TO"
)
if [[ -n "$VALIDATION_FILE" ]]; then
  args+=(--validation_file "$VALIDATION_FILE")  # entries with image_path (FastVideo's I2V example uses video_path)
fi
if [[ -n "$HUB_MODEL_ID" ]]; then
  args+=(--push_to_hub --hub_model_id "$HUB_MODEL_ID")  # token from `hf auth login`, never on the command line
fi

"${launch[@]}" "$REPO/training_scripts/train_wan_lora.py" "${args[@]}" "$@"
