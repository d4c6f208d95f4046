#!/usr/bin/env bash
# Encode the crush-smol videos into a Parquet dataset of VAE latents + UMT5 prompt embeddings for Wan2.2 TI2V 5B,
# text-to-video (--task t2v). TI2V-5B trains on text-to-video and image-to-video datasets alike: this one teaches
# text-only generation; preprocess_i2v.sh makes the image-to-video one (the same clips plus their first frames).
# FastVideo has no TI2V-5B finetune recipe (only distillation); sizes come from Wan2.2's own config and the
# Diffusers model card, the Parquet layout from FastVideo's crush-smol preprocessing. Each value names its source.
#
# Input: a merged folder, DATA/videos2caption.json + DATA/videos/*.mp4. The crush-smol example set is the
# Hub dataset `wlsaidhi/crush-smol-merged` (FastVideo fetches it with examples/datasets/crush-smol/
# download_dataset.sh into data/crush-smol); e.g. `hf download wlsaidhi/crush-smol-merged --repo-type dataset
# --local-dir data/crush-smol`. Any folder in that layout works, or use --dataset_name for an HF video dataset.
#
# Only the VAE (Wan2.2's 48-channel VAE, 16x spatial / 4x temporal compression) and the UMT5 text encoder are
# loaded, not the transformer. 704x1280x121 gives latents of 48 x 31 x 44 x 80, i.e. 27,280 transformer tokens.
#
# Run from the repository root; override any variable from the environment, e.g. HEIGHT=480 WIDTH=832 bash <this file>.
# Re-running the same command after an interruption finishes the job without redoing finished shards.
set -euo pipefail

MODEL="${MODEL:-Wan-AI/Wan2.2-TI2V-5B-Diffusers}"
DATA="${DATA:-data/crush-smol}"
OUT="${OUT:-data/crush-smol_latents_t2v_ti2v_5b}"
NUM_GPUS="${NUM_GPUS:-4}"            # our choice (the GPUs of finetune_full.sh); any count gives the same shards
# 704x1280: the Diffusers model card (height=704, width=1280) and Wan2.2's sizes for ti2v-5B ('704*1280',
# '1280*704'); H and W must divide by 32 (VAE 16 x patch 2). DiffSynth's TI2V-5B scripts train at 480x832 (49 frames):
# HEIGHT=480 WIDTH=832 cuts the tokens by 2.3x.
HEIGHT="${HEIGHT:-704}"
WIDTH="${WIDTH:-1280}"
# 121 frames at 24 fps (5 s, 31 latent frames): Wan2.2 wan_ti2v_5B.py frame_num 121 / sample_fps 24; Diffusers model
# card num_frames=121, fps=24. Clips shorter than 5 s are skipped and listed in OUT/skipped.jsonl.
NUM_FRAMES="${NUM_FRAMES:-121}"
FPS="${FPS:-24}"
HUB_DATASET_ID="${HUB_DATASET_ID:-}" # set to user/name to push the finished dataset to the Hub

args=(
  --pretrained_model_name_or_path "$MODEL"
  --data_dir "$DATA"
  --output_dir "$OUT"
  --task t2v
  --height "$HEIGHT"          # see above
  --width "$WIDTH"
  --num_frames "$NUM_FRAMES"  # see above (the VAE needs 4k+1)
  --fps "$FPS"                # Wan2.2 TI2V-5B: sample_fps 24 (model card: fps=24)
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
