"""A ``datasets`` builder that turns raw videos + captions into Wan latents and prompt embeddings.

It reads like any ``datasets`` builder: ``WanLatentsConfig`` holds the knobs, ``_info`` declares the features
(from ``schema``), ``_split_generators`` lists the inputs and cuts them into shard-sized chunks, and
``_generate_examples`` yields ``(id, row)``; ``encode_input`` makes the row of one input. ``write_to_folder``
hands the builder to ``writer.LatentFolderWriter``, which checks every setting it can before any weight is
loaded and writes resumable, rank-sharded Parquet shards, ``skipped.jsonl`` and the dataset card: a folder that
plain ``load_dataset`` reads and that can be pushed to the Hub as is.

Usable from Python::

    builder = WanLatents(task="t2v", pretrained_model_name_or_path="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                         data_dir="my_videos", height=480, width=832, num_frames=77)
    builder.write_to_folder("my_latents")
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import torch

from ..schema import STORAGE_DTYPES, empty_tensor_columns, latent_features, tensor_to_columns
from .encoders import (
    PipelineConfigs,
    WanImageConditionEncoder,
    WanPromptEncoder,
    WanVaeEncoder,
    load_pipeline_configs,
)
from .frame_sampling import ClipTooShortError, first_frame_image, resize_and_center_crop
from .sources import HFDatasetSource, MergedFolderSource, VideoInput, choose_caption
from .video_decode import VideoDecodeError, decode_clip

if TYPE_CHECKING:
    from .writer import WriteSummary

logger = logging.getLogger(__name__)

# Latent rows are megabytes each: flush a Parquet row group every few rows to keep memory flat.
WRITER_BATCH_SIZE = 4
ENCODER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SkipInput(Exception):
    """An input that cannot be used; the message is the reason recorded in ``skipped.jsonl``."""


@dataclass
class WanLatentsConfig(datasets.BuilderConfig):
    """Knobs of a preprocessing run; the defaults are FastVideo's Wan2.1 T2V 1.3B recipe (77x480x832 at 16 fps)."""

    task: str = "t2v"
    pretrained_model_name_or_path: str | None = None
    revision: str | None = None
    # An HF video dataset (Hub id or local path); else ``data_dir`` is a merged folder. (Not ``dataset_name``:
    # ``datasets`` builders take that argument for their cache name.)
    video_dataset: str | None = None
    dataset_config_name: str | None = None
    dataset_split: str = "train"
    video_column: str = "video"
    caption_column: str = "caption"
    height: int = 480
    width: int = 832
    num_frames: int = 77
    fps: float = 16.0
    storage_dtype: str = "float32"
    samples_per_file: int = 64
    seed: int = 42
    video_backend: str | None = None
    device: str | None = None
    text_encoder_dtype: str = "auto"  # bfloat16 on GPU, float32 on CPU
    vae_dtype: str = "float32"

    def __post_init__(self):
        super().__post_init__()
        if self.task not in ("t2v", "i2v"):
            raise ValueError(f"--task must be t2v or i2v, got {self.task!r}")
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise ValueError(f"--num_frames must be 4k+1 for Wan's VAE (e.g. 77 or 81), got {self.num_frames}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"--fps must be a positive number of frames per second (e.g. 16), got {self.fps}")
        if self.height <= 0 or self.width <= 0 or self.height % 16 or self.width % 16:
            raise ValueError(f"--height and --width must be positive multiples of 16, got {self.height}x{self.width}")
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"--storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {self.storage_dtype!r}")
        if self.samples_per_file < 1:
            raise ValueError("--samples_per_file must be at least 1")
        if (self.video_dataset is None) == (self.data_dir is None):
            raise ValueError("give exactly one input: --data_dir (merged folder) or --dataset_name (HF dataset)")


