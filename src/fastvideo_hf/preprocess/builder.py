"""A ``datasets`` builder that turns raw videos + captions into latents and prompt embeddings for finetuning.

It reads like any ``datasets`` builder: ``VideoLatentsConfig`` holds the knobs, ``_info`` declares the features
(from ``schema``), ``_split_generators`` lists the inputs and cuts them into shard-sized chunks, and
``_generate_examples`` yields ``(id, row)`` for every clip of every input. Everything that depends on the model
comes from its family (``models``): ``check_model`` reads its ``ModelSpec`` (configs only) and checks the frame
counts and sizes against it, and the prompt, video and image-conditioning encoders are the family's.

``rows(chunk, decoder)`` is the one stream of rows: inputs are planned and their captions encoded
``text_batch_size`` at a time, then each clip is decoded (in-process, or ahead in ``decode_workers.DecodeWorkers``,
results taken in submission order) and encoded in listing order, so the rows are the same bytes whatever the
number of workers. ``_generate_examples`` and the resumable writer (``writer.write_to_folder``: rank-sharded
Parquet shards, ``skipped.jsonl`` and the dataset card, a folder that plain ``load_dataset`` reads and that can
be pushed to the Hub as is) both consume it. An input gives one row per clip: ``plan_input`` picks its frame
bucket and clip starts (``buckets``), so only the frames of the clip being encoded are ever in memory.

Usable from Python::

    builder = VideoLatents(task="t2v", pretrained_model_name_or_path="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                           data_dir="my_videos", height=480, width=832, num_frames=77)
    write_to_folder(builder, "my_latents")  # from fastvideo_hf.preprocess.writer

or with buckets: ``resolution_buckets="480x832,832x480,624x624", frame_buckets="1,17,33,49,81",
frame_extraction="chunk"``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple

import datasets
import torch

from ..models import ModelSpec, family_titles, load_model_spec
from ..models.family import ImageConditionEncoder, PromptEncoder, VideoEncoder
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
from .decode_workers import ClipPixels, DecodeWorkers, PixelJob, decode_pixels, default_num_workers
from .frame_sampling import ClipTooShortError, first_frame_image
from .input_plan import Clip, InputDone, InputPlan, RowEntry, Skipped
from .sources import ChunkPlan, HFDatasetSource, MergedFolderSource, VideoInput, choose_caption
from .video_decode import VideoDecodeError, read_frame_times

logger = logging.getLogger(__name__)

# Latent rows are megabytes each: flush a Parquet row group every few rows to keep memory flat.
WRITER_BATCH_SIZE = 4
ENCODER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# today's one-bucket defaults (FastVideo's Wan2.1 T2V 1.3B recipe)
DEFAULT_HEIGHT, DEFAULT_WIDTH, DEFAULT_NUM_FRAMES = 480, 832, 77
DEFAULT_BUCKET_STEP, DEFAULT_ASPECT_RANGE = 16, (0.5, 2.0)
IMAGE_FOR_I2V = "a still image has no motion to learn for image-to-video"
NO_IMAGE_BUCKET = "no image bucket: a still image is a 1-frame row, and --frame_buckets {buckets} has no 1 (add it)"


class Encoders(NamedTuple):
    """The model family's frozen encoders of one run (``image_condition`` only for image-to-video)."""

    prompt: PromptEncoder
    video: VideoEncoder
    image_condition: ImageConditionEncoder | None


@dataclass
class VideoLatentsConfig(datasets.BuilderConfig):
    """Knobs of a preprocessing run; the defaults are FastVideo's Wan2.1 T2V 1.3B recipe (77x480x832 at 16 fps).
    ``fastvideo-hf preprocess`` takes its flags' defaults from these fields."""

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

    def __post_init__(self) -> None:
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
        # the frame counts the model's VAE takes are checked by ``VideoLatents.check_model``, once it is known
        if self.frame_buckets is None:
            self.num_frames = DEFAULT_NUM_FRAMES if self.num_frames is None else self.num_frames
            self._frame_buckets = [self.num_frames]
        else:
            buckets = self.frame_buckets
            buckets = parse_int_list(buckets, "--frame_buckets") if isinstance(buckets, str) else sorted(set(buckets))
            if not buckets or max(buckets) == 1:
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


