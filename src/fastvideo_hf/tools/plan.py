"""`fastvideo-hf plan`: will a training run fit on my GPUs, and which memory savers should I turn on?

    fastvideo-hf plan --pretrained_model_name_or_path Wan-AI/Wan2.1-T2V-14B-Diffusers --height 480 --width 832 \
      --num_frames 81 --mode lora --rank 32 --mixed_precision bf16 --gpu_memory 24 --num_gpus 1

Prints the parts of the peak GPU memory of one process for every combination of the training scripts' memory options
(gradient checkpointing, fp8 layerwise casting, group offload, context parallelism, FSDP), then the cheapest one that
fits. No weight is read and nothing is downloaded: the transformer is built from its config on the meta device (kept in
the code for the public Wan models, else read from a local folder or the Hugging Face cache). The model behind the
numbers, and what is assumed, is in ``fastvideo_hf.training.memory_plan``.

``--json PATH`` writes the same table for scripts (a GPU check compares ``torch.cuda.max_memory_allocated`` with it):

- ``model``, ``setup`` (the flags as planned), ``tokens_per_sample``, ``parameters`` (one transformer),
  ``lora_parameters``, ``gpu_memory_bytes``, ``assumptions`` (list of strings);
- ``combinations``: one object per option combination, with ``options`` (``gradient_checkpointing``,
  ``layerwise_casting``, ``group_offload`` (null, "block_level" or "leaf_level"), ``context_parallel`` (degree),
  ``fsdp``), ``description``, ``parts`` (``weights_bytes``, ``lora_bytes``, ``gradients_bytes``,
  ``optimizer_states_bytes``, ``weight_copies_bytes``, ``activations_bytes``, ``recompute_bytes``,
  ``workspace_bytes``, ``overhead_bytes``), ``allocated_bytes`` (every part but the fixed overhead: compare with
  ``torch.cuda.max_memory_allocated``), ``total_bytes`` (with the overhead: compare with ``--gpu_memory``) and
  ``fits``;
- ``recommended``: the index in ``combinations`` of the cheapest combination that fits, or null.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..training.memory_plan import (
    DEFAULT_LORA_TARGETS,
    TrainingSetup,
    format_plan,
    make_plan,
    plan_to_json,
    resolve_model,
)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="fastvideo-hf plan", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help="A known Wan model (Hub id such as Wan-AI/Wan2.1-T2V-14B-Diffusers, or a short name such as "
        "wan2.1-t2v-14b), a local diffusers pipeline folder, or a Hub id whose configs are in the local cache.",
    )
    parser.add_argument("--revision", default=None, help="Revision of a cached Hub model.")
    parser.add_argument("--height", type=int, default=480, help="Training height in pixels.")
    parser.add_argument("--width", type=int, default=832, help="Training width in pixels.")
    parser.add_argument("--num_frames", type=int, default=81, help="Frames per training clip (4k+1).")
    parser.add_argument("--train_batch_size", type=int, default=1, help="Clips per process and step.")
    parser.add_argument(
        "--mode",
        default="lora",
        choices=["lora", "full"],
        help="lora: train_wan_lora.py (frozen base); full: train_wan.py (every weight, float32 master weights).",
    )
    parser.add_argument("--rank", type=int, default=32, help="LoRA rank (--mode lora).")
    parser.add_argument(
        "--lora_target_modules",
        default=",".join(DEFAULT_LORA_TARGETS),
        help="Comma-separated Linear names the LoRA adapts, as the training flag of the same name.",
    )
    parser.add_argument(
        "--mixed_precision", default="bf16", choices=["bf16", "fp16", "no"], help="The training run's mixed precision."
    )
    parser.add_argument(
        "--expert",
        default=None,
        choices=["high", "low", "both"],
        help="Wan2.2 A14B: one expert trains (high or low, the default) or both (both in GPU memory).",
    )
    parser.add_argument("--gpu_memory", type=float, default=24, help="Memory of one GPU in GiB (24 for a 4090).")
    parser.add_argument(
        "--num_gpus",
        type=int,
        default=1,
        help="GPUs of the run: FSDP shards over them, context parallelism splits tokens over them.",
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="Also write the table as JSON to PATH.")
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the plan (and write ``--json``); 2 with a message when the model cannot be resolved offline or the
    flags make no run."""
    for flag in ("height", "width", "num_frames", "train_batch_size", "rank", "num_gpus"):
        if getattr(args, flag) < 1:
            print(f"fastvideo-hf plan: error: --{flag} must be at least 1", file=sys.stderr)
            return 2
    targets = tuple(name.strip() for name in args.lora_target_modules.split(",") if name.strip())
    setup = TrainingSetup(
        mode=args.mode,
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        train_batch_size=args.train_batch_size,
        rank=args.rank,
        lora_targets=targets,
        mixed_precision=args.mixed_precision,
        num_gpus=args.num_gpus,
        expert=args.expert,
    )
    try:
        plan = make_plan(resolve_model(args.pretrained_model_name_or_path, args.revision), setup, args.gpu_memory)
    except (FileNotFoundError, ValueError) as error:  # not resolvable offline, or LoRA targets matching nothing
        print(f"fastvideo-hf plan: error: {error}", file=sys.stderr)
        return 2
    print(format_plan(plan))
    if args.json:
        Path(args.json).write_text(json.dumps(plan_to_json(plan), indent=2) + "\n")
        print(f"plan written to {args.json}")
    return 0
