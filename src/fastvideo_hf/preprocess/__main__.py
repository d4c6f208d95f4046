"""``fastvideo-hf preprocess``: videos + captions -> a Parquet dataset of Wan latents, ready for the Hub.

Run it as one process, or as several with ``torchrun --nproc_per_node N -m fastvideo_hf.preprocess ...`` or
``accelerate launch --multi_gpu --num_processes N -m fastvideo_hf.preprocess ...``: each process encodes its
own shards, and the result is the same as one process's. Re-running the same command after an interruption
finishes the job without redoing finished shards.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..schema import STORAGE_DTYPES
from . import distributed
from .builder import ENCODER_DTYPES, WanLatents
from .writer import LatentFolderWriter

logger = logging.getLogger("fastvideo_hf.preprocess")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="fastvideo-hf preprocess", description=__doc__)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--pretrained_model_name_or_path",
        required=True,
        help="A diffusers-format Wan pipeline: local folder or Hub id (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers).",
    )
    model.add_argument("--revision", default=None, help="Model revision (branch, tag or commit) on the Hub.")
    source = parser.add_argument_group("input (exactly one of --data_dir / --dataset_name)")
    source.add_argument(
        "--data_dir",
        default=None,
        help="A merged folder: DIR/videos2caption.json listing {path, cap} entries, videos in DIR/videos/.",
    )
    source.add_argument(
        "--dataset_name",
        default=None,
        help="An HF dataset (Hub id or local path, e.g. a videofolder with metadata.jsonl) with video and captions.",
    )
    source.add_argument("--dataset_config_name", default=None, help="Config of --dataset_name, if it has several.")
    source.add_argument("--dataset_split", default="train", help="Split of --dataset_name to encode.")
    source.add_argument("--video_column", default="video", help="Column of --dataset_name holding the videos.")
    source.add_argument("--caption_column", default="caption", help="Column of --dataset_name holding the captions.")
    output = parser.add_argument_group("output")
    output.add_argument("--output_dir", required=True, help="Folder for data/*.parquet, README.md and skipped.jsonl.")
    output.add_argument(
        "--task",
        default="t2v",
        choices=["t2v", "i2v"],
        help="t2v; i2v adds the first-frame latent and, for models with an image encoder, CLIP features.",
    )
    output.add_argument(
        "--height", type=int, default=None, help="Frame height after resize and centre crop (one bucket; default 480)."
    )
    output.add_argument(
        "--width", type=int, default=None, help="Frame width after resize and centre crop (one bucket; default 832)."
    )
    output.add_argument(
        "--num_frames", type=int, default=None, help="Frames per clip (one bucket; default 77); Wan's VAE needs 4k+1."
    )
    output.add_argument("--fps", type=float, default=16.0, help="Sampling fps (Wan2.1 was trained at 16 fps).")
    output.add_argument(
        "--samples_per_file",
        type=int,
        default=64,
        help="Inputs per Parquet shard (also the unit of resume); a shard holds every clip of its inputs.",
    )
    buckets = parser.add_argument_group("buckets (instead of --height/--width and --num_frames)")
    buckets.add_argument(
        "--resolution_buckets",
        default=None,
        help="HEIGHTxWIDTH buckets, e.g. 480x832,832x480,624x624: each input goes to the one nearest its aspect "
        "ratio (as shown), resized to cover it and centre-cropped.",
    )
    buckets.add_argument(
        "--max_area",
        type=int,
        default=None,
        help="Automatic buckets (musubi-tuner's rule): for each width, the tallest height with HxW <= MAX_AREA "
        "pixels, both multiples of --bucket_step, with an aspect in --aspect_range (e.g. 399360 = 480x832).",
    )
    buckets.add_argument(
        "--bucket_step",
        type=int,
        default=None,
        help="Side multiple of --max_area buckets (default: the model's, VAE downsampling x patch size: 16 for "
        "Wan2.1 and Wan2.2 A14B, 32 for Wan2.2 TI2V-5B).",
    )
    buckets.add_argument(
        "--aspect_range",
        default=None,
        help="MIN,MAX width/height of --max_area buckets (default 0.5,2.0).",
    )
    buckets.add_argument(
        "--bucket_no_upscale",
        action="store_true",
        help="Never upscale: an input smaller than its bucket goes to the largest bucket it covers, or is skipped.",
    )
    buckets.add_argument(
        "--frame_buckets",
        default=None,
        help="Frame counts (each 4k+1), e.g. 1,17,33,49,81: a video gets the largest it fills at --fps and is "
        "skipped only when shorter than the smallest one above 1. 1 is the image bucket: without it, still images "
        "are skipped (with that reason in skipped.jsonl).",
    )
    buckets.add_argument(
        "--frame_extraction",
        default="head",
        choices=["head", "chunk", "uniform"],
        help="Clips per video: head = one from t=0; chunk = back-to-back clips until the video ends; uniform = "
        "--clips_per_video clips with evenly spaced starts. Each clip is a row with id <input id>@<start seconds>; "
        "a clip that would sample the same frames as another is dropped (counted in the card).",
    )
    buckets.add_argument(
        "--clips_per_video", type=int, default=None, help="Clips per video with --frame_extraction uniform."
    )
    output.add_argument(
        "--storage_dtype",
        default="float32",
        choices=sorted(STORAGE_DTYPES),
        help="dtype of stored tensors. float32 keeps FastVideo's loader working; bfloat16 halves the size.",
    )
    output.add_argument("--seed", type=int, default=42, help="Picks one caption when an input has several.")
    compute = parser.add_argument_group("compute")
    compute.add_argument(
        "--text_encoder_dtype",
        default="auto",
        choices=["auto", *ENCODER_DTYPES],
        help="dtype of the text encoder; auto = bfloat16 on GPU, float32 on CPU.",
    )
    compute.add_argument("--vae_dtype", default="float32", choices=list(ENCODER_DTYPES), help="dtype of the VAE.")
    compute.add_argument(
        "--num_workers",
        type=int,
        default=None,
        help="Processes that decode, sample and resize clips ahead of the encoders (default: one fewer than the "
        "CPUs, at most 8; 0 = decode in the main process). The shards are the same bytes for any value.",
    )
    compute.add_argument(
        "--text_batch_size",
        type=int,
        default=8,
        help="Captions per text-encoder batch (each is padded to the full 512 tokens, as WanPipeline pads it).",
    )
    compute.add_argument(
        "--video_backend",
        default=None,
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
        builder = WanLatents(
            task=args.task,
            pretrained_model_name_or_path=args.pretrained_model_name_or_path,
            revision=args.revision,
            data_dir=args.data_dir,
            video_dataset=args.dataset_name,
            dataset_config_name=args.dataset_config_name,
            dataset_split=args.dataset_split,
            video_column=args.video_column,
            caption_column=args.caption_column,
            height=args.height,
            width=args.width,
            resolution_buckets=args.resolution_buckets,
            max_area=args.max_area,
            bucket_step=args.bucket_step,
            aspect_range=args.aspect_range,
            bucket_no_upscale=args.bucket_no_upscale,
            num_frames=args.num_frames,
            frame_buckets=args.frame_buckets,
            frame_extraction=args.frame_extraction,
            clips_per_video=args.clips_per_video,
            fps=args.fps,
            storage_dtype=args.storage_dtype,
            samples_per_file=args.samples_per_file,
            seed=args.seed,
            video_backend=args.video_backend,
            text_encoder_dtype=args.text_encoder_dtype,
            vae_dtype=args.vae_dtype,
            num_workers=args.num_workers,
            text_batch_size=args.text_batch_size,
        )
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


if __name__ == "__main__":
    sys.exit(main())
