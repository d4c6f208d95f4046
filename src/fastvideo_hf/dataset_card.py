"""The README.md dataset card written next to the Parquet shards.

Its YAML holds the ``configs:`` block that makes ``load_dataset(OUT)`` and ``load_dataset("user/name")`` work
with plain ``datasets``, and a ``fastvideo_hf`` block recording what made the latents (model, encoders,
latents_mean/std, sizes, fps, dtype, counts). Training reads that block back to refuse a dataset encoded for
another model.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData

CARD_METADATA_KEY = "fastvideo_hf"
TEMPLATE_NAME = "wan_latents.md"
MAX_SKIPPED_IN_CARD = 50


def template_path() -> Path:
    """The card template: packaged with the wheel, or ``dataset_cards/`` of a source checkout."""
    packaged = Path(__file__).parent / "dataset_cards" / TEMPLATE_NAME
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[2] / "dataset_cards" / TEMPLATE_NAME


def skip_reason_counts(skipped: list[dict[str, str]]) -> dict[str, int]:
    """Counts per kind of reason (the text before the first colon or parenthesis)."""
    kinds = Counter(item["reason"].split(":")[0].split("(")[0].strip() for item in skipped)
    return dict(sorted(kinds.items()))


def render_dataset_card(metadata: dict[str, Any], skipped: list[dict[str, str]], repo_id: str | None = None) -> str:
    """The card text for a dataset whose ``fastvideo_hf`` metadata is ``metadata``."""
    card_data = DatasetCardData(
        pretty_name=f"Wan {metadata['task'].upper()} latents",
        tags=["fastvideo-hf", "video", "latents", "wan", metadata["task"]],
        size_categories=_size_category(metadata["num_rows"]),
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
        # datasets keys its cache of a local folder with a card on this block (not on the files), so the
        # on-disk size here keeps two different folders of the same name from sharing one cache entry.
        dataset_info={
            "splits": [{"name": "train", "num_bytes": metadata["num_bytes"], "num_examples": metadata["num_rows"]}],
            "download_size": metadata["parquet_bytes"],
            "dataset_size": metadata["num_bytes"],
        },
        **{CARD_METADATA_KEY: metadata},
    )
    card = DatasetCard.from_template(
        card_data,
        template_path=str(template_path()),
        pretty_name=card_data.pretty_name,
        task_title="text-to-video" if metadata["task"] == "t2v" else "image-to-video",
        repo_id=repo_id or "path/to/this/folder",
        skipped=skipped[:MAX_SKIPPED_IN_CARD],
        **metadata,
    )
    return str(card)


def read_card_metadata(dataset_dir: str | Path) -> dict[str, Any] | None:
    """The ``fastvideo_hf`` block of a local dataset folder's card, or None if there is none."""
    readme = Path(dataset_dir) / "README.md"
    if not readme.exists():
        return None
    text = readme.read_text()
    if not text.startswith("---"):
        return None
    header = text.split("---", 2)[1]
    return (yaml.safe_load(header) or {}).get(CARD_METADATA_KEY)


def _size_category(num_rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if num_rows < limit:
            return label
    return "n>1M"
