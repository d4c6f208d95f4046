#!/usr/bin/env bash
# Encode the crush-smol videos into a Parquet dataset of Wan2.1 latents + UMT5 prompt embeddings.
# Mirrors FastVideo's examples/training/finetune/wan_t2v_1.3B/crush_smol/preprocess_wan_data_t2v_new.sh.
#
# Input: a merged folder, DATA/videos2caption.json + DATA/videos/*.mp4. The crush-smol example set is the
# Hub dataset `wlsaidhi/crush-smol-merged` (FastVideo fetches it with examples/datasets/crush-smol/
# download_dataset.sh into data/crush-smol); e.g. `hf download wlsaidhi/crush-smol-merged --repo-type dataset
# --local-dir data/crush-smol`. Any folder in that layout works, or use --dataset_name for an HF video dataset.
#
# Run from the repository root; override any variable from the environment, e.g. NUM_GPUS=8 bash <this file>.
# Only the VAE and the text encoder are loaded (not the transformer). Re-running the same command after an
# interruption finishes the job without redoing finished shards.
set -euo pipefail

MODEL="${MODEL:-Wan-AI/Wan2.1-T2V-1.3B-Diffusers}"
DATA="${DATA:-data/crush-smol}"
OUT="${OUT:-data/crush-smol_latents_t2v_1.3b}"
NUM_GPUS="${NUM_GPUS:-2}"          # FastVideo example: GPU_NUM=2 ("2,4,8"); any count gives the same shards
HUB_DATASET_ID="${HUB_DATASET_ID:-}" # set to user/name to push the finished dataset to the Hub

args=(
  --pretrained_model_name_or_path "$MODEL"
  --data_dir "$DATA"
  --output_dir "$OUT"
  --task t2v
  --height 480                # FastVideo: --preprocess.max_height 480
  --width 832                 # FastVideo: --preprocess.max_width 832
  --num_frames 77             # FastVideo: --preprocess.num_frames 77 (20 latent frames; the VAE needs 4k+1)
  --fps 16                    # FastVideo: --preprocess.train_fps 16 (Wan2.1's native frame rate)
  --samples_per_file 8        # FastVideo: --preprocess.samples_per_file 8 (rows per Parquet shard)
  --storage_dtype float32     # our default: FastVideo's own loader reads every tensor as float32
  --seed 42                   # FastVideo default seed (picks one caption when a clip has several)
)
# Not needed here: FastVideo's --preprocess.video_length_tolerance_range 5 (clips shorter than 77 frames at 16 fps,
# 4.8 s, are skipped and listed in OUT/skipped.jsonl) and --preprocess.training_cfg_rate (caption dropout is
# applied at training time: --caption_dropout 0.1 in the finetune scripts).
if [[ -n "$HUB_DATASET_ID" ]]; then
  args+=(--push_to_hub --hub_dataset_id "$HUB_DATASET_ID")
fi

if (( NUM_GPUS > 1 )); then
  torchrun --standalone --nproc_per_node "$NUM_GPUS" -m fastvideo_hf.preprocess "${args[@]}" "$@"
else
  fastvideo-hf preprocess "${args[@]}" "$@"
fi
