"""``fastvideo-hf inspect OUT``: what a latent dataset holds, read the way training will read it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..dataset_card import read_card_metadata, skip_reason_counts


def summarize_dataset(dataset_dir: str | Path) -> dict[str, Any]:
    """Rows, tensor shapes and dtypes, bytes on disk and skipped inputs of a folder made by ``preprocess``."""
    from datasets import load_dataset

    dataset_dir = Path(dataset_dir)
    dataset = load_dataset(str(dataset_dir), split="train")
    # the shape and dtype columns say it all: no tensor bytes are read
    latent_shapes = Counter("x".join(map(str, shape)) for shape in dataset["vae_latent_shape"])
    text_lengths = [shape[0] for shape in dataset["text_embedding_shape"]]
    dtypes = set(dataset["vae_latent_dtype"])
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
        "card": {
            key: value for key, value in (read_card_metadata(dataset_dir) or {}).items() if "latents_" not in key
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"rows:            {summary['rows']}",
        f"latent shapes:   {summary['latent_shapes']}  (C x T x H x W)",
        f"text tokens:     {summary['text_tokens_min_max']} (min, max; padded to 512 at load)",
        f"storage dtype:   {', '.join(summary['storage_dtypes'])}",
        f"parquet bytes:   {summary['parquet_bytes']:,}",
        f"skipped inputs:  {summary['skipped']} {summary['skipped_reasons']}",
    ]
    card = summary["card"]
    if card:
        lines.append(
            f"made from:       {card.get('model')} at {card.get('width')}x{card.get('height')}, "
            f"{card.get('num_frames')} frames @ {card.get('fps')} fps"
        )
    return "\n".join(lines)
