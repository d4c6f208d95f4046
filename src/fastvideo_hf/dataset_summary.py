"""``fastvideo-hf inspect OUT``: what a latent dataset holds, read the way training will read it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from .dataset_card import read_card_metadata, skip_reason_counts
from .schema import columns_to_tensor


def summarize_dataset(dataset_dir: str | Path) -> dict[str, Any]:
    """Rows, tensor shapes and dtypes, bytes on disk and skipped inputs of a folder made by ``preprocess``."""
    from datasets import load_dataset

    dataset_dir = Path(dataset_dir)
    dataset = load_dataset(str(dataset_dir), split="train")
    latent_shapes: Counter[str] = Counter()
    text_lengths = []
    dtypes = set()
    for row in dataset:
        latent = columns_to_tensor(row, "vae_latent")
        text = columns_to_tensor(row, "text_embedding")
        latent_shapes["x".join(map(str, latent.shape))] += 1
        text_lengths.append(text.shape[0])
        dtypes.add(str(latent.dtype).removeprefix("torch."))
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
