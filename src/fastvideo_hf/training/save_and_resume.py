"""Saving a run's checkpoints and resuming from one, through the Accelerator, on every process together.

``checkpointing`` knows the folders (what is complete, what is latest, what to prune) and ``resume_settings``
what a resume must find unchanged; this module runs them in the order a run of several processes needs: the main
process cleans and renames, every process writes its part, and all wait for each other in between.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from accelerate import Accelerator

from ..refusal import SettingRefused
from .checkpoint_hooks import SHARDED_TYPES
from .checkpointing import (
    TrainingState,
    checkpoint_dir,
    clean_incomplete_checkpoints,
    complete_checkpoints,
    finish_checkpoint,
    load_training_state,
    prune_checkpoints,
    resolve_resume_checkpoint,
    staging_dir,
)
from .resume_settings import RUN_SETTINGS_FILE, check_resume_settings, settings_file_text

logger = logging.getLogger(__name__)


def resume_state(accelerator: Accelerator, args: argparse.Namespace, settings: dict) -> tuple[TrainingState, dict]:
    """Load the checkpoint named by ``--resume_from_checkpoint`` (if any); returns where to continue and the
    settings in effect (the checkpoint's optimizer values win over new flags).

    First the main process clears what interrupted saves left behind; a checkpoint whose ``settings`` differ in
    what defines the data order or a step is refused before any weight is read.
    """
    if accelerator.is_main_process:
        clean_incomplete_checkpoints(args.output_dir)
    accelerator.wait_for_everyone()
    path = resolve_resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if path is None:
        earlier = complete_checkpoints(args.output_dir)
        if earlier:  # a new run here would prune them in favour of its own, or mix with them on the next resume
            raise SettingRefused(
                f"{args.output_dir} holds checkpoints of an earlier run ({', '.join(p.name for p in earlier)}): pass "
                "--resume_from_checkpoint latest to continue it, or use another --output_dir"
            )
        return TrainingState(), settings
    settings = check_resume_settings(path, settings, sharded=accelerator.distributed_type in SHARDED_TYPES)
    logger.info("resuming from %s", path)
    accelerator.load_state(str(path))
    return load_training_state(path), settings


def run_is_complete(state: TrainingState, max_train_steps: int) -> bool:
    """True when a resumed run has no step left: it then only rewrites its final outputs (job schedulers re-run
    finished jobs, and a 41st step would overwrite the final weights of a 40-step run). A checkpoint past
    ``max_train_steps`` is refused: its weights are not those of a ``max_train_steps`` run."""
    if state.global_step > max_train_steps:
        raise SettingRefused(
            f"the checkpoint is at step {state.global_step}, past --max_train_steps {max_train_steps}: pass a "
            "--max_train_steps of at least that to continue it, or use another --output_dir"
        )
    if state.global_step == max_train_steps:
        logger.info("the run is already complete at step %d: rewriting the final outputs only", state.global_step)
        return True
    return False


def save_checkpoint(accelerator: Accelerator, args: argparse.Namespace, state: TrainingState, settings: dict) -> Path:
    """``checkpoint-{step}`` with model, optimizer, scheduler, RNG, the data position and the run's settings.

    Written into ``checkpoint-{step}.tmp`` by every process and renamed by the main process once complete, so a
    kill at any moment leaves the previous checkpoints intact; old checkpoints are pruned only afterwards.
    """
    path, staging = checkpoint_dir(args.output_dir, state.global_step), staging_dir(args.output_dir, state.global_step)
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()  # every process's part (RNG states, shards) is written
    if accelerator.is_main_process:
        finish_checkpoint(staging, path, state, {RUN_SETTINGS_FILE: settings_file_text(settings)})
        prune_checkpoints(args.output_dir, args.checkpoints_total_limit, keep=path)
    accelerator.wait_for_everyone()
    logger.info("saved %s", path)
    return path
