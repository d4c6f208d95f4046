#!/usr/bin/env python
"""LoRA finetuning of a Wan2.1 / Wan2.2 text-to-video transformer on a precomputed latent dataset.

    accelerate launch training_scripts/train_wan_lora.py \
      --pretrained_model_name_or_path Wan-AI/Wan2.1-T2V-1.3B-Diffusers \
      --dataset_name user/my-latents --output_dir wan-lora --max_train_steps 2000

`train.py --training_type lora` under the name the recipes use: every flag of train.py's LoRA training, the same
loop and outputs (OUT/pytorch_lora_weights.safetensors for the pipeline's `load_lora_weights(OUT)`,
OUT/pytorch_lora_weights_comfy.safetensors for ComfyUI, OUT/checkpoint-N/, OUT/validation/).
"""

import functools
import sys

from train import main, parse_args

from fastvideo_hf.training.args import run_refusing_in_one_line

if __name__ == "__main__":
    sys.exit(
        run_refusing_in_one_line(
            main, functools.partial(parse_args, training_type="lora", description=__doc__.split("\n")[0])
        )
    )
