"""Validation videos during training, from FastVideo's ``validation.json`` or a single prompt.

Videos are generated with the family's stock diffusers pipeline around the transformer being trained (so
validation shows what users will get), written as H.264 mp4 under ``OUT/validation/step-{N}/`` and logged to the
trackers: wandb gets the video, tensorboard a strip of frames (its video logging needs moviepy).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..models import ModelSpec, expert_modules
from ..refusal import SettingRefused
from ..video_writer import write_mp4
from ..vsa import vsa_context
from .context_parallel import is_context_parallel

if TYPE_CHECKING:
    from ..dataset_card import LatentsCard
    from ..models import ModelFamily

logger = logging.getLogger(__name__)


@dataclass
class ValidationEntry:
    caption: str
    height: int
    width: int
    num_frames: int
    num_inference_steps: int
    image_path: str | None = None  # image-to-video conditioning, relative paths resolved against the json


def load_validation_entries(
    validation_file: str | None,
    validation_prompt: str | None,
    height: int,
    width: int,
    num_frames: int,
    num_inference_steps: int,
) -> list[ValidationEntry]:
    """Entries of ``validation_file`` (``{"data": [{"caption", "height", ...}]}`` or a bare list), else the prompt.

    Missing per-entry values fall back to the flags; paths are relative to the json's folder, as in FastVideo.
    """
    defaults = {"height": height, "width": width, "num_frames": num_frames, "num_inference_steps": num_inference_steps}
    if validation_file is None:
        return [ValidationEntry(caption=validation_prompt, **defaults)] if validation_prompt else []
    path = Path(validation_file)
    try:
        content: Any = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise SettingRefused(f"--validation_file {validation_file}: no such file") from error
    except IsADirectoryError as error:
        raise SettingRefused(f"--validation_file {validation_file} is a folder: name its validation.json") from error
    except json.JSONDecodeError as error:
        raise SettingRefused(f"--validation_file {validation_file} is not valid JSON: {error}") from error
    items = content.get("data", []) if isinstance(content, dict) else content
    entries = []
    for item in items:
        caption = item.get("caption") or item.get("prompt")
        if not caption:
            raise SettingRefused(f"{validation_file}: every entry needs a caption, got {item}")
        image_path = item.get("image_path")
        entries.append(
            ValidationEntry(
                caption=caption,
                height=int(item.get("height") or height),
                width=int(item.get("width") or width),
                num_frames=int(item.get("num_frames") or num_frames),
                num_inference_steps=int(item.get("num_inference_steps") or num_inference_steps),
                image_path=str(path.parent / image_path) if image_path else None,
            )
        )
    return entries


# validation size without flags and without a dataset card that says better (the 480p recipe of FastVideo's Wan2.1)
FALLBACK_VALIDATION_SIZE = (480, 832, 81)


def most_common_video_bucket(card: LatentsCard | None) -> tuple[int, int, int] | None:
    """(height, width, num_frames) of the dataset's most common video bucket, from its card: the rows per bucket
    of a bucketed dataset, else the one size of an older card. None when the card says neither."""
    if card is None:
        return None
    videos = [bucket for bucket in card.bucket_rows or [] if bucket.get("num_frames", 1) > 1]
    if videos:
        best = max(
            videos, key=lambda bucket: (bucket["rows"], bucket["num_frames"], bucket["height"] * bucket["width"])
        )
        return best["height"], best["width"], best["num_frames"]
    if card.height and card.width and (card.num_frames or 1) > 1:
        return card.height, card.width, card.num_frames
    return None


def validation_size(args, card: LatentsCard | None) -> tuple[int, int, int]:
    """(height, width, num_frames) for entries that name none: the flags, else the dataset's most common video
    bucket, else 480 x 832 x 81."""
    default = most_common_video_bucket(card) or FALLBACK_VALIDATION_SIZE
    flags = (args.validation_height, args.validation_width, args.validation_num_frames)
    return tuple(flag if flag is not None else value for flag, value in zip(flags, default, strict=True))


@functools.lru_cache(maxsize=4)
def _dataset_card(dataset_name: str, revision: str | None) -> LatentsCard | None:
    """The dataset's card metadata, for the validation size (read once per run)."""
    from .dataset_checks import LatentDatasetNotFoundError
    from .latent_dataset import read_dataset_card_metadata

    try:
        return read_dataset_card_metadata(dataset_name, revision)
    except LatentDatasetNotFoundError:
        return None


