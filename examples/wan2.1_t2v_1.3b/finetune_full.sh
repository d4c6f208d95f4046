#!/usr/bin/env bash
# Full finetune of Wan2.1 T2V 1.3B on the crush-smol latents (made by preprocess_t2v.sh).
# Mirrors FastVideo's examples/training/finetune/wan_t2v_1.3B/crush_smol/finetune_t2v.{sh,yaml}; each value below
# names its source. Hardware: 4 GPUs with 80 GB (H100/A100) as in FastVideo's script; fp32 master weights + AdamW
# are ~23 GB, so plain DDP fits on each GPU (examples/accelerate_configs/fsdp.yaml also works).
# Output: OUT/transformer/ (WanTransformer3DModel.from_pretrained(OUT, subfolder="transformer")), OUT/checkpoint-N/.
#
# Run from the repository root; override any variable from the environment (NUM_GPUS=8 bash <this file>) and any
# flag by appending it (bash <this file> --max_train_steps 1000: the last value of a flag wins).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

MODEL="${MODEL:-Wan-AI/Wan2.1-T2V-1.3B-Diffusers}"
DATA="${DATA:-data/crush-smol_latents_t2v_1.3b}"    # folder written by preprocess_t2v.sh, or its Hub dataset id
OUT="${OUT:-checkpoints/wan2.1_t2v_1.3b_full}"
NUM_GPUS="${NUM_GPUS:-4}"                           # FastVideo: NUM_GPUS=4
ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-$REPO/examples/accelerate_configs/ddp.yaml}"
REPORT_TO="${REPORT_TO:-tensorboard}"               # FastVideo logs to wandb; tensorboard needs no account
HUB_MODEL_ID="${HUB_MODEL_ID:-}"                    # set to user/name to push OUT/transformer with a model card

# FastVideo: train_batch_size 1 x gradient_accumulation_steps 8 on 4 GPUs with sp_size 4, i.e. the 4 GPUs share one
# sample (sequence parallel) and the global batch is 8. Our default is data parallel (each GPU takes its own clip),
# so we keep the global batch at 8 by accumulating 8 / NUM_GPUS micro-batches. FastVideo's exact setup is context
# parallelism: bash <this file> --context_parallel_ulysses 4 --gradient_accumulation_steps 8 (the 4 GPUs share each
# clip: 1 clip x 8 accumulation = 8). The degree must divide the 12 attention heads of 1.3B (2, 3, 4, 6, 12; not 8)
# and NUM_GPUS (which this script also wants to divide 8: so 2 or 4); the accumulation for a global batch of 8 is
# then 8 / (NUM_GPUS / degree), e.g. NUM_GPUS=8 with --context_parallel_ulysses 4 --gradient_accumulation_steps 4.
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
  --max_train_steps 5000                 # FastVideo: training.loop.max_train_steps 5000
  --learning_rate 5e-5                   # FastVideo: training.optimizer.learning_rate 5.0e-05 (docs: 1e-5..5e-5 for full)
  --lr_scheduler constant                # FastVideo default lr_scheduler (the yaml sets none)
  --lr_warmup_steps 0                    # no warmup with a constant schedule
  --adam_beta1 0.9                       # FastVideo AdamW betas "0.9,0.999"
  --adam_beta2 0.999
  --adam_weight_decay 1e-4               # FastVideo: training.optimizer.weight_decay 0.0001
  --adam_epsilon 1e-8                    # FastVideo AdamW eps
  --max_grad_norm 1.0                    # FastVideo: training.optimizer.max_grad_norm 1.0
  --mixed_precision bf16                 # FastVideo: bf16 compute over fp32 master weights (engine.precision.dit fp32)
  --gradient_checkpointing               # FastVideo: training.model.enable_gradient_checkpointing_type full
  --weighting_scheme uniform             # FastVideo default timestep density (finetrainers' crush-smol uses logit_normal)
  --flow_shift 3.0                       # FastVideo new stack pipeline.flow_shift 3; diffusers WanPipeline: 3.0 for 480p
  --caption_dropout 0.1                  # FastVideo: training.data.training_cfg_rate 0.1
  --checkpointing_steps 1000             # FastVideo: training.checkpoint.training_state_checkpointing_steps 1000
  --checkpoints_total_limit 3            # FastVideo: training.checkpoint.checkpoints_total_limit 3
  --resume_from_checkpoint latest        # re-run to continue after an interruption (fresh start if OUT has none)
  --validation_file "$HERE/validation.json"
  --validation_steps 200                 # FastVideo: training.validation.every_steps 200
  --validation_num_inference_steps 50    # FastVideo: training.validation.sampling_steps [50]
  --validation_guidance_scale 3.0        # FastVideo: training.validation.guidance_scale 3.0 (the LoRA example uses 6.0)
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
