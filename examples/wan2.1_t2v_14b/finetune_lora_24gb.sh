#!/usr/bin/env bash
# LoRA finetune of Wan2.1 T2V 14B on ONE 24 GB GPU (RTX 3090 / 4090 / A5000): finetune_lora.sh in this folder with
# its FastVideo values, plus the memory savers that make the 14B base fit (musubi-tuner and diffusion-pipe users
# train 14B LoRAs on such cards the same way: fp8 base weights and block swap):
#   --layerwise_casting float8_e4m3fn   frozen base weights stored in fp8 (14 GB instead of 28 GB in bf16), computed
#                                       in bf16 (diffusers' enable_layerwise_casting); the LoRA stays fp32
#   --group_offload block_level         frozen blocks live in CPU RAM and are brought to the GPU as each runs
#   --offload_use_stream                the next block is copied on a CUDA stream while the current one computes
#   --gradient_checkpointing            (already in finetune_lora.sh) only block inputs are kept for backward
# Clip length: at 480x832 the 40 block inputs that gradient checkpointing keeps grow with the frames, and
# `fastvideo-hf plan` puts 77 frames (FastVideo's length, 31,200 tokens) at 26.1 GiB even with every saver on. This
# recipe therefore trains on 61-frame clips (24,960 tokens; 21.7 GiB planned, plus one prefetched block for the
# stream): preprocess with  NUM_FRAMES=61 OUT=data/crush-smol_latents_t2v_14b_61f bash preprocess_t2v.sh  first.
# Check the fit for your card and size (no weights read):
#   fastvideo-hf plan --pretrained_model_name_or_path Wan-AI/Wan2.1-T2V-14B-Diffusers --height 480 --width 832 \
#     --num_frames 61 --mode lora --rank 32 --mixed_precision bf16 --gpu_memory 24 --num_gpus 1
# fp8 storage is not needed for the GPU fit once the blocks are offloaded (the plan's cheapest is checkpointing +
# block offload, 22.3 GiB), but it halves what crosses PCIe for every block and the CPU RAM the base takes.
# Needs about 64 GB of CPU RAM (the bf16 weights are loaded on the CPU first). Slower than finetune_lora.sh on an
# 80 GB GPU; the saved LoRA is the same format. Planned, not yet measured on a 24 GB card.
#
# Run from the repository root; every variable and flag of finetune_lora.sh can be overridden the same way
# (bash <this file> --max_train_steps 500: the last value of a flag wins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

export NUM_GPUS=1
export OUT="${OUT:-checkpoints/wan2.1_t2v_14b_lora_24gb}"
export DATA="${DATA:-data/crush-smol_latents_t2v_14b_61f}"   # preprocess_t2v.sh with NUM_FRAMES=61 (see above)

exec bash "$HERE/finetune_lora.sh" \
  --layerwise_casting float8_e4m3fn \
  --group_offload block_level \
  --offload_blocks_per_group 1 \
  --offload_use_stream \
  --gradient_checkpointing \
  --validation_num_frames 61 \
  "$@"
