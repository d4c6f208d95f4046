"""Resumable checkpoints: ``OUT/checkpoint-{step}`` directories written by ``accelerator.save_state``.

Beyond what diffusers' examples keep (model, optimizer, LR scheduler, RNG), each checkpoint records the
position in the data (epoch and batches consumed in it) in ``training_state.json``; resuming skips exactly
those batches, so an interrupted run ends with the weights of an uninterrupted one (diffusers' examples and
musubi-tuner restart the epoch or the step counter). The model itself is saved by a hook in its
user-facing form: only the LoRA weights for LoRA, ``transformer/`` for a full finetune.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINING_STATE_FILE = "training_state.json"


@dataclass
class TrainingState:
    global_step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch the next batch comes from
    batches_in_epoch: int = 0  # dataloader batches of that epoch already consumed


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` directories (not files of a similar name) sorted by step."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [path for path in output_dir.iterdir() if path.is_dir() and CHECKPOINT_PATTERN.match(path.name)]
    return sorted(found, key=lambda path: int(CHECKPOINT_PATTERN.match(path.name).group(1)))


def resolve_resume_checkpoint(output_dir: str | Path, resume_from_checkpoint: str | None) -> Path | None:
    """The checkpoint to resume from: ``latest`` in ``output_dir`` (None if there is none yet), or a path."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.info("no checkpoint in %s yet: starting a new run", output_dir)
            return None
        return checkpoints[-1]
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        path = Path(output_dir) / resume_from_checkpoint
    if not (path.is_dir() and (path / TRAINING_STATE_FILE).exists()):
        raise FileNotFoundError(f"--resume_from_checkpoint {resume_from_checkpoint}: no checkpoint directory there")
    return path


def prune_checkpoints(output_dir: str | Path, total_limit: int | None) -> None:
    """Delete the oldest checkpoints so that, after the next save, at most ``total_limit`` remain."""
    if not total_limit:
        return
    checkpoints = list_checkpoints(output_dir)
    for path in checkpoints[: max(0, len(checkpoints) - total_limit + 1)]:
        logger.info("removing old checkpoint %s (--checkpoints_total_limit %d)", path, total_limit)
        shutil.rmtree(path)


def save_training_state(checkpoint_dir: str | Path, state: TrainingState) -> None:
    Path(checkpoint_dir, TRAINING_STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n")


def load_training_state(checkpoint_dir: str | Path) -> TrainingState:
    return TrainingState(**json.loads(Path(checkpoint_dir, TRAINING_STATE_FILE).read_text()))


def checkpoint_dir(output_dir: str | Path, global_step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{global_step}"
