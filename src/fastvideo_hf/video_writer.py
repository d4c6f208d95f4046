"""Write frames to an H.264 mp4 with PyAV (used for demo data and validation videos)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def write_mp4(
    frames: np.ndarray | torch.Tensor,
    path: str | Path,
    fps: float,
    crf: int = 18,
    rotation: int = 0,
    hflip: bool = False,
) -> Path:
    """Encode uint8 RGB frames ``[T, H, W, 3]`` as H.264 (yuv420p, playable everywhere) at ``fps``.

    ``frames`` are what a player shows. With ``rotation`` (degrees counter-clockwise, a multiple of 90) or
    ``hflip``, the file stores them the way a phone does: the pictures turned (and mirrored) the other way, plus a
    display matrix in the track header that tells players to turn them back. Odd sizes are padded by one pixel
    (yuv420p needs even width and height) by repeating the edge.
    """
    import av

    array = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {array.dtype} {array.shape}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    # A player shows mirror(rotate(stored)); store the inverse of that, so it shows `frames`.
    stored = np.rot90(array[:, :, ::-1] if hflip else array, k=-(rotation // 90) % 4, axes=(1, 2))
    pad_h, pad_w = stored.shape[1] % 2, stored.shape[2] % 2
    if pad_h or pad_w:
        stored = np.pad(stored, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    stored = np.ascontiguousarray(stored)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = stored.shape[2], stored.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}  # byte-identical re-encodes
        if rotation % 360 or hflip:
            stream.set_display_rotation(rotation, hflip=hflip)
        for image in stored:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path
