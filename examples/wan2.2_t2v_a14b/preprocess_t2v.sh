#!/usr/bin/env bash
# Encode the crush-smol videos into a Parquet dataset of VAE latents + UMT5 prompt embeddings for Wan2.2 T2V A14B.
# FastVideo has no Wan2.2 A14B finetune recipe; sizes come from Wan2.2's own configs and model card, the Parquet
# layout from FastVideo's crush-smol preprocessing. Each value below names its source.
#
# Input: a merged folder, DATA/videos2caption.json + DATA/videos/*.mp4. The crush-smol example set is the
# Hub dataset `wlsaidhi/crush-smol-merged` (FastVideo fetches it with examples/datasets/crush-smol/
# download_dataset.sh into data/crush-smol); e.g. `hf download wlsaidhi/crush-smol-merged --repo-type dataset
# --local-dir data/crush-smol`. Any folder in that layout works, or use --dataset_name for an HF video dataset.
#
# Only the VAE (Wan2.1's 16-channel VAE, which A14B reuses) and the UMT5 text encoder are loaded, not the two 14B
# experts. We still encode with the A14B model id, because training checks the dataset card against the model.
# One dataset serves every expert (--expert high, low or both): the split by timestep happens in training.
#
# Run from the repository root; override any variable from the environment, e.g. NUM_FRAMES=77 bash <this file>.
# Re-running the same command after an interruption finishes the job without redoing finished shards.
set -euo pipefail

MODEL="${MODEL:-Wan-AI/Wan2.2-T2V-A14B-Diffusers}"
DATA="${DATA:-data/crush-smol}"
OUT="${OUT:-data/crush-smol_latents_t2v_a14b}"
NUM_GPUS="${NUM_GPUS:-8}"            # our choice (the GPUs of finetune_full.sh); any count gives the same shards
# 480P: Wan2.2's configs list 480*832 and 720*1280 for t2v-A14B (wan/configs SUPPORTED_SIZES); DiffSynth's Wan2.2-A14B
# scripts train at 480x832. HEIGHT=720 WIDTH=1280 for 720P (2.3x the tokens of 480P: mind the memory).
HEIGHT="${HEIGHT:-480}"
WIDTH="${WIDTH:-832}"
# 81 frames at 16 fps (5 s, 21 latent frames): Wan2.2's frame_num 81 / sample_fps 16 (wan/configs/shared_config.py)
# and the Diffusers model card (num_frames=81, export fps=16). Clips shorter than 81 frames at 16 fps (5.06 s) are
# skipped and listed in OUT/skipped.jsonl: NUM_FRAMES=77 (FastVideo's crush-smol length) or 49 (DiffSynth's) keep more.
NUM_FRAMES="${NUM_FRAMES:-81}"
HUB_DATASET_ID="${HUB_DATASET_ID:-}" # set to user/name to push the finished dataset to the Hub

args=(
  --pretrained_model_name_or_path "$MODEL"
  --data_dir "$DATA"
  --output_dir "$OUT"
  --task t2v
  --height "$HEIGHT"          # see above
  --width "$WIDTH"
  --num_frames "$NUM_FRAMES"  # see above (the VAE needs 4k+1)
  --fps 16                    # Wan2.2 A14B: sample_fps 16 (wan/configs/shared_config.py; model card fps=16)
  --samples_per_file 8        # FastVideo crush-smol: --preprocess.samples_per_file 8 (rows per Parquet shard)
  --storage_dtype float32     # our default: FastVideo's own loader reads every tensor as float32
  --seed 42                   # FastVideo default seed (picks one caption when a clip has several)
)
if [[ -n "$HUB_DATASET_ID" ]]; then
  args+=(--push_to_hub --hub_dataset_id "$HUB_DATASET_ID")
fi

if (( NUM_GPUS > 1 )); then
  torchrun --standalone --nproc_per_node "$NUM_GPUS" -m fastvideo_hf.preprocess "${args[@]}" "$@"
else
  fastvideo-hf preprocess "${args[@]}" "$@"
fi
