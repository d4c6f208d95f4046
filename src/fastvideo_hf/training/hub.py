"""Upload a finished training run to the Hub with its model card (tests run it against a loopback Hub)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import HfApi

if TYPE_CHECKING:
    from ..models import ModelFamily

logger = logging.getLogger(__name__)


def push_model_folder(folder: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Upload a training output folder (weights, card, validation videos) without checkpoints and logs."""
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        ignore_patterns=["checkpoint-*/**", "checkpoint-*", "logs/**", "*.tmp"],
        commit_message="Upload weights trained with fastvideo-hf",
    )
    return str(repo_url)


def push_training_output(args, family: ModelFamily, lora: bool, recipe: dict, steps: int, videos: list[Path]) -> str:
    """Write the model card of a finished training run of a ``family`` model and upload ``args.output_dir`` to
    ``--hub_model_id``."""
    from .model_card import write_model_card

    repo_id = args.hub_model_id or Path(args.output_dir).resolve().name
    recipe = {
        **recipe,
        "steps": steps,
        "train_batch_size": args.train_batch_size,
        "mixed_precision": args.mixed_precision,
    }
    video = videos[0].relative_to(args.output_dir).as_posix() if videos else None
    prompt = args.validation_prompt
    write_model_card(
        args.output_dir,
        repo_id,
        args.pretrained_model_name_or_path,
        args.dataset_name,
        lora,
        recipe,
        video,
        prompt,
        steps,
        family=family,
    )
    return push_model_folder(args.output_dir, repo_id, token=args.hub_token)
