#!/usr/bin/env bash
# Full finetune of Wan2.2 TI2V 5B on the crush-smol latents (made by preprocess_t2v.sh or preprocess_i2v.sh).
# TI2V-5B is one transformer (no experts) with one timestep per token: on a text-to-video dataset it trains
# text-to-video; on an image-to-video dataset the first latent frame is kept clean (timestep 0) and left out of the
# loss, as the pipeline samples image-to-video. TASK picks which dataset (and so which ability) to train.
# FastVideo has no TI2V-5B finetune recipe (only distillation); the values come from DiffSynth-Studio's
# examples/wanvideo/model_training/full/Wan2.2-TI2V-5B.sh, FastVideo's crush-smol full finetunes, Wan2.2's own config
# (wan/configs/wan_ti2v_5B.py) and the Diffusers model card; each value below names its source.
# Hardware: 4 GPUs with 80 GB (H100/A100), FSDP full sharding (examples/accelerate_configs/fsdp.yaml): fp32 master
# weights, gradients and AdamW states of 5B are ~80 GB, ~20 GB per GPU, plus activations for 27,280 tokens
# (estimate, not measured). Plain DDP would need the whole ~80 GB on every GPU.
# TASK=i2v validation needs the conditioning images that validation.json points at (images/first_frame_*.jpg next
# to it, not shipped: put your own there; see examples/README.md), or VALIDATION_FILE= (empty) to skip validation.
# Output: OUT/transformer/ (WanTransformer3DModel.from_pretrained(OUT, subfolder="transformer")), OUT/checkpoint-N/.
#
# Run from the repository root; override any variable from the environment (TASK=i2v bash <this file>) and any
# flag by appending it (bash <this file> --max_train_steps 500: the last value of a flag wins).
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
OUT="${OUT:-checkpoints/wan2.2_ti2v_5b_full_$TASK}"
NUM_GPUS="${NUM_GPUS:-4}"                           # our choice, as FastVideo's 1.3B crush-smol full finetune (4 GPUs)
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/examples/accelerate_configs/fsdp.yaml}"
REPORT_TO="${REPORT_TO:-tensorboard}"               # tensorboard needs no account; wandb: REPORT_TO=wandb
HUB_MODEL_ID="${HUB_MODEL_ID:-}"                    # set to user/name to push OUT/transformer with a model card
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

launch=(accelerate launch --config_file "$ACCELERATE_CONFIG" --num_processes "$NUM_GPUS")

args=(
  --pretrained_model_name_or_path "$MODEL"
  --dataset_name "$DATA"
  --output_dir "$OUT"
  --seed 42                              # finetrainers crush-smol example: --seed 42
  --train_batch_size "$TRAIN_BATCH_SIZE" # DiffSynth: batch 1
  --gradient_accumulation_steps "$GRAD_ACCUM"  # DiffSynth: gradient_accumulation_steps 1
  --max_train_steps 2000                 # our choice, as FastVideo's 14B crush-smol full finetune (DiffSynth counts
                                         # epochs: 2 x dataset_repeat 100)
  --learning_rate 1e-5                   # DiffSynth Wan2.2-TI2V-5B full: 1e-5 (FastVideo docs: 1e-5..5e-5 for full)
  --lr_scheduler constant                # DiffSynth and FastVideo: constant
  --lr_warmup_steps 0                    # no warmup with a constant schedule
  --adam_beta1 0.9                       # FastVideo AdamW betas "0.9,0.999"
  --adam_beta2 0.999
  --adam_weight_decay 1e-4               # FastVideo crush-smol: weight_decay 0.0001 (DiffSynth's default: 0.01)
  --adam_epsilon 1e-8                    # FastVideo AdamW eps
  --max_grad_norm 1.0                    # FastVideo crush-smol: max_grad_norm 1.0
  --mixed_precision bf16                 # FastVideo: bf16 compute over fp32 master weights (engine.precision.dit fp32)
  --gradient_checkpointing               # FastVideo full finetunes: enable_gradient_checkpointing_type full
  --weighting_scheme uniform             # DiffSynth: timestep index uniform over its shifted schedule; FastVideo default
  --flow_shift 5.0                       # Wan2.2 wan_ti2v_5B.py: sample_shift 5.0 = diffusers' TI2V scheduler config
                                         # (flow_shift 5.0) = DiffSynth's shift-5 training schedule
  --caption_dropout 0.1                  # FastVideo crush-smol: training.data.training_cfg_rate 0.1
  --checkpointing_steps 1000             # FastVideo crush-smol full: training_state_checkpointing_steps 1000
  --checkpoints_total_limit 3            # FastVideo crush-smol full: checkpoints_total_limit 3
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

"${launch[@]}" "$REPO/training_scripts/train_wan.py" "${args[@]}" "$@"
