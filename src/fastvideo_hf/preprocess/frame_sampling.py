"""Which source frames to take, how to show them upright, and how to fit them to the training size.

Sampling works on the real presentation timestamps of the stream, never on fps values claimed by metadata: the
frame shown at time ``t`` is the last frame whose timestamp is <= ``t``. For a constant-rate source this is
``floor(j * source_fps / fps)``; for variable-rate sources it still picks what a viewer would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# Where a container's display matrix sends the picture's axes: ((a, b), (c, d)) with entries -1, 0 or 1. The coded
# pixel (x, y) is shown at (a*x + c*y, b*x + d*y), up to a shift: FFmpeg's DISPLAYMATRIX layout, an mp4 tkhd's.
Orientation = tuple[tuple[int, int], tuple[int, int]]
UPRIGHT: Orientation = ((1, 0), (0, 1))

# Timestamps are rounded to the stream's time base; this keeps 1/16 s from landing a hair before a frame.
_TIME_EPSILON = 1e-4


class ClipTooShortError(ValueError):
    """The stream does not cover ``num_frames`` frames at the sampling fps."""


def stream_end(frame_times: Sequence[float], fps: float) -> float:
    """When the last frame stops being shown, in seconds from the first frame (its duration is the median one)."""
    times = np.asarray(frame_times, dtype=np.float64)
    if times.size == 0:
        return 0.0
    times = times - times[0]
    frame_duration = float(np.median(np.diff(times))) if times.size > 1 else 1.0 / fps
    return float(times[-1] + frame_duration)


def clip_fits(end: float, fps: float, num_frames: int, start: float = 0.0) -> bool:
    """Whether ``num_frames`` frames at ``fps`` from ``start`` all fall before ``end`` (see ``stream_end``)."""
    return start + (num_frames - 1) / fps < end - _TIME_EPSILON


def sample_frame_indices(frame_times: Sequence[float], fps: float, num_frames: int, start: float = 0.0) -> list[int]:
    """Indices of the frames on screen at ``start, start + 1/fps, ..., start + (num_frames - 1)/fps`` seconds.

    ``frame_times`` are presentation times in seconds, ascending, in any origin (the first frame is t=0).
    Raises ``ClipTooShortError`` when the last sampling time falls after the end of the last frame.
    """
    times = np.asarray(frame_times, dtype=np.float64)
    if times.size == 0:
        raise ClipTooShortError("the video has no frames")
    times = times - times[0]
    frame_duration = float(np.median(np.diff(times))) if times.size > 1 else 1.0 / fps
    end = stream_end(times, fps)
    needed = start + (num_frames - 1) / fps
    if not clip_fits(end, fps, num_frames, start):
        source_fps = 1.0 / frame_duration if frame_duration > 0 else float("nan")
        offset = f" from {start:.3f}s" if start else ""
        raise ClipTooShortError(
            f"too short: {times.size} frames at {source_fps:.3g} fps last {end:.3f}s, "
            f"{num_frames} frames at {fps:g} fps{offset} need more than {needed:.3f}s"
        )
    targets = start + np.arange(num_frames, dtype=np.float64) / fps
    indices = np.searchsorted(times, targets + _TIME_EPSILON, side="right") - 1
    return indices.tolist()


def orient_frames(frames: torch.Tensor, orientation: Orientation) -> torch.Tensor:
    """uint8 frames ``[T, H, W, 3]`` as stored -> as a player shows them through ``orientation``.

    Phones store a portrait clip as landscape pictures plus a quarter-turn matrix (a front camera may add a
    mirror); training on the stored pictures would teach sideways video.
    """
    if orientation == UPRIGHT:
        return frames
    (a, b), (c, d) = orientation
    if a == 0:  # a quarter turn: shown x follows coded y, shown y follows coded x
        frames, flip_x, flip_y = frames.transpose(1, 2), c < 0, b < 0
    else:
        flip_x, flip_y = a < 0, d < 0
    dims = [dim for dim, flip in ((2, flip_x), (1, flip_y)) if flip]
    return (frames.flip(dims) if dims else frames).contiguous()


def resize_and_center_crop(frames: torch.Tensor, height: int, width: int, chunk_size: int = 8) -> torch.Tensor:
    """uint8 frames ``[T, H, W, 3]`` -> float pixels ``[3, T, height, width]`` in [-1, 1].

    Resizes so the frame covers ``height x width`` (the short side relative to the target aspect), then crops
    the centre: no stretching, no letterbox. Frames are converted to float ``chunk_size`` at a time, so a long
    1080p clip never exists as one float tensor at source resolution.
    """
    num_frames, src_h, src_w, _ = frames.shape
    scale = max(height / src_h, width / src_w)
    new_h, new_w = max(height, math.ceil(src_h * scale - 1e-6)), max(width, math.ceil(src_w * scale - 1e-6))
    top, left = (new_h - height) // 2, (new_w - width) // 2
    pixels = torch.empty(3, num_frames, height, width)
    for start in range(0, num_frames, chunk_size):
        chunk = frames[start : start + chunk_size].permute(0, 3, 1, 2).float()
        if (new_h, new_w) != (src_h, src_w):
            chunk = F.interpolate(chunk, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        chunk = chunk[:, :, top : top + height, left : left + width]
        pixels[:, start : start + chunk_size] = (chunk / 127.5 - 1.0).clamp(-1.0, 1.0).permute(1, 0, 2, 3)
    return pixels


def first_frame_image(pixels: torch.Tensor):
    """The first frame of pixels ``[3, T, H, W]`` in [-1, 1] as the 8-bit PIL image an I2V user would pass."""
    from PIL import Image

    frame = ((pixels[:, 0] + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(frame.permute(1, 2, 0).numpy())
