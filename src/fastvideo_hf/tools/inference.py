"""``fastvideo-hf generate``: a video from a base pipeline plus what training produced (LoRA or transformer).

It is the stock diffusers path users will run (the family's pipeline ``from_pretrained`` + ``load_lora_weights``), kept
as a command so the demo and a quick look at a checkpoint need no script. It also runs VSA checkpoints, ours and
FastVideo's (whose gate weights ``from_pretrained`` drops): the sparsity comes from ``--vsa_sparsity`` or else
from the ``vsa_config.json`` beside the weights, and the gates are loaded in either key naming.

Wan2.2 A14B has two experts: each LoRA file (and each ``transformer/`` / ``transformer_2/`` folder of a full
finetune) goes into the expert it was trained as, which training records in ``run_settings.json``; ``--expert`` says
it for a LoRA that carries no record. Every flag, and every folder a flag names, is checked before a weight is
read: a setting that cannot make a video is refused (``SettingRefused``) instead of a traceback or a black video.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..models import ModelSpec, family_titles, load_model_spec
from ..models.family import EXPERT_SLOTS
from ..refusal import SettingRefused
from ..training.checkpoint_hooks import lora_file_names
from ..training.resume_settings import RUN_SETTINGS_FILE
from ..video_writer import write_mp4
from .output_paths import output_file

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LORA_WEIGHTS = lora_file_names("transformer", both_experts=False)[0]  # one transformer, or the high expert of `both`
LORA_WEIGHTS_2 = lora_file_names("transformer_2", both_experts=True)[0]  # the low-noise expert of an --expert both run
EXPERT_NAMES = ("high", "low")  # --expert values, in the order of EXPERT_SLOTS
DMD_TRAIN_TIMESTEPS = 1000  # the timestep range of FastVideo's DMD models (sigma = t / 1000)


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help=f"Base diffusers-format {family_titles()} pipeline (a folder or a Hub id).",
    )
    parser.add_argument(
        "--lora",
        default=None,
        help="Local folder (train_wan_lora.py's OUT or a checkpoint-N) holding pytorch_lora_weights.safetensors "
        "(and, from a Wan2.2 A14B --expert both run, pytorch_lora_weights_transformer_2.safetensors).",
    )
    parser.add_argument(
        "--transformer",
        default=None,
        help="Local folder (train_wan.py's OUT or a checkpoint-N) whose transformer/ (and transformer_2/ for Wan2.2 "
        "A14B) replace the base ones.",
    )
    parser.add_argument(
        "--expert",
        default=None,
        choices=["high", "low", "both"],
        help="Wan2.2 A14B: the expert the --lora was trained as (the training run's --expert; high: transformer, "
        "low: transformer_2), when its folder does not record it (training writes it in checkpoint-N/"
        "run_settings.json). With a --expert both LoRA, high or low loads that expert's file only.",
    )
    parser.add_argument("--prompt", required=True, help="What the video should show.")
    parser.add_argument("--negative_prompt", default=None, help="What it should not show.")
    parser.add_argument("--output", required=True, help="mp4 file to write.")
    parser.add_argument("--height", type=int, default=480, help="Video height (a positive multiple of 16).")
    parser.add_argument("--width", type=int, default=832, help="Video width (a positive multiple of 16).")
    parser.add_argument("--num_frames", type=int, default=81, help="Frames (4k+1).")
    parser.add_argument("--num_inference_steps", type=int, default=50, help="Sampling steps.")
    parser.add_argument("--guidance_scale", type=float, default=5.0, help="Classifier-free guidance scale.")
    parser.add_argument(
        "--flow_shift",
        type=float,
        default=None,
        help="Shift of the sampling schedule, above 0 (diffusers' Wan docs: 3.0 for 480p, 5.0 for 720p); default: "
        "the scheduler config of the base model folder.",
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
        help="Run with Video Sparse Attention at this sparsity in [0, 1) (e.g. 0.9). Without it, the sparsity of a "
        "vsa_config.json beside the weights (the transformer/ of --transformer or of the base, or the --lora folder) "
        "is used, and with neither the attention is dense.",
    )
    parser.add_argument(
        "--vsa_backend", default="auto", choices=["auto", "torch", "flex", "kernel"], help="VSA implementation."
    )
    parser.add_argument(
        "--dmd_timesteps",
        default=None,
        help="Sample as FastVideo's DMD-distilled models (FastWan) expect, e.g. 1000,757,522 (decreasing, each in "
        "1..1000): at each of these timesteps predict the clean video and re-noise it to the next one (no guidance). "
        "Replaces the scheduler and --num_inference_steps.",
    )
    return parser


def dmd_scheduler(timesteps: list[int], num_train_timesteps: int = 1000) -> FlowMatchEulerDiscreteScheduler:
    """FastVideo's DMD sampling as a stock diffusers scheduler, for the Wan pipeline its DMD models run in.

    FastVideo's DMD stage predicts x0 = x_t - sigma_t * v at each of its fixed timesteps and adds fresh noise to
    reach the next one, with sigma_t = t / 1000 (to within the spacing of its shifted 1000-point grid). That is
    ``FlowMatchEulerDiscreteScheduler`` with ``stochastic_sampling`` and those sigmas unshifted; the pipeline
    asks only for a step count, so the sigmas are bound to ``set_timesteps``.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=num_train_timesteps, shift=1.0, stochastic_sampling=True
    )
    sigmas = [timestep / num_train_timesteps for timestep in timesteps]
    scheduler.set_timesteps = functools.partial(scheduler.set_timesteps, sigmas=sigmas)
    return scheduler


