#!/usr/bin/env bash
# VSA (Video Sparse Attention) full finetune of Wan2.1 T2V 1.3B: the model learns to run at 90% attention sparsity.
# Mirrors FastVideo's VSA recipe (examples/training/finetune/Wan2.1-VSA/Wan-Syn-Data/T2V-1.3B-VSA and the new
# stack's fine_tuning/wan/t2v_vsa.yaml); each value below names its source. FastVideo trains on 448x832x77 clips
# (Wan-Syn), whose 20x28x52 token grid is whole 4x4x4 tiles; 480x832 works too (its edge tiles are padded).
# Hardware: 8 GPUs with 80 GB as in FastVideo (64 in its largest run); DDP fits (fp32 weights + AdamW ~23 GB).
# Output: OUT/transformer/ with the trained to_gate_compress weights and vsa_config.json; reload for inference:
#   transformer = WanTransformer3DModel.from_pretrained(OUT, subfolder="transformer")
#   enable_vsa(transformer, sparsity=0.9); load_vsa_gates(transformer, f"{OUT}/transformer")   (fastvideo_hf.vsa)
#
# Run from the repository root; override any variable from the environment (NUM_GPUS=8 bash <this file>) and any
# flag by appending it (bash <this file> --max_train_steps 1000: the last value of a flag wins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

MODEL="${MODEL:-Wan-AI/Wan2.1-T2V-1.3B-Diffusers}"
DATA="${DATA:-data/crush-smol_latents_t2v_1.3b}"    # folder written by preprocess_t2v.sh, or its Hub dataset id
OUT="${OUT:-checkpoints/wan2.1_t2v_1.3b_vsa}"
NUM_GPUS="${NUM_GPUS:-8}"                           # FastVideo t2v_vsa.yaml: 8 GPUs (HSDP replicate 8)
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/examples/accelerate_configs/ddp.yaml}"
REPORT_TO="${REPORT_TO:-tensorboard}"               # FastVideo logs to wandb; tensorboard needs no account
HUB_MODEL_ID="${HUB_MODEL_ID:-}"                    # set to user/name to push OUT/transformer with a model card

# FastVideo: batch 1 per GPU on 8 data-parallel GPUs, global batch 8; with fewer GPUs we accumulate to keep 8.
TRAIN_BATCH_SIZE=1
GLOBAL_BATCH=8
if (( GLOBAL_BATCH % (NUM_GPUS * TRAIN_BATCH_SIZE) != 0 )); then
  echo "NUM_GPUS=$NUM_GPUS x TRAIN_BATCH_SIZE=$TRAIN_BATCH_SIZE must divide the global batch $GLOBAL_BATCH" >&2
  exit 2
fi
GRAD_ACCUM=$(( GLOBAL_BATCH / (NUM_GPUS * TRAIN_BATCH_SIZE) ))

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
  --seed 42                              # finetrainers crush-smol example: --seed 42
  --train_batch_size "$TRAIN_BATCH_SIZE" # FastVideo: training.data.train_batch_size 1
  --gradient_accumulation_steps "$GRAD_ACCUM"  # FastVideo: 8 with one sample per step (see above)
  --max_train_steps 4000                 # FastVideo t2v_vsa.yaml / T2V-1.3B-VSA: max_train_steps 4000
  --learning_rate 1e-6                   # FastVideo VSA recipes: learning_rate 1e-6
  --lr_scheduler constant                # FastVideo default lr_scheduler (the yaml sets none)
  --lr_warmup_steps 0                    # no warmup with a constant schedule
  --adam_beta1 0.9                       # FastVideo AdamW betas "0.9,0.999"
  --adam_beta2 0.999
  --adam_weight_decay 0.01               # FastVideo VSA recipes: weight_decay 0.01
  --adam_epsilon 1e-8                    # FastVideo AdamW eps
  --max_grad_norm 1.0                    # FastVideo: training.optimizer.max_grad_norm 1.0
  --mixed_precision bf16                 # FastVideo: bf16 compute over fp32 master weights (engine.precision.dit fp32)
  --gradient_checkpointing               # FastVideo: training.model.enable_gradient_checkpointing_type full
  --weighting_scheme uniform             # FastVideo default timestep density (finetrainers' crush-smol uses logit_normal)
  --flow_shift 1.0                       # FastVideo T2V-1.3B-VSA: --flow_shift 1 (training); validation samples at 3
  --attention_backend vsa                # Video Sparse Attention in every self-attention (cross-attention dense)
  --vsa_sparsity 0.9                     # FastVideo: VSA_sparsity 0.9
  --vsa_decay_rate 0.03                  # FastVideo T2V-1.3B-VSA: VSA_decay_rate 0.03 (0.9 reached at step 1500)
  --vsa_decay_interval_steps 50          # FastVideo T2V-1.3B-VSA: VSA_decay_interval_steps 50
  --caption_dropout 0.1                  # FastVideo: training.data.training_cfg_rate 0.1
  --checkpointing_steps 1000             # FastVideo: training.checkpoint.training_state_checkpointing_steps 1000
  --checkpoints_total_limit 3            # FastVideo: training.checkpoint.checkpoints_total_limit 3
  --resume_from_checkpoint latest        # re-run to continue after an interruption (fresh start if OUT has none)
  --validation_file "$HERE/validation.json"
  --validation_steps 200                 # FastVideo t2v_vsa.yaml validates every 50; 200 keeps validation cheap
  --validation_num_inference_steps 50    # FastVideo: training.validation.sampling_steps [50]
  --validation_guidance_scale 5.0        # FastVideo t2v_vsa.yaml: validation guidance_scale 5.0
  --validation_height 480                # FastVideo: num_height 480
  --validation_width 832                 # FastVideo: num_width 832
  --validation_num_frames 77             # FastVideo: num_frames 77
  --dataloader_num_workers 1             # FastVideo: training.data.dataloader_num_workers 1
  --report_to "$REPORT_TO"
)
if [[ -n "$HUB_MODEL_ID" ]]; then
  args+=(--push_to_hub --hub_model_id "$HUB_MODEL_ID")  # token from `hf auth login`, never on the command line
fi

"${launch[@]}" "$REPO/training_scripts/train_wan.py" "${args[@]}" "$@"
