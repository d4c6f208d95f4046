"""Refuse to train on latents made for another model.

Latents of another VAE, or prompt embeddings of another text encoder, train without an error and produce
noise; the dataset card records what made them, so the mismatch is caught before the first step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class DatasetModelMismatchError(ValueError):
    pass


def dataset_model_mismatches(
    card: dict[str, Any] | None,
    model: str,
    vae_config: dict[str, Any],
    transformer_config: dict[str, Any],
    task: str = "t2v",
) -> list[str]:
    """What in the dataset card disagrees with the model about to be trained (empty when they match)."""
    if card is None:
        return ["the dataset has no fastvideo_hf card metadata, so what made its latents is unknown"]
    problems = []
    if card.get("task") != task:
        problems.append(f"the dataset was made for task {card.get('task')!r}, this training is {task!r}")
    if card.get("latent_channels") != vae_config.get("z_dim"):
        problems.append(
            f"latent channels: dataset {card.get('latent_channels')}, model VAE z_dim {vae_config.get('z_dim')}"
        )
    if card.get("text_dim") != transformer_config.get("text_dim"):
        problems.append(
            f"text embedding size: dataset {card.get('text_dim')}, model text_dim {transformer_config.get('text_dim')}"
        )
    for key in ("latents_mean", "latents_std"):
        stored, expected = card.get(key), vae_config.get(key)
        if stored is None or expected is None or not np.allclose(stored, expected, atol=1e-4):
            problems.append(f"{key} of the dataset's VAE differs from the model's")
    if not _same_model(card.get("model"), model):
        problems.append(f"encoded with {card.get('model')!r}, training {model!r}")
    return problems


def _same_model(encoded_with: str | None, model: str) -> bool:
    """Same id or path, or the same repo name (a Hub id and a local download of it)."""
    if encoded_with is None:
        return False
    return Path(encoded_with).resolve() == Path(model).resolve() or Path(encoded_with).name == Path(model).name


def check_dataset_matches_model(card, model, vae_config, transformer_config, task="t2v", allow_mismatch=False):
    """Raise ``DatasetModelMismatchError`` listing every mismatch, unless ``allow_mismatch``."""
    problems = dataset_model_mismatches(card, model, vae_config, transformer_config, task)
    if problems and not allow_mismatch:
        raise DatasetModelMismatchError(
            "The dataset does not match the model:\n  - "
            + "\n  - ".join(problems)
            + "\nRe-run `fastvideo-hf preprocess` with this model, or pass --allow_model_mismatch if you are sure"
            " (e.g. the same model under another path or id)."
        )
    return problems
