#!/usr/bin/env bash
# Full finetune of one expert of Wan2.2 I2V A14B (`transformer` for high noise, `transformer_2` for low noise, split
# at the model's boundary_ratio 0.9, i.e. timestep 900) on the crush-smol image-to-video latents (made by
# preprocess_i2v.sh). The transformer gets [noisy latents, first-frame mask, first-frame latent], as
# WanImageToVideoPipeline feeds it (no CLIP features: Wan2.2 I2V has no image encoder).
# FastVideo has no Wan2.2 A14B finetune recipe; the values come from DiffSynth-Studio's
# examples/wanvideo/model_training/full/Wan2.2-I2V-A14B.sh, FastVideo's I2V-14B crush-smol full finetune
# (examples/training/finetune/wan_i2v_14B_480p/crush_smol/finetune_i2v.yaml) and Wan2.2's own configs
# (wan/configs/wan_i2v_A14B.py); each value below names its source.
#
# EXPERT (default high): DiffSynth fully finetunes the experts in two separate runs (high, then low), each on its
# side of the boundary; so do these scripts:
#   EXPERT=high bash <this file>   # transformer, timesteps 900..1000 -> OUT/transformer/
#   EXPERT=low  bash <this file>   # transformer_2, timesteps 0..900  -> OUT/transformer_2/
# EXPERT=both trains both in one run (each sample on the expert of its timestep), but FSDP then shards fp32 weights,
# gradients and AdamW states of 2 x 14B (~460 GB, ~57 GB per GPU on 8) before activations: beyond 80 GB GPUs.
#
# Hardware: 8 GPUs with 80 GB (H100/A100), FSDP full sharding (examples/accelerate_configs/fsdp.yaml): one expert's
# fp32 weights, gradients and AdamW states are ~230 GB, ~29 GB per GPU, plus activations (estimate, not measured).
# Validation needs the conditioning images that validation.json points at (images/first_frame_*.jpg next to it,
# not shipped: put your own there; see examples/README.md), or VALIDATION_FILE= (empty) to train without validation.
# Output: OUT/transformer/ (high) or OUT/transformer_2/ (low), OUT/checkpoint-N/. Load into WanImageToVideoPipeline:
#   pipe.transformer = WanTransformer3DModel.from_pretrained(OUT_high, subfolder="transformer")
#   pipe.transformer_2 = WanTransformer3DModel.from_pretrained(OUT_low, subfolder="transformer_2")
#
# Run from the repository root; override any variable from the environment and any flag by appending it
# (bash <this file> --max_train_steps 500: the last value of a flag wins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

EXPERT="${EXPERT:-high}"                            # high | low | both (see above)
case "$EXPERT" in
  high|low|both) ;;
  *) echo "EXPERT must be high, low or both, got '$EXPERT'" >&2; exit 2 ;;
esac
MODEL="${MODEL:-Wan-AI/Wan2.2-I2V-A14B-Diffusers}"
DATA="${DATA:-data/crush-smol_latents_i2v_a14b}"    # folder written by preprocess_i2v.sh, or its Hub dataset id
OUT="${OUT:-checkpoints/wan2.2_i2v_a14b_full_$EXPERT}"  # one folder per expert (each resumes on its own)
NUM_GPUS="${NUM_GPUS:-8}"                           # FastVideo I2V-14B full finetune: NUM_GPUS=8
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/examples/accelerate_configs/fsdp.yaml}"
REPORT_TO="${REPORT_TO:-tensorboard}"               # tensorboard needs no account; wandb: REPORT_TO=wandb
HUB_MODEL_ID="${HUB_MODEL_ID:-}"                    # set to user/name to push the expert with a model card
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

# One clip per GPU per step, no accumulation (DiffSynth: batch 1; FastVideo I2V-14B: batch 1, accumulation 1, but
# its 8 GPUs share one clip by sequence parallelism): the global batch is NUM_GPUS (8), data parallel. FastVideo's
# global batch of 1 is bash <this file> --context_parallel_ulysses 8 (the 8 GPUs share each clip; 8 divides the 40
# heads of each A14B expert and the 32,760 tokens of 480x832x81).
TRAIN_BATCH_SIZE=1
GRAD_ACCUM=1

