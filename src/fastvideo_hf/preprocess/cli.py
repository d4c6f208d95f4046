"""``fastvideo-hf preprocess``: videos + captions -> a Parquet dataset of latents and prompt embeddings, ready for
the Hub.

Run it as one process, or as several with ``torchrun --nproc_per_node N -m fastvideo_hf.preprocess ...`` or
``accelerate launch --multi_gpu --num_processes N -m fastvideo_hf.preprocess ...``: each process encodes its
own shards, and the result is the same as one process's. Re-running the same command after an interruption
finishes the job without redoing finished shards.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any

from ..models import family_titles
from ..schema import STORAGE_DTYPES
from . import distributed
from .builder import (
    DEFAULT_ASPECT_RANGE,
    DEFAULT_HEIGHT,
    DEFAULT_NUM_FRAMES,
    DEFAULT_WIDTH,
    ENCODER_DTYPES,
    VideoLatents,
    VideoLatentsConfig,
)
from .writer import LatentFolderWriter

logger = logging.getLogger("fastvideo_hf.preprocess")

# The flags' defaults are the builder's, so the CLI and the Python API cannot drift apart.
DEFAULTS = {item.name: item.default for item in dataclasses.fields(VideoLatentsConfig)}
# flag -> VideoLatentsConfig field, where the names differ (``datasets`` builders keep ``dataset_name`` for their
# cache name)
FIELD_OF_FLAG = {"dataset_name": "video_dataset"}
# flags that are not settings of the builder
CLI_ONLY = {"output_dir", "push_to_hub", "hub_dataset_id", "private", "hub_token"}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="fastvideo-hf preprocess", description=__doc__)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help=f"A diffusers-format {family_titles()} pipeline: local folder or Hub id (e.g. "
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers).",
    )
    model.add_argument(
        "--revision", default=DEFAULTS["revision"], help="Model revision (branch, tag or commit) on the Hub."
    )
    source = parser.add_argument_group("input (exactly one of --data_dir / --dataset_name)")
    source.add_argument(
        "--data_dir",
        default=DEFAULTS["data_dir"],
        help="A merged folder: DIR/videos2caption.json listing {path, cap} entries, videos in DIR/videos/.",
    )
    source.add_argument(
        "--dataset_name",
        default=DEFAULTS["video_dataset"],
        help="An HF dataset (Hub id or local path, e.g. a videofolder with metadata.jsonl) with video and captions.",
    )
    source.add_argument(
        "--dataset_config_name",
        default=DEFAULTS["dataset_config_name"],
        help="Config of --dataset_name, if it has several.",
    )
    source.add_argument(
        "--dataset_split", default=DEFAULTS["dataset_split"], help="Split of --dataset_name to encode."
    )
    source.add_argument(
        "--video_column", default=DEFAULTS["video_column"], help="Column of --dataset_name holding the videos."
    )
    source.add_argument(
        "--caption_column", default=DEFAULTS["caption_column"], help="Column of --dataset_name holding the captions."
    )
    output = parser.add_argument_group("output")
    output.add_argument("--output_dir", required=True, help="Folder for data/*.parquet, README.md and skipped.jsonl.")
    output.add_argument(
        "--task",
        default=DEFAULTS["task"],
        choices=["t2v", "i2v"],
        help="t2v; i2v adds the first-frame latent and, for models with an image encoder, CLIP features.",
    )
    output.add_argument(
        "--height",
        default=DEFAULTS["height"],
        type=int,
        help=f"Frame height after resize and centre crop (one bucket; default {DEFAULT_HEIGHT}).",
    )
    output.add_argument(
        "--width",
        default=DEFAULTS["width"],
        type=int,
        help=f"Frame width after resize and centre crop (one bucket; default {DEFAULT_WIDTH}).",
    )
    output.add_argument(
        "--num_frames",
        default=DEFAULTS["num_frames"],
        type=int,
        help=f"Frames per clip (one bucket; default {DEFAULT_NUM_FRAMES}): a count the model's VAE takes (4k+1 for "
        "Wan).",
    )
    output.add_argument(
        "--fps", default=DEFAULTS["fps"], type=float, help="Sampling fps (Wan2.1 was trained at 16 fps)."
    )
    output.add_argument(
        "--samples_per_file",
        default=DEFAULTS["samples_per_file"],
        type=int,
        help="Inputs per Parquet shard (also the unit of resume); a shard holds every clip of its inputs.",
    )
    buckets = parser.add_argument_group("buckets (instead of --height/--width and --num_frames)")
    buckets.add_argument(
        "--resolution_buckets",
        default=DEFAULTS["resolution_buckets"],
        help="HEIGHTxWIDTH buckets, e.g. 480x832,832x480,624x624: each input goes to the one nearest its aspect "
        "ratio (as shown), resized to cover it and centre-cropped.",
    )
    buckets.add_argument(
        "--max_area",
        default=DEFAULTS["max_area"],
        type=int,
        help="Automatic buckets (musubi-tuner's rule): for each width, the tallest height with HxW <= MAX_AREA "
        "pixels, both multiples of --bucket_step, with an aspect in --aspect_range (e.g. 399360 = 480x832).",
    )
    buckets.add_argument(
        "--bucket_step",
        default=DEFAULTS["bucket_step"],
        type=int,
        help="Side multiple of --max_area buckets (default: the model's, VAE downsampling x patch size: 16 for "
        "Wan2.1 and Wan2.2 A14B, 32 for Wan2.2 TI2V-5B).",
    )
    low, high = DEFAULT_ASPECT_RANGE
    buckets.add_argument(
        "--aspect_range",
        default=DEFAULTS["aspect_range"],
        help=f"MIN,MAX width/height of --max_area buckets (default {low},{high}).",
    )
    buckets.add_argument(
        "--bucket_no_upscale",
        default=DEFAULTS["bucket_no_upscale"],
        action="store_true",
        help="Never upscale: an input smaller than its bucket goes to the largest bucket it covers, or is skipped.",
    )
    buckets.add_argument(
        "--frame_buckets",
        default=DEFAULTS["frame_buckets"],
        help="Frame counts the model's VAE takes (4k+1 for Wan), e.g. 1,17,33,49,81: a video gets the largest it "
        "fills at --fps and is skipped only when shorter than the smallest one above 1. 1 is the image bucket: "
        "without it, still images are skipped (with that reason in skipped.jsonl).",
    )
    buckets.add_argument(
        "--frame_extraction",
        default=DEFAULTS["frame_extraction"],
        choices=["head", "chunk", "uniform"],
        help="Clips per video: head = one from t=0; chunk = back-to-back clips until the video ends; uniform = "
        "--clips_per_video clips with evenly spaced starts. Each clip is a row with id <input id>@<start seconds>; "
        "a clip that would sample the same frames as another is dropped (counted in the card).",
    )
    buckets.add_argument(
        "--clips_per_video",
        default=DEFAULTS["clips_per_video"],
        type=int,
        help="Clips per video with --frame_extraction uniform.",
    )
    output.add_argument(
        "--storage_dtype",
        default=DEFAULTS["storage_dtype"],
        choices=sorted(STORAGE_DTYPES),
        help="dtype of stored tensors. float32 keeps FastVideo's loader working; bfloat16 halves the size.",
    )
    output.add_argument(
        "--seed", default=DEFAULTS["seed"], type=int, help="Picks one caption when an input has several."
    )
    compute = parser.add_argument_group("compute")
    compute.add_argument(
        "--text_encoder_dtype",
        default=DEFAULTS["text_encoder_dtype"],
        choices=["auto", *ENCODER_DTYPES],
        help="dtype of the text encoder; auto = bfloat16 on GPU, float32 on CPU.",
    )
    compute.add_argument(
        "--vae_dtype", default=DEFAULTS["vae_dtype"], choices=list(ENCODER_DTYPES), help="dtype of the VAE."
    )
    compute.add_argument(
        "--num_workers",
        default=DEFAULTS["num_workers"],
        type=int,
        help="Processes that decode, sample and resize clips ahead of the encoders (default: one fewer than the "
        "CPUs, at most 8; 0 = decode in the main process). The shards are the same bytes for any value.",
    )
    compute.add_argument(
        "--text_batch_size",
        default=DEFAULTS["text_batch_size"],
        type=int,
        help="Captions per text-encoder batch (each is padded to the pipeline's full prompt length with its mask, "
        "as the pipeline pads it, so its embedding is the one it gets alone).",
    )
    compute.add_argument(
        "--video_backend",
        default=DEFAULTS["video_backend"],
        choices=["decord", "pyav"],
        help="Video decoder (default: decord if installed, PyAV for the files decord cannot read). Part of the "
        "settings a resume must match: the decoders' pixels differ slightly on some sources.",
    )
    hub = parser.add_argument_group("hub")
    hub.add_argument("--push_to_hub", action="store_true", help="Upload the finished folder as a dataset repo.")
    hub.add_argument("--hub_dataset_id", default=None, help="Dataset repo to push to, as user/name.")
    hub.add_argument("--private", action="store_true", help="Create the dataset repo as private.")
    hub.add_argument(
        "--hub_token",
        default=None,
        help="Hub token. Avoid it: a token on the command line is visible to every user in the process list; "
        "prefer `hf auth login` or the HF_TOKEN environment variable (the default).",
    )
    return parser


def builder_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``VideoLatentsConfig`` fields the parsed flags set (every flag but the output folder and the Hub's)."""
    return {FIELD_OF_FLAG.get(flag, flag): value for flag, value in vars(args).items() if flag not in CLI_ONLY}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank, world_size = distributed.rank(), distributed.world_size()
    logging.basicConfig(
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    if args.hub_token:
        logger.warning(
            "--hub_token is visible to every user of this machine in the process list: prefer `hf auth login` "
            "or the HF_TOKEN environment variable"
        )
    if args.push_to_hub and not args.hub_dataset_id:
        logger.error("--push_to_hub needs --hub_dataset_id user/name")
        return 2
    try:  # bad settings: everything checkable before encoding the first clip
        builder = VideoLatents(**builder_settings(args))
        writer = LatentFolderWriter(builder)
        folder = writer.prepare(args.output_dir)
    except (ValueError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2
    summary = writer.write(folder, rank, world_size, repo_id=args.hub_dataset_id)
    logger.info(
        "this process wrote %d rows and skipped %d inputs in %d shards; seconds: %s",
        summary.rows_written,
        summary.inputs_skipped,
        summary.chunks_done,
        {key: round(value, 2) for key, value in summary.seconds.items()},
    )
    if not summary.finalized:
        logger.info("other processes still have shards to write; the last one to finish writes the dataset card")
        return 0
    if summary.total_rows == 0:
        logger.error(
            "no usable input: all %d inputs were skipped (reasons in %s/skipped.jsonl)",
            summary.total_skipped,
            args.output_dir,
        )
        return 1
    logger.info(
        "dataset complete: %d rows, %d inputs skipped (see skipped.jsonl) -> %s",
        summary.total_rows,
        summary.total_skipped,
        args.output_dir,
    )
    if args.push_to_hub:
        from .hub import push_dataset_folder

        url = push_dataset_folder(args.output_dir, args.hub_dataset_id, private=args.private, token=args.hub_token)
        logger.info("pushed to %s: load it with load_dataset(%r)", url, args.hub_dataset_id)
    return 0
