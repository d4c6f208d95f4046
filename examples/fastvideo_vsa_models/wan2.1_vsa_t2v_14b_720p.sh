#!/usr/bin/env bash
# FastVideo/Wan2.1-VSA-T2V-14B-720P-Diffusers with `fastvideo-hf generate`: Wan2.1 T2V 14B finetuned by FastVideo
# for VSA at 0.9 sparsity, not distilled (50 steps with guidance). Each value names its source in
# hao-ai-lab/FastVideo or the model card (see README.md). 720x1280x81 is 75,600 tokens: a GPU with 80 GB or more.
#
# Run from the repository root; override any variable from the environment and any flag by appending it.
set -euo pipefail

MODEL_ID="${MODEL_ID:-FastVideo/Wan2.1-VSA-T2V-14B-720P-Diffusers}"
MODEL_DIR="${MODEL_DIR:-models/Wan2.1-VSA-T2V-14B-720P-Diffusers}"
PROMPT="${PROMPT:-A neon-lit alley in futuristic Tokyo during a heavy rainstorm at night, puddles reflecting glowing signs}"
# FastVideo's negative prompt (scripts/inference/inference_wan_VSA.yaml)
NEGATIVE_PROMPT="${NEGATIVE_PROMPT:-Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three legs, many people in the background, walking backwards}"
OUTPUT="${OUTPUT:-outputs/wan2.1_vsa_t2v_14b_720p.mp4}"

if [[ ! -f "$MODEL_DIR/model_index.json" ]]; then
  hf download "$MODEL_ID" --local-dir "$MODEL_DIR"
fi
mkdir -p "$(dirname "$OUTPUT")"

args=(
  --pretrained_model_name_or_path "$MODEL_DIR"
  --vsa_sparsity 0.9                     # model card and scripts/inference/inference_wan_VSA.yaml: 0.9
  --num_inference_steps 50               # model card: --num-inference-steps 50
  --guidance_scale 5.0                   # model card: --guidance-scale 5.0
  --flow_shift 5.0                       # model card: --flow-shift 5.0; fastvideo/configs/pipelines/wan.py WanT2V720PConfig
  --height 720                           # model card: 720x1280, 81 frames, 16 fps (inference_wan_VSA.yaml: 448x832x77)
  --width 1280
  --num_frames 81
  --fps 16
  --seed 1024                            # inference_wan_VSA.yaml: seed 1024
  --prompt "$PROMPT"
  --negative_prompt "$NEGATIVE_PROMPT"
  --output "$OUTPUT"
)
fastvideo-hf generate "${args[@]}" "$@"
