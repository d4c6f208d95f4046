"""Writing a builder's rows into a Hub-ready folder that survives kill -9 and splits across processes.

``LatentFolderWriter(builder)`` owns what a resumable run needs beyond encoding one input: the run's settings
(``manifest``, which a resume must match), the Parquet shard of each chunk (``shard_progress`` moves it into
``OUT/data/`` and marks it done), and, once every chunk of every process is done, ``skipped.jsonl`` and the
dataset card. ``WanLatents.write_to_folder`` is the one-call form; ``fastvideo-hf preprocess`` calls
``prepare`` (every check that needs no weights) and ``write`` separately, so a bad setting exits before any
model is loaded.

A chunk's rows come from one stream, the same with or without decode workers: inputs are planned and their
captions encoded ``text_batch_size`` at a time, then each clip is decoded (in-process with ``num_workers`` 0, else
in ``decode_workers.DecodeWorkers``, results taken in submission order) and encoded in listing order, so the
shards are byte-identical whatever the number of workers.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from ..dataset_card import render_dataset_card, skip_reason_counts
from ..library_internals import parquet_writer
from ..model_spec import WAN_MAX_SEQUENCE_LENGTH, has_component
from .builder import WRITER_BATCH_SIZE, InputPlan, SkipInput
from .decode_workers import DecodeWorkers, decode_pixels
from .encoders import load_pipeline_configs
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

if TYPE_CHECKING:
    from .builder import WanLatents

logger = logging.getLogger(__name__)


@dataclass
class PreparedFolder:
    """An output folder checked and opened for a run: the chunks to encode, their progress, the run's settings."""

    chunks: ChunkPlan
    progress: ShardProgress
    manifest: dict[str, Any]


@dataclass(frozen=True)
class InputDone:
    """``_chunk_rows``' last word on an input: every row and skip of it came before; ``duplicate_clips`` clips
    were not made because they would have repeated another clip's frames."""

    duplicate_clips: int = 0


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


