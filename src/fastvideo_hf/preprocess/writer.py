"""Writing a builder's rows into a Hub-ready folder that survives kill -9 and splits across processes.

``LatentFolderWriter(builder)`` owns what a resumable run needs beyond making rows: the run's settings
(``manifest``, which a resume must match), the Parquet shard of each chunk (``shard_progress`` moves it into
``OUT/data/`` and marks it done), and, once every chunk of every process is done, ``skipped.jsonl`` and the
dataset card. The rows themselves come from ``VideoLatents.rows``, the stream ``_generate_examples`` reads too.
``write_to_folder(builder, OUT)`` is the one-call form; ``fastvideo-hf preprocess`` calls ``prepare`` (every
check that needs no weights) and ``write`` separately, so a bad setting exits before any model is loaded.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..dataset_card import LatentsCard, render_dataset_card, skip_reason_counts
from ..library_internals import parquet_writer
from .builder import WRITER_BATCH_SIZE, VideoLatents
from .decode_workers import DecodeWorkers
from .input_plan import InputDone, Skipped
from .shard_progress import (
    ChunkResult,
    ShardProgress,
    atomic_write_text,
    bucket_key,
    check_output_dir,
    listing_digest,
)
from .sources import ChunkPlan, VideoInput
from .video_decode import available_backends

logger = logging.getLogger(__name__)


@dataclass
class PreparedFolder:
    """An output folder checked and opened for a run: the chunks to encode, their progress, the run's settings."""

    chunks: ChunkPlan
    progress: ShardProgress
    manifest: dict[str, Any]


@dataclass
class WriteSummary:
    """What one process did in ``write_to_folder``; ``finalized`` when it wrote the card (the run is complete)."""

    rows_written: int = 0
    inputs_skipped: int = 0
    chunks_done: int = 0
    finalized: bool = False
    total_rows: int = 0
    total_skipped: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def write_to_folder(
    builder: VideoLatents, output_dir: str | Path, rank: int = 0, world_size: int = 1, repo_id: str | None = None
) -> WriteSummary:
    """Encode this process's unfinished chunks of ``builder``'s inputs into ``output_dir/data/`` and, when every
    chunk of every process is done, write ``skipped.jsonl`` and the dataset card. Safe to re-run after any
    interruption (see ``LatentFolderWriter``)."""
    writer = LatentFolderWriter(builder)
    return writer.write(writer.prepare(output_dir), rank, world_size, repo_id)