def check_validation_entries(entries: list[ValidationEntry], spec: ModelSpec) -> None:
    """Refuse, before the first step, the validation sizes that the family's pipeline would reject or quietly change
    at the first validation, which may come hours and checkpoints in.

    Height and width must be multiples of the VAE's spatial factor times the patch (the pipeline rounds others down,
    or refuses them); frames must be the VAE's ``temporal * k + 1`` (it rounds others)."""
    spatial = math.lcm(*spec.spatial_multiple)
    temporal = spec.vae_scale_factor_temporal
    bad = []
    for index, entry in enumerate(entries):
        size = f"{entry.height}x{entry.width}x{entry.num_frames}"
        ok_size = min(entry.height, entry.width) >= spatial and not (entry.height % spatial or entry.width % spatial)
        if not (ok_size and spec.takes_frames(entry.num_frames)) or entry.num_inference_steps < 1:
            fixed = (
                f"{max(spatial, entry.height // spatial * spatial)}x{max(spatial, entry.width // spatial * spatial)}x"
                f"{max(1, entry.num_frames // temporal * temporal + 1)}"  # the frames the pipeline rounds to
            )
            steps = "" if entry.num_inference_steps >= 1 else f", {entry.num_inference_steps} inference steps"
            bad.append(f"entry {index} ({entry.caption[:40]!r}) {size}{steps} (e.g. {fixed})")
    if bad:
        raise SettingRefused(
            f"validation videos need height and width multiples of {spatial}, frames {temporal}k + 1 and at least "
            f"one inference step: {'; '.join(bad)}. Set --validation_height/--validation_width/"
            "--validation_num_frames, or fix the entries of --validation_file"
        )


def generate_validation_videos(
    pipeline,
    entries: list[ValidationEntry],
    output_dir: str | Path,
    guidance_scale: float,
    fps: int,
    seed: int,
    write: bool = True,
) -> list[tuple[ValidationEntry, Path, np.ndarray]]:
    """Generate one video per entry with a fixed seed; returns (entry, mp4 path, uint8 frames [T, H, W, 3]).

    With ``write=False`` (non-main processes of a sharded run) the videos are generated but not saved.
    """
    output_dir = Path(output_dir)
    results = []
    for index, entry in enumerate(entries):
        generator = torch.Generator(device="cpu").manual_seed(seed + index)
        image = {"image": Image.open(entry.image_path).convert("RGB")} if entry.image_path else {}
        with torch.no_grad():
            frames = pipeline(
                **image,
                prompt=entry.caption,
                height=entry.height,
                width=entry.width,
                num_frames=entry.num_frames,
                num_inference_steps=entry.num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generator,
                output_type="np",
            ).frames[0]
        frames = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
        path = output_dir / f"video_{index}.mp4"
        if write:
            write_mp4(frames, path, fps=fps)
        results.append((entry, path, frames))
    return results


