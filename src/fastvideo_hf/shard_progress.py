"""Bookkeeping that makes preprocessing resumable and splittable across processes.

The inputs are cut into fixed chunks of ``samples_per_file`` in listing order; chunk ``i`` always becomes shard
``data/train-{i:05d}-of-{n:05d}.parquet``, whichever process encodes it. A chunk is finished when its marker
(``.progress/chunk-{i:05d}.json``: rows written, inputs skipped and why) exists. The shard is written to
``.progress/`` and renamed into ``data/`` before the marker is renamed into place, so a kill at any moment
leaves either a finished chunk or one that is redone from scratch: never a truncated shard, a lost row or a
duplicate. The run manifest pins the settings and the input listing, so a resume cannot mix two runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROGRESS_DIR = ".progress"
DATA_DIR = "data"
SPLIT = "train"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a partial one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def listing_digest(entries: list[tuple[str, ...]]) -> str:
    """A short digest of the input listing (ids and captions), recorded in the manifest."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(json.dumps(entry).encode())
    return digest.hexdigest()[:16]


@dataclass
class ChunkResult:
    index: int
    shard: str | None  # file name under data/, None when every input of the chunk was skipped
    rows: int
    num_bytes: int  # Arrow bytes of the rows
    file_bytes: int  # Parquet bytes on disk
    skipped: list[dict[str, str]]


class ShardProgress:
    def __init__(self, output_dir: str | Path, num_chunks: int):
        self.output_dir = Path(output_dir)
        self.num_chunks = num_chunks
        self.progress_dir = self.output_dir / PROGRESS_DIR
        self.data_dir = self.output_dir / DATA_DIR
        self.progress_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def check_manifest(self, manifest: dict[str, Any]) -> None:
        """Record the run's settings, or refuse to resume a folder made with different ones."""
        path = self.progress_dir / "manifest.json"
        if path.exists():
            previous = json.loads(path.read_text())
            changed = {
                key: (previous.get(key), value) for key, value in manifest.items() if previous.get(key) != value
            }
            if changed:
                details = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in sorted(changed.items()))
                raise ValueError(
                    f"{self.output_dir} holds a preprocessing run with different settings ({details}). "
                    "Resume with the same command, or use a new --output_dir (or delete this one)."
                )
            return
        atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    def shard_name(self, index: int) -> str:
        return f"{SPLIT}-{index:05d}-of-{self.num_chunks:05d}.parquet"

    def tmp_shard_path(self, index: int) -> Path:
        return self.progress_dir / f"{self.shard_name(index)}.tmp"

    def marker_path(self, index: int) -> Path:
        return self.progress_dir / f"chunk-{index:05d}.json"

    def is_done(self, index: int) -> bool:
        return self.marker_path(index).exists()

    def pending(self, rank: int = 0, world_size: int = 1) -> list[int]:
        """Unfinished chunks of this process: chunk ``i`` belongs to rank ``i % world_size``."""
        return [index for index in range(rank, self.num_chunks, world_size) if not self.is_done(index)]

    def commit(self, result: ChunkResult) -> None:
        """Move the finished shard into ``data/``, then record the chunk as done (in that order)."""
        if result.shard is not None:
            os.replace(self.tmp_shard_path(result.index), self.data_dir / result.shard)
        atomic_write_text(self.marker_path(result.index), json.dumps(result.__dict__) + "\n")

    def all_done(self) -> bool:
        return all(self.is_done(index) for index in range(self.num_chunks))

    def results(self) -> list[ChunkResult]:
        return [ChunkResult(**json.loads(self.marker_path(i).read_text())) for i in range(self.num_chunks)]
