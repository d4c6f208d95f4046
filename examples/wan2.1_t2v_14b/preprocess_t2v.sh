#!/usr/bin/env bash
# Encode the crush-smol videos into a Parquet dataset of Wan2.1 latents + UMT5 prompt embeddings for the 14B model.
# FastVideo has no T2V-14B crush-smol example; the values are those of its 14B crush-smol example
# (examples/training/finetune/wan_i2v_14B_480p/crush_smol/preprocess_wan_data_i2v_new.sh), which match the 1.3B one.
#
# Input: a merged folder, DATA/videos2caption.json + DATA/videos/*.mp4. The crush-smol example set is the
# Hub dataset `wlsaidhi/crush-smol-merged` (FastVideo fetches it with examples/datasets/crush-smol/
# download_dataset.sh into data/crush-smol); e.g. `hf download wlsaidhi/crush-smol-merged --repo-type dataset
# --local-dir data/crush-smol`.
#
# Only the VAE and the UMT5 text encoder are loaded (not the 14B transformer): the cost is the same as for 1.3B,
# whose checkpoint ships the same VAE and text encoder. We still encode with the 14B model id, because training
# checks the dataset card against the model it trains (see --allow_model_mismatch).
#
# Run from the repository root; override any variable from the environment, e.g. NUM_FRAMES=29 bash <this file>.
set -euo pipefail

MODEL="${MODEL:-Wan-AI/Wan2.1-T2V-14B-Diffusers}"
DATA="${DATA:-data/crush-smol}"
OUT="${OUT:-data/crush-smol_latents_t2v_14b}"
NUM_GPUS="${NUM_GPUS:-8}"            # FastVideo's 14B example uses GPU_NUM=1 ("2,4,8"); any count gives the same shards
# 77 frames = 20 latent frames (FastVideo --preprocess.num_frames 77). FastVideo's 14B finetunes then train on only
# num_latent_t 8 latent frames per clip (with 8-way sequence parallelism). Our finetunes train on whatever the
# dataset holds, by default a whole clip per GPU (data parallel). If a 14B step does not fit, share each clip over
# GPUs (--context_parallel_ulysses, FastVideo's sp_size: finetune_full_context_parallel.sh), or encode shorter
# clips: NUM_FRAMES=29 gives 8 latent frames (1.8 s at 16 fps; 12,480 tokens, which 2, 4 and 8 divide).
NUM_FRAMES="${NUM_FRAMES:-77}"
HUB_DATASET_ID="${HUB_DATASET_ID:-}" # set to user/name to push the finished dataset to the Hub

args=(
  --pretrained_model_name_or_path "$MODEL"
  --data_dir "$DATA"
  --output_dir "$OUT"
  --task t2v
  --height 480                # FastVideo: --preprocess.max_height 480
  --width 832                 # FastVideo: --preprocess.max_width 832
  --num_frames "$NUM_FRAMES"  # FastVideo: --preprocess.num_frames 77 (see above)
  --fps 16                    # FastVideo: --preprocess.train_fps 16 (Wan2.1's native frame rate)
  --samples_per_file 8        # FastVideo: --preprocess.samples_per_file 8 (rows per Parquet shard)
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