class LatentFolderWriter:
    """Writes the rows of ``builder`` (a ``WanLatents``) into a resumable, rank-sharded dataset folder."""

    def __init__(self, builder: WanLatents):
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
            for item, item_id, outcome in self._chunk_rows(chunk, decoder):
                if isinstance(outcome, InputDone):
                    bar.update(1)
                    if outcome.duplicate_clips:
                        duplicates[item.id] = outcome.duplicate_clips
                    continue
                if isinstance(outcome, SkipInput):
                    skipped.append({"id": item_id, "file_name": item.file_name, "reason": str(outcome)})
                    shown = item_id if item_id != item.id else item.file_name or item.id
                    logger.warning("skipping %s: %s", shown, outcome)
                    continue
                row = outcome
                if builder.encoders[0].truncates(row["caption"]):
                    truncated.append(item_id)
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

    def _planned(self, chunk: list[VideoInput]) -> Iterator[tuple[VideoInput, InputPlan | SkipInput]]:
        """Each input of ``chunk`` with its plan (or why it has none), planned and caption-encoded
        ``text_batch_size`` inputs at a time."""
        builder, inputs = self.builder, iter(chunk)
        while batch := list(islice(inputs, builder.config.text_batch_size)):
            planned = []
            for item in batch:
                try:
                    planned.append((item, builder.plan_input(item)))
                except SkipInput as reason:
                    planned.append((item, reason))
            builder.encode_captions([plan for _, plan in planned if isinstance(plan, InputPlan)])
            yield from planned

    def _chunk_rows(
        self, chunk: list[VideoInput], decoder: DecodeWorkers | None
    ) -> Iterator[tuple[VideoInput, str, dict[str, Any] | SkipInput | InputDone]]:
        """In listing order, per input: ``(item, clip id, row)`` per row, ``(item, id, SkipInput)`` per skip (the
        input's id when the reason holds for all its clips), then ``(item, item.id, InputDone)`` once it is done."""
        builder = self.builder
        given_up: set[int] = set()  # id() of the plans whose remaining clips are not to be decoded

        def clip_jobs():
            for item, plan in self._planned(chunk):
                if isinstance(plan, InputPlan):
                    for clip in plan.clips:
                        if id(plan) in given_up:
                            break
                        yield (item, plan, clip), builder.pixel_job(plan, clip)
                yield (item, plan, None), None  # the input is done

        if decoder is None:  # today's path: each clip decoded in this process just before it is encoded
            decoded = ((key, None if job is None else decode_pixels(job)) for key, job in clip_jobs())
        else:
            decoded = decoder.imap(clip_jobs())
        for (item, plan, clip), pixels in decoded:
            if clip is None:
                if isinstance(plan, SkipInput):
                    yield item, item.id, plan
                given_up.discard(id(plan))
                yield item, item.id, InputDone(plan.duplicate_clips if isinstance(plan, InputPlan) else 0)
                continue
            if id(plan) in given_up:
                continue  # decoded ahead before its input was given up
            try:
                row = builder.encode_pixels(plan, clip, builder.check_decoded(pixels))
            except SkipInput as reason:
                yield item, item.id if reason.whole_input else clip.id, reason
                if reason.whole_input:
                    given_up.add(id(plan))
                continue
            yield item, clip.id, row

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
        truncated = [item_id for result in results for item_id in result.captions_truncated]
        if truncated:
            logger.warning(
                "%d captions (first: %s) are longer than the text encoder's %d tokens and were cut to them, as "
                "WanPipeline cuts prompts; the card counts them as captions_truncated",
                len(truncated),
                truncated[0],
                WAN_MAX_SEQUENCE_LENGTH,
            )
        duplicates = sum(sum(result.duplicate_clips.values()) for result in results)
        if duplicates:
            logger.warning(
                "%d clips were not made because they would have sampled the same frames as another clip of their "
                "video (videos too short for that many distinct clips); the card counts them as "
                "duplicate_clips_dropped",
                duplicates,
            )
        metadata = self.card_metadata(manifest, results, skipped)
        atomic_write_text(output_dir / "README.md", render_dataset_card(metadata, skipped, repo_id))

    def card_metadata(self, manifest: dict[str, Any], results: list[ChunkResult], skipped) -> dict[str, Any]:
        """The ``fastvideo_hf`` block of the card: what made the latents, and the counts."""
        config = self.builder.config
        configs = load_pipeline_configs(config.pretrained_model_name_or_path, config.revision)
        vae_config, text_config, index = configs.vae, configs.text_encoder, configs.index
        spatial, temporal = vae_config.get("scale_factor_spatial") or 8, vae_config.get("scale_factor_temporal") or 4

        def latent_shape(num_frames: int, height: int, width: int) -> list[int]:
            return [vae_config["z_dim"], (num_frames - 1) // temporal + 1, height // spatial, width // spatial]

        counts: Counter[str] = Counter()
        for result in results:
            counts.update(result.buckets)
        bucket_rows = []
        for key, rows in sorted(counts.items(), key=lambda entry: (-entry[1], entry[0])):
            num_frames, height, width = (int(part) for part in key.split("x"))
            shape = latent_shape(num_frames, height, width)
            bucket_rows.append(
                {"num_frames": num_frames, "height": height, "width": width, "rows": rows, "latent_shape": shape}
            )
        one_bucket = config.height is not None and config.num_frames is not None
        return {
            **{key: manifest[key] for key in ("task", "model", "revision", "source", "height", "width")},
            **{key: manifest[key] for key in ("num_frames", "fps", "storage_dtype", "seed")},
            "vae_class": vae_config.get("_class_name", "AutoencoderKLWan"),
            "text_encoder_class": (text_config.architectures or ["UMT5EncoderModel"])[0],
            "latent_channels": vae_config["z_dim"],
            # a one-bucket run's latent shape; several buckets have theirs in bucket_rows
            "latent_shape": latent_shape(config.num_frames, config.height, config.width) if one_bucket else None,
            "resolution_buckets": [list(bucket) for bucket in config.resolution_bucket_list],
            "frame_buckets": list(config.frame_bucket_list),
            "bucket_no_upscale": config.bucket_no_upscale,
            "frame_extraction": config.frame_extraction,
            "clips_per_video": config.clips_per_video,
            # rows per (frames, height, width) bucket, most rows first
            "bucket_rows": bucket_rows,
            "latents_mean": vae_config.get("latents_mean"),
            "latents_std": vae_config.get("latents_std"),
            "text_dim": text_config.d_model,
            "max_sequence_length": WAN_MAX_SEQUENCE_LENGTH,
            "text_encoder_dtype": manifest["text_encoder_dtype"],
            "vae_dtype": manifest["vae_dtype"],
            "video_backend": manifest["video_backend"],
            "num_inputs": manifest["num_inputs"],
            "num_rows": sum(result.rows for result in results),
            "num_skipped": len(skipped),
            "captions_truncated": sum(len(result.captions_truncated) for result in results),
            # clips that would have repeated another clip's frames (a video too short for its clips_per_video)
            "duplicate_clips_dropped": sum(sum(result.duplicate_clips.values()) for result in results),
            "num_shards": sum(1 for result in results if result.shard),
            "num_bytes": sum(result.num_bytes for result in results),
            "parquet_bytes": sum(result.file_bytes for result in results),
            "skipped_reasons": skip_reason_counts(skipped),
            "pipeline_class": index.get("_class_name"),
            "expand_timesteps": bool(index.get("expand_timesteps")),
            "boundary_ratio": index.get("boundary_ratio"),
            "has_image_encoder": config.task == "i2v" and has_component(index, "image_encoder"),
        }
