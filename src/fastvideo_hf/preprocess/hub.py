"""Upload a finished latent dataset folder to the Hub (tests run it against a loopback Hub)."""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import HfApi

logger = logging.getLogger(__name__)

# Bookkeeping of resumable runs, never part of a published repo.
DATASET_IGNORE_PATTERNS = [".progress/**", ".progress/*", "**/.*.tmp"]


def push_dataset_folder(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create ``repo_id`` (a dataset repo) if needed and upload ``folder``; returns the repo URL.

    ``upload_folder`` skips files already on the Hub with the same content, so an interrupted push is resumed
    by running it again.
    """
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="dataset",
        ignore_patterns=DATASET_IGNORE_PATTERNS,
        commit_message="Upload latents made with fastvideo-hf",
    )
    logger.info("pushed %s to %s", folder, repo_url)
    return str(repo_url)
