"""Refuse to train on what is not a latent dataset, or on latents made for another model.

Latents of another VAE, or prompt embeddings of another text encoder, train without an error and produce
noise; the dataset card records what made them, so the mismatch is caught before the first step. A
``--dataset_name`` that is a missing path, an empty folder or a folder of raw videos is named for what it is,
with the command to run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..dataset_card import LatentsCard
from ..models import ModelSpec
from ..refusal import SettingRefused

# What datasets' videofolder and our sources read as videos: a folder of these needs preprocessing first.
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")


class DatasetModelMismatchError(SettingRefused):
    pass


class LatentDatasetNotFoundError(SettingRefused):
    """``--dataset_name`` names no latent dataset: the message says what it is and what to run."""


class LatentDatasetChangedError(SettingRefused):
    """A local latent folder whose shards no longer match the card ``preprocess`` wrote with them."""


def check_latent_folder(path: str | Path) -> None:
    """Raise ``LatentDatasetNotFoundError`` unless ``path`` is a folder holding Parquet shards."""
    folder = Path(path)
    if not folder.is_dir():
        raise LatentDatasetNotFoundError(
            f"{folder} is a file, not a latent dataset folder made by fastvideo-hf preprocess"
        )
    if any(folder.rglob("*.parquet")):
        return
    videos = [file for file in folder.rglob("*") if file.suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        given = "--data_dir" if (folder / "videos2caption.json").exists() else "--dataset_name"  # else a videofolder
        raise LatentDatasetNotFoundError(
            f"{folder} holds {len(videos)} video file(s) but no latent shards: encode it first with "
            f"`fastvideo-hf preprocess {given} {folder} --output_dir LATENTS ...`, then train with "
            "--dataset_name LATENTS"
        )
    raise LatentDatasetNotFoundError(
        f"{folder} holds no latent shards (data/*.parquet): run `fastvideo-hf preprocess --output_dir {folder} ...` "
        "first, or pass the folder or Hub dataset id it wrote"
    )


def dataset_model_mismatches(card: LatentsCard | None, model: str, spec: ModelSpec) -> list[str]:
    """What in the dataset card disagrees with the model about to be trained (empty when they match)."""
    if card is None:
        return ["the dataset has no fastvideo_hf card metadata, so what made its latents is unknown"]
    problems = []
    task = card.task
    if task not in spec.tasks:
        if task == "t2v":
            problems.append(
                "this model trains image-to-video but the dataset holds text-to-video latents (no first-frame "
                "latents): re-run `fastvideo-hf preprocess --task i2v`"
            )
        else:
            problems.append(f"the dataset was made for task {task!r}; this model trains {'/'.join(spec.tasks)}")
    if task == "i2v" and bool(card.has_image_encoder) != (spec.image_dim is not None):
        problems.append(
            "the dataset's CLIP features do not fit the model: "
            f"dataset {'has' if card.has_image_encoder else 'has no'} image features, "
            f"the model {'takes' if spec.image_dim else 'takes no'} image embeddings"
        )
    if card.latent_channels != spec.latent_channels:
        problems.append(f"latent channels: dataset {card.latent_channels}, model VAE z_dim {spec.latent_channels}")
    if card.text_dim != spec.text_dim:
        problems.append(f"text embedding size: dataset {card.text_dim}, model text_dim {spec.text_dim}")
    for key in ("latents_mean", "latents_std"):
        stored, expected = getattr(card, key), getattr(spec, key)
        if stored is None or len(stored) != len(expected) or not np.allclose(stored, expected, atol=1e-4):
            problems.append(f"{key} of the dataset's VAE differs from the model's")
    if not _same_model(card.model, model):
        problems.append(f"encoded with {card.model!r}, training {model!r}")
    return problems


def check_dataset_matches_model(
    card: LatentsCard | None, model: str, spec: ModelSpec, allow_mismatch: bool = False
) -> list[str]:
    """Raise ``DatasetModelMismatchError`` listing every mismatch, unless ``allow_mismatch``."""
    problems = dataset_model_mismatches(card, model, spec)
    if problems and not allow_mismatch:
        raise DatasetModelMismatchError(
            "The dataset does not match the model:\n  - "
            + "\n  - ".join(problems)
            + "\nRe-run `fastvideo-hf preprocess` with this model, or pass --allow_model_mismatch if you are sure"
            " (e.g. the same model under another path or id)."
        )
    return problems


def _same_model(encoded_with: str | None, model: str) -> bool:
    """Same id or path, or the same repo name (a Hub id and a local download of it)."""
    if encoded_with is None:
        return False
    return Path(encoded_with).resolve() == Path(model).resolve() or Path(encoded_with).name == Path(model).name