launch=(accelerate launch --config_file "$ACCELERATE_CONFIG" --num_processes "$NUM_GPUS")

args=(
  --pretrained_model_name_or_path "$MODEL"
  --dataset_name "$DATA"
  --output_dir "$OUT"
  --expert "$EXPERT"                     # see above; the boundary (0.9) comes from the model's boundary_ratio
  --seed 42                              # finetrainers crush-smol example: --seed 42
  --train_batch_size "$TRAIN_BATCH_SIZE" # DiffSynth / FastVideo I2V-14B: batch 1
  --gradient_accumulation_steps "$GRAD_ACCUM"  # FastVideo I2V-14B: gradient_accumulation_steps 1
  --max_train_steps 2000                 # FastVideo I2V-14B full: max_train_steps 2000 (DiffSynth counts epochs: 2 x
                                         # dataset_repeat 100), per expert
  --learning_rate 1e-5                   # DiffSynth Wan2.2-I2V-A14B full: 1e-5; FastVideo I2V-14B full: 1.0e-05
  --lr_scheduler constant                # DiffSynth and FastVideo: constant
  --lr_warmup_steps 0                    # no warmup with a constant schedule
  --adam_beta1 0.9                       # FastVideo AdamW betas "0.9,0.999"
  --adam_beta2 0.999
  --adam_weight_decay 1e-4               # FastVideo I2V-14B: weight_decay 0.0001 (DiffSynth's default: 0.01)
  --adam_epsilon 1e-8                    # FastVideo AdamW eps
  --max_grad_norm 1.0                    # FastVideo I2V-14B: max_grad_norm 1.0
  --mixed_precision bf16                 # FastVideo: bf16 compute over fp32 master weights (engine.precision.dit fp32)
  --gradient_checkpointing               # FastVideo I2V-14B: enable_gradient_checkpointing_type full; DiffSynth: on
  --weighting_scheme uniform             # DiffSynth: timestep index uniform over its shifted schedule; FastVideo default
  --flow_shift 5.0                       # Wan2.2 wan_i2v_A14B.py: sample_shift 5.0 (musubi: "5.0 for I2V");
                                         # DiffSynth trains on a shift-5 schedule (diffusers' A14B config: 3.0)
  --caption_dropout 0.1                  # FastVideo I2V-14B: training.data.training_cfg_rate 0.1
  --checkpointing_steps 1000             # FastVideo I2V-14B full: training_state_checkpointing_steps 1000
  --checkpoints_total_limit 3            # FastVideo I2V-14B full: checkpoints_total_limit 3
  --resume_from_checkpoint latest        # re-run to continue after an interruption (fresh start if OUT has none)
  --validation_steps 250                 # ai-toolkit Wan2.2 14B: sample_every 250 (a 14B video takes minutes)
  --validation_num_inference_steps 40    # Wan2.2 wan_i2v_A14B.py: sample_steps 40; Diffusers model card: 40
  --validation_guidance_scale 3.5        # Wan2.2 wan_i2v_A14B.py: sample_guide_scale (3.5, 3.5); model card: 3.5
  --validation_height 480                # 480P (preprocess_i2v.sh; Diffusers model card: max_area 480*832)
  --validation_width 832
  --validation_num_frames 81             # Wan2.2: frame_num 81; Diffusers model card: num_frames=81
  --validation_fps 16                    # Wan2.2: sample_fps 16; Diffusers model card: fps=16
  --dataloader_num_workers 1             # FastVideo I2V-14B: training.data.dataloader_num_workers 1
  --report_to "$REPORT_TO"
)
if [[ -n "$VALIDATION_FILE" ]]; then
  args+=(--validation_file "$VALIDATION_FILE")  # entries with image_path (FastVideo's I2V example uses video_path)
fi
if [[ -n "$HUB_MODEL_ID" ]]; then
  args+=(--push_to_hub --hub_model_id "$HUB_MODEL_ID")  # token from `hf auth login`, never on the command line
fi

"${launch[@]}" "$REPO/training_scripts/train_wan.py" "${args[@]}" "$@"