class WanLatents(datasets.GeneratorBasedBuilder):
    BUILDER_CONFIG_CLASS = WanLatentsConfig
    DEFAULT_WRITER_BATCH_SIZE = WRITER_BATCH_SIZE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config.pretrained_model_name_or_path is None:
            raise ValueError("pretrained_model_name_or_path is required (a diffusers-format Wan folder or Hub id)")
        self._source = None
        self._encoders = None
        self.timings: dict[str, float] = defaultdict(float)

    # -- the datasets builder interface ---------------------------------------------------------------------

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Wan VAE latents and UMT5 prompt embeddings of video clips, for finetuning.",
            features=latent_features(self.config.task),
        )

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"chunks": self.plan_chunks()})]

    def _generate_examples(self, chunks: list[list[VideoInput]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for chunk in chunks:
            for item in chunk:
                try:
                    yield item.id, self.encode_input(item)
                except SkipInput as reason:
                    logger.warning("skipping %s: %s", item.file_name or item.id, reason)

    # -- inputs -------------------------------------------------------------------------------------------

    @property
    def source(self):
        if self._source is None:
            config = self.config
            if config.video_dataset is not None:
                self._source = HFDatasetSource(
                    config.video_dataset,
                    config.dataset_config_name,
                    split=config.dataset_split,
                    video_column=config.video_column,
                    caption_column=config.caption_column,
                )
            else:
                self._source = MergedFolderSource(config.data_dir)
        return self._source

    def plan_chunks(self) -> list[list[VideoInput]]:
        """The inputs in listing order, cut into chunks of ``samples_per_file`` (one Parquet shard each)."""
        inputs = self.source.list_inputs()
        size = self.config.samples_per_file
        return [inputs[start : start + size] for start in range(0, len(inputs), size)]

    # -- encoding -----------------------------------------------------------------------------------------

    def _device(self) -> torch.device:
        if self.config.device:
            return torch.device(self.config.device)
        if torch.cuda.is_available():
            from .distributed import local_rank

            return torch.device("cuda", local_rank())
        return torch.device("cpu")

    @property
    def encoders(self) -> tuple[WanPromptEncoder, WanVaeEncoder, WanImageConditionEncoder | None]:
        """Loaded on first use, so a resume with nothing left to do never loads a model."""
        if self._encoders is None:
            config, device = self.config, self._device()
            text_dtype = config.text_encoder_dtype
            if text_dtype == "auto":
                text_dtype = "bfloat16" if device.type == "cuda" else "float32"
            model, revision = config.pretrained_model_name_or_path, config.revision
            vae_encoder = WanVaeEncoder.from_pretrained(model, revision, device, ENCODER_DTYPES[config.vae_dtype])
            image_encoder = None
            if config.task == "i2v":
                image_encoder = WanImageConditionEncoder.from_pretrained(
                    model, vae_encoder.vae, revision, device, ENCODER_DTYPES[text_dtype]
                )
            self._encoders = (
                WanPromptEncoder.from_pretrained(model, revision, device, ENCODER_DTYPES[text_dtype]),
                vae_encoder,
                image_encoder,
            )
        return self._encoders

    def encode_input(self, item: VideoInput) -> dict[str, Any]:
        """The Parquet row of one input, or ``SkipInput`` with the reason it cannot be used."""
        config = self.config
        if item.problem:
            raise SkipInput(item.problem)
        caption = choose_caption(item, config.seed)
        if caption is None:
            raise SkipInput("empty caption")
        prompt_encoder, vae_encoder, image_encoder = self.encoders  # loaded before the clock: not counted as encoding
        started = time.perf_counter()
        try:
            clip = decode_clip(self.source.video_for(item), config.fps, config.num_frames, config.video_backend)
        except (VideoDecodeError, ClipTooShortError) as error:
            raise SkipInput(str(error)) from error
        pixels = resize_and_center_crop(clip.frames, config.height, config.width)
        del clip  # source-resolution frames are not needed past this point
        decoded = time.perf_counter()
        (text_embedding,) = prompt_encoder([caption])
        text_encoded = time.perf_counter()
        latent = vae_encoder(pixels)
        vae_encoded = time.perf_counter()
        self.timings["decode"] += decoded - started
        self.timings["text_encode"] += text_encoded - decoded
        self.timings["vae_encode"] += vae_encoded - text_encoded
        image_columns = {}
        if image_encoder is not None:
            first_frame_latent, clip_feature = image_encoder(first_frame_image(pixels), config.num_frames)
            image_columns = {
                **tensor_to_columns("first_frame_latent", first_frame_latent, config.storage_dtype),
                **(
                    tensor_to_columns("clip_feature", clip_feature, config.storage_dtype)
                    if clip_feature is not None
                    else empty_tensor_columns("clip_feature")
                ),
            }
            self.timings["image_encode"] += time.perf_counter() - vae_encoded
        return {
            "id": item.id,
            **tensor_to_columns("vae_latent", latent, config.storage_dtype),
            **tensor_to_columns("text_embedding", text_embedding, config.storage_dtype),
            "file_name": item.file_name,
            "caption": caption,
            "media_type": "video",
            "width": config.width,
            "height": config.height,
            "num_frames": config.num_frames,
            "duration_sec": config.num_frames / config.fps,
            "fps": float(config.fps),
            **image_columns,
        }

    # -- checks and writing a Hub-ready folder ------------------------------------------------------------

    def check_model(self) -> PipelineConfigs:
        """The model's configs, checked against the frame size: a wrong path or a size the model cannot
        patchify is a ``ValueError`` before any input is listed or any weight loaded."""
        configs = load_pipeline_configs(self.config.pretrained_model_name_or_path, self.config.revision)
        multiple_h, multiple_w = configs.spatial_multiple
        if self.config.height % multiple_h or self.config.width % multiple_w:
            raise ValueError(
                f"--height and --width must be multiples of {multiple_h}x{multiple_w} for this model "
                f"(VAE downsampling x patch size), got {self.config.height}x{self.config.width}"
            )
        return configs

    def write_to_folder(
        self, output_dir: str | Path, rank: int = 0, world_size: int = 1, repo_id: str | None = None
    ) -> WriteSummary:
        """Encode this process's unfinished chunks into ``output_dir/data/`` and, when every chunk of every
        process is done, write ``skipped.jsonl`` and the dataset card. Safe to re-run after any interruption
        (see ``writer.LatentFolderWriter``)."""
        from .writer import LatentFolderWriter

        writer = LatentFolderWriter(self)
        return writer.write(writer.prepare(output_dir), rank, world_size, repo_id)
