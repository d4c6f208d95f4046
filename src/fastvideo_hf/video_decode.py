"""Decode the sampled frames of a video file (or its bytes) with decord, or PyAV where decord is missing.

Both backends first read the presentation timestamps of every frame, pick the frames with
``frame_sampling.sample_frame_indices`` and then decode only those, so a long source never sits in memory.
Anything that makes a file unusable raises ``VideoDecodeError`` with a reason a person can act on.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import torch

from .frame_sampling import ClipTooShortError, sample_frame_indices

VideoSource = str | bytes


# frames decoded per decord call when reading forward (bounds memory at source resolution)
_DECORD_RUN = 16


class VideoDecodeError(ValueError):
    """The input cannot be used; ``str(error)`` is the reason recorded in ``skipped.jsonl``."""


@dataclass
class DecodedClip:
    frames: torch.Tensor  # uint8 [T, H, W, 3], the sampled frames at source resolution
    indices: list[int]  # source frame indices that were sampled
    source_num_frames: int
    source_fps: float  # measured from the timestamps, not taken from container metadata
    source_width: int
    source_height: int


def available_backends() -> list[str]:
    backends = []
    try:
        import decord  # noqa: F401

        backends.append("decord")
    except ImportError:
        pass
    try:
        import av  # noqa: F401

        backends.append("pyav")
    except ImportError:
        pass
    return backends


def decode_clip(source: VideoSource, fps: float, num_frames: int, backend: str | None = None) -> DecodedClip:
    """Decode ``num_frames`` frames sampled at ``fps`` from the start of ``source`` (a path or the file's bytes).

    With no ``backend`` given, decord is tried first and PyAV gets a second chance at files decord cannot read
    (decord fails on some valid files, e.g. some small frame sizes); a file is unusable only if both fail.
    """
    _check_source(source)
    backends = [backend] if backend else available_backends()
    if not backends:
        raise ImportError("No video decoder found: `pip install decord` (x86_64) or `pip install av`.")
    unknown = set(backends) - set(_DECODERS)
    if unknown:
        raise ValueError(f"unknown video backend {unknown.pop()!r}; choose from {sorted(_DECODERS)}")
    errors = []
    for name in backends:
        try:
            return _DECODERS[name](source, fps, num_frames)
        except ClipTooShortError:
            raise  # the stream's timestamps decided it: another decoder reads the same timestamps
        except VideoDecodeError as error:
            errors.append(str(error))
        except Exception as error:  # decoders raise many types for broken files; all mean "unusable input"
            errors.append(f"cannot decode video ({type(error).__name__}: {_first_line(error)})")
    raise VideoDecodeError(errors[-1])  # the last decoder's reason (PyAV's messages are the clearer ones)


def _check_source(source: VideoSource) -> None:
    if isinstance(source, bytes):
        if len(source) == 0:
            raise VideoDecodeError("empty file (0 bytes)")
        return
    if not os.path.exists(source):
        raise VideoDecodeError(f"file not found: {source}")
    if os.path.getsize(source) == 0:
        raise VideoDecodeError("empty file (0 bytes)")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""


def _decode_with_decord(source: VideoSource, fps: float, num_frames: int) -> DecodedClip:
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # our skip reason says it once, without ffmpeg's noise
    reader = decord.VideoReader(io.BytesIO(source) if isinstance(source, bytes) else source, num_threads=1)
    total = len(reader)
    if total == 0:
        raise VideoDecodeError("not a video: no frames found")
    frame_times = reader.get_frame_timestamp(np.arange(total))[:, 0]
    indices = sample_frame_indices(frame_times, fps, num_frames)
    # Read forward in short contiguous runs, keeping the sampled frames: decord seeks for sparse index lists,
    # and a seek can land on a neighbouring frame; contiguous reads decode in order, like the PyAV path.
    wanted, last = set(indices), max(indices)
    kept: dict[int, np.ndarray] = {}
    for start in range(0, last + 1, _DECORD_RUN):
        batch = reader.get_batch(list(range(start, min(start + _DECORD_RUN, last + 1)))).asnumpy()
        kept.update({start + offset: frame for offset, frame in enumerate(batch) if start + offset in wanted})
    frames = torch.from_numpy(np.stack([kept[index] for index in indices]))
    return DecodedClip(
        frames=frames,
        indices=indices,
        source_num_frames=total,
        source_fps=_measured_fps(frame_times),
        source_width=frames.shape[2],
        source_height=frames.shape[1],
    )


def _decode_with_pyav(source: VideoSource, fps: float, num_frames: int) -> DecodedClip:
    import av

    def open_container():
        return av.open(io.BytesIO(source) if isinstance(source, bytes) else source, mode="r")

    with open_container() as container:
        if not container.streams.video:
            raise VideoDecodeError("not a video: no video stream")
        stream = container.streams.video[0]
        # Packets carry the presentation times; demuxing them is cheap compared to decoding.
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0)
    if not pts:
        raise VideoDecodeError("not a video: no frames found")
    frame_times = np.asarray(pts, dtype=np.float64) * float(stream.time_base)
    indices = sample_frame_indices(frame_times, fps, num_frames)
    wanted = set(indices)
    last_wanted = max(indices)
    decoded: dict[int, np.ndarray] = {}
    with open_container() as container:
        for position, frame in enumerate(container.decode(video=0)):
            if position in wanted:
                decoded[position] = frame.to_ndarray(format="rgb24")
            if position >= last_wanted:
                break
    missing = wanted.difference(decoded)
    if missing:
        raise VideoDecodeError(f"truncated video: frames {sorted(missing)[:5]} could not be decoded")
    frames = torch.from_numpy(np.stack([decoded[i] for i in indices]))
    return DecodedClip(
        frames=frames,
        indices=indices,
        source_num_frames=len(pts),
        source_fps=_measured_fps(frame_times),
        source_width=frames.shape[2],
        source_height=frames.shape[1],
    )


def _measured_fps(frame_times: np.ndarray) -> float:
    if len(frame_times) < 2:
        return 0.0
    return float(1.0 / np.median(np.diff(np.sort(frame_times))))


_DECODERS = {"decord": _decode_with_decord, "pyav": _decode_with_pyav}
