#!/usr/bin/env python
"""Full finetuning of a Wan2.1 / Wan2.2 text-to-video transformer on a precomputed latent dataset.

    accelerate launch --config_file examples/accelerate_configs/fsdp.yaml training_scripts/train_wan.py \
      --pretrained_model_name_or_path Wan-AI/Wan2.1-T2V-1.3B-Diffusers \
      --dataset_name user/my-latents --output_dir wan-full --max_train_steps 5000 --gradient_checkpointing

`train.py --training_type full` under the name the recipes use: every flag of train.py's full finetuning, the same
loop and outputs. Weights train in float32 (master weights) under --mixed_precision. Outputs: OUT/transformer/
(`from_pretrained(OUT, subfolder="transformer")` of the model's transformer class), OUT/checkpoint-N/ (resumable),
OUT/validation/.
"""

import functools
import sys

from train import main, parse_args

from fastvideo_hf.training.args import run_refusing_in_one_line

if __name__ == "__main__":
    sys.exit(
        run_refusing_in_one_line(
            main, functools.partial(parse_args, training_type="full", description=__doc__.split("\n")[0])
        )
    )
