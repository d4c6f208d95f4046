"""A ``datasets`` builder that turns raw videos + captions into Wan latents and prompt embeddings.

It reads like any ``datasets`` builder: ``WanLatentsConfig`` holds the knobs, ``_info`` declares the features
(from ``schema``), ``_split_generators`` lists the inputs and cuts them into shard-sized chunks, and
``_generate_examples`` yields ``(id, row)`` for every clip of every input. ``write_to_folder``
hands the builder to ``writer.LatentFolderWriter``, which checks every setting it can before any weight is
loaded and writes resumable, rank-sharded Parquet shards, ``skipped.jsonl`` and the dataset card: a folder that
plain ``load_dataset`` reads and that can be pushed to the Hub as is.

An input gives one row per clip: ``plan_input`` picks its frame bucket and clip starts (``buckets``), and
``encode_clip`` decodes one clip, fits it to its resolution bucket and encodes it, so only the frames of the clip
being encoded are ever in memory.

Usable from Python::

    builder = WanLatents(task="t2v", pretrained_model_name_or_path="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                         data_dir="my_videos", height=480, width=832, num_frames=77)
    builder.write_to_folder("my_latents")

or with buckets: ``resolution_buckets="480x832,832x480,624x624", frame_buckets="1,17,33,49,81",
frame_extraction="chunk"``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import torch

from ..schema import CLIP_START_COLUMN, STORAGE_DTYPES, empty_tensor_columns, latent_features, tensor_to_columns
from .buckets import (
    FRAME_EXTRACTIONS,
    Bucket,
    auto_resolution_buckets,
    clip_id,
    parse_aspect_range,
    parse_int_list,
    parse_resolution_buckets,
    plan_clips,
)
from .decode_workers import ClipPixels, ClipSkip, PixelJob, decode_pixels, default_num_workers
from .encoders import (
    PipelineConfigs,
    WanImageConditionEncoder,
    WanPromptEncoder,
    WanVaeEncoder,
    load_pipeline_configs,
)
from .frame_sampling import ClipTooShortError, first_frame_image
from .sources import ChunkPlan, HFDatasetSource, MergedFolderSource, VideoInput, choose_caption
from .video_decode import VideoDecodeError, read_frame_times

if TYPE_CHECKING:
    from .writer import WriteSummary

logger = logging.getLogger(__name__)

# Latent rows are megabytes each: flush a Parquet row group every few rows to keep memory flat.
WRITER_BATCH_SIZE = 4
ENCODER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# today's one-bucket defaults (FastVideo's Wan2.1 T2V 1.3B recipe)
DEFAULT_HEIGHT, DEFAULT_WIDTH, DEFAULT_NUM_FRAMES = 480, 832, 77
DEFAULT_BUCKET_STEP, DEFAULT_ASPECT_RANGE = 16, (0.5, 2.0)
IMAGE_FOR_I2V = "a still image has no motion to learn for image-to-video"
NO_IMAGE_BUCKET = "no image bucket: a still image is a 1-frame row, and --frame_buckets {buckets} has no 1 (add it)"


class SkipInput(Exception):
    """An input (or one clip of it) that cannot be used; the message is the reason recorded in ``skipped.jsonl``.
    ``whole_input``: the reason holds for every clip of the input, so its other clips are not tried."""

    def __init__(self, reason: str, whole_input: bool = False):
        super().__init__(reason)
        self.whole_input = whole_input


@dataclass
class Clip:
    """One row to make from an input: ``num_frames`` frames from ``start`` seconds."""

    id: str
    start: float
    num_frames: int


@dataclass
class InputPlan:
    """An input about to be encoded: its caption, its file (path or bytes) and the clips it gives
    (``duplicate_clips``: clips not planned because they would repeat another clip's frames)."""

    item: VideoInput
    caption: str
    source: str | bytes
    clips: list[Clip]
    text_embedding: torch.Tensor | None = field(default=None, repr=False)  # encoded once for all its clips
    duplicate_clips: int = 0


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
    # One resolution bucket (--height/--width, default 480x832) or several (``resolution_buckets`` as
    # "HxW,HxW" or [(h, w), ...], or automatic ones from ``max_area`` / ``bucket_step`` / ``aspect_range``).
    height: int | None = None
    width: int | None = None
    resolution_buckets: str | list | None = None
    max_area: int | None = None
    bucket_step: int | None = None
    aspect_range: str | tuple[float, float] | None = None
    bucket_no_upscale: bool = False
    # One frame bucket (--num_frames, default 77) or several (``frame_buckets`` as "1,17,33" or a list).
    num_frames: int | None = None
    frame_buckets: str | list | None = None
    frame_extraction: str = "head"
    clips_per_video: int | None = None
    fps: float = 16.0
    storage_dtype: str = "float32"
    samples_per_file: int = 64
    seed: int = 42
    video_backend: str | None = None
    device: str | None = None
    text_encoder_dtype: str = "auto"  # bfloat16 on GPU, float32 on CPU
    vae_dtype: str = "float32"
    # Decode processes ahead of the encoders (None: one fewer than the CPUs, at most 8; 0: decode in-process)
    # and captions per text-encoder batch. Neither changes a byte of the rows.
    num_workers: int | None = None
    text_batch_size: int = 8

    def __post_init__(self):
        super().__post_init__()
        if self.task not in ("t2v", "i2v"):
            raise ValueError(f"--task must be t2v or i2v, got {self.task!r}")
        self._check_frame_buckets()
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"--fps must be a positive number of frames per second (e.g. 16), got {self.fps}")
        self._check_resolution_buckets()
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"--storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {self.storage_dtype!r}")
        if self.samples_per_file < 1:
            raise ValueError("--samples_per_file must be at least 1")
        if self.num_workers is None:
            self.num_workers = default_num_workers()
        if self.num_workers < 0:
            raise ValueError(f"--num_workers must be 0 (decode in-process) or more, got {self.num_workers}")
        if self.text_batch_size < 1:
            raise ValueError(f"--text_batch_size must be at least 1, got {self.text_batch_size}")
        if (self.video_dataset is None) == (self.data_dir is None):
            raise ValueError("give exactly one input: --data_dir (merged folder) or --dataset_name (HF dataset)")

    def _check_frame_buckets(self) -> None:
        if self.frame_buckets is not None and self.num_frames is not None:
            raise ValueError("give either --num_frames (one frame bucket) or --frame_buckets, not both")
        if self.frame_buckets is None:
            self.num_frames = DEFAULT_NUM_FRAMES if self.num_frames is None else self.num_frames
            if self.num_frames < 1 or (self.num_frames - 1) % 4:
                raise ValueError(f"--num_frames must be 4k+1 for Wan's VAE (e.g. 77 or 81), got {self.num_frames}")
            self._frame_buckets = [self.num_frames]
        else:
            buckets = self.frame_buckets
            buckets = parse_int_list(buckets, "--frame_buckets") if isinstance(buckets, str) else sorted(set(buckets))
            wrong = [frames for frames in buckets if frames < 1 or (frames - 1) % 4]
            if wrong or not buckets:
                raise ValueError(f"--frame_buckets must all be 4k+1 for Wan's VAE (e.g. 1,17,33,49,81), got {wrong}")
            if max(buckets) == 1:
                raise ValueError("--frame_buckets needs a video bucket (more than 1 frame): 1 is the image bucket")
            self._frame_buckets = buckets
        if self.frame_extraction not in FRAME_EXTRACTIONS:
            raise ValueError(
                f"--frame_extraction must be one of {', '.join(FRAME_EXTRACTIONS)}, got {self.frame_extraction!r}"
            )
        if self.frame_extraction == "uniform" and (self.clips_per_video is None or self.clips_per_video < 1):
            raise ValueError(f"--frame_extraction uniform needs --clips_per_video K >= 1, got {self.clips_per_video}")
        if self.frame_extraction != "uniform" and self.clips_per_video is not None:
            raise ValueError("--clips_per_video applies only to --frame_extraction uniform")

    def _check_resolution_buckets(self) -> None:
        explicit, automatic = self.resolution_buckets is not None, self.max_area is not None
        if (explicit or automatic) and (self.height is not None or self.width is not None):
            raise ValueError(
                "give either --height/--width (one bucket) or --resolution_buckets / --max_area, not both"
            )
        if explicit and automatic:
            raise ValueError("give either --resolution_buckets or --max_area (automatic buckets), not both")
        if not automatic and (self.bucket_step is not None or self.aspect_range is not None):
            raise ValueError("--bucket_step and --aspect_range apply only to --max_area (automatic buckets)")
        if explicit:
            buckets = self.resolution_buckets
            buckets = (
                parse_resolution_buckets(buckets) if isinstance(buckets, str) else sorted(set(map(tuple, buckets)))
            )
            wrong = [f"{h}x{w}" for h, w in buckets if h <= 0 or w <= 0 or h % 16 or w % 16]
            if wrong or not buckets:
                raise ValueError(f"--resolution_buckets must be positive multiples of 16 (HEIGHTxWIDTH), got {wrong}")
        elif automatic:
            if self.bucket_step is not None and (self.bucket_step <= 0 or self.bucket_step % 16):
                raise ValueError(f"--bucket_step must be a positive multiple of 16, got {self.bucket_step}")
            # without --bucket_step, 16 until ``use_model_size_step`` knows the model's own step
            buckets = self._automatic_buckets(DEFAULT_BUCKET_STEP if self.bucket_step is None else self.bucket_step)
        else:
            self.height = DEFAULT_HEIGHT if self.height is None else self.height
            self.width = DEFAULT_WIDTH if self.width is None else self.width
            if self.height <= 0 or self.width <= 0 or self.height % 16 or self.width % 16:
                raise ValueError(
                    f"--height and --width must be positive multiples of 16, got {self.height}x{self.width}"
                )
            buckets = [(self.height, self.width)]
        self._resolution_buckets: list[Bucket] = buckets

    def _automatic_buckets(self, step: int) -> list[Bucket]:
        """The ``--max_area`` buckets with sides multiple of ``step``, or a ``ValueError`` when there are none."""
        flag = "--bucket_step" if self.bucket_step is not None else "the bucket step"
        if self.max_area < step * step:
            raise ValueError(f"--max_area must be at least {flag} squared ({step * step}), got {self.max_area}")
        aspect_range = self.aspect_range if self.aspect_range is not None else DEFAULT_ASPECT_RANGE
        if isinstance(aspect_range, str):
            aspect_range = parse_aspect_range(aspect_range)
        buckets = auto_resolution_buckets(self.max_area, step, tuple(aspect_range))
        if not buckets:
            raise ValueError(
                f"no {step}-pixel bucket of at most {self.max_area} pixels has an aspect in {aspect_range}"
            )
        return buckets

    def use_model_size_step(self, step: int) -> None:
        """With ``--max_area`` and no ``--bucket_step``, build the buckets on ``step``, what the model's frame
        sides must be multiples of (VAE downsampling x patch: 16 for Wan2.1, 32 for Wan2.2 TI2V-5B's 16x VAE), so
        the default never makes a bucket the model refuses. An explicit ``--bucket_step`` is kept as given."""
        if self.max_area is not None and self.bucket_step is None:
            self._resolution_buckets = self._automatic_buckets(math.lcm(DEFAULT_BUCKET_STEP, step))

    @property
    def resolution_bucket_list(self) -> list[Bucket]:
        """The resolution buckets, (height, width), sorted."""
        return self._resolution_buckets

    @property
    def frame_bucket_list(self) -> list[int]:
        """The frame buckets, ascending (1 is the image bucket)."""
        return self._frame_buckets

    @property
    def video_frame_buckets(self) -> list[int]:
        return [frames for frames in self._frame_buckets if frames > 1]

    @property
    def extracts_clips(self) -> bool:
        """Whether a video can give several rows (and rows carry ``clip_start_sec``)."""
        return self.frame_extraction != "head"

    @property
    def is_one_bucket(self) -> bool:
        """Today's run: one resolution, one frame count, one clip from t = 0."""
        return (
            self.resolution_buckets is None
            and self.max_area is None
            and self.frame_buckets is None
            and (not self.extracts_clips)
        )

    def bucket_settings(self) -> dict[str, Any] | None:
        """The bucket settings that change the rows (None for today's one-bucket run)."""
        if self.is_one_bucket and not self.bucket_no_upscale:
            return None
        return {
            "resolution_buckets": [list(bucket) for bucket in self._resolution_buckets],
            "frame_buckets": list(self._frame_buckets),
            "bucket_no_upscale": self.bucket_no_upscale,
            "frame_extraction": self.frame_extraction,
            "clips_per_video": self.clips_per_video,
        }


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
            features=latent_features(self.config.task, clips=self.config.extracts_clips),
        )

    def _split_generators(self, dl_manager):
        self.check_model()  # the buckets take the model's size step (see ``check_model``)
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"chunks": self.plan_chunks()})]

    def _generate_examples(self, chunks: list[list[VideoInput]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for chunk in chunks:
            for item in chunk:
                try:
                    plan = self.plan_input(item)
                except SkipInput as reason:
                    logger.warning("skipping %s: %s", item.file_name or item.id, reason)
                    continue
                for clip in plan.clips:
                    try:
                        yield clip.id, self.encode_clip(plan, clip)
                    except SkipInput as reason:
                        logger.warning("skipping %s: %s", clip.id, reason)
                        if reason.whole_input:
                            break

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

    def plan_chunks(self) -> ChunkPlan:
        """The inputs in listing order, cut into chunks of ``samples_per_file`` (one Parquet shard each, holding
        every clip of its inputs). The plan builds a chunk's records only when asked, so a listing of millions of
        rows stays small."""
        return self.source.plan(self.config.samples_per_file)

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

    def plan_input(self, item: VideoInput) -> InputPlan:
        """The clips ``item`` gives (one for an image or a head clip), or ``SkipInput`` with the reason it gives
        none. Only a video that has several frame buckets or clips to choose from is probed (its frame times
        read, no picture decoded): a one-bucket head run decodes exactly what it did before."""
        config = self.config
        if item.problem:
            raise SkipInput(item.problem)
        caption = choose_caption(item, config.seed)
        if caption is None:
            raise SkipInput("empty caption")
        if item.media_type == "image":
            if config.task == "i2v":
                raise SkipInput(IMAGE_FOR_I2V)
            if config.frame_buckets is not None and 1 not in config.frame_bucket_list:
                raise SkipInput(NO_IMAGE_BUCKET.format(buckets=",".join(map(str, config.frame_bucket_list))))
            return InputPlan(item, caption, self.source.video_for(item), [Clip(item.id, 0.0, 1)])
        source = self.source.video_for(item)
        video_buckets = config.video_frame_buckets
        if len(video_buckets) == 1 and not config.extracts_clips:
            return InputPlan(item, caption, source, [Clip(item.id, 0.0, video_buckets[0])])
        started = time.perf_counter()
        try:
            plan = plan_clips(
                read_frame_times(source, config.video_backend),
                config.fps,
                video_buckets,
                config.frame_extraction,
                config.clips_per_video or 1,
            )
        except (VideoDecodeError, ClipTooShortError) as error:
            raise SkipInput(str(error)) from error
        finally:
            self.timings["decode"] += time.perf_counter() - started
        if not config.extracts_clips:  # head: the input's own id, as one clip per input always had
            return InputPlan(item, caption, source, [Clip(item.id, 0.0, plan.num_frames)])
        clips = [Clip(clip_id(item.id, start), start, plan.num_frames) for start in plan.starts]
        if plan.duplicates:
            logger.warning(
                "%s: %d of its %d-frame clips would sample the same frames as another clip and were dropped "
                "(kept %d); the card counts them as duplicate_clips_dropped",
                item.file_name or item.id,
                plan.duplicates,
                plan.num_frames,
                len(clips),
            )
        return InputPlan(item, caption, source, clips, duplicate_clips=plan.duplicates)

    def encode_clip(self, plan: InputPlan, clip: Clip) -> dict[str, Any]:
        """The Parquet row of one clip of a planned input, or ``SkipInput`` with the reason it cannot be used."""
        self.encoders  # noqa: B018 -- loaded before the clock: not counted as decoding
        return self.encode_pixels(plan, clip, self.check_decoded(decode_pixels(self.pixel_job(plan, clip))))

    def pixel_job(self, plan: InputPlan, clip: Clip) -> PixelJob:
        """What decoding ``clip`` needs, as plain values a decode worker can run (``decode_workers``)."""
        config = self.config
        return PixelJob(
            source=plan.source,
            is_image=plan.item.media_type == "image",
            fps=config.fps,
            num_frames=clip.num_frames,
            start=clip.start,
            video_backend=config.video_backend,
            resolution_buckets=config.resolution_bucket_list,
            bucket_no_upscale=config.bucket_no_upscale,
        )

    def check_decoded(self, decoded: ClipPixels | ClipSkip) -> ClipPixels:
        """The pixels of a decoded clip, or ``SkipInput`` with the reason it gave none."""
        if isinstance(decoded, ClipSkip):
            raise SkipInput(decoded.reason, decoded.whole_input)
        self.timings["decode"] += decoded.seconds
        return decoded

    def encode_captions(self, plans: list[InputPlan]) -> None:
        """Encode the captions of ``plans`` not encoded yet as one text-encoder batch (each caption is padded to
        the encoder's full length with its mask, so its embedding is the one it would get alone)."""
        plans = [plan for plan in plans if plan.text_embedding is None]
        if not plans:
            return
        prompt_encoder = self.encoders[0]
        started = time.perf_counter()
        for plan, embedding in zip(plans, prompt_encoder([plan.caption for plan in plans]), strict=True):
            plan.text_embedding = embedding
        self.timings["text_encode"] += time.perf_counter() - started

    def encode_pixels(self, plan: InputPlan, clip: Clip, decoded: ClipPixels) -> dict[str, Any]:
        """The Parquet row of ``clip`` from its decoded pixels: the encoder half of ``encode_clip``."""
        config, item = self.config, plan.item
        prompt_encoder, vae_encoder, image_encoder = self.encoders
        pixels, height, width = decoded.pixels, decoded.height, decoded.width
        decoded_at = time.perf_counter()
        if plan.text_embedding is None:
            (plan.text_embedding,) = prompt_encoder([plan.caption])
        text_embedding = plan.text_embedding
        text_encoded = time.perf_counter()
        latent = vae_encoder(pixels)
        vae_encoded = time.perf_counter()
        self.timings["text_encode"] += text_encoded - decoded_at
        self.timings["vae_encode"] += vae_encoded - text_encoded
        image_columns = {}
        if image_encoder is not None:
            first_frame_latent, clip_feature = image_encoder(first_frame_image(pixels), clip.num_frames)
            image_columns = {
                **tensor_to_columns("first_frame_latent", first_frame_latent, config.storage_dtype),
                **(
                    tensor_to_columns("clip_feature", clip_feature, config.storage_dtype)
                    if clip_feature is not None
                    else empty_tensor_columns("clip_feature")
                ),
            }
            self.timings["image_encode"] += time.perf_counter() - vae_encoded
        is_image = item.media_type == "image"
        row = {
            "id": clip.id,
            **tensor_to_columns("vae_latent", latent, config.storage_dtype),
            **tensor_to_columns("text_embedding", text_embedding, config.storage_dtype),
            "file_name": item.file_name,
            "caption": plan.caption,
            "media_type": "image" if is_image else "video",
            "width": width,
            "height": height,
            "num_frames": clip.num_frames,
            "duration_sec": 0.0 if is_image else clip.num_frames / config.fps,
            "fps": float(config.fps),
            **image_columns,
        }
        if config.extracts_clips:
            row[CLIP_START_COLUMN] = float(clip.start)
        return row

    # -- checks and writing a Hub-ready folder ------------------------------------------------------------

    def check_model(self) -> PipelineConfigs:
        """The model's configs, checked against the frame size: a wrong path or a size the model cannot
        patchify is a ``ValueError`` before any input is listed or any weight loaded."""
        config = self.config
        configs = load_pipeline_configs(config.pretrained_model_name_or_path, config.revision)
        multiple_h, multiple_w = configs.spatial_multiple
        step = math.lcm(multiple_h, multiple_w)
        config.use_model_size_step(step)
        for height, width in config.resolution_bucket_list:
            if height % multiple_h or width % multiple_w:
                flags = "--height and --width" if config.height is not None else "resolution buckets"
                hint = f": pass --bucket_step {math.lcm(DEFAULT_BUCKET_STEP, step)}" if config.max_area else ""
                raise ValueError(
                    f"{flags} must be multiples of {multiple_h}x{multiple_w} for this model "
                    f"(VAE downsampling x patch size), got {height}x{width}{hint}"
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