class LatentFolderWriter:
    """Writes the rows of ``builder`` into a resumable, rank-sharded dataset folder."""

    def __init__(self, builder: VideoLatents):
        self.builder = builder

    def manifest(self, chunks: ChunkPlan) -> dict[str, Any]:
        """Everything that changes the rows; a resume must match it exactly."""
        config = self.builder.config
        return {
            "task": config.task,
            "model": config.pretrained_model_name_or_path,
            "revision": config.revision,
            "source": self.builder.source.describe(),
            "height": config.height,
            "width": config.width,
            "num_frames": config.num_frames,
            # None for today's one-bucket runs, so their folders resume as before
            "buckets": config.bucket_settings(),
            "fps": float(config.fps),
            "storage_dtype": config.storage_dtype,
            "samples_per_file": config.samples_per_file,
            "seed": config.seed,
            "text_encoder_dtype": config.text_encoder_dtype,
            "vae_dtype": config.vae_dtype,
            # the decoders tried, in order: decord and PyAV differ by up to 0.029 in the latent on 10-bit sources
            "video_backend": self.video_backends(),
            "num_inputs": chunks.num_inputs,
            "inputs_digest": listing_digest(chunks.listing()),  # streamed: no record per input is built
        }

    def video_backends(self) -> list[str]:
        """The video decoders a file is tried with, in order: the one ``--video_backend`` names, else every one
        installed (decord first, PyAV for the files decord cannot read)."""
        backend = self.builder.config.video_backend
        return [backend] if backend else available_backends()

    def prepare(self, output_dir: str | Path) -> PreparedFolder:
        """Everything checkable before encoding, in the order that fails fastest: the model, the output folder,
        the inputs, and the settings of a run already in the folder. Raises ``ValueError`` (bad settings)."""
        self.builder.check_model()
        check_output_dir(output_dir)
        chunks = self.builder.plan_chunks()
        manifest = self.manifest(chunks)
        return PreparedFolder(chunks, ShardProgress(output_dir, len(chunks), manifest), manifest)

    def write(
        self, folder: PreparedFolder, rank: int = 0, world_size: int = 1, repo_id: str | None = None
    ) -> WriteSummary:
        """Encode this process's unfinished chunks of a folder ``prepare`` checked into ``OUT/data/`` and, when
        every chunk of every process is done, write ``skipped.jsonl`` and the dataset card."""
        chunks, progress, manifest = folder.chunks, folder.progress, folder.manifest
        pending = progress.pending(rank, world_size)
        summary = WriteSummary(seconds=self.builder.timings)
        num_pending_inputs = sum(chunks.chunk_size(index) for index in pending)
        num_workers = self.builder.config.num_workers
        decoder = DecodeWorkers(num_workers) if num_workers and pending else None
        try:
            if decoder is not None:
                decoder.start()  # the workers start while the encoders load
            with tqdm(
                total=num_pending_inputs,
                unit="input",
                desc=f"Encoding (rank {rank})",
                disable=num_pending_inputs == 0,
            ) as bar:
                for index in pending:
                    result = self._write_chunk(progress, index, chunks[index], bar, decoder)
                    progress.commit(result)
                    summary.rows_written += result.rows
                    summary.inputs_skipped += len(result.skipped)
                    summary.chunks_done += 1
        finally:
            if decoder is not None:
                decoder.close()
                self.builder.timings["decode_wait"] += decoder.wait_seconds
        if progress.all_done():
            self._finalize(progress, manifest, summary, repo_id)
        return summary

    def _write_chunk(
        self, progress: ShardProgress, index: int, chunk: list[VideoInput], bar, decoder: DecodeWorkers | None
    ) -> ChunkResult:
        writer, skipped, truncated, buckets, duplicates = None, [], [], Counter(), {}
        tmp_path = progress.tmp_shard_path(index)
        builder = self.builder
        features = builder.info.features

        try:
            for item, row_id, value in builder.rows(chunk, decoder):
                if isinstance(value, InputDone):
                    bar.update(1)
                    if value.duplicate_clips:
                        duplicates[item.id] = value.duplicate_clips
                    continue
                if isinstance(value, Skipped):
                    skipped.append({"id": row_id, "file_name": item.file_name, "reason": value.reason})
                    continue
                row = value
                if builder.encoders.prompt.truncates(row["caption"]):
                    truncated.append(row_id)
                buckets[bucket_key(row["num_frames"], row["height"], row["width"])] += 1
                started = time.perf_counter()
                if writer is None:
                    writer = parquet_writer(features, str(tmp_path), WRITER_BATCH_SIZE)
                writer.write(features.encode_example(row))
                builder.timings["write"] += time.perf_counter() - started
            rows, num_bytes = 0, 0
            if writer is not None:
                started = time.perf_counter()
                rows, num_bytes = writer.finalize()
                builder.timings["write"] += time.perf_counter() - started
        finally:
            if writer is not None:
                writer.close()
        shard = progress.shard_name(index) if rows else None
        file_bytes = tmp_path.stat().st_size if rows else 0
        return ChunkResult(
            index, shard, rows, num_bytes, file_bytes, skipped, truncated, dict(sorted(buckets.items())), duplicates
        )

    def _finalize(self, progress: ShardProgress, manifest: dict[str, Any], summary: WriteSummary, repo_id) -> None:
        results = progress.results()
        skipped = [item for result in results for item in result.skipped]
        summary.total_rows = sum(result.rows for result in results)
        summary.total_skipped = len(skipped)
        summary.finalized = True
        output_dir = progress.output_dir
        atomic_write_text(output_dir / "skipped.jsonl", "".join(json.dumps(item) + "\n" for item in skipped))
        if summary.total_rows == 0:
            return
        progress.name_shards_contiguously(results)  # before the card: a folder with a card has its final names
        spec = self.builder.spec
        truncated = [item_id for result in results for item_id in result.captions_truncated]
        if truncated:
            logger.warning(
                "%d captions (first: %s) are longer than the text encoder's %d tokens and were cut to them, as "
                "%s cuts prompts; the card counts them as captions_truncated",
                len(truncated),
                truncated[0],
                spec.max_sequence_length,
                spec.pipeline_class,
            )
        duplicates = sum(sum(result.duplicate_clips.values()) for result in results)
        if duplicates:
            logger.warning(
                "%d clips were not made because they would have sampled the same frames as another clip of their "
                "video (videos too short for that many distinct clips); the card counts them as "
                "duplicate_clips_dropped",
                duplicates,
            )
        card = self.card(manifest, results, skipped)
        atomic_write_text(output_dir / "README.md", render_dataset_card(card, spec.family.title, skipped, repo_id))

    def card(self, manifest: dict[str, Any], results: list[ChunkResult], skipped: list[dict[str, str]]) -> LatentsCard:
        """The ``fastvideo_hf`` block of the card: what made the latents (the model's facts from its spec), and
        the counts."""
        config, spec = self.builder.config, self.builder.spec
        counts: Counter[str] = Counter()
        for result in results:
            counts.update(result.buckets)
        bucket_rows = []
        for key, rows in sorted(counts.items(), key=lambda entry: (-entry[1], entry[0])):
            num_frames, height, width = (int(part) for part in key.split("x"))
            shape = spec.latent_shape(num_frames, height, width)
            bucket_rows.append(
                {"num_frames": num_frames, "height": height, "width": width, "rows": rows, "latent_shape": shape}
            )
        one_bucket = config.height is not None and config.num_frames is not None
        return LatentsCard(
            **{key: manifest[key] for key in ("task", "model", "revision", "source", "height", "width")},
            **{key: manifest[key] for key in ("num_frames", "fps", "storage_dtype", "seed")},
            vae_class=spec.vae_class,
            text_encoder_class=spec.text_encoder_class,
            latent_channels=spec.latent_channels,
            latent_shape=spec.latent_shape(config.num_frames, config.height, config.width) if one_bucket else None,
            resolution_buckets=[list(bucket) for bucket in config.resolution_bucket_list],
            frame_buckets=list(config.frame_bucket_list),
            bucket_no_upscale=config.bucket_no_upscale,
            frame_extraction=config.frame_extraction,
            clips_per_video=config.clips_per_video,
            bucket_rows=bucket_rows,
            latents_mean=spec.latents_mean,
            latents_std=spec.latents_std,
            text_dim=spec.prompt_embedding_dim,
            max_sequence_length=spec.max_sequence_length,
            text_encoder_dtype=manifest["text_encoder_dtype"],
            vae_dtype=manifest["vae_dtype"],
            video_backend=manifest["video_backend"],
            num_inputs=manifest["num_inputs"],
            num_rows=sum(result.rows for result in results),
            num_skipped=len(skipped),
            captions_truncated=sum(len(result.captions_truncated) for result in results),
            duplicate_clips_dropped=sum(sum(result.duplicate_clips.values()) for result in results),
            num_shards=sum(1 for result in results if result.shard),
            num_bytes=sum(result.num_bytes for result in results),
            parquet_bytes=sum(result.file_bytes for result in results),
            skipped_reasons=skip_reason_counts(skipped),
            pipeline_class=spec.pipeline_class,
            expand_timesteps=spec.expand_timesteps,
            boundary_ratio=spec.boundary_ratio,
            has_image_encoder=config.task == "i2v" and spec.has_image_encoder,
        )
