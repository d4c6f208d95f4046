"""Resumable checkpoints: ``OUT/checkpoint-{step}`` directories written by ``accelerator.save_state``.

Beyond what diffusers' examples keep (model, optimizer, LR scheduler, RNG), each checkpoint records the
position in the data (epoch and batches consumed in it) in ``training_state.json``; resuming skips exactly
those batches, so an interrupted run ends with the weights of an uninterrupted one (diffusers' examples and
musubi-tuner restart the epoch or the step counter). The model itself is saved by a hook in its
user-facing form: only the LoRA weights for LoRA, ``transformer/`` for a full finetune.

A checkpoint is only ever visible complete, because preemption (SIGKILL) can land at any moment of a save:
every process writes into ``checkpoint-{step}.tmp``; the main process then writes ``training_state.json`` last,
with the size of every file, fsyncs the tree and renames it to ``checkpoint-{step}``. ``latest`` is the newest
checkpoint whose marker and files check out, and pruning happens only after a save succeeded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..refusal import SettingRefused

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STAGING_PATTERN = re.compile(r"^checkpoint-(\d+)\.tmp$")
TRAINING_STATE_FILE = "training_state.json"


class CheckpointNotFoundError(SettingRefused, FileNotFoundError):
    """``--resume_from_checkpoint`` names no complete checkpoint: the message says which to pass instead."""


@dataclass
class TrainingState:
    global_step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch the next batch comes from
    batches_in_epoch: int = 0  # dataloader batches of that epoch already consumed


def checkpoint_dir(output_dir: str | Path, global_step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{global_step}"


def staging_dir(output_dir: str | Path, global_step: int) -> Path:
    """Where a checkpoint is written before it becomes visible (``checkpoint-*`` is never pushed to the Hub)."""
    return Path(output_dir) / f"checkpoint-{global_step}.tmp"


def _step_of(path: Path) -> int:
    match = CHECKPOINT_PATTERN.match(path.name) or STAGING_PATTERN.match(path.name)
    return int(match.group(1))


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` directories (complete or not; not files of a similar name) sorted by step."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [path for path in output_dir.iterdir() if path.is_dir() and CHECKPOINT_PATTERN.match(path.name)]
    return sorted(found, key=_step_of)


def incomplete_reason(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from, or None when it is complete.

    Complete means the marker parses and every file it lists is there with its recorded size (checkpoints of
    earlier versions list no files: for them the marker, written last, is the proof).
    """
    marker = Path(path, TRAINING_STATE_FILE)
    if not marker.is_file():
        return f"no {TRAINING_STATE_FILE} (the save was interrupted)"
    try:
        record = json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{TRAINING_STATE_FILE} is unreadable"
    if not isinstance(record, dict) or "global_step" not in record:
        return f"{TRAINING_STATE_FILE} holds no global_step"
    for name, size in record.get("files", {}).items():
        file = Path(path, name)
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {size} were written"
    return None


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    return [path for path in list_checkpoints(output_dir) if incomplete_reason(path) is None]


def clean_incomplete_checkpoints(output_dir: str | Path) -> None:
    """Remove what interrupted saves left in ``output_dir`` (main process only, before anything is resumed).

    A staging folder that is complete (killed between its marker and the rename) is renamed into place instead.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    for path in sorted(output_dir.iterdir()):
        if not path.is_dir():
            continue
        if STAGING_PATTERN.match(path.name):
            final = checkpoint_dir(output_dir, _step_of(path))
            if incomplete_reason(path) is None and not final.exists():
                logger.warning("finishing the interrupted save of %s", final)
                _publish(path, final)
            else:
                logger.warning("removing %s, left by an interrupted save", path)
                shutil.rmtree(path)
        elif CHECKPOINT_PATTERN.match(path.name):
            reason = incomplete_reason(path)
            if reason is not None:
                logger.warning("removing incomplete checkpoint %s: %s", path, reason)
                shutil.rmtree(path)


def resolve_resume_checkpoint(output_dir: str | Path, resume_from_checkpoint: str | None) -> Path | None:
    """The checkpoint to resume from: ``latest`` in ``output_dir`` (the newest complete one; None if there is none
    yet), or a path, which must be complete."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        for path in reversed(checkpoints):
            reason = incomplete_reason(path)
            if reason is None:
                return path
            logger.warning("skipping incomplete checkpoint %s: %s", path, reason)
        logger.info("no complete checkpoint in %s yet: starting a new run", output_dir)
        return None
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        path = Path(output_dir) / resume_from_checkpoint
    if not path.is_dir():
        raise CheckpointNotFoundError(
            f"--resume_from_checkpoint {resume_from_checkpoint}: no checkpoint directory there"
        )
    reason = incomplete_reason(path)
    if reason is not None:
        raise CheckpointNotFoundError(
            f"--resume_from_checkpoint {path} is incomplete ({reason}): pass another checkpoint or `latest`"
        )
    return path


def prune_checkpoints(output_dir: str | Path, total_limit: int | None, keep: Path) -> None:
    """After ``keep`` was saved, delete the oldest complete checkpoints beyond ``total_limit``; never ``keep``."""
    if not total_limit:
        return
    others = [path for path in complete_checkpoints(output_dir) if path != keep]
    for path in others[: max(0, len(others) + 1 - total_limit)]:
        logger.info("removing old checkpoint %s (--checkpoints_total_limit %d)", path, total_limit)
        shutil.rmtree(path)


def finish_checkpoint(staging: Path, final: Path, state: TrainingState, extra_files: dict[str, str]) -> None:
    """Write ``extra_files`` and the marker (last) into ``staging``, make it durable and rename it to ``final``.

    Called on the main process once every process has written its part of ``staging``.
    """
    for name, text in extra_files.items():
        Path(staging, name).write_text(text)
    sizes = {
        path.relative_to(staging).as_posix(): path.stat().st_size
        for path in sorted(staging.rglob("*"))
        if path.is_file()
    }
    record = {**asdict(state), "files": sizes}
    Path(staging, TRAINING_STATE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    _fsync_tree(staging)
    if final.exists():  # a checkpoint of the same step from an earlier attempt: the new one replaces it
        shutil.rmtree(final)
    _publish(staging, final)


def _publish(staging: Path, final: Path) -> None:
    os.rename(staging, final)
    _fsync_directory(final.parent)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for directory in [root, *(path for path in root.rglob("*") if path.is_dir())]:
        _fsync_directory(directory)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_training_state(checkpoint_dir: str | Path) -> TrainingState:
    record = json.loads(Path(checkpoint_dir, TRAINING_STATE_FILE).read_text())
    return TrainingState(**{field.name: record[field.name] for field in fields(TrainingState) if field.name in record})
