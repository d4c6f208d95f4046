#!/usr/bin/env bash
# LoRA finetune of Wan2.2 T2V A14B (two experts: `transformer` for high noise, `transformer_2` for low noise, split
# at the model's boundary_ratio 0.875, i.e. timestep 875) on the crush-smol latents (made by preprocess_t2v.sh).
# FastVideo has no Wan2.2 A14B finetune recipe; the values come from DiffSynth-Studio's
# examples/wanvideo/model_training/lora/Wan2.2-T2V-A14B.sh, ai-toolkit's config/examples/train_lora_wan22_14b_24gb.yaml,
# musubi-tuner's docs/wan.md and Wan2.2's own configs (wan/configs/wan_t2v_A14B.py); each value below names its source.
#
# EXPERT (default both):
#   both  one run trains a LoRA on each expert; every sample goes to the expert that denoises its timestep at
#         inference (>= 875: transformer, < 875: transformer_2). The one-run mode of musubi-tuner (--dit +
#         --dit_high_noise) and ai-toolkit (train_high_noise + train_low_noise). Chosen as the default: one command
#         gives the pair the pipeline needs, for half the GPU time of two runs of the same length, at a similar
#         memory peak (validation loads both experts whichever you train; see examples/README.md).
#   high  only `transformer`, on timesteps 875..1000 (musubi's recommended range for the T2V high-noise expert;
#         DiffSynth's first run). Then run EXPERT=low: DiffSynth and musubi train the experts in separate runs,
#         which lets each have its own steps / learning rate and needs one expert in memory for training.
#   low   only `transformer_2`, on timesteps 0..875.
# With both, the share of samples per expert follows the timestep density: uniform sigmas shifted by 5.0 put ~42% of
# the samples at or above the boundary (high) and ~58% below (low), so 2000 steps give each expert fewer updates
# than a 2000-step single-expert run.
#
# Hardware: 4 GPUs with 80 GB (H100/A100), DDP, gradient checkpointing. Each GPU holds the frozen expert(s) in bf16:
# ~29 GB per expert (both: ~57 GB) plus activations for 32,760 tokens (480x832x81), roughly 15-20 GB (estimate, not
# measured). If `both` does not fit, train the experts one at a time (EXPERT=high, then EXPERT=low).
# Outputs (diffusers format, plus *_comfy.safetensors for ComfyUI; OUT/checkpoint-N/ hold the same files):
#   both: OUT/pytorch_lora_weights.safetensors (transformer) + OUT/pytorch_lora_weights_transformer_2.safetensors
#         (load with weight_name=..., load_into_transformer_2=True)
#   high: OUT/pytorch_lora_weights.safetensors -> pipe.load_lora_weights(OUT)
#   low:  OUT/pytorch_lora_weights.safetensors -> pipe.load_lora_weights(OUT, load_into_transformer_2=True)
#
# Run from the repository root; override any variable from the environment (EXPERT=high bash <this file>) and any
# flag by appending it (bash <this file> --learning_rate 2e-4: the last value of a flag wins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

EXPERT="${EXPERT:-both}"                            # high | low | both (see above)
case "$EXPERT" in
  high|low|both) ;;
  *) echo "EXPERT must be high, low or both, got '$EXPERT'" >&2; exit 2 ;;
esac
MODEL="${MODEL:-Wan-AI/Wan2.2-T2V-A14B-Diffusers}"
DATA="${DATA:-data/crush-smol_latents_t2v_a14b}"    # folder written by preprocess_t2v.sh, or its Hub dataset id
OUT="${OUT:-checkpoints/wan2.2_t2v_a14b_lora_$EXPERT}"  # one folder per expert choice (each resumes on its own)
NUM_GPUS="${NUM_GPUS:-4}"                           # our choice, as FastVideo's 14B LoRA (NUM_GPUS=4)
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/examples/accelerate_configs/ddp.yaml}"  # used when NUM_GPUS > 1
REPORT_TO="${REPORT_TO:-tensorboard}"               # tensorboard needs no account; wandb: REPORT_TO=wandb
HUB_MODEL_ID="${HUB_MODEL_ID:-}"                    # set to user/name to push the LoRA(s) with a model card

# One clip per GPU per step, no accumulation (DiffSynth and ai-toolkit: batch 1, gradient accumulation 1): the global
# batch is NUM_GPUS.
TRAIN_BATCH_SIZE=1
GRAD_ACCUM=1

launch=(accelerate launch --num_processes "$NUM_GPUS")
if (( NUM_GPUS > 1 )); then
  launch+=(--config_file "$ACCELERATE_CONFIG")
else
  launch+=(--num_machines 1 --mixed_precision bf16 --dynamo_backend no)