@dataclass(frozen=True)
class LoraFile:
    """One LoRA file of ``--lora`` and the pipeline slot (expert) it is loaded into."""

    weight_name: str
    slot: str  # "transformer" or "transformer_2"


@dataclass(frozen=True)
class CheckedFlags:
    """What the flags resolve to, worked out before any weight is read."""

    base: ModelSpec  # the base pipeline's facts: its family, its experts (Wan2.2 A14B: transformer + transformer_2)
    dmd_timesteps: list[int] | None
    lora_files: list[LoraFile]
    transformer_slots: list[str]  # the finetuned folders of --transformer to load, each into its slot


def check_flags(args: argparse.Namespace) -> CheckedFlags:
    """Every flag of ``generate`` and every folder one names, checked before a weight is read.

    ``SettingRefused`` says what is wrong and what to pass instead: numbers a sampling run cannot use (a shift of 0
    gives NaN latents, which the video writer turns into a black video), a LoRA folder given as ``--transformer`` or
    the other way round, a path that does not exist (it would be looked up on the Hub), an A14B LoRA whose expert is
    not known. The base pipeline's ``model_index.json`` is read (from the Hub for a Hub id) to know its experts.
    """
    for flag in ("num_inference_steps", "fps"):
        if getattr(args, flag) < 1:
            raise SettingRefused(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if not math.isfinite(args.guidance_scale):
        raise SettingRefused(f"--guidance_scale must be a finite number, got {args.guidance_scale}")
    if args.flow_shift is not None and not (math.isfinite(args.flow_shift) and args.flow_shift > 0):
        raise SettingRefused(
            f"--flow_shift must be a number above 0 (3.0 for 480p, 5.0 for 720p), got {args.flow_shift}: "
            "0 or less makes NaN latents, a black video"
        )
    if args.vsa_sparsity is not None and not 0 <= args.vsa_sparsity < 1:
        raise SettingRefused(f"--vsa_sparsity must be in [0, 1) (e.g. 0.9), got {args.vsa_sparsity}")
    dmd_timesteps = parse_dmd_timesteps(args.dmd_timesteps) if args.dmd_timesteps is not None else None
    if dmd_timesteps is not None and args.flow_shift is not None:
        raise SettingRefused("--flow_shift does not apply with --dmd_timesteps (its sigmas are t / 1000, unshifted)")
    output_file(args.output, "--output", ".mp4")
    base = read_base(args.pretrained_model_name_or_path)
    check_video_size(args, base)
    two_experts = base.has_experts
    transformer_slots = check_transformer_folder(Path(args.transformer), two_experts) if args.transformer else []
    if args.lora:
        lora_files = lora_files_to_load(check_lora_folder(Path(args.lora)), args.expert, two_experts)
    elif args.expert is not None:
        raise SettingRefused("--expert says which expert a --lora was trained as: pass --lora, or drop --expert")
    else:
        lora_files = []
    try:
        sparsity, _, gates_folder = vsa_settings(args)
    except ValueError as error:  # a vsa_config.json beside the weights with a sparsity out of [0, 1)
        raise SettingRefused(str(error)) from error
    if sparsity is not None and args.transformer and gates_folder is not None and not _has_gates(gates_folder):
        raise SettingRefused(
            f"{gates_folder} holds no VSA gate weights (to_gate_compress): it is a dense finetune; run it without "
            "--vsa_sparsity, or pass a VSA finetune (train_wan.py --attention_backend vsa)"
        )
    return CheckedFlags(base, dmd_timesteps, lora_files, transformer_slots)


def parse_dmd_timesteps(text: str) -> list[int]:
    """``--dmd_timesteps`` as integers, each in 1..1000 and each below the one before (the noise must go down)."""
    try:
        timesteps = [int(step) for step in text.split(",")]
    except ValueError:
        raise SettingRefused(
            f"--dmd_timesteps takes comma-separated whole timesteps, e.g. 1000,757,522; got {text!r}"
        ) from None
    if not all(0 < step <= DMD_TRAIN_TIMESTEPS for step in timesteps):
        raise SettingRefused(f"--dmd_timesteps must each be in 1..{DMD_TRAIN_TIMESTEPS}, got {text}")
    if any(later >= earlier for earlier, later in zip(timesteps, timesteps[1:], strict=False)):
        raise SettingRefused(f"--dmd_timesteps must decrease (from noise to video), e.g. 1000,757,522; got {text}")
    return timesteps


def read_base(name_or_path: str) -> ModelSpec:
    """The base pipeline's facts from its configs (a local folder's, or the Hub's as ``from_pretrained`` would fetch
    them); a path that leads nowhere is refused here rather than after a Hub lookup."""
    from diffusers import DiffusionPipeline

    folder = Path(name_or_path)
    if folder.exists() and not (folder / "model_index.json").is_file():
        raise SettingRefused(
            f"--pretrained_model_name_or_path {folder} is not a diffusers pipeline folder (no model_index.json)"
        )
    try:
        DiffusionPipeline.load_config(name_or_path)
    except OSError as error:  # load_config's answer for a missing folder, an unknown repo or no network
        reason = str(error).splitlines()[0]
        raise SettingRefused(
            f"--pretrained_model_name_or_path {name_or_path}: no such folder, and no Hub model to load ({reason})"
        ) from error
    try:
        return load_model_spec(name_or_path)
    except ValueError as error:  # a pipeline of no family we know, or a component's config missing
        raise SettingRefused(str(error)) from error


def check_video_size(args: argparse.Namespace, base: ModelSpec) -> None:
    """Sizes the base's VAE and patches take as they are (its pipeline would round others, or fail)."""
    multiple = math.lcm(*base.spatial_multiple)
    for flag in ("height", "width"):
        if getattr(args, flag) < multiple or getattr(args, flag) % multiple:
            raise SettingRefused(
                f"--{flag} must be a positive multiple of {multiple} (this {base.family.title} model's VAE and "
                f"patches), got {getattr(args, flag)}"
            )
    if not base.takes_frames(args.num_frames):
        step = base.vae_scale_factor_temporal
        below = max(1, (args.num_frames - 1) // step * step + 1)
        raise SettingRefused(
            f"--num_frames must be {base.family.frame_rule(base)} for this {base.family.title} model's VAE "
            f"(e.g. {below} or {below + step}), got {args.num_frames}"
        )


def _lora_names_in(folder: Path) -> list[str]:
    return [name for name in (LORA_WEIGHTS, LORA_WEIGHTS_2) if (folder / name).is_file()]


def check_lora_folder(folder: Path) -> Path:
    """``--lora`` as a local folder holding our LoRA file(s); a full finetune or a missing path is refused."""
    hint = "pass the --output_dir of train_wan_lora.py or one of its checkpoint-N folders"
    if folder.is_file():
        raise SettingRefused(f"--lora takes the folder that holds {LORA_WEIGHTS}: --lora {folder.parent}")
    if not folder.is_dir():
        raise SettingRefused(
            f"--lora {folder}: no such folder ({hint}; for a LoRA on the Hub, `hf download ID --local-dir DIR` first)"
        )
    if not _lora_names_in(folder):
        if any((folder / slot / "config.json").is_file() for slot in EXPERT_SLOTS):
            raise SettingRefused(
                f"--lora {folder} holds transformer/ (a full finetune or a pipeline), not a LoRA: a full finetune "
                f"goes to --transformer {folder}"
            )
        raise SettingRefused(f"--lora {folder} holds no {LORA_WEIGHTS}: {hint}")
    return folder


def check_transformer_folder(folder: Path, two_experts: bool) -> list[str]:
    """The slots (``transformer``, ``transformer_2``) whose finetuned folder ``--transformer`` holds."""
    hint = "pass the --output_dir of train_wan.py or one of its checkpoint-N folders"
    if not folder.is_dir():
        raise SettingRefused(f"--transformer {folder}: no such folder ({hint})")
    slots = [slot for slot in EXPERT_SLOTS if (folder / slot / "config.json").is_file()]
    if not slots:
        if _lora_names_in(folder):
            raise SettingRefused(
                f"--transformer {folder} holds a LoRA ({LORA_WEIGHTS}), not a full finetune: "
                f"pass it as --lora {folder}"
            )
        if folder.name in EXPERT_SLOTS and (folder / "config.json").is_file():
            raise SettingRefused(f"--transformer takes the folder above {folder.name}/: --transformer {folder.parent}")
        raise SettingRefused(f"--transformer {folder} holds no transformer/config.json: {hint}")
    if "transformer_2" in slots and not two_experts:
        raise SettingRefused(
            f"--transformer {folder} holds transformer_2/ (Wan2.2 A14B's low-noise expert) but the base has one "
            "transformer: pass the Wan2.2 A14B base it was trained from"
        )
    return slots


def recorded_expert(folder: Path) -> tuple[str | None, Path] | None:
    """(the ``--expert`` the LoRA was trained with, the file that says so): the ``run_settings.json`` of a
    checkpoint-N folder, or of the newest checkpoint in a training output; None when no file records it."""
    checkpoints = [path for path in folder.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", path.name)]
    newest_first = sorted(checkpoints, key=lambda path: int(path.name.split("-")[1]), reverse=True)
    for settings in [folder / RUN_SETTINGS_FILE, *(path / RUN_SETTINGS_FILE for path in newest_first)]:
        if settings.is_file():
            return json.loads(settings.read_text()).get("expert"), settings
    return None


def lora_files_to_load(folder: Path, expert: str | None, two_experts: bool) -> list[LoraFile]:
    """Each LoRA file of ``folder`` with the expert it goes into.

    A one-transformer base takes ``pytorch_lora_weights.safetensors``. On Wan2.2 A14B the expert is ``expert``, else
    the one training recorded, else ``both`` when the folder holds the second expert's file; ``high`` loads into
    ``transformer``, ``low`` into ``transformer_2`` (``load_into_transformer_2``), as our README tells Python users.
    """
    names = _lora_names_in(folder)
    if not two_experts:
        if expert is not None:
            raise SettingRefused("--expert is for Wan2.2 A14B (two experts); the base has one transformer: drop it")
        if LORA_WEIGHTS_2 in names:
            raise SettingRefused(
                f"--lora {folder} holds a LoRA for each of Wan2.2 A14B's experts but the base has one transformer: "
                "pass the Wan2.2 A14B base it was trained from"
            )
        return [LoraFile(LORA_WEIGHTS, "transformer")]
    record = recorded_expert(folder)
    recorded, source = record if record is not None else (None, None)
    if expert is not None and recorded in EXPERT_NAMES and expert != recorded:
        raise SettingRefused(
            f"--expert {expert}: the LoRA in {folder} was trained with --expert {recorded} ({source}); "
            f"pass --expert {recorded} or drop --expert"
        )
    chosen = expert or recorded or ("both" if LORA_WEIGHTS_2 in names else None)
    if chosen is None:
        raise SettingRefused(
            f"--lora {folder}: the base has two experts (Wan2.2 A14B) and nothing in the folder records which one "
            "this LoRA was trained as: pass the training run's --expert (high: transformer, low: transformer_2)"
        )
    two_files = LORA_WEIGHTS_2 in names
    wanted = {
        "high": [LoraFile(LORA_WEIGHTS, "transformer")],
        "low": [LoraFile(LORA_WEIGHTS_2 if two_files else LORA_WEIGHTS, "transformer_2")],
        "both": [LoraFile(LORA_WEIGHTS, "transformer"), LoraFile(LORA_WEIGHTS_2, "transformer_2")],
    }[chosen]
    missing = [file.weight_name for file in wanted if file.weight_name not in names]
    if missing:
        trained = f"trained with --expert {recorded}" if recorded else "one expert's LoRA"
        raise SettingRefused(
            f"--expert {chosen} needs {', '.join(missing)} and {folder} has only {', '.join(names)} ({trained}): "
            "pass the expert it was trained as"
        )
    return wanted


def _has_gates(folder: Path) -> bool:
    from ..vsa import vsa_gate_naming

    return any(folder.glob("*.safetensors")) and vsa_gate_naming(folder) is not None


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

    if args.transformer:  # (a low-noise expert's finetune has transformer_2/ only: no gates of transformer/)
        gates_folder = Path(args.transformer) / "transformer"
        gates_folder = gates_folder if gates_folder.is_dir() else None
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


def build_pipeline(args: argparse.Namespace) -> tuple[DiffusionPipeline, dict]:
    """The pipeline the flags describe (finetune, VSA, scheduler) on its device, and the arguments to call it with.

    The flags are checked first (``check_flags``): a refusal comes before any weight is read."""
    checked = check_flags(args)
    family, dtype = checked.base.family, DTYPES[args.dtype]
    components = {
        slot: family.transformer_from_folder(args.transformer, subfolder=slot, dtype=dtype)
        for slot in checked.transformer_slots
    }
    pipeline_class = family.pipeline_class("t2v")
    pipe = pipeline_class.from_pretrained(args.pretrained_model_name_or_path, torch_dtype=dtype, **components)
    sparsity, source, gates_folder = vsa_settings(args)
    if sparsity is None:
        print(f"dense attention ({source})")
    else:
        from ..vsa import enable_vsa, load_vsa_gates, vsa_gate_naming

        enable_vsa(pipe.transformer, sparsity=sparsity, backend=args.vsa_backend)
        print(f"VSA sparsity {sparsity} (from {source})")
        if gates_folder is not None:
            try:
                count = load_vsa_gates(pipe.transformer, gates_folder)
            except ValueError as error:  # gates missing, incomplete or in both namings: the folder, not a bug
                raise SettingRefused(str(error)) from error
            print(f"VSA gates: {count} tensors with {vsa_gate_naming(gates_folder)} names from {gates_folder}")
    if args.flow_shift is not None:
        if "flow_shift" not in pipe.scheduler.config:
            raise SettingRefused(
                f"--flow_shift: the base's {type(pipe.scheduler).__name__} has no flow_shift setting; "
                "drop --flow_shift"
            )
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=args.flow_shift)
    steps, guidance_scale = args.num_inference_steps, args.guidance_scale
    if checked.dmd_timesteps:
        pipe.scheduler, steps = dmd_scheduler(checked.dmd_timesteps, DMD_TRAIN_TIMESTEPS), len(checked.dmd_timesteps)
        guidance_scale = 1.0
    for lora in checked.lora_files:  # after enable_vsa: a VSA LoRA also adapts the to_gate_compress projections
        pipe.load_lora_weights(
            args.lora, weight_name=lora.weight_name, load_into_transformer_2=lora.slot == "transformer_2"
        )
        print(f"LoRA {Path(args.lora) / lora.weight_name} -> {lora.slot}")
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
        torch.manual_seed(args.seed)  # the re-noising draws from the global generator: the pipeline passes none
    generator = torch.Generator("cpu").manual_seed(args.seed)
    frames = pipe(**call, generator=generator, output_type="np").frames[0]
    if not np.isfinite(frames).all():  # NaN becomes 0 in the uint8 cast: an all-black video that looks written
        raise SettingRefused(
            "the pipeline produced NaN frames, so no video was written: the weights are not finite (a diverged "
            "--lora or --transformer) or a setting makes the sampler divide by zero"
        )
    return write_mp4((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), args.output, fps=args.fps)
