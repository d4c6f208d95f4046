"""``fastvideo-hf generate``: a video from a Wan pipeline plus what training produced (LoRA or transformer).

It is the stock diffusers path users will run (``WanPipeline.from_pretrained`` + ``load_lora_weights``), kept
as a command so the demo and a quick look at a checkpoint need no script. It also runs VSA checkpoints, ours and
FastVideo's (whose gate weights ``from_pretrained`` drops): the sparsity comes from ``--vsa_sparsity`` or else
from the ``vsa_config.json`` beside the weights, and the gates are loaded in either key naming.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..video_writer import write_mp4

if TYPE_CHECKING:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

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
    parser.add_argument(
        "--flow_shift",
        type=float,
        default=None,
        help="Shift of the sampling schedule (diffusers' Wan docs: 3.0 for 480p, 5.0 for 720p); default: the "
        "scheduler config of the base model folder.",
    )
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
        help="Run with Video Sparse Attention at this sparsity (e.g. 0.9). Without it, the sparsity of a "
        "vsa_config.json beside the weights (the transformer/ of --transformer or of the base, or the --lora folder) "
        "is used, and with neither the attention is dense.",
    )
    parser.add_argument(
        "--vsa_backend", default="auto", choices=["auto", "torch", "flex", "kernel"], help="VSA implementation."
    )
    parser.add_argument(
        "--dmd_timesteps",
        default=None,
        help="Sample as FastVideo's DMD-distilled models (FastWan) expect, e.g. 1000,757,522: at each of these "
        "timesteps predict the clean video and re-noise it to the next one (no guidance). Replaces the scheduler "
        "and --num_inference_steps.",
    )
    return parser


def dmd_scheduler(timesteps: list[int], num_train_timesteps: int = 1000) -> FlowMatchEulerDiscreteScheduler:
    """FastVideo's DMD sampling as a stock diffusers scheduler, for ``WanPipeline``.

    FastVideo's DMD stage predicts x0 = x_t - sigma_t * v at each of its fixed timesteps and adds fresh noise to
    reach the next one, with sigma_t = t / 1000 (to within the spacing of its shifted 1000-point grid). That is
    ``FlowMatchEulerDiscreteScheduler`` with ``stochastic_sampling`` and those sigmas unshifted; ``WanPipeline``
    asks only for a step count, so the sigmas are bound to ``set_timesteps``.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=num_train_timesteps, shift=1.0, stochastic_sampling=True
    )
    sigmas = [timestep / num_train_timesteps for timestep in timesteps]
    scheduler.set_timesteps = functools.partial(scheduler.set_timesteps, sigmas=sigmas)
    return scheduler


def _local_transformer_folder(name_or_path: str | None) -> Path | None:
    """``PATH/transformer`` when ``name_or_path`` is a local pipeline folder (a Hub id has no files here yet)."""
    if name_or_path is None or not (Path(name_or_path) / "transformer").is_dir():
        return None
    return Path(name_or_path) / "transformer"


def vsa_settings(args: argparse.Namespace) -> tuple[float | None, str, Path | None]:
    """The VSA sparsity to run at, where it came from, and the folder to load gate weights from (or None).

    The gates come from ``--transformer``'s ``transformer/`` (which must hold them), else from the base
    pipeline's own ``transformer/`` when it holds some (a FastVideo VSA model used as the base). The sparsity is
    ``--vsa_sparsity``, else that of the first ``vsa_config.json`` found beside those weights or the LoRA.
    """
    from ..vsa import read_vsa_config, vsa_gate_naming

    if args.transformer:
        gates_folder = Path(args.transformer) / "transformer"
    else:
        base = _local_transformer_folder(args.pretrained_model_name_or_path)
        has_gates = base is not None and any(base.glob("*.safetensors")) and vsa_gate_naming(base)
        gates_folder = base if has_gates else None  # (a .bin-only base has no gates to read either)
    if args.vsa_sparsity is not None:
        return args.vsa_sparsity, "--vsa_sparsity", gates_folder
    weights_folder = gates_folder or _local_transformer_folder(args.pretrained_model_name_or_path)
    for folder in (weights_folder, Path(args.lora) if args.lora else None):
        config = read_vsa_config(folder) if folder is not None else None
        if config is not None:
            return config["sparsity"], str(folder / "vsa_config.json"), gates_folder
    return None, "no --vsa_sparsity and no vsa_config.json", gates_folder


def build_pipeline(args: argparse.Namespace) -> tuple[WanPipeline, dict]:
    """The pipeline the flags describe (finetune, VSA, scheduler) on its device, and the arguments to call it with."""
    from diffusers import WanPipeline, WanTransformer3DModel

    dtype = DTYPES[args.dtype]
    components = {}
    if args.transformer:
        components["transformer"] = WanTransformer3DModel.from_pretrained(
            args.transformer, subfolder="transformer", torch_dtype=dtype
        )
    pipe = WanPipeline.from_pretrained(args.pretrained_model_name_or_path, torch_dtype=dtype, **components)
    sparsity, source, gates_folder = vsa_settings(args)
    if sparsity is None:
        print(f"dense attention ({source})")
    else:
        from ..vsa import enable_vsa, load_vsa_gates, vsa_gate_naming

        enable_vsa(pipe.transformer, sparsity=sparsity, backend=args.vsa_backend)
        print(f"VSA sparsity {sparsity} (from {source})")
        if gates_folder is not None:
            count = load_vsa_gates(pipe.transformer, gates_folder)
            print(f"VSA gates: {count} tensors with {vsa_gate_naming(gates_folder)} names from {gates_folder}")
    if args.flow_shift is not None:
        if "flow_shift" not in pipe.scheduler.config:
            raise ValueError(f"--flow_shift: the base's {type(pipe.scheduler).__name__} has no flow_shift setting")
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=args.flow_shift)
    steps, guidance_scale = args.num_inference_steps, args.guidance_scale
    if args.dmd_timesteps:
        timesteps = [int(step) for step in args.dmd_timesteps.split(",")]
        pipe.scheduler, steps, guidance_scale = dmd_scheduler(timesteps), len(timesteps), 1.0
    if args.lora:  # after enable_vsa: a VSA LoRA also adapts the to_gate_compress projections
        pipe.load_lora_weights(args.lora)
    pipe.to("cuda" if torch.cuda.is_available() else "cpu")
    call = {
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "height": args.height,
        "width": args.width,
        "num_frames": args.num_frames,
        "num_inference_steps": steps,
        "guidance_scale": guidance_scale,
    }
    return pipe, call


def generate(args: argparse.Namespace) -> Path:
    """Sample one video with the pipeline of ``build_pipeline`` and write it as mp4."""
    pipe, call = build_pipeline(args)
    if args.dmd_timesteps:
        torch.manual_seed(args.seed)  # the re-noising draws from the global generator: WanPipeline passes none
    generator = torch.Generator("cpu").manual_seed(args.seed)
    frames = pipe(**call, generator=generator, output_type="np").frames[0]
    return write_mp4((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), args.output, fps=args.fps)
