#!/usr/bin/env bash
# LoRA finetune of Wan2.2 TI2V 5B on the crush-smol latents (made by preprocess_t2v.sh or preprocess_i2v.sh).
# TI2V-5B is one transformer (no experts) with one timestep per token: on a text-to-video dataset it trains
# text-to-video; on an image-to-video dataset the first latent frame is kept clean (timestep 0) and left out of the
# loss, as the pipeline samples image-to-video. TASK picks which dataset (and so which ability) to train.
# FastVideo has no TI2V-5B finetune recipe (only distillation); the values come from DiffSynth-Studio's
# examples/wanvideo/model_training/lora/Wan2.2-TI2V-5B.sh, ai-toolkit's Wan2.2 example
# (config/examples/train_lora_wan22_14b_24gb.yaml), Wan2.2's own config (wan/configs/wan_ti2v_5B.py) and the
# Diffusers model card; each value below names its source.
# Hardware: 1 GPU with 80 GB (H100/A100): the frozen 5B transformer in bf16 (~10 GB) plus activations for 27,280
# tokens (704x1280x121) with gradient checkpointing (estimate, not measured); 48 GB GPUs should do. More GPUs use DDP.
# TASK=i2v validation needs the conditioning images that validation.json points at (images/first_frame_*.jpg next
# to it, not shipped: put your own there; see examples/README.md), or VALIDATION_FILE= (empty) to skip validation.
# Output: OUT/pytorch_lora_weights.safetensors (WanPipeline / WanImageToVideoPipeline .load_lora_weights(OUT)),
# OUT/pytorch_lora_weights_comfy.safetensors (ComfyUI), OUT/checkpoint-N/.
#
# Run from the repository root; override any variable from the environment (TASK=i2v bash <this file>) and any
# flag by appending it (bash <this file> --learning_rate 2e-4: the last value of a flag wins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

# Our choice of default: t2v, the task of the crush-smol recipes; it also validates without conditioning images.
TASK="${TASK:-t2v}"                                 # t2v | i2v: which dataset DATA defaults to (set it to match DATA)
case "$TASK" in
  t2v|i2v) ;;
  *) echo "TASK must be t2v or i2v, got '$TASK'" >&2; exit 2 ;;
esac
MODEL="${MODEL:-Wan-AI/Wan2.2-TI2V-5B-Diffusers}"
DATA="${DATA:-data/crush-smol_latents_${TASK}_ti2v_5b}"  # folder written by preprocess_$TASK.sh, or its Hub dataset id
OUT="${OUT:-checkpoints/wan2.2_ti2v_5b_lora_$TASK}"
NUM_GPUS="${NUM_GPUS:-1}"                           # our choice: a 5B LoRA fits one GPU (DiffSynth: plain accelerate launch)
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/examples/accelerate_configs/ddp.yaml}"  # used when NUM_GPUS > 1
REPORT_TO="${REPORT_TO:-tensorboard}"               # tensorboard needs no account; wandb: REPORT_TO=wandb
HUB_MODEL_ID="${HUB_MODEL_ID:-}"                    # set to user/name to push the LoRA with a model card
VALIDATION_FILE="${VALIDATION_FILE-$HERE/validation.json}"  # set to empty to skip validation

# Image-to-video validation reads the images of validation.json (text-to-video ignores them): fail now, not at the
# first validation step.
if [[ "$TASK" == i2v && -n "$VALIDATION_FILE" ]]; then
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

# One clip per GPU per step, no accumulation (DiffSynth: batch 1, gradient accumulation 1): global batch NUM_GPUS.
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
  --seed 42                              # ai-toolkit sample seed 42; finetrainers crush-smol --seed 42
  --rank 32                              # DiffSynth Wan2.2-TI2V-5B LoRA: --lora_rank 32; ai-toolkit: linear 32
  --lora_alpha 32                        # ai-toolkit: linear_alpha 32 (scale 1)
  --lora_target_modules to_q,to_k,to_v,to_out.0,ffn.net.0.proj,ffn.net.2  # DiffSynth TI2V-5B: "q,k,v,o,ffn.0,ffn.2"
                                         # (self- and cross-attention + feed-forward). (FastVideo: attention only)
  --train_batch_size "$TRAIN_BATCH_SIZE" # DiffSynth / ai-toolkit: batch_size 1
  --gradient_accumulation_steps "$GRAD_ACCUM"  # ai-toolkit: gradient_accumulation 1
  --max_train_steps 2000                 # our choice: ai-toolkit's Wan2.2 steps 2000 ("500 - 4000 is a good range")
                                         # (DiffSynth counts epochs: 5 x dataset_repeat 100)
  --learning_rate 1e-4                   # DiffSynth Wan2.2-TI2V-5B LoRA: 1e-4; ai-toolkit Wan2.2: 1e-4; musubi: 2e-4
  --lr_scheduler constant                # DiffSynth and ai-toolkit: constant
  --lr_warmup_steps 0
  --adam_beta1 0.9                       # AdamW defaults (FastVideo "0.9,0.999")
  --adam_beta2 0.999
  --adam_weight_decay 1e-4               # ai-toolkit Wan2.2: weight_decay 1e-4; FastVideo: 1e-4
  --adam_epsilon 1e-8                    # AdamW default
  --max_grad_norm 1.0                    # FastVideo: max_grad_norm 1.0
  --mixed_precision bf16                 # frozen base in bf16, LoRA weights in fp32
  --gradient_checkpointing               # DiffSynth (always on) and ai-toolkit: gradient_checkpointing true
  --weighting_scheme uniform             # DiffSynth: timestep index uniform over its shifted schedule; FastVideo default
  --flow_shift 5.0                       # Wan2.2 wan_ti2v_5B.py: sample_shift 5.0 = diffusers' TI2V scheduler config
                                         # (flow_shift 5.0) = DiffSynth's shift-5 training schedule
  --caption_dropout 0.1                  # FastVideo: training_cfg_rate 0.1 (ai-toolkit: 0.05)
  --checkpointing_steps 250              # ai-toolkit Wan2.2: save_every 250
  --checkpoints_total_limit 4            # ai-toolkit Wan2.2: max_step_saves_to_keep 4
  --resume_from_checkpoint latest        # re-run to continue after an interruption (fresh start if OUT has none)
  --validation_steps 250                 # ai-toolkit Wan2.2: sample_every 250
  --validation_num_inference_steps 50    # Wan2.2 wan_ti2v_5B.py: sample_steps 50; Diffusers model card: 50
  --validation_guidance_scale 5.0        # Wan2.2 wan_ti2v_5B.py: sample_guide_scale 5.0; model card: 5.0
  --validation_height 704                # Diffusers model card: height=704
  --validation_width 1280                # Diffusers model card: width=1280
  --validation_num_frames 121            # Wan2.2 wan_ti2v_5B.py: frame_num 121; model card: num_frames=121
  --validation_fps 24                    # Wan2.2 wan_ti2v_5B.py: sample_fps 24; model card: fps=24
  --dataloader_num_workers 1             # FastVideo: training.data.dataloader_num_workers 1
  --report_to "$REPORT_TO"
)
if [[ -n "$VALIDATION_FILE" ]]; then
  args+=(--validation_file "$VALIDATION_FILE")  # image_path is used for TASK=i2v only
fi
if [[ -n "$HUB_MODEL_ID" ]]; then
  args+=(--push_to_hub --hub_model_id "$HUB_MODEL_ID")  # token from `hf auth login`, never on the command line
fi

"${launch[@]}" "$REPO/training_scripts/train_wan_lora.py" "${args[@]}" "$@"
