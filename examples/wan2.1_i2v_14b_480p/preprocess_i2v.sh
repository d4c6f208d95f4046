#!/usr/bin/env bash
# Encode the crush-smol videos into a Parquet dataset for Wan2.1 I2V 14B 480P: VAE latents, UMT5 prompt embeddings,
# and the image conditioning of image-to-video (--task i2v): the first-frame latent (the clip's first frame followed
# by zero frames through the VAE, as WanImageToVideoPipeline.prepare_latents makes it) and the CLIP features of that
# frame (WanImageToVideoPipeline.encode_image, hidden_states[-2]).
# Mirrors FastVideo's examples/training/finetune/wan_i2v_14B_480p/crush_smol/preprocess_wan_data_i2v_new.sh
# (--workload_type i2v); each value below names its source.
#
# Input: a merged folder, DATA/videos2caption.json + DATA/videos/*.mp4. The crush-smol example set is the
# Hub dataset `wlsaidhi/crush-smol-merged` (FastVideo fetches it with examples/datasets/crush-smol/
# download_dataset.sh into data/crush-smol); e.g. `hf download wlsaidhi/crush-smol-merged --repo-type dataset
# --local-dir data/crush-smol`. Any folder in that layout works, or use --dataset_name for an HF video dataset.
#
# Loaded: the VAE, the UMT5 text encoder and the CLIP image encoder of the I2V checkpoint (not the 14B transformer).
# Training checks the dataset card against the model it trains, so encode with the model you will train.
#
# Run from the repository root; override any variable from the environment, e.g. NUM_FRAMES=29 bash <this file>.
# Re-running the same command after an interruption finishes the job without redoing finished shards.
set -euo pipefail

MODEL="${MODEL:-Wan-AI/Wan2.1-I2V-14B-480P-Diffusers}"
DATA="${DATA:-data/crush-smol}"
OUT="${OUT:-data/crush-smol_latents_i2v_14b_480p}"
NUM_GPUS="${NUM_GPUS:-8}"            # FastVideo's I2V-14B example uses GPU_NUM=1 ("2,4,8"); any count gives the same shards
# 77 frames = 20 latent frames (FastVideo --preprocess.num_frames 77). FastVideo's I2V-14B finetunes then train on
# num_latent_t 8 latent frames per clip (with 8-way sequence parallelism). Our finetunes train on whatever the
# dataset holds, by default a whole clip per GPU (data parallel). If a 14B step does not fit, share each clip over
# GPUs (--context_parallel_ulysses, FastVideo's sp_size; see finetune_full.sh), or encode shorter clips:
# NUM_FRAMES=29 gives 8 latent frames (1.8 s at 16 fps; 12,480 tokens, which 2, 4 and 8 divide).
NUM_FRAMES="${NUM_FRAMES:-77}"
HUB_DATASET_ID="${HUB_DATASET_ID:-}" # set to user/name to push the finished dataset to the Hub

args=(
  --pretrained_model_name_or_path "$MODEL"
  --data_dir "$DATA"
  --output_dir "$OUT"
  --task i2v                  # FastVideo: --workload_type i2v (first-frame latent + CLIP features)
  --height 480                # FastVideo: --preprocess.max_height 480 (the 480P checkpoint's size)
  --width 832                 # FastVideo: --preprocess.max_width 832
  --num_frames "$NUM_FRAMES"  # FastVideo: --preprocess.num_frames 77 (see above)
  --fps 16                    # FastVideo: --preprocess.train_fps 16 (Wan2.1's native frame rate)
  --samples_per_file 8        # FastVideo: --preprocess.samples_per_file 8 (rows per Parquet shard)
  --storage_dtype float32     # our default: FastVideo's own loader reads every tensor as float32
  --seed 42                   # FastVideo default seed (picks one caption when a clip has several)
)
# Not needed here: FastVideo's --preprocess.video_length_tolerance_range 5 (clips shorter than NUM_FRAMES at 16 fps
# are skipped and listed in OUT/skipped.jsonl) and --preprocess.training_cfg_rate (caption dropout is applied at
# training time: --caption_dropout 0.1 in the finetune scripts).
if [[ -n "$HUB_DATASET_ID" ]]; then
  args+=(--push_to_hub --hub_dataset_id "$HUB_DATASET_ID")
fi

if (( NUM_GPUS > 1 )); then
  torchrun --standalone --nproc_per_node "$NUM_GPUS" -m fastvideo_hf.preprocess "${args[@]}" "$@"
else
  fastvideo-hf preprocess "${args[@]}" "$@"
fi
