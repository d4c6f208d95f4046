"""`fastvideo-hf plan`: will a training run fit on my GPUs, and which memory savers should I turn on?

    fastvideo-hf plan --pretrained_model_name_or_path Wan-AI/Wan2.1-T2V-14B-Diffusers --height 480 --width 832 \
      --num_frames 81 --mode lora --rank 32 --mixed_precision bf16 --gpu_memory 24 --num_gpus 1

Prints the parts of the peak GPU memory of one process for every combination of the training scripts' memory options
(gradient checkpointing, fp8 layerwise casting, group offload, context parallelism, FSDP), then the cheapest one that
fits. No weight is read and nothing is downloaded: the transformer is built from its config on the meta device (kept in
the code for the public models of each family, else read from a local folder or the Hugging Face cache). The model
behind the numbers, and what is assumed, is in ``fastvideo_hf.training.memory_plan``; this module reads the flags and
presents the plan (the table, the recommendation, the JSON).

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
import math
from dataclasses import asdict

from ..models import FAMILIES, family_titles
from ..refusal import SettingRefused
from ..training.memory_plan import (
    CUDA_OVERHEAD_BYTES,
    GIB,
    ModelShape,
    Plan,
    TrainingSetup,
    assumptions,
    largest_fitting_frames,
    make_plan,
    resolve_model,
)
from .output_paths import output_file

DEFAULT_RANK = 32  # train_wan_lora.py's --rank default


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="fastvideo-hf plan", description=__doc__.split("\n")[0])
    short_name, known = next((name, model) for family in FAMILIES for name, model in family.known_models.items())
    default_targets = "; ".join(f"{family.title} {','.join(family.default_lora_targets)}" for family in FAMILIES)
    parser.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help=f"A known {family_titles()} model (Hub id such as {known.hub_id}, or a short name such as "
        f"{short_name}), a local diffusers pipeline folder, or a Hub id whose configs are in the local cache.",
    )
    parser.add_argument("--revision", default=None, help="Revision of a cached Hub model.")
    parser.add_argument(
        "--height", type=int, default=480, help="Training height in pixels (a multiple of 16; 32 for Wan2.2 TI2V-5B)."
    )
    parser.add_argument(
        "--width", type=int, default=832, help="Training width in pixels (a multiple of 16; 32 for Wan2.2 TI2V-5B)."
    )
    parser.add_argument("--num_frames", type=int, default=81, help="Frames per training clip (4k+1).")
    parser.add_argument("--train_batch_size", type=int, default=1, help="Clips per process and step.")
    parser.add_argument(
        "--mode",
        default="lora",
        choices=["lora", "full"],
        help="lora: train_wan_lora.py (frozen base); full: train_wan.py (every weight, float32 master weights).",
    )
    parser.add_argument("--rank", type=int, default=None, help=f"LoRA rank (--mode lora; default {DEFAULT_RANK}).")
    parser.add_argument(
        "--lora_target_modules",
        default=None,
        help="Comma-separated Linear names the LoRA adapts, as the training flag of the same name (--mode lora; "
        f"default the model family's: {default_targets}).",
    )
    parser.add_argument(
        "--mixed_precision", default="bf16", choices=["bf16", "fp16", "no"], help="The training run's mixed precision."
    )
    parser.add_argument(
        "--expert",
        default=None,
        choices=["high", "low", "both"],
        help="Wan2.2 A14B only: one expert trains (high or low, the default) or both (both in GPU memory).",
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
    """Print the plan (and write ``--json``). A setting that makes no training run, or a model that cannot be
    resolved offline, is refused (``SettingRefused``: one line, exit 2) before anything is estimated."""
    model, setup = check_settings(args)
    json_path = output_file(args.json, "--json", ".json") if args.json else None
    try:
        plan = make_plan(model, setup, args.gpu_memory)
    except ValueError as error:  # LoRA targets matching no Linear of the model
        raise SettingRefused(str(error)) from error
    print(format_plan(plan))
    if json_path is not None:
        json_path.write_text(json.dumps(plan_to_json(plan), indent=2) + "\n")
        print(f"plan written to {json_path}")
    return 0


def check_settings(args: argparse.Namespace) -> tuple[ModelShape, TrainingSetup]:
    """The model and the run the flags describe, or ``SettingRefused`` naming the flag: sizes the VAE and the patch
    embedding cannot take (preprocess refuses them too), a GPU of no memory, and flags that do not apply to the mode
    or the model (they would be ignored silently)."""
    for flag in ("height", "width", "num_frames", "train_batch_size", "num_gpus"):
        if getattr(args, flag) < 1:
            raise SettingRefused(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if not math.isfinite(args.gpu_memory) or args.gpu_memory <= 0:
        raise SettingRefused(f"--gpu_memory is one GPU's memory in GiB, e.g. 24 or 80; got {args.gpu_memory}")
    if args.mode == "full":
        given = [flag for flag in ("rank", "lora_target_modules") if getattr(args, flag) is not None]
        if given:
            names = " and ".join(f"--{flag}" for flag in given)
            raise SettingRefused(
                f"{names} {'is a LoRA setting' if len(given) == 1 else 'are LoRA settings'} and --mode full trains "
                f"every weight: drop {names}, or plan --mode lora"
            )
    rank = DEFAULT_RANK if args.rank is None else args.rank
    if rank < 1:
        raise SettingRefused(f"--rank must be at least 1, got {rank}")
    try:
        model = resolve_model(args.pretrained_model_name_or_path, args.revision)
    except (FileNotFoundError, ValueError) as error:  # not a known model, a local folder or a cached Hub id
        raise SettingRefused(str(error)) from error
    if args.expert is not None and len(model.experts) < 2:
        raise SettingRefused(
            f"--expert is for Wan2.2 A14B (two experts); {model.name} has one transformer: drop --expert"
        )
    patch_t, patch_h, patch_w = model.patch_size
    for flag, unit in (("height", model.vae_scale_spatial * patch_h), ("width", model.vae_scale_spatial * patch_w)):
        size = getattr(args, flag)
        if size % unit:
            below = size // unit * unit
            near = f"{below} or {below + unit}" if below else str(unit)
            raise SettingRefused(
                f"--{flag} must be a multiple of {unit} for this model (one token per {unit} pixels: VAE "
                f"{model.vae_scale_spatial}x, patch {patch_h}); {size} is not: try {near}"
            )
    frames_unit = model.vae_scale_temporal * patch_t
    if (args.num_frames - 1) % frames_unit:
        below = (args.num_frames - 1) // frames_unit * frames_unit + 1
        raise SettingRefused(
            f"--num_frames must be {frames_unit}k+1 for {model.family.title}'s VAE, as preprocess takes it; "
            f"{args.num_frames} is not: "
            f"try {below} or {below + frames_unit}"
        )
    lora_targets = args.lora_target_modules or ""  # none: the family's default, which make_plan fills in
    setup = TrainingSetup(
        mode=args.mode,
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        train_batch_size=args.train_batch_size,
        rank=rank,
        lora_targets=tuple(name.strip() for name in lora_targets.split(",") if name.strip()),
        mixed_precision=args.mixed_precision,
        num_gpus=args.num_gpus,
        expert=args.expert,
    )
    return model, setup


def plan_to_json(plan: Plan) -> dict:
    """The machine-readable plan (the keys are in this module's docstring)."""
    rows = []
    for row in plan.rows:
        parts = {f"{name}_bytes": value for name, value in asdict(row.parts).items()}
        rows.append(
            {
                "options": asdict(row.options),
                "description": row.options.describe(),
                "parts": parts,
                "allocated_bytes": row.parts.allocated,
                "total_bytes": row.parts.total,
                "fits": row.fits,
            }
        )
    best = plan.best
    return {
        "model": plan.model.name,
        "setup": asdict(plan.setup),
        "tokens_per_sample": plan.tokens,
        "parameters": plan.counts.total,
        "lora_parameters": plan.counts.lora,
        "gpu_memory_bytes": plan.gpu_memory_bytes,
        "combinations": rows,
        "recommended": None if best is None else plan.rows.index(best),
        "assumptions": assumptions(plan.model.family),
    }


def format_plan(plan: Plan) -> str:
    """The table of every combination and the recommendation, as ``fastvideo-hf plan`` prints them."""
    setup, counts = plan.setup, plan.counts
    experts = len(plan.model.experts) if setup.expert == "both" else 1
    trained = f"LoRA rank {setup.rank} ({counts.lora / 1e6:.1f}M parameters)" if setup.mode == "lora" else "full"
    lines = [
        f"{plan.model.name}: {counts.total / 1e9:.2f}B parameters x {experts} transformer(s), {counts.blocks} blocks; "
        f"{trained}, {setup.mixed_precision}",
        f"{setup.width}x{setup.height}x{setup.num_frames}, batch {setup.train_batch_size}: {plan.tokens:,} tokens per "
        f"sample; {setup.num_gpus} GPU(s) of {plan.gpu_memory_bytes / GIB:g} GiB",
        "",
    ]
    header = ("options", "weights", "lora", "grads", "optim", "w.copies", "activ.", "recomp.", "worksp.", "total", "")
    table = [header]
    for row in sorted(plan.rows, key=lambda r: (r.options.cost, r.parts.total)):
        p = row.parts
        values = (p.weights, p.lora, p.gradients, p.optimizer_states, p.weight_copies, p.activations, p.recompute,
                  p.workspace, p.total)  # fmt: skip
        table.append((row.options.describe(), *(f"{v / GIB:.1f}" for v in values), "fits" if row.fits else ""))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for cells in table:
        padded = [cell.rjust(width) for cell, width in zip(cells, widths, strict=True)]
        lines.append("  ".join([cells[0].ljust(widths[0]), *padded[1:]]).rstrip())
    lines.append(f"(GiB per GPU; total includes {CUDA_OVERHEAD_BYTES / GIB:g} GiB of CUDA context and fragmentation)")
    lines.append("")
    best = plan.best
    if best is None:
        smallest = min(plan.rows, key=lambda r: r.parts.total)
        lines.append(
            f"Nothing fits in {plan.gpu_memory_bytes / GIB:g} GiB: the smallest is "
            f"{smallest.parts.total / GIB:.1f} GiB ({smallest.options.describe()})."
        )
        frames = largest_fitting_frames(plan)
        if frames is not None:
            lines.append(f"With --num_frames {frames} (or a smaller size) a combination fits; or add GPUs.")
    else:
        lines.append(
            f"Recommended: {best.options.describe()} ({best.parts.total / GIB:.1f} GiB of "
            f"{plan.gpu_memory_bytes / GIB:g}):\n  {plan.command(best.options)}"
        )
    return "\n".join(lines)
