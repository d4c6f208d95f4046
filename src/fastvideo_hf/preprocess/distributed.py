"""Rank and world size of the current process, as set by ``torchrun`` or ``accelerate launch``.

Preprocessing needs no collective at all (each process owns a fixed set of shards and the last one to finish
writes the card), so it reads the launcher's environment instead of opening a process group: a slow rank can
never hit a barrier timeout.
"""

from __future__ import annotations

import os


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))
