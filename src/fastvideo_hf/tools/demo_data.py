"""Generate a small, real video dataset: H.264 clips of coloured shapes moving over a background.

The clips vary in fps, resolution, aspect ratio and length so frame sampling and resizing are exercised, and the
captions describe what moves, so a model trained on them has something learnable. The folder is written in two
layouts at once: FastVideo's merged folder (``videos2caption.json`` + ``videos/``) and an HF ``videofolder``
(``videos/metadata.jsonl``), loadable with ``load_dataset(DIR / "videos")``.

With ``mixed`` the folder also holds what users' folders hold: portrait and square clips of 1 to 12 s (one stored
turned, as phones do, with a display matrix) and still images (one JPEG stored turned with an EXIF orientation
tag), so resolution buckets, frame buckets, clip extraction and images all have work to do. They are tiny in
pixels and low in fps so writing and encoding them stays fast on a small CPU.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
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
# --mixed clips, as shown: (fps, width, height, seconds, rotation of the stored pictures' display matrix).
# At 16 fps with frame buckets 1,9,17 and chunk extraction they give 11, 5, 1 (9 frames), 2 and 3 clips.
MIXED_FORMATS = [
    (8, 96, 64, 12.0, 0),  # landscape, 12 s
    (12, 48, 80, 6.0, 90),  # portrait, stored landscape plus a quarter-turn matrix (a phone clip)
    (16, 64, 64, 1.0, 0),  # square, 1 s: too short for 17 frames at 16 fps, long enough for 9
    (10, 56, 96, 3.0, 0),  # portrait, 3 s
    (12, 72, 72, 4.0, 0),  # square, 4 s
]
# --mixed images, as shown: (file extension, width, height, EXIF orientation or 0 for none). Orientation 6 stores
# the picture turned a quarter counter-clockwise (landscape) and tells viewers to turn it clockwise back, so a
# reader that ignores the tag sees a landscape image and puts it in the wrong bucket.
MIXED_IMAGES = [
    ("png", 96, 64, 0),
    ("png", 88, 88, 0),
    ("jpg", 64, 96, 6),
]
EXIF_ORIENTATION_TAG = 0x0112


@dataclass
class DemoClip:
    file_name: str
    caption: str
    fps: float
    width: int
    height: int
    num_frames: int
    media_type: str = "video"
    rotation: int = 0  # degrees of the mp4 display matrix, or the EXIF orientation tag of an image


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


def write_demo_dataset(
    output_dir: str | Path,
    num_videos: int = 8,
    seed: int = 0,
    with_bad_inputs: bool = False,
    mixed: bool = False,
    mixed_formats: Sequence[tuple[float, int, int, float, int]] = MIXED_FORMATS,
    mixed_images: Sequence[tuple[str, int, int, int]] = MIXED_IMAGES,
) -> list[DemoClip]:
    """Write ``num_videos`` clips and both metadata layouts to ``output_dir``; return the clips written.

    With ``mixed`` the clips of ``mixed_formats`` and the images of ``mixed_images`` follow (images are listed in
    ``videos2caption.json`` only: an HF videofolder holds videos); tests pass smaller lists to stay fast. With
    ``with_bad_inputs`` the merged folder also lists inputs that preprocessing must skip: an empty file, a text
    file named .mp4, a truncated mp4, a clip too short to sample, a missing file and an empty caption. Without
    ``mixed`` the output is what it always was.
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
    if mixed:
        clips += _write_mixed_media(videos_dir, scenes[num_videos:], mixed_formats, mixed_images)

    entries = [_merged_entry(clip, videos_dir) for clip in clips]
    metadata = [{"file_name": clip.file_name, "caption": clip.caption} for clip in clips if clip.media_type == "video"]
    if with_bad_inputs:
        bad = _write_bad_inputs(videos_dir, clips[0].file_name if clips else None)
        entries += [{"path": name, "cap": caption} for name, caption in bad]
        metadata += [{"file_name": name, "caption": caption} for name, caption in bad if (videos_dir / name).exists()]

    (output_dir / "videos2caption.json").write_text(json.dumps(entries, indent=2) + "\n")
    with open(videos_dir / "metadata.jsonl", "w") as handle:
        for row in metadata:
            handle.write(json.dumps(row) + "\n")
    return clips


def _merged_entry(clip: DemoClip, videos_dir: Path) -> dict:
    """The ``videos2caption.json`` entry of a clip (FastVideo's fields) or an image (no fps, frames or duration)."""
    entry = {"path": clip.file_name, "cap": [clip.caption], "resolution": {"width": clip.width, "height": clip.height}}
    if clip.media_type == "video":
        entry.update({"fps": clip.fps, "num_frames": clip.num_frames, "duration": clip.num_frames / clip.fps})
    entry["size"] = (videos_dir / clip.file_name).stat().st_size
    return entry


def _write_mixed_media(
    videos_dir: Path,
    scenes: list[tuple[str, str, str, str]],
    formats: Sequence[tuple[float, int, int, float, int]],
    images: Sequence[tuple[str, int, int, int]],
) -> list[DemoClip]:
    """The clips of ``formats`` and the images of ``images`` (see ``MIXED_FORMATS``), one distinct scene each."""
    from PIL import Image

    written = []
    for index, (fps, width, height, seconds, rotation) in enumerate(formats):
        shape, colour, background, direction = scenes[index]
        num_frames = int(round(fps * seconds))
        file_name = f"mixed_{index:02d}_{width}x{height}_{seconds:g}s.mp4"
        frames = render_clip(shape, colour, background, direction, width, height, num_frames)
        write_mp4(frames, videos_dir / file_name, fps, rotation=rotation)
        caption = f"A {colour} {shape} moves from {direction} over a {background} background."
        written.append(DemoClip(file_name, caption, fps, width, height, num_frames, "video", rotation))
    for index, (kind, width, height, orientation) in enumerate(images):
        shape, colour, background, direction = scenes[len(formats) + index]
        picture = render_clip(shape, colour, background, direction, width, height, 1)[0]
        picture[: max(2, height // 8)] = COLOURS[colour]  # a bar along the top edge: a turned picture shows it
        file_name = f"still_{index:02d}_{width}x{height}.{kind}"
        if orientation == 6:  # stored turned a quarter counter-clockwise; the tag turns it back clockwise
            picture = np.ascontiguousarray(np.rot90(picture, k=1))
        elif orientation:
            raise ValueError(f"demo images use EXIF orientation 0 or 6, got {orientation}")
        image = Image.fromarray(picture)
        if kind == "jpg":
            exif = Image.Exif()
            if orientation:
                exif[EXIF_ORIENTATION_TAG] = orientation
            image.save(videos_dir / file_name, "JPEG", quality=95, exif=exif.tobytes())
        else:
            image.save(videos_dir / file_name, "PNG")
        caption = f"A {colour} {shape} on a {background} background, still."
        written.append(DemoClip(file_name, caption, 0.0, width, height, 1, "image", orientation))
    return written


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
