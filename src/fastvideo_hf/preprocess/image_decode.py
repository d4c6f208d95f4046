"""Decode a still image (a path or the file's bytes) into a one-frame ``DecodedClip``, as a viewer shows it.

Images become 1-frame samples, so they come out in the same form as a decoded video clip: uint8 ``[1, H, W, 3]``
RGB. "As a viewer shows it" means what ``video_decode`` means for videos: the EXIF orientation tag (how phones
store portrait photos) is applied, so a dataset never mixes orientations. Every Pillow mode a jpg, png, webp or
bmp can hold is turned into 8-bit RGB without losing the picture:

* CMYK (print JPEGs): through the embedded ICC profile when there is one, else Pillow's plain conversion;
* palette (``P``), with or without a transparent colour, and greyscale (``L``, ``1``);
* 16-bit greyscale (``I;16``, and ``I`` holding 0..65535, as older Pillows open 16-bit PNGs): scaled to 0..255
  (``round(v / 257)``); Pillow's own ``convert("L")`` clips every value above 255 to white;
* transparency (``RGBA``, ``LA``, ``PA``, a palette's transparent colour): composited on black, i.e. each colour
  is multiplied by its alpha. The colour stored under a fully transparent pixel is arbitrary (often left-over
  paint an editor never shows), so dropping alpha would train on pixels nobody sees; black is what a transparent
  pixel holds once premultiplied, and the same file always gives the same frame.

16-bit-per-channel colour PNGs are opened by Pillow as 8-bit RGB already (it keeps the high byte of each
sample). An animated GIF or WebP is a video, not an image: ``is_animated`` lets a source route it to the video
decoder. Anything that makes a file unusable raises ``ImageDecodeError`` with a reason a person can act on.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePath

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .video_decode import DecodedClip

ImageSource = str | bytes

# extensions of still images (a GIF or WebP may also be animated: ``is_animated`` tells)
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp"})
# extensions whose files may hold several frames
MAYBE_ANIMATED_EXTENSIONS = frozenset({"gif", "webp"})
# bytes of a file's start that ``image_format_of_header`` needs
IMAGE_HEADER_BYTES = 12
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_SRGB = ImageCms.createProfile("sRGB")


class ImageDecodeError(ValueError):
    """The image cannot be used; ``str(error)`` is the reason recorded in ``skipped.jsonl``."""


def extension(name: str) -> str:
    """The lower-case extension of ``name`` without its dot ("" when it has none)."""
    return PurePath(name).suffix.lower().lstrip(".")


def is_animated(source: ImageSource) -> bool:
    """Whether ``source`` is an image file with more than one frame (an animated GIF or WebP): a video.

    Only the header and, for a GIF, enough of the file to find a second frame are read. A file Pillow cannot
    open is not animated: the decoder that then gets it gives the reason it is unusable.
    """
    try:
        with _open(source) as image:
            return bool(getattr(image, "is_animated", False))
    except ImageDecodeError:
        return False


def image_format_of_header(header: bytes) -> str | None:
    """The image format ("jpeg", "png", "bmp", "gif", "webp") whose signature starts ``header`` (the first 12
    bytes suffice), or None: lets a source tell image bytes from video bytes without reading the whole file."""
    if header.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if header.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if header.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if header.startswith(b"RIFF") and header[8:12] == b"WEBP":
        return "webp"
    if header.startswith(b"BM") and len(header) >= 6:
        return "bmp"
    return None


def decode_image(source: ImageSource) -> DecodedClip:
    """The one frame of a still image, upright and 8-bit RGB, as a ``DecodedClip`` (``indices`` ``[0]``)."""
    _check_source(source)
    with _open(source) as image, _unusable_on(OSError, SyntaxError, ValueError):
        if getattr(image, "is_animated", False):
            raise ImageDecodeError(
                f"animated image ({image.n_frames} frames): it is a video, list it as one to decode its frames"
            )
        image.load()  # a truncated or corrupt file fails here, not at open
        upright = ImageOps.exif_transpose(image)
        pixels = _to_rgb8(upright)
    frames = torch.from_numpy(np.array(pixels)).unsqueeze(0)  # a copy: Pillow's buffer is read-only
    return DecodedClip(
        frames=frames,
        indices=[0],
        source_num_frames=1,
        source_fps=0.0,
        source_width=frames.shape[2],
        source_height=frames.shape[1],
    )


def _check_source(source: ImageSource) -> None:
    if isinstance(source, bytes):
        if len(source) == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        return
    if not os.path.exists(source):
        raise ImageDecodeError(f"file not found: {source}")
    if os.path.getsize(source) == 0:
        raise ImageDecodeError("empty file (0 bytes)")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""


@contextmanager
def _unusable_on(*errors: type[BaseException]) -> Iterator[None]:
    """Turn the errors Pillow raises for a file it cannot read into ``ImageDecodeError``: ``OSError`` for a
    truncated or corrupt file (``UnidentifiedImageError`` is one), ``SyntaxError`` for broken headers (PNG chunks),
    ``ValueError`` for bad EXIF or a mode it cannot convert. A ``MemoryError`` is not a property of the file."""
    try:
        yield
    except (MemoryError, ImageDecodeError):
        raise
    except errors as error:
        raise ImageDecodeError(f"corrupt or truncated image ({type(error).__name__}: {_first_line(error)})") from error


@contextmanager
def _open(source: ImageSource) -> Iterator[Image.Image]:
    """``Image.open`` on a path or bytes; a file that is no image, or too large to decode safely, is a reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # large photos are fine up to the error
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not an image: Pillow cannot identify the file format") from error
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"image too large to decode safely ({_first_line(error)})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"corrupt or truncated image ({type(error).__name__}: {_first_line(error)})") from error
    with image:
        yield image


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """uint8 ``[H, W, 3]`` of ``image`` in any mode (see the module docstring for how each mode is converted)."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageDecodeError(
                f"{mode} image with values {values.min()}..{values.max()}: only 16-bit values (0..65535) "
                "can be converted to 8-bit"
            )
        grey = ((values + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        raise ImageDecodeError("floating-point image: save it as an 8- or 16-bit image")
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(image))
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if not has_alpha:
        return np.asarray(image.convert("RGB"))
    rgba = np.asarray(image.convert("RGBA")).astype(np.uint32)
    alpha = rgba[..., 3:4]
    return ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8)  # composite on black


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """CMYK to sRGB through the file's ICC profile when it has a usable one, else Pillow's plain conversion."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            return ImageCms.profileToProfile(
                image, ImageCms.ImageCmsProfile(io.BytesIO(profile)), _SRGB, outputMode="RGB"
            )
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: the plain conversion still gives the picture
    return image.convert("RGB")
