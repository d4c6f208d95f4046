"""The README.md dataset card written next to the Parquet shards.

Its YAML holds the ``configs:`` block that makes ``load_dataset(OUT)`` and ``load_dataset("user/name")`` work
with plain ``datasets``, and a ``fastvideo_hf`` block recording what made the latents (model, encoders,
latents_mean/std, sizes, fps, dtype, counts). That block is the contract between the two halves of the package:
``LatentsCard`` is its one definition, written by preprocessing and read back by training (which refuses a dataset
encoded for another model) and by ``fastvideo-hf inspect``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData

CARD_METADATA_KEY = "fastvideo_hf"
TEMPLATE_NAME = "wan_latents.md"
MAX_SKIPPED_IN_CARD = 50


@dataclass
class LatentsCard:
    """The ``fastvideo_hf`` block of a latent dataset's card: what made the latents, and the counts.

    Every field has a default so that the card of an older version (fewer fields) still reads; ``as_written``
    keeps the block exactly as the card holds it, for a fingerprint that does not depend on which fields this
    version knows.
    """

    task: str | None = None  # t2v or i2v
    model: str | None = None  # the --pretrained_model_name_or_path that encoded the latents
    revision: str | None = None
    source: Any = None  # the input, as the source describes itself
    height: int | None = None  # a one-bucket run's size; several buckets have theirs in bucket_rows
    width: int | None = None
    num_frames: int | None = None
    fps: float | None = None  # sampling fps
    storage_dtype: str | None = None
    seed: int | None = None
    vae_class: str | None = None
    text_encoder_class: str | None = None
    latent_channels: int | None = None
    latent_shape: list[int] | None = None  # a one-bucket run's [C, T, H, W]
    resolution_buckets: list[list[int]] = field(default_factory=list)
    frame_buckets: list[int] = field(default_factory=list)
    bucket_no_upscale: bool = False
    frame_extraction: str | None = None
    clips_per_video: int | None = None
    bucket_rows: list[dict[str, Any]] = field(default_factory=list)  # rows per (frames, height, width), most first
    latents_mean: list[float] | None = None
    latents_std: list[float] | None = None
    text_dim: int | None = None
    max_sequence_length: int | None = None  # what the loader pads prompt embeddings to
    text_encoder_dtype: str | None = None
    vae_dtype: str | None = None
    video_backend: list[str] | None = None
    num_inputs: int | None = None
    num_rows: int | None = None  # None on a card that predates the count: nothing to check the shards against
    num_skipped: int = 0
    captions_truncated: int = 0
    duplicate_clips_dropped: int = 0  # clips that would have repeated another clip's frames
    num_shards: int = 0
    num_bytes: int = 0
    parquet_bytes: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    pipeline_class: str | None = None  # the model_index.json class: which family made the latents
    expand_timesteps: bool = False
    boundary_ratio: float | None = None
    has_image_encoder: bool = False
    as_written: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> LatentsCard:
        """The card of a ``fastvideo_hf`` block read from YAML (keys this version does not know are ignored)."""
        known = {item.name for item in fields(cls)} - {"as_written"}
        return cls(**{key: value for key, value in metadata.items() if key in known}, as_written=dict(metadata))

    def to_metadata(self) -> dict[str, Any]:
        """The block as written into the card's YAML, in field order."""
        metadata = asdict(self)
        del metadata["as_written"]
        return metadata


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


def render_dataset_card(
    card: LatentsCard, family_title: str, skipped: list[dict[str, str]], repo_id: str | None = None
) -> str:
    """The card text of a dataset of ``family_title`` latents described by ``card``."""
    metadata = card.to_metadata()
    card_data = DatasetCardData(
        pretty_name=f"{family_title} {metadata['task'].upper()} latents",
        tags=["fastvideo-hf", "video", "latents", family_title.lower(), metadata["task"]],
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
    text = DatasetCard.from_template(
        card_data,
        template_path=str(template_path()),
        pretty_name=card_data.pretty_name,
        task_title="text-to-video" if metadata["task"] == "t2v" else "image-to-video",
        repo_id=repo_id or "path/to/this/folder",
        family_title=family_title,
        skipped=skipped[:MAX_SKIPPED_IN_CARD],
        **metadata,
    )
    return str(text)


def read_card_metadata(dataset_dir: str | Path) -> LatentsCard | None:
    """The ``fastvideo_hf`` block of a local dataset folder's card, or None if there is none."""
    readme = Path(dataset_dir) / "README.md"
    if not readme.exists():
        return None
    text = readme.read_text()
    if not text.startswith("---"):
        return None
    header = text.split("---", 2)[1]
    metadata = (yaml.safe_load(header) or {}).get(CARD_METADATA_KEY)
    return None if metadata is None else LatentsCard.from_metadata(metadata)


def _size_category(num_rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if num_rows < limit:
            return label
    return "n>1M"
