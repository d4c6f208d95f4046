#!/usr/bin/env bash
# Our VSA full finetune (examples/wan2.1_t2v_1.3b/finetune_vsa.sh) as a model folder FastVideo loads: the gate
# weights renamed blocks.{i}.attn1.to_gate_compress.* -> blocks.{i}.to_gate_compress.* (FastVideo's Wan DiT keeps
# the gate on the block and loads strictly), plus the base pipeline's text encoder, VAE and scheduler.
# Then, in FastVideo: FASTVIDEO_ATTENTION_BACKEND=VIDEO_SPARSE_ATTN fastvideo generate --model-path "$OUT" \
#   --VSA-sparsity 0.9 ...   (the sparsity is also in $OUT/transformer/vsa_config.json)
#
# Run from the repository root; override any variable from the environment.
set -euo pipefail

IN="${IN:-checkpoints/wan2.1_t2v_1.3b_vsa}"                # OUT of finetune_vsa.sh
BASE_ID="${BASE_ID:-Wan-AI/Wan2.1-T2V-1.3B-Diffusers}"     # the model it was finetuned from
BASE_DIR="${BASE_DIR:-models/Wan2.1-T2V-1.3B-Diffusers}"
OUT="${OUT:-checkpoints/wan2.1_t2v_1.3b_vsa_fastvideo}"

if [[ ! -f "$BASE_DIR/model_index.json" ]]; then
  hf download "$BASE_ID" --local-dir "$BASE_DIR"
fi
fastvideo-hf export-vsa --input "$IN" --output "$OUT" --base_model "$BASE_DIR" --gate_names fastvideo "$@"