def log_validation_videos(accelerator, results, step: int, fps: int) -> None:
    """Send the videos to every tracker that can show them."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for index, (entry, _, frames) in enumerate(results):
                picks = np.linspace(0, len(frames) - 1, num=min(4, len(frames))).round().astype(int)
                strip = np.concatenate([frames[i] for i in picks], axis=1)
                tracker.writer.add_image(f"validation/{index}: {entry.caption[:60]}", strip, step, dataformats="HWC")
        elif tracker.name == "wandb":
            import wandb

            videos = [
                wandb.Video(frames.transpose(0, 3, 1, 2), caption=entry.caption, fps=fps, format="mp4")
                for entry, _, frames in results
            ]
            tracker.log({"validation": videos}, step=step)


def validation_entries(args, task: str = "t2v") -> list[ValidationEntry]:
    """The entries this run validates on, each with its size (the flags, else the dataset's most common video
    bucket); image-to-video keeps only entries with an image, text-to-video ignores images."""
    flags = (args.validation_height, args.validation_width, args.validation_num_frames)
    height, width, num_frames = validation_size(
        args, None if None not in flags else _dataset_card(args.dataset_name, getattr(args, "dataset_revision", None))
    )
    entries = load_validation_entries(
        args.validation_file, args.validation_prompt, height, width, num_frames, args.validation_num_inference_steps
    )
    if task != "i2v":
        return [replace(entry, image_path=None) for entry in entries]
    skipped = [entry.caption for entry in entries if entry.image_path is None]
    if skipped:
        logger.warning("image-to-video validation needs image_path; skipping %d entries", len(skipped))
    return [entry for entry in entries if entry.image_path is not None]


def run_validation(
    accelerator,
    args,
    transformer,
    family: ModelFamily,
    step: int,
    dtype: torch.dtype,
    slot: str = "transformer",
    task: str = "t2v",
) -> list[Path]:
    """Generate and log the validation videos of ``step`` with ``family``'s pipeline of ``task`` around
    ``transformer``.

    ``slot`` is where the trained transformer goes (``transformer_2`` for a two-expert model's low-noise expert);
    image-to-video uses the family's image-to-video pipeline and the entries' ``image_path``.

    Call it on every process. It runs on the main process only, except with FSDP / DeepSpeed or context
    parallelism, where the transformer's forward needs every process (they generate together; only the main one
    writes).
    """
    from .checkpoint_hooks import SHARDED_TYPES

    sharded = accelerator.distributed_type in SHARDED_TYPES
    if not (accelerator.is_main_process or sharded or is_context_parallel(accelerator.unwrap_model(transformer))):
        return []

    entries = validation_entries(args, task)
    if not entries:
        return []
    pipeline = (
        family.pipeline_class(task)
        .from_pretrained(
            args.pretrained_model_name_or_path,
            revision=args.revision,
            torch_dtype=dtype,
            **expert_modules(accelerator.unwrap_model(transformer), slot),
        )
        .to(accelerator.device)
    )
    pipeline.set_progress_bar_config(disable=True)
    was_training = transformer.training
    transformer.eval()
    contexts = [vsa_context(expert) for expert in expert_modules(accelerator.unwrap_model(transformer)).values()]
    contexts = [context for context in contexts if context is not None]
    ramp_sparsity = [context.sparsity for context in contexts]
    for context in contexts:
        context.sparsity = args.vsa_sparsity  # validate at the target sparsity, as inference will run
    output_dir = Path(args.output_dir) / "validation" / f"step-{step}"
    results = generate_validation_videos(
        pipeline,
        entries,
        output_dir,
        args.validation_guidance_scale,
        args.validation_fps,
        args.seed,
        write=accelerator.is_main_process,
    )
    transformer.train(was_training)
    for context, sparsity in zip(contexts, ramp_sparsity, strict=True):
        context.sparsity = sparsity
    if not accelerator.is_main_process:
        return []
    log_validation_videos(accelerator, results, step, args.validation_fps)
    logger.info("validation videos of step %d in %s", step, output_dir)
    del pipeline
    return [path for _, path, _ in results]


def latest_validation_videos(output_dir: str | Path) -> list[Path]:
    """The videos of the last validation a run wrote (``OUT/validation/step-N/``), for a re-run that only
    republishes a finished run."""
    steps = [path for path in Path(output_dir, "validation").glob("step-*") if path.name[5:].isdigit()]
    if not steps:
        return []
    return sorted(max(steps, key=lambda path: int(path.name[5:])).glob("video_*.mp4"))
