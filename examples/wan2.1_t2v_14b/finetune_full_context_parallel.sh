#!/usr/bin/env bash
# Full finetune of Wan2.1 T2V 14B on 8 GPUs with context parallelism, as FastVideo trains it: all 8 GPUs share
# one clip (FastVideo's sp_size 8; here Ulysses through diffusers' ContextParallelConfig), so the global batch is
# 1 clip per step, FastVideo's own, instead of the 8 of finetune_full.sh. FSDP (examples/accelerate_configs/fsdp.yaml)
# shards weights, gradients and AdamW states over the same 8 GPUs; each GPU holds 1/8 of every clip's tokens
# outside attention and all tokens for 5 of the 40 heads inside it.
# Use it when one clip's activations do not fit a GPU: 720p x 81 frames is 75,600 tokens (9,450 per GPU here):
#   OUT=checkpoints/wan2.1_t2v_14b_720p bash examples/wan2.1_t2v_14b/finetune_full_context_parallel.sh \
#     --validation_height 720 --validation_width 1280 --validation_num_frames 81 --flow_shift 5.0
# (with latents preprocessed at 720x1280; every clip's token count must divide by the 8 GPUs: the script checks).
# Check the memory first (no weights read):
#   fastvideo-hf plan --pretrained_model_name_or_path Wan-AI/Wan2.1-T2V-14B-Diffusers --height 720 --width 1280 \
#     --num_frames 81 --mode full --mixed_precision bf16 --gpu_memory 80 --num_gpus 8
# The Ulysses degree must divide the 40 heads of 14B (2, 4, 5, 8, 10, ...) and the GPUs; NUM_GPUS=16 with
# ULYSSES=8 gives 2 data-parallel groups of 8 (global batch 2).
#
# Run from the repository root; every variable and flag of finetune_full.sh can be overridden the same way.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

export NUM_GPUS="${NUM_GPUS:-8}"
export OUT="${OUT:-checkpoints/wan2.1_t2v_14b_full_context_parallel}"
ULYSSES="${ULYSSES:-8}"                             # FastVideo 14B: sp_size 8

exec bash "$HERE/finetune_full.sh" --context_parallel_ulysses "$ULYSSES" "$@"
