"""Decode the sampled frames of a video file (or its bytes) with decord, or PyAV where decord is missing.

Both backends first read the presentation timestamps of every frame, pick the frames with
``frame_sampling.sample_frame_indices`` and then decode only those, so a long source never sits in memory. A clip
that starts later in the video is decoded from the last keyframe at or before its first frame, not from the start:
the clips of a long video (``--frame_extraction chunk|uniform``) cost one pass over it, not one pass per clip, and
a keyframe restarts the decoder, so the pictures are the ones a decode from the start gives. Both
return the frames as a player shows them: the container's display matrix (how phones store portrait clips) is
applied, so one dataset never mixes orientations whichever decoder read each file.
Anything that makes a file unusable raises ``VideoDecodeError`` with a reason a person can act on; anything else
(a bug, running out of memory) propagates.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .frame_sampling import UPRIGHT, ClipTooShortError, Orientation, orient_frames, sample_frame_indices

VideoSource = str | bytes


# frames decoded per decord call when reading forward (bounds memory at source resolution)
_DECORD_RUN = 16
# a display matrix entry this small next to the largest one is a rounding error of a quarter turn
_MATRIX_TOLERANCE = 1e-3


class VideoDecodeError(ValueError):
    """The input cannot be used; ``str(error)`` is the reason recorded in ``skipped.jsonl``."""


@dataclass
class DecodedClip:
    frames: torch.Tensor  # uint8 [T, H, W, 3], the sampled frames at source resolution, as a player shows them
    indices: list[int]  # source frame indices that were sampled
    source_num_frames: int
    source_fps: float  # measured from the timestamps, not taken from container metadata
    source_width: int  # as shown: a portrait phone clip is narrower than tall, whatever its stored pictures
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


def decode_clip(
    source: VideoSource, fps: float, num_frames: int, backend: str | None = None, start: float = 0.0
) -> DecodedClip:
    """Decode ``num_frames`` frames sampled at ``fps`` from ``start`` seconds into ``source`` (a path or the
    file's bytes); only the sampled frames are kept.

    With no ``backend`` given, decord is tried first and PyAV gets a second chance at files decord cannot read
    (decord fails on some valid files, e.g. some small frame sizes); a file is unusable only if both fail.
    """
    backends = _backends_for(source, backend)
    errors = []
    for name in backends:
        try:
            return _DECODERS[name](source, fps, num_frames, start)
        except ClipTooShortError:
            raise  # the stream's timestamps decided it: another decoder reads the same timestamps
        except VideoDecodeError as error:
            errors.append(str(error))
    raise VideoDecodeError(errors[-1])  # the last decoder's reason (PyAV's messages are the clearer ones)


def read_frame_times(source: VideoSource, backend: str | None = None) -> np.ndarray:
    """The presentation time (seconds) of every frame of ``source``, ascending, without decoding a picture:
    what clip planning needs to know how long a video is."""
    errors = []
    for name in _backends_for(source, backend):
        try:
            return _FRAME_TIMES[name](source)
        except VideoDecodeError as error:
            errors.append(str(error))
    raise VideoDecodeError(errors[-1])


def _backends_for(source: VideoSource, backend: str | None) -> list[str]:
    _check_source(source)
    backends = [backend] if backend else available_backends()
    if not backends:
        raise ImportError("No video decoder found: `pip install decord` (x86_64) or `pip install av`.")
    unknown = set(backends) - set(_DECODERS)
    if unknown:
        raise ValueError(f"unknown video backend {unknown.pop()!r}; choose from {sorted(_DECODERS)}")
    return backends


def _check_source(source: VideoSource) -> None:
    if isinstance(source, bytes):
        if len(source) == 0:
            raise VideoDecodeError("empty file (0 bytes)")
        return
    if not os.path.exists(source):
        raise VideoDecodeError(f"file not found: {source}")
    if os.path.getsize(source) == 0:
        raise VideoDecodeError("empty file (0 bytes)")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""


@contextmanager
def _unusable_on(*errors: type[BaseException]) -> Iterator[None]:
    """Turn the errors a decoder raises for a file it cannot read into ``VideoDecodeError``; a bug or a
    MemoryError (PyAV's ENOMEM is both an ``FFmpegError`` and a ``MemoryError``) is not a property of the file."""
    try:
        yield
    except MemoryError:
        raise
    except errors as error:
        raise VideoDecodeError(f"cannot decode video ({type(error).__name__}: {_first_line(error)})") from error


def _orientation(matrix: Sequence[int] | None) -> Orientation:
    """The quarter turn and mirror of a display matrix (FFmpeg's nine int32 layout), or a skip reason."""
    if matrix is None:
        return UPRIGHT
    a, b, _, c, d = (float(value) for value in matrix[:5])
    scale = max(abs(a), abs(b), abs(c), abs(d))
    a, b, c, d = (
        0 if abs(value) <= _MATRIX_TOLERANCE * scale else int(math.copysign(1, value)) for value in (a, b, c, d)
    )
    kept_axes = b == c == 0 and a != 0 and d != 0
    swapped_axes = a == d == 0 and b != 0 and c != 0
    if not (kept_axes or swapped_axes):
        degrees = -math.degrees(math.atan2(float(matrix[1]), float(matrix[0])))  # FFmpeg's: counter-clockwise
        raise VideoDecodeError(
            f"display matrix turns the picture by {degrees:.0f} degrees: only quarter turns and mirrors can be "
            "undone; re-encode the clip upright"
        )
    return (a, b), (c, d)


def _left_after_decord(orientation: Orientation) -> Orientation:
    """What remains of ``orientation`` after decord's own correction, which turns the picture by the matrix's
    rotation angle R and ignores a mirror. With pixels as row vectors, ``shown = decord_pixel @ R.T @ orientation``."""
    (a, b), (c, d) = orientation
    # decord applies the rotation with the same first row, ((a, b), (-b, a)); undo it with its transpose
    return (a * a - b * c, a * b - b * d), (b * a + a * c, b * b + a * d)


def _pyav_display_matrix(frame) -> list[int] | None:
    side_data = frame.side_data.get("DISPLAYMATRIX")
    return None if side_data is None else np.frombuffer(bytes(side_data), dtype=np.int32).tolist()


def _pyav_orientation(source: VideoSource) -> Orientation:
    """The display matrix FFmpeg attaches to the first decoded picture (read once; it describes the stream)."""
    import av

    with _unusable_on(av.error.FFmpegError, OSError):
        with _open_pyav(av, source) as container:
            if not container.streams.video:
                raise VideoDecodeError("not a video: no video stream")
            for frame in container.decode(video=0):
                return _orientation(_pyav_display_matrix(frame))
    raise VideoDecodeError("not a video: no frames found")


def _decord_reader(source: VideoSource):
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # our skip reason says it once, without ffmpeg's noise
    # RuntimeError is decord's "Error reading <file>" (FFmpeg could not open it); DECORDError a failed check inside
    with _unusable_on(RuntimeError, decord.DECORDError):
        return decord.VideoReader(io.BytesIO(source) if isinstance(source, bytes) else source, num_threads=1)


def _decord_times(reader) -> np.ndarray:
    import decord

    with _unusable_on(decord.DECORDError):
        total = len(reader)
        if total == 0:
            raise VideoDecodeError("not a video: no frames found")
        return reader.get_frame_timestamp(np.arange(total))[:, 0]


def _frame_times_with_decord(source: VideoSource) -> np.ndarray:
    return _decord_times(_decord_reader(source))


def _decode_with_decord(source: VideoSource, fps: float, num_frames: int, start: float = 0.0) -> DecodedClip:
    import decord

    # decord turns quarter turns itself but ignores mirrors: read the matrix with PyAV to finish the job
    remaining = _left_after_decord(_pyav_orientation(source))
    reader = _decord_reader(source)
    frame_times = _decord_times(reader)
    total = len(frame_times)
    with _unusable_on(decord.DECORDError):
        indices = sample_frame_indices(frame_times, fps, num_frames, start)
        # Read forward in short contiguous runs from the keyframe at or before the first sampled frame, keeping the
        # sampled frames: decord seeks for sparse index lists, and a seek to a frame that is not a keyframe can land
        # on a neighbouring frame; a run that starts on a keyframe decodes in order from it, like the PyAV path.
        wanted, last = set(indices), max(indices)
        keyframes = reader.get_key_indices()
        first = max((index for index in keyframes if index <= indices[0]), default=0)
        kept: dict[int, np.ndarray] = {}
        for run in range(first, last + 1, _DECORD_RUN):
            batch = reader.get_batch(list(range(run, min(run + _DECORD_RUN, last + 1)))).asnumpy()
            kept.update({run + offset: frame for offset, frame in enumerate(batch) if run + offset in wanted})
    frames = orient_frames(torch.from_numpy(np.stack([kept[index] for index in indices])), remaining)
    return DecodedClip(
        frames=frames,
        indices=indices,
        source_num_frames=total,
        source_fps=_measured_fps(frame_times),
        source_width=frames.shape[2],
        source_height=frames.shape[1],
    )


def _decode_with_pyav(source: VideoSource, fps: float, num_frames: int, start: float = 0.0) -> DecodedClip:
    import av

    with _unusable_on(av.error.FFmpegError, OSError):
        return _read_with_pyav(av, source, fps, num_frames, start)


def _pyav_pts(av, source: VideoSource) -> tuple[np.ndarray, float]:
    """The presentation timestamps of every frame (ascending, in the stream's time base) and that time base."""
    with _open_pyav(av, source) as container:
        if not container.streams.video:
            raise VideoDecodeError("not a video: no video stream")
        stream = container.streams.video[0]
        # Packets carry the presentation times; demuxing them is cheap compared to decoding.
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0)
        # av >= 18.1.1 refuses to read a stream's attributes once its container is closed: read them here
        time_base = float(stream.time_base)
    if not pts:
        raise VideoDecodeError("not a video: no frames found")
    return np.asarray(pts, dtype=np.int64), time_base


def _pyav_times(av, source: VideoSource) -> np.ndarray:
    pts, time_base = _pyav_pts(av, source)
    return pts.astype(np.float64) * time_base


def _frame_times_with_pyav(source: VideoSource) -> np.ndarray:
    import av

    with _unusable_on(av.error.FFmpegError, OSError):
        return _pyav_times(av, source)


def _read_with_pyav(av, source: VideoSource, fps: float, num_frames: int, start: float = 0.0) -> DecodedClip:
    pts, time_base = _pyav_pts(av, source)
    frame_times = pts.astype(np.float64) * time_base
    indices = sample_frame_indices(frame_times, fps, num_frames, start)
    decoded, orientation = None, None
    if indices[0] > 0:
        decoded, orientation = _pyav_frames_from_keyframe(av, source, pts, indices)
    if decoded is None:  # a clip from the first frame, or a file whose seek does not land where it should
        decoded, orientation = _pyav_frames_from_start(av, source, indices)
    missing = set(indices).difference(decoded)
    if missing:
        raise VideoDecodeError(f"truncated video: frames {sorted(missing)[:5]} could not be decoded")
    frames = orient_frames(torch.from_numpy(np.stack([decoded[i] for i in indices])), orientation)
    return DecodedClip(
        frames=frames,
        indices=indices,
        source_num_frames=len(frame_times),
        source_fps=_measured_fps(frame_times),
        source_width=frames.shape[2],
        source_height=frames.shape[1],
    )


def _open_pyav(av, source: VideoSource):
    return av.open(io.BytesIO(source) if isinstance(source, bytes) else source, mode="r")


def _pyav_frames_from_start(
    av, source: VideoSource, indices: list[int]
) -> tuple[dict[int, np.ndarray], Orientation | None]:
    """The sampled frames, decoding from the first frame; a frame's index is its place in the decoded order."""
    wanted, last_wanted = set(indices), max(indices)
    decoded: dict[int, np.ndarray] = {}
    orientation = None
    with _open_pyav(av, source) as container:
        for position, frame in enumerate(container.decode(video=0)):
            if orientation is None:
                orientation = _orientation(_pyav_display_matrix(frame))
            if position in wanted:
                decoded[position] = frame.to_ndarray(format="rgb24")
            if position >= last_wanted:
                break
    return decoded, orientation


def _pyav_frames_from_keyframe(
    av, source: VideoSource, pts: np.ndarray, indices: list[int]
) -> tuple[dict[int, np.ndarray] | None, Orientation | None]:
    """The sampled frames, decoding from the keyframe at or before the first one (FFmpeg's backward seek); a
    frame's index is found from its timestamp. ``(None, None)`` when the seek cannot be trusted: the first picture
    after it comes later than the first sampled frame (some demuxers seek by decode time), or pictures carry
    timestamps the packets did not, or FFmpeg cannot seek in the stream, so the caller decodes from the start."""
    wanted, last_wanted = set(indices), max(indices)
    position_of = {int(value): position for position, value in enumerate(pts)}
    decoded: dict[int, np.ndarray] = {}
    orientation = None
    with _open_pyav(av, source) as container:
        stream = container.streams.video[0]
        try:
            container.seek(int(pts[indices[0]]), backward=True, any_frame=False, stream=stream)
        except MemoryError:
            raise
        except av.error.FFmpegError:  # a stream FFmpeg cannot seek in: decode it from the start, as before
            return None, None
        for frame in container.decode(stream):
            position = position_of.get(frame.pts) if frame.pts is not None else None
            if position is None or (orientation is None and position > indices[0]):
                return None, None
            if orientation is None:
                orientation = _orientation(_pyav_display_matrix(frame))
            if position in wanted:
                decoded[position] = frame.to_ndarray(format="rgb24")
            if position >= last_wanted:
                break
    return decoded, orientation


def _measured_fps(frame_times: np.ndarray) -> float:
    if len(frame_times) < 2:
        return 0.0
    return float(1.0 / np.median(np.diff(np.sort(frame_times))))


_DECODERS = {"decord": _decode_with_decord, "pyav": _decode_with_pyav}
_FRAME_TIMES = {"decord": _frame_times_with_decord, "pyav": _frame_times_with_pyav}
