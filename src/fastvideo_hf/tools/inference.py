"""``fastvideo-hf generate``: a video from a Wan pipeline plus what training produced (LoRA or transformer).

It is the stock diffusers path users will run (``WanPipeline.from_pretrained`` + ``load_lora_weights``), kept
as a command so the demo and a quick look at a checkpoint need no script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..video_writer import write_mp4

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--pretrained_model_name_or_path", required=True, help="Base diffusers-format Wan pipeline.")
    parser.add_argument(
        "--lora", default=None, help="Folder (or checkpoint-N) holding pytorch_lora_weights.safetensors."
    )
    parser.add_argument(
        "--transformer", default=None, help="Folder whose transformer/ replaces the base one (full finetune output)."
    )
    parser.add_argument("--prompt", required=True, help="What the video should show.")
    parser.add_argument("--negative_prompt", default=None, help="What it should not show.")
    parser.add_argument("--output", required=True, help="mp4 file to write.")
    parser.add_argument("--height", type=int, default=480, help="Video height (multiple of 16).")
    parser.add_argument("--width", type=int, default=832, help="Video width (multiple of 16).")
    parser.add_argument("--num_frames", type=int, default=81, help="Frames (4k+1).")
    parser.add_argument("--num_inference_steps", type=int, default=50, help="Sampling steps.")
    parser.add_argument("--guidance_scale", type=float, default=5.0, help="Classifier-free guidance scale.")
    parser.add_argument("--fps", type=int, default=16, help="fps of the written mp4.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the initial noise.")
    parser.add_argument(
        "--dtype",
        default="bfloat16" if torch.cuda.is_available() else "float32",
        choices=DTYPES,
        help="Weights dtype.",
    )
    parser.add_argument(
        "--vsa_sparsity",
        type=float,
        default=None,
        help="Run with Video Sparse Attention at this sparsity (use it for VSA-finetuned weights, e.g. 0.9).",
    )
    parser.add_argument(
        "--vsa_backend", default="auto", choices=["auto", "torch", "flex", "kernel"], help="VSA implementation."
    )
    return parser


def generate(args: argparse.Namespace) -> Path:
    from diffusers import WanPipeline, WanTransformer3DModel

    dtype = DTYPES[args.dtype]
    components = {}
    if args.transformer:
        components["transformer"] = WanTransformer3DModel.from_pretrained(
            args.transformer, subfolder="transformer", torch_dtype=dtype
        )
    pipe = WanPipeline.from_pretrained(args.pretrained_model_name_or_path, torch_dtype=dtype, **components)
    if args.vsa_sparsity is not None:
        from ..vsa import enable_vsa, load_vsa_gates

        enable_vsa(pipe.transformer, sparsity=args.vsa_sparsity, backend=args.vsa_backend)
        if args.transformer:
            load_vsa_gates(pipe.transformer, Path(args.transformer) / "transformer")
    if args.lora:  # after enable_vsa: a VSA LoRA also adapts the to_gate_compress projections
        pipe.load_lora_weights(args.lora)
    pipe.to("cuda" if torch.cuda.is_available() else "cpu")
    frames = pipe(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale,
        generator=torch.Generator("cpu").manual_seed(args.seed),
        output_type="np",
    ).frames[0]
    return write_mp4((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), args.output, fps=args.fps)
