"""Bookkeeping that makes preprocessing resumable and splittable across processes.

The inputs are cut into fixed chunks of ``samples_per_file`` in listing order; chunk ``i`` is written as
``data/train-{i:05d}-of-{n:05d}.parquet`` (n chunks), whichever process encodes it. A chunk is finished when its
marker (``.progress/chunk-{i:05d}.json``: rows written, inputs skipped and why) exists. The shard is written to
``.progress/`` and renamed into ``data/`` before the marker is renamed into place, so a kill at any moment
leaves either a finished chunk or one that is redone from scratch: never a truncated shard, a lost row or a
duplicate. The run manifest pins the settings and the input listing, so a resume cannot mix two runs; it is
written with the first finished chunk, so a run that failed before finishing one (a wrong model path, say)
leaves nothing that would refuse the corrected command.

A chunk whose inputs were all skipped has no shard, so once every chunk is done the process that finishes the run
renames the shards to contiguous names, ``train-{j:05d}-of-{m:05d}`` for the m chunks with rows in chunk order
(``name_shards_contiguously``; nothing moves when no chunk is empty). The names depend only on which chunks have
rows, so they are the same for any number of processes; the renames are atomic and re-done by a re-run, so a kill
during them leaves a folder the same command finishes, and the card is written only after them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROGRESS_DIR = ".progress"
DATA_DIR = "data"
SPLIT = "train"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a partial one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def listing_digest(entries: Iterable[tuple[str, ...]]) -> str:
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
    # ids of the rows whose caption was longer than the text encoder reads (markers of older runs lack it)
    captions_truncated: list[str] = field(default_factory=list)
    # rows per (frames, height, width) bucket, keyed "FxHxW" (markers of older runs lack it)
    buckets: dict[str, int] = field(default_factory=dict)
    # input id -> clips not made because they would repeat another clip's frames (markers of older runs lack it)
    duplicate_clips: dict[str, int] = field(default_factory=dict)


def bucket_key(num_frames: int, height: int, width: int) -> str:
    """How a chunk marker names the (frames, height, width) bucket of a row."""
    return f"{num_frames}x{height}x{width}"


def check_output_dir(output_dir: str | Path) -> Path:
    """``output_dir``, created if missing, or a ``ValueError`` saying why it cannot hold the dataset."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--output_dir {path} is a file: pass a folder (it is created if missing)")
    try:
        for folder in (path / PROGRESS_DIR, path / DATA_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        probe = path / PROGRESS_DIR / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:  # PermissionError, a read-only disk, a file where a parent folder should be
        raise ValueError(
            f"cannot write to --output_dir {path} ({error.strerror or error}): pass a folder you can write to"
        ) from error
    return path


class ShardProgress:
    def __init__(self, output_dir: str | Path, num_chunks: int, manifest: dict[str, Any]):
        """Open ``output_dir`` for a run with these settings; refuse one that holds a run with other settings."""
        self.output_dir = check_output_dir(output_dir)
        self.num_chunks = num_chunks
        self.manifest = manifest
        self.progress_dir = self.output_dir / PROGRESS_DIR
        self.data_dir = self.output_dir / DATA_DIR
        self.manifest_path = self.progress_dir / "manifest.json"
        self._check_manifest()

    def _check_manifest(self) -> None:
        if not self.manifest_path.exists():
            return
        previous = json.loads(self.manifest_path.read_text())
        # a setting an older version did not record (video_backend) is not compared: its folders still resume
        changed = {
            key: (previous[key], value)
            for key, value in self.manifest.items()
            if key in previous and previous[key] != value
        }
        if changed and not self._rows_written():
            # a run that wrote no row (every input skipped) holds nothing worth protecting: start over
            logger.warning("%s holds a run that wrote no rows: starting over with the new settings", self.output_dir)
            shutil.rmtree(self.progress_dir)
            self.progress_dir.mkdir()
            return
        if changed:
            details = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in sorted(changed.items()))
            raise ValueError(
                f"{self.output_dir} holds a preprocessing run with different settings ({details}). "
                "Resume with the same command, or use a new --output_dir (or delete this one)."
            )

    def _rows_written(self) -> bool:
        markers = self.progress_dir.glob("chunk-*.json")
        return any(json.loads(marker.read_text()).get("rows") for marker in markers) or any(
            self.data_dir.glob("*.parquet")
        )

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
        """Move the finished shard into ``data/``, then record the chunk as done (in that order); the first
        chunk of a run also records the run's settings."""
        if not self.manifest_path.exists():
            atomic_write_text(self.manifest_path, json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
        if result.shard is not None:
            os.replace(self.tmp_shard_path(result.index), self.data_dir / result.shard)
        atomic_write_text(self.marker_path(result.index), json.dumps(result.__dict__) + "\n")

    def final_shard_names(self, results: list[ChunkResult]) -> dict[int, str]:
        """Chunk index -> the shard's name once the run is complete: contiguous over the chunks with rows."""
        indices = [result.index for result in results if result.shard is not None]
        return {index: f"{SPLIT}-{j:05d}-of-{len(indices):05d}.parquet" for j, index in enumerate(indices)}

    def name_shards_contiguously(self, results: list[ChunkResult]) -> None:
        """Rename each chunk's shard to its final name (``final_shard_names``) and remove any other shard name of
        ours in ``data/`` (a chunk's shard moved in before a kill, from a chunk the re-run found empty: the card's
        ``data/train-*`` glob would read its rows twice), so the folder holds every row exactly once under names
        ``train-00000-of-0000m`` ... with no gap. Safe to repeat, and to run in two processes at once."""
        final = self.final_shard_names(results)
        for index, name in final.items():
            written = self.data_dir / self.shard_name(index)
            if written.name == name:
                continue
            try:
                os.replace(written, self.data_dir / name)
            except FileNotFoundError:  # renamed already (a re-run, or another process finishing at once)
                if not (self.data_dir / name).exists():
                    raise FileNotFoundError(
                        f"{written} is missing though chunk {index} is marked done: delete "
                        f"{self.marker_path(index)} and re-run the same command to encode it again"
                    ) from None
        for path in self.data_dir.glob(f"{SPLIT}-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].parquet"):
            if path.name not in final.values():
                logger.warning("removing %s: not a shard of this run's final layout", path)
                path.unlink(missing_ok=True)

    def all_done(self) -> bool:
        return all(self.is_done(index) for index in range(self.num_chunks))

    def results(self) -> list[ChunkResult]:
        return [ChunkResult(**json.loads(self.marker_path(i).read_text())) for i in range(self.num_chunks)]
