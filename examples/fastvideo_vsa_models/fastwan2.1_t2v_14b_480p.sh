#!/usr/bin/env bash
# FastVideo/FastWan2.1-T2V-14B-480P-Diffusers with `fastvideo-hf generate`: Wan2.1 T2V 14B, DMD-distilled and
# VSA-finetuned by FastVideo. Each value names its source in hao-ai-lab/FastVideo (see README.md).
# Needs a GPU that holds the bf16 14B transformer (~29 GB) plus the UMT5 encoder (~11 GB).
#
# Run from the repository root; override any variable from the environment and any flag by appending it.
set -euo pipefail

MODEL_ID="${MODEL_ID:-FastVideo/FastWan2.1-T2V-14B-480P-Diffusers}"  # fastvideo/configs/pipelines/registry.py
MODEL_DIR="${MODEL_DIR:-models/FastWan2.1-T2V-14B-480P-Diffusers}"
PROMPT="${PROMPT:-A neon-lit alley in futuristic Tokyo during a heavy rainstorm at night, puddles reflecting glowing signs}"
OUTPUT="${OUTPUT:-outputs/fastwan2.1_t2v_14b_480p.mp4}"

if [[ ! -f "$MODEL_DIR/model_index.json" ]]; then
  hf download "$MODEL_ID" --local-dir "$MODEL_DIR"
fi
mkdir -p "$(dirname "$OUTPUT")"

args=(
  --pretrained_model_name_or_path "$MODEL_DIR"
  --vsa_sparsity 0.9                     # scripts/inference/inference_wan_VSA_DMD_14B_480P.yaml: vsa_sparsity 0.9
  --dmd_timesteps 1000,757,522           # the same yaml: dmd_denoising_steps [1000, 757, 522]
  --height 480                           # the same yaml: 480x832, 81 frames, 16 fps (its 720P yaml: 720x1280)
  --width 832
  --num_frames 81
  --fps 16
  --seed 1024                            # the same yaml: seed 1024
  --prompt "$PROMPT"
  --output "$OUTPUT"
)
fastvideo-hf generate "${args[@]}" "$@"
