"""Generate a small, real video dataset: H.264 clips of coloured shapes moving over a background.

The clips vary in fps, resolution, aspect ratio and length so frame sampling and resizing are exercised, and the
captions describe what moves, so a model trained on them has something learnable. The folder is written in two
layouts at once: FastVideo's merged folder (``videos2caption.json`` + ``videos/``) and an HF ``videofolder``
(``videos/metadata.jsonl``), loadable with ``load_dataset(DIR / "videos")``.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..video_writer import write_mp4

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "white": (240, 240, 240),
    "purple": (150, 60, 200),
}
BACKGROUNDS = {"black": (10, 10, 10), "grey": (120, 120, 120), "dark blue": (15, 25, 70), "dark green": (20, 60, 25)}
SHAPES = ("circle", "square")
DIRECTIONS = {"left to right": (1, 0), "right to left": (-1, 0), "top to bottom": (0, 1), "bottom to top": (0, -1)}
# (fps, width, height, seconds): landscape, portrait, square, odd frame rates and lengths.
FORMATS = [
    (30, 160, 96, 2.5),
    (24, 128, 128, 2.0),
    (16, 96, 160, 2.25),
    (25, 192, 108, 3.0),
    (30, 112, 80, 1.5),
    (60, 144, 96, 1.25),
]


@dataclass
class DemoClip:
    file_name: str
    caption: str
    fps: float
    width: int
    height: int
    num_frames: int


def render_clip(shape: str, colour: str, background: str, direction: str, width: int, height: int, num_frames: int):
    """uint8 frames ``[T, H, W, 3]`` of one shape crossing the frame."""
    yy, xx = np.mgrid[0:height, 0:width]
    size = max(6, min(width, height) // 4)
    dx, dy = DIRECTIONS[direction]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    frames[:] = BACKGROUNDS[background]
    for t in range(num_frames):
        progress = t / max(1, num_frames - 1)
        cx = (
            width / 2
            if dx == 0
            else (size + progress * (width - 2 * size) if dx > 0 else width - size - progress * (width - 2 * size))
        )
        cy = (
            height / 2
            if dy == 0
            else (size + progress * (height - 2 * size) if dy > 0 else height - size - progress * (height - 2 * size))
        )
        if shape == "circle":
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= size**2
        else:
            inside = (np.abs(xx - cx) <= size) & (np.abs(yy - cy) <= size)
        frames[t][inside] = COLOURS[colour]
    return frames


def write_demo_dataset(output_dir: str | Path, num_videos: int = 8, seed: int = 0, with_bad_inputs: bool = False):
    """Write ``num_videos`` clips and both metadata layouts to ``output_dir``; return the clips written.

    With ``with_bad_inputs`` the merged folder also lists inputs that preprocessing must skip: an empty file,
    a text file named .mp4, a truncated mp4, a clip too short to sample, a missing file and an empty caption.
    """
    output_dir = Path(output_dir)
    videos_dir = output_dir / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    # Distinct (shape, colour, background, direction) per clip, so every caption names exactly one clip.
    scenes = list(itertools.product(SHAPES, sorted(COLOURS), sorted(BACKGROUNDS), sorted(DIRECTIONS)))
    random.Random(seed).shuffle(scenes)
    clips = []
    for index in range(num_videos):
        fps, width, height, seconds = FORMATS[index % len(FORMATS)]
        shape, colour, background, direction = scenes[index % len(scenes)]
        num_frames = int(round(fps * seconds))
        file_name = f"clip_{index:04d}.mp4"
        write_mp4(
            render_clip(shape, colour, background, direction, width, height, num_frames), videos_dir / file_name, fps
        )
        caption = f"A {colour} {shape} moves from {direction} over a {background} background."
        clips.append(DemoClip(file_name, caption, fps, width, height, num_frames))

    entries = [
        {
            "path": clip.file_name,
            "cap": [clip.caption],
            "resolution": {"width": clip.width, "height": clip.height},
            "fps": clip.fps,
            "num_frames": clip.num_frames,
            "duration": clip.num_frames / clip.fps,
            "size": (videos_dir / clip.file_name).stat().st_size,
        }
        for clip in clips
    ]
    metadata = [{"file_name": clip.file_name, "caption": clip.caption} for clip in clips]
    if with_bad_inputs:
        bad = _write_bad_inputs(videos_dir, clips[0].file_name if clips else None)
        entries += [{"path": name, "cap": caption} for name, caption in bad]
        metadata += [{"file_name": name, "caption": caption} for name, caption in bad if (videos_dir / name).exists()]

    (output_dir / "videos2caption.json").write_text(json.dumps(entries, indent=2) + "\n")
    with open(videos_dir / "metadata.jsonl", "w") as handle:
        for row in metadata:
            handle.write(json.dumps(row) + "\n")
    return clips


def _write_bad_inputs(videos_dir: Path, good_file_name: str | None) -> list[tuple[str, str]]:
    """Inputs of every kind preprocessing must skip, as (file name, caption) pairs."""
    (videos_dir / "bad_empty.mp4").write_bytes(b"")
    (videos_dir / "bad_not_a_video.mp4").write_text("this is a text file, not a video\n")
    write_mp4(render_clip("circle", "red", "black", "left to right", 64, 64, 30), videos_dir / "bad_truncated.mp4", 30)
    data = (videos_dir / "bad_truncated.mp4").read_bytes()
    (videos_dir / "bad_truncated.mp4").write_bytes(data[: len(data) // 3])
    write_mp4(render_clip("square", "blue", "grey", "top to bottom", 64, 64, 3), videos_dir / "bad_too_short.mp4", 16)
    bad = [
        ("bad_empty.mp4", "An empty file."),
        ("bad_not_a_video.mp4", "A text file."),
        ("bad_truncated.mp4", "A truncated video."),
        ("bad_too_short.mp4", "A clip of three frames."),
        ("bad_missing.mp4", "A file that does not exist."),
    ]
    if good_file_name:
        (videos_dir / "bad_empty_caption.mp4").write_bytes((videos_dir / good_file_name).read_bytes())
        bad.append(("bad_empty_caption.mp4", "   "))
    return bad
