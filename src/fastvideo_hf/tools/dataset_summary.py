"""``fastvideo-hf inspect OUT``: what a latent dataset holds, read the way training will read it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..dataset_card import read_card_metadata, skip_reason_counts
from ..refusal import SettingRefused
from ..schema import CLIP_START_COLUMN


def summarize_dataset(dataset_dir: str | Path) -> dict[str, Any]:
    """Rows, tensor shapes and dtypes, rows per bucket, clips per video, bytes on disk and skipped inputs of a folder
    made by ``preprocess``. Only small columns (ids, shapes, sizes) are read: no tensor bytes are decoded.

    Anything else is refused (``SettingRefused``) saying what it is: a missing path (never looked up on the Hub), a
    folder without ``data/*.parquet`` (raw videos, an unfinished run), Parquet without the latent columns."""
    from datasets import load_dataset

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise SettingRefused(f"{dataset_dir}: no such folder (pass the --output_dir of a preprocess run)")
    if not any((dataset_dir / "data").glob("*.parquet")):
        raise SettingRefused(
            f"{dataset_dir} is not a preprocess output folder: it has no data/*.parquet shards (raw videos are made "
            "into one by `fastvideo-hf preprocess --output_dir OUT`; an unfinished run finishes when run again)"
        )
    dataset = load_dataset(str(dataset_dir), split="train")
    missing = sorted({"vae_latent_shape", "vae_latent_dtype", "text_embedding_shape"} - set(dataset.column_names))
    if missing:
        raise SettingRefused(
            f"{dataset_dir} holds Parquet without the latent columns of a preprocess output (no {', '.join(missing)})"
        )
    # the shape and dtype columns say it all: no tensor bytes are read
    latent_shapes = Counter("x".join(map(str, shape)) for shape in dataset["vae_latent_shape"])
    text_lengths = [shape[0] for shape in dataset["text_embedding_shape"]]
    dtypes = set(dataset["vae_latent_dtype"])
    card = read_card_metadata(dataset_dir)
    skipped_file = dataset_dir / "skipped.jsonl"
    skipped = [json.loads(line) for line in skipped_file.read_text().splitlines()] if skipped_file.exists() else []
    return {
        "rows": len(dataset),
        "latent_shapes": dict(latent_shapes),
        "text_tokens_min_max": [min(text_lengths), max(text_lengths)] if text_lengths else None,
        "storage_dtypes": sorted(dtypes),
        "parquet_bytes": sum(path.stat().st_size for path in (dataset_dir / "data").glob("*.parquet")),
        "skipped": len(skipped),
        "skipped_reasons": skip_reason_counts(skipped),
        "media_types": dict(sorted(Counter(dataset["media_type"]).items())),
        "buckets": (card.bucket_rows if card else None) or bucket_rows_of(dataset),
        **clips_per_video(dataset),
        # the block as the card holds it (an older card has fewer fields), without the long normalisation lists
        "card": {key: value for key, value in (card.as_written if card else {}).items() if "latents_" not in key},
    }


def bucket_rows_of(dataset) -> list[dict[str, Any]]:
    """Rows per (frames, height, width) bucket counted from the rows' small columns, for a card that predates
    ``bucket_rows``; the card's own order (most rows first)."""
    shapes = map(tuple, dataset["vae_latent_shape"])
    counts = Counter(zip(dataset["num_frames"], dataset["height"], dataset["width"], shapes, strict=True))
    return [
        {"num_frames": frames, "height": height, "width": width, "rows": rows, "latent_shape": list(shape)}
        for (frames, height, width, shape), rows in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def clips_per_video(dataset) -> dict[str, Any]:
    """How many clips (rows) each video gave: ``{clips: videos}`` and the video that gave the most.

    A clip's id is ``<input id>@<start>`` when the dataset has a ``clip_start_sec`` column (chunk or uniform
    extraction); otherwise every video gave one row. The input id, not ``file_name``, names the video: two entries
    may list one file. Images are 1-frame rows, not clips, and are left out.
    """
    has_clips = CLIP_START_COLUMN in dataset.column_names
    videos: Counter[str] = Counter()
    for row_id, media_type in zip(dataset["id"], dataset["media_type"], strict=True):
        if media_type == "video":
            videos[row_id.rpartition("@")[0] if has_clips and "@" in row_id else row_id] += 1
    histogram = Counter(videos.values())
    most = max(videos.items(), key=lambda item: (item[1], item[0])) if videos else None
    return {
        "videos": len(videos),
        "clips_per_video": dict(sorted(histogram.items())),
        "most_clips": list(most) if most else None,
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"rows:            {summary['rows']}",
        f"latent shapes:   {summary['latent_shapes']}  (C x T x H x W)",
        f"text tokens:     {summary['text_tokens_min_max']} (min, max; padded to "
        f"{summary['card'].get('max_sequence_length') or 'the text encoder length'} at load)",
        f"storage dtype:   {', '.join(summary['storage_dtypes'])}",
        f"parquet bytes:   {summary['parquet_bytes']:,}",
        f"skipped inputs:  {summary['skipped']} {summary['skipped_reasons']}",
    ]
    lines.append(f"media:           {', '.join(f'{count} {kind}' for kind, count in summary['media_types'].items())}")
    if summary["clips_per_video"]:
        name, most = summary["most_clips"]
        lines.append(
            f"clips per video: {summary['clips_per_video']} (clips: videos; {summary['videos']} videos, "
            f"most: {name} with {most})"
        )
    lines.append(format_bucket_table(summary["buckets"]))
    card = summary["card"]
    if card and card.get("height") and card.get("width"):
        lines.append(
            f"made from:       {card.get('model')} at {card.get('width')}x{card.get('height')}, "
            f"{card.get('num_frames')} frames @ {card.get('fps')} fps"
        )
    elif card:
        resolutions = ", ".join(f"{height}x{width}" for height, width in card.get("resolution_buckets") or [])
        frames = ",".join(str(count) for count in card.get("frame_buckets") or [])
        lines.append(
            f"made from:       {card.get('model')} with buckets {resolutions} (H x W), frames {frames} @ "
            f"{card.get('fps')} fps, {card.get('frame_extraction')} extraction"
        )
    return "\n".join(lines)


def format_bucket_table(buckets: list[dict[str, Any]]) -> str:
    """The rows per (frames, height, width) bucket as an aligned table, most rows first."""
    header = ("frames", "height", "width", "rows", "latent (C x T x H x W)")
    table = [header] + [
        (
            str(bucket["num_frames"]),
            str(bucket["height"]),
            str(bucket["width"]),
            str(bucket["rows"]),
            "x".join(map(str, bucket["latent_shape"])),
        )
        for bucket in buckets
    ]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    lines = [f"buckets:         {len(buckets)}"]
    for row in table:
        cells = [cell.rjust(width) for cell, width in zip(row[:4], widths[:4], strict=True)] + [row[4]]
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines)