class VideoLatents(datasets.GeneratorBasedBuilder):
    BUILDER_CONFIG_CLASS = VideoLatentsConfig
    DEFAULT_WRITER_BATCH_SIZE = WRITER_BATCH_SIZE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config.pretrained_model_name_or_path is None:
            raise ValueError(
                f"pretrained_model_name_or_path is required (a diffusers-format {family_titles()} pipeline folder "
                "or Hub id)"
            )
        self._source = None
        self._spec: ModelSpec | None = None
        self._encoders: Encoders | None = None
        self.timings: dict[str, float] = defaultdict(float)

    # -- the datasets builder interface ---------------------------------------------------------------------

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="VAE latents and prompt embeddings of video clips, for finetuning.",
            features=latent_features(self.config.task, clips=self.config.extracts_clips),
        )

    def _split_generators(self, dl_manager):
        self.check_model()  # the buckets take the model's size step (see ``check_model``)
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"chunks": self.plan_chunks()})]

    def _generate_examples(self, chunks: list[list[VideoInput]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for chunk in chunks:
            for _, row_id, value in self.rows(chunk):
                if isinstance(value, dict):
                    yield row_id, value

    # -- inputs -------------------------------------------------------------------------------------------

    @property
    def source(self) -> HFDatasetSource | MergedFolderSource:
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

    # -- the model ------------------------------------------------------------------------------------------

    def check_model(self) -> ModelSpec:
        """The model's facts, read from its configs and checked against the settings: a wrong path, a frame count
        its VAE does not take or a size it cannot patchify is a ``ValueError`` before any input is listed or any
        weight loaded. With ``--max_area`` and no ``--bucket_step`` the buckets take the model's size step."""
        config = self.config
        spec = load_model_spec(config.pretrained_model_name_or_path, config.revision)
        self._check_frames(spec)
        multiple_h, multiple_w = spec.spatial_multiple
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
        self._spec = spec
        return spec

    def _check_frames(self, spec: ModelSpec) -> None:
        """Every frame bucket is a count the model's VAE takes as is (``temporal * k + 1``); the examples in the
        message are counts it takes."""
        config = self.config
        wrong = [frames for frames in config.frame_bucket_list if not spec.takes_frames(frames)]
        if not wrong:
            return
        rule, vae, temporal = (
            spec.family.frame_rule(spec),
            f"{spec.family.title}'s VAE",
            spec.vae_scale_factor_temporal,
        )
        if config.frame_buckets is None:
            near_default = (DEFAULT_NUM_FRAMES - 1) // temporal * temporal + 1
            examples = f"{near_default} or {near_default + temporal}"
            raise ValueError(f"--num_frames must be {rule} for {vae} (e.g. {examples}), got {config.num_frames}")
        examples = ",".join(str(1 + temporal * k) for k in (0, 4, 8, 12, 20))
        raise ValueError(f"--frame_buckets must all be {rule} for {vae} (e.g. {examples}), got {wrong}")

    @property
    def spec(self) -> ModelSpec:
        """The model's ``ModelSpec``, read and checked by ``check_model`` on first use."""
        return self._spec if self._spec is not None else self.check_model()

    def _device(self) -> torch.device:
        if self.config.device:
            return torch.device(self.config.device)
        if torch.cuda.is_available():
            from .distributed import local_rank

            return torch.device("cuda", local_rank())
        return torch.device("cpu")

    @property
    def encoders(self) -> Encoders:
        """The family's encoders, loaded on first use, so a resume with nothing left to do never loads a model."""
        if self._encoders is None:
            config, device, family = self.config, self._device(), self.spec.family
            text_dtype = config.text_encoder_dtype
            if text_dtype == "auto":
                text_dtype = "bfloat16" if device.type == "cuda" else "float32"
            model, revision = config.pretrained_model_name_or_path, config.revision
            video_encoder = family.video_encoder(model, revision, device, ENCODER_DTYPES[config.vae_dtype])
            image_condition_encoder = None
            if config.task == "i2v":
                image_condition_encoder = family.image_condition_encoder(
                    model, video_encoder, revision, device, ENCODER_DTYPES[text_dtype]
                )
            self._encoders = Encoders(
                family.prompt_encoder(model, revision, device, ENCODER_DTYPES[text_dtype]),
                video_encoder,
                image_condition_encoder,
            )
        return self._encoders

    # -- the rows -------------------------------------------------------------------------------------------

    def rows(self, chunk: list[VideoInput], decoder: DecodeWorkers | None = None) -> Iterator[RowEntry]:
        """The rows of ``chunk`` in listing order, as ``(input, id, value)``: per input a Parquet row per clip made
        (its clip's id), a ``Skipped`` for the input (its id) or for a clip (the clip's id, or the input's when the
        reason holds for all its clips), then ``InputDone``. Clips are decoded in this process just before they
        are encoded, or ahead in ``decoder``'s worker processes: the same rows either way."""

        def clip_jobs() -> Iterator[tuple[tuple[VideoInput, InputPlan | Skipped, Clip | None], PixelJob | None]]:
            for item, plan in self._planned(chunk):
                if isinstance(plan, InputPlan):
                    for clip in plan.clips:
                        if plan.given_up:
                            break
                        yield (item, plan, clip), self.pixel_job(plan, clip)
                yield (item, plan, None), None  # the input is done

        if decoder is None:
            decoded = ((key, None if job is None else decode_pixels(job)) for key, job in clip_jobs())
        else:
            decoded = decoder.imap(clip_jobs())
        for (item, plan, clip), pixels in decoded:
            if clip is None:
                if isinstance(plan, Skipped):
                    yield self._skip(item, item.id, plan)
                    yield item, item.id, InputDone()
                else:
                    yield item, item.id, InputDone(plan.duplicate_clips)
            elif plan.given_up:
                continue  # decoded ahead before its input was given up
            elif isinstance(pixels, Skipped):
                plan.given_up = pixels.whole_input
                yield self._skip(item, item.id if pixels.whole_input else clip.id, pixels)
            else:
                self.timings["decode"] += pixels.seconds
                yield item, clip.id, self.encode_pixels(plan, clip, pixels)

    @staticmethod
    def _skip(item: VideoInput, skipped_id: str, skipped: Skipped) -> RowEntry:
        """The stream's entry of a skip, logged once here for every consumer of the stream."""
        shown = skipped_id if skipped_id != item.id else item.file_name or item.id
        logger.warning("skipping %s: %s", shown, skipped.reason)
        return item, skipped_id, skipped

    def _planned(self, chunk: list[VideoInput]) -> Iterator[tuple[VideoInput, InputPlan | Skipped]]:
        """Each input of ``chunk`` with its plan (or why it has none), planned and caption-encoded
        ``text_batch_size`` inputs at a time."""
        inputs = iter(chunk)
        while batch := list(islice(inputs, self.config.text_batch_size)):
            planned = [(item, self.plan_input(item)) for item in batch]
            self.encode_captions([plan for _, plan in planned if isinstance(plan, InputPlan)])
            yield from planned

    def plan_input(self, item: VideoInput) -> InputPlan | Skipped:
        """The clips ``item`` gives (one for an image or a head clip), or why it gives none. Only a video that has
        several frame buckets or clips to choose from is probed (its frame times read, no picture decoded): a
        one-bucket head run decodes exactly what it did before."""
        config = self.config
        if item.problem:
            return Skipped(item.problem)
        caption = choose_caption(item, config.seed)
        if caption is None:
            return Skipped("empty caption")
        if item.media_type == "image":
            if config.task == "i2v":
                return Skipped(IMAGE_FOR_I2V)
            if config.frame_buckets is not None and 1 not in config.frame_bucket_list:
                return Skipped(NO_IMAGE_BUCKET.format(buckets=",".join(map(str, config.frame_bucket_list))))
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
            return Skipped(str(error))
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

    def encode_captions(self, plans: list[InputPlan]) -> None:
        """Encode the captions of ``plans`` not encoded yet as one text-encoder batch (each caption is padded to
        the encoder's full length with its mask, so its embedding is the one it would get alone)."""
        plans = [plan for plan in plans if plan.text_embedding is None]
        if not plans:
            return
        prompt_encoder = self.encoders.prompt
        started = time.perf_counter()
        for plan, embedding in zip(plans, prompt_encoder([plan.caption for plan in plans]), strict=True):
            plan.text_embedding = embedding
        self.timings["text_encode"] += time.perf_counter() - started

    def encode_pixels(self, plan: InputPlan, clip: Clip, decoded: ClipPixels) -> dict[str, Any]:
        """The Parquet row of ``clip`` from its decoded pixels and its input's caption embedding."""
        config, item = self.config, plan.item
        encoders = self.encoders
        pixels, height, width = decoded.pixels, decoded.height, decoded.width
        started = time.perf_counter()
        latent = encoders.video(pixels)
        vae_encoded = time.perf_counter()
        self.timings["vae_encode"] += vae_encoded - started
        image_columns = {}
        if encoders.image_condition is not None:
            for name, tensor in encoders.image_condition(first_frame_image(pixels), clip.num_frames).items():
                image_columns.update(
                    empty_tensor_columns(name)
                    if tensor is None
                    else tensor_to_columns(name, tensor, config.storage_dtype)
                )
            self.timings["image_encode"] += time.perf_counter() - vae_encoded
        is_image = item.media_type == "image"
        row = {
            "id": clip.id,
            **tensor_to_columns("vae_latent", latent, config.storage_dtype),
            **tensor_to_columns("text_embedding", plan.text_embedding, config.storage_dtype),
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
