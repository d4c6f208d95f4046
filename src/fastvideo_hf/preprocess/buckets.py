"""Which training shape each input gets: resolution buckets (H x W), frame buckets, and the clips of a video.

A run has a set of resolution buckets and a set of frame buckets; every row's latent has one (frames, height,
width) shape of theirs, and training batches rows of one shape together. ``--height/--width`` and
``--num_frames`` are the one-bucket case (today's runs).

- Resolution: an input goes to the bucket nearest its aspect ratio as shown (``log(w/h)`` distance, so portrait
  and landscape are treated alike), then is resized to cover it and centre-cropped. With ``no_upscale`` an input
  too small for that bucket goes to the largest bucket it covers, or is skipped.
- Automatic buckets follow musubi-tuner: for every width W (a multiple of ``step``), the tallest H (a multiple of
  ``step``) with ``H x W <= max_area``, and the same with H and W swapped; those whose aspect ``W/H`` lies in
  the range are kept, and of buckets with the same aspect only the largest.
- Frames: a video takes the largest video bucket (more than one frame) it fills from its start at the sampling
  fps; bucket 1 is the image bucket.
- Clips: ``head`` takes one clip from t = 0; ``chunk`` back-to-back clips of the bucket's length until the video
  ends; ``uniform`` ``clips_per_video`` clips with evenly spaced starts from 0 to the last start that fits. A clip
  that would sample exactly the frames of an earlier one is dropped and counted (``ClipPlan.duplicates``): on a
  video barely longer than its bucket, evenly spaced starts fall within one frame interval, and K copies of one
  clip would weigh it K times in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .frame_sampling import ClipTooShortError, clip_fits, sample_frame_indices, stream_end

FRAME_EXTRACTIONS = ("head", "chunk", "uniform")
Bucket = tuple[int, int]  # (height, width) in pixels


class TooSmallForBucketsError(ValueError):
    """With ``--bucket_no_upscale``, an input smaller than every resolution bucket."""


def parse_resolution_buckets(text: str) -> list[Bucket]:
    """``"480x832,832x480"`` -> ``[(480, 832), (832, 480)]`` (height x width), or a ``ValueError`` saying why."""
    buckets = []
    for part in text.split(","):
        fields = part.strip().lower().split("x")
        if len(fields) != 2 or not all(field.strip().isdigit() for field in fields):
            raise ValueError(f"--resolution_buckets takes HEIGHTxWIDTH pairs like 480x832,832x480, got {part!r}")
        buckets.append((int(fields[0]), int(fields[1])))
    return sorted(set(buckets))


def parse_int_list(text: str, flag: str) -> list[int]:
    """``"1,17,33"`` -> ``[1, 17, 33]`` (sorted, unique), or a ``ValueError`` naming ``flag``."""
    parts = [part.strip() for part in text.split(",")]
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(f"{flag} takes comma-separated whole numbers like 1,17,33,49,81, got {text!r}")
    return sorted({int(part) for part in parts})


def parse_aspect_range(text: str) -> tuple[float, float]:
    """``"0.5,2.0"`` -> ``(0.5, 2.0)``: the smallest and largest width/height of automatic buckets."""
    parts = text.split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"--aspect_range takes MIN,MAX width/height ratios like 0.5,2.0, got {text!r}") from None
    if not (0 < low <= high and math.isfinite(high)):
        raise ValueError(f"--aspect_range needs 0 < MIN <= MAX, got {text!r}")
    return low, high


def auto_resolution_buckets(max_area: int, step: int, aspect_range: tuple[float, float]) -> list[Bucket]:
    """Buckets of about ``max_area`` pixels (musubi-tuner's rule, see the module docstring), sorted."""
    low, high = aspect_range
    candidates = set()
    for side in range(step, max_area // step + 1, step):
        other = (max_area // side) // step * step
        if other >= step:
            candidates.update({(side, other), (other, side)})
    largest: dict[Fraction, Bucket] = {}
    for height, width in candidates:
        aspect = Fraction(width, height)
        if low - 1e-9 <= float(aspect) <= high + 1e-9:
            kept = largest.get(aspect)
            if kept is None or height * width > kept[0] * kept[1]:
                largest[aspect] = (height, width)
    return sorted(largest.values())


def choose_resolution_bucket(buckets: Sequence[Bucket], height: int, width: int, no_upscale: bool = False) -> Bucket:
    """The bucket for a ``height x width`` input as shown: nearest in aspect (ties: the larger); with
    ``no_upscale``, when that one would be upscaled, the largest bucket the input covers."""
    aspect = math.log(width / height)

    def nearest(candidates):
        return min(candidates, key=lambda b: (abs(math.log(b[1] / b[0]) - aspect), -b[0] * b[1], b))

    bucket = nearest(buckets)
    if not no_upscale or (bucket[0] <= height and bucket[1] <= width):
        return bucket
    covered = [b for b in buckets if b[0] <= height and b[1] <= width]
    if not covered:
        smallest = min(buckets, key=lambda b: (b[0] * b[1], b))
        raise TooSmallForBucketsError(
            f"too small: {width}x{height} is smaller than every resolution bucket (the smallest is "
            f"{smallest[1]}x{smallest[0]}) and --bucket_no_upscale is set"
        )
    area = max(b[0] * b[1] for b in covered)
    return nearest([b for b in covered if b[0] * b[1] == area])


@dataclass(frozen=True)
class ClipPlan:
    """The clips a video gives: each ``num_frames`` frames long, starting at ``starts`` (seconds);
    ``duplicates`` clips were dropped because they would sample the same frames as a kept one."""

    num_frames: int
    starts: list[float]
    duplicates: int = 0


def distinct_clips(frame_times: Sequence[float], fps: float, num_frames: int, starts: Sequence[float]) -> list[float]:
    """``starts`` without those whose clip samples exactly the frames of an earlier start's clip (the same rows'
    bytes: a start a fraction of a frame later picks the same frames)."""
    kept, seen = [], set()
    for start in starts:
        frames = tuple(sample_frame_indices(frame_times, fps, num_frames, start))
        if frames not in seen:
            seen.add(frames)
            kept.append(start)
    return kept


def plan_clips(
    frame_times: Sequence[float],
    fps: float,
    video_buckets: Sequence[int],
    extraction: str = "head",
    clips_per_video: int = 1,
) -> ClipPlan:
    """The frame bucket and clip starts of a video whose frames are shown at ``frame_times`` (seconds); no two
    clips sample the same frames (``ClipPlan.duplicates`` counts the clips dropped for that).

    Raises ``ClipTooShortError`` (with the reason) when the video is shorter than the smallest video bucket.
    """
    end = stream_end(frame_times, fps)
    fitting = [frames for frames in video_buckets if clip_fits(end, fps, frames)]
    if not fitting:
        sample_frame_indices(frame_times, fps, min(video_buckets))  # raises with the reason
        raise ClipTooShortError(f"too short for {min(video_buckets)} frames")  # pragma: no cover (it raised)
    num_frames = max(fitting)
    if extraction == "head":
        return ClipPlan(num_frames, [0.0])
    if extraction == "chunk":
        length = num_frames / fps
        starts, index = [], 0
        while clip_fits(end, fps, num_frames, index * length):
            starts.append(index * length)
            index += 1
        # back-to-back windows sample different frames unless one source frame is shown across both (a gap in
        # a variable-rate stream)
        kept = distinct_clips(frame_times, fps, num_frames, starts)
        return ClipPlan(num_frames, kept, len(starts) - len(kept))
    if extraction == "uniform":
        # the last start that still fits, to the millisecond (ids print starts to the millisecond)
        latest = math.floor((end - (num_frames - 1) / fps) * 1000) / 1000
        while latest > 0 and not clip_fits(end, fps, num_frames, latest):
            latest = round(latest - 0.001, 3)
        latest = max(0.0, latest)
        spaced = np.linspace(0.0, latest, clips_per_video) if clips_per_video > 1 else np.zeros(1)
        # starts to the millisecond, as ids print them; equal starts sample equal frames, so they go too
        kept = distinct_clips(frame_times, fps, num_frames, [round(start, 3) for start in spaced.tolist()])
        return ClipPlan(num_frames, kept, clips_per_video - len(kept))
    raise ValueError(f"--frame_extraction must be one of {FRAME_EXTRACTIONS}, got {extraction!r}")


def format_start(start: float) -> str:
    """A clip start as it appears in row ids: seconds to the millisecond."""
    return f"{start:.3f}"


def clip_id(input_id: str, start: float) -> str:
    """The id of the clip of ``input_id`` that starts at ``start`` seconds: ``<input id>@<start>``."""
    return f"{input_id}@{format_start(start)}"
