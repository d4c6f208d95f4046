#!/usr/bin/env bash
# FastVideo/FastWan2.1-T2V-1.3B-Diffusers with `fastvideo-hf generate`: Wan2.1 T2V 1.3B, DMD-distilled and
# VSA-finetuned by FastVideo. Each value names its source in hao-ai-lab/FastVideo (see README.md).
# The gate weights are read from the local folder, so the model is downloaded first (hf, the Hub CLI).
#
# Run from the repository root; override any variable from the environment and any flag by appending it
# (bash <this file> --seed 7: the last value of a flag wins).
set -euo pipefail

MODEL_ID="${MODEL_ID:-FastVideo/FastWan2.1-T2V-1.3B-Diffusers}"
MODEL_DIR="${MODEL_DIR:-models/FastWan2.1-T2V-1.3B-Diffusers}"
PROMPT="${PROMPT:-A neon-lit alley in futuristic Tokyo during a heavy rainstorm at night, puddles reflecting glowing signs}"
OUTPUT="${OUTPUT:-outputs/fastwan2.1_t2v_1.3b.mp4}"

if [[ ! -f "$MODEL_DIR/model_index.json" ]]; then
  hf download "$MODEL_ID" --local-dir "$MODEL_DIR"
fi
mkdir -p "$(dirname "$OUTPUT")"

args=(
  --pretrained_model_name_or_path "$MODEL_DIR"  # the whole pipeline; generate loads its transformer's gates
  --vsa_sparsity 0.8                     # scripts/inference/inference_wan_VSA_DMD_1_3B.yaml: vsa_sparsity 0.8
  --dmd_timesteps 1000,757,522           # fastvideo/configs/pipelines/wan.py FastWan2_1_T2V_480P_Config: dmd_denoising_steps
  --height 448                           # fastvideo/configs/sample/wan.py FastWanT2V480PConfig: 448x832, 61 frames
  --width 832
  --num_frames 61
  --fps 16                               # FastWanT2V480PConfig: fps 16
  --seed 1024                            # the inference yaml: seed 1024
  --prompt "$PROMPT"
  --output "$OUTPUT"
)
fastvideo-hf generate "${args[@]}" "$@"