fi

args=(
  --pretrained_model_name_or_path "$MODEL"
  --dataset_name "$DATA"
  --output_dir "$OUT"
  --expert "$EXPERT"                     # see above; the boundary (0.875) comes from the model's boundary_ratio
  --seed 42                              # ai-toolkit sample seed 42; finetrainers crush-smol --seed 42
  --rank 32                              # DiffSynth Wan2.2-T2V-A14B LoRA: --lora_rank 32; ai-toolkit: linear 32
  --lora_alpha 32                        # ai-toolkit: linear_alpha 32 (scale 1; musubi's network_alpha defaults to 1)
  --lora_target_modules to_q,to_k,to_v,to_out.0,ffn.net.0.proj,ffn.net.2  # DiffSynth: "q,k,v,o,ffn.0,ffn.2" (self-
                                         # and cross-attention + feed-forward, original Wan names); musubi and
                                         # ai-toolkit also adapt the feed-forward. (FastVideo: attention only)
  --train_batch_size "$TRAIN_BATCH_SIZE" # DiffSynth / ai-toolkit: batch_size 1
  --gradient_accumulation_steps "$GRAD_ACCUM"  # ai-toolkit: gradient_accumulation 1
  --max_train_steps 2000                 # ai-toolkit Wan2.2 14B: steps 2000 ("500 - 4000 is a good range"); FastVideo
                                         # 14B LoRA: 2000 (DiffSynth counts epochs: 5 x dataset_repeat 100)
  --learning_rate 1e-4                   # DiffSynth Wan2.2-T2V-A14B LoRA: 1e-4; ai-toolkit Wan2.2 14B: lr 1e-4;
                                         # musubi's Wan example: 2e-4
  --lr_scheduler constant                # DiffSynth and ai-toolkit: constant
  --lr_warmup_steps 0
  --adam_beta1 0.9                       # AdamW defaults (FastVideo "0.9,0.999")
  --adam_beta2 0.999
  --adam_weight_decay 1e-4               # ai-toolkit Wan2.2 14B: weight_decay 1e-4; FastVideo: 1e-4
  --adam_epsilon 1e-8                    # AdamW default
  --max_grad_norm 1.0                    # FastVideo: max_grad_norm 1.0
  --mixed_precision bf16                 # frozen base in bf16, LoRA weights in fp32 (ai-toolkit: dtype bf16)
  --gradient_checkpointing               # DiffSynth (always on) and ai-toolkit: gradient_checkpointing true
  --weighting_scheme uniform             # DiffSynth: timestep index uniform over its shifted schedule; FastVideo default
  --flow_shift 5.0                       # our choice: DiffSynth trains on a shift-5 schedule; Wan2.2 samples T2V-A14B
                                         # at 12.0 (wan_t2v_A14B.py sample_shift; musubi: "may serve as a reference"),
                                         # diffusers' A14B scheduler config at 3.0. Try --flow_shift 12.0 to match Wan
  --caption_dropout 0.1                  # FastVideo: training_cfg_rate 0.1 (ai-toolkit: 0.05)
  --checkpointing_steps 250              # ai-toolkit Wan2.2 14B: save_every 250
  --checkpoints_total_limit 4            # ai-toolkit Wan2.2 14B: max_step_saves_to_keep 4
  --resume_from_checkpoint latest        # re-run to continue after an interruption (fresh start if OUT has none)
  --validation_file "$HERE/validation.json"
  --validation_steps 250                 # ai-toolkit Wan2.2 14B: sample_every 250 (a 14B video takes minutes)
  --validation_num_inference_steps 40    # Wan2.2 wan_t2v_A14B.py: sample_steps 40; Diffusers model card: 40
  --validation_guidance_scale 4.0        # Diffusers model card: guidance_scale=4.0 (high noise), guidance_scale_2=3.0
                                         # (low noise) = Wan2.2's sample_guide_scale (3.0, 4.0); this flag sets both
  --validation_height 480                # 480P (preprocess_t2v.sh)
  --validation_width 832
  --validation_num_frames 81             # Wan2.2: frame_num 81; Diffusers model card: num_frames=81
  --validation_fps 16                    # Wan2.2: sample_fps 16; Diffusers model card: fps=16
  --dataloader_num_workers 1             # FastVideo: training.data.dataloader_num_workers 1
  --report_to "$REPORT_TO"
)
if [[ -n "$HUB_MODEL_ID" ]]; then
  args+=(--push_to_hub --hub_model_id "$HUB_MODEL_ID")  # token from `hf auth login`, never on the command line
fi

"${launch[@]}" "$REPO/training_scripts/train_wan_lora.py" "${args[@]}" "$@"
