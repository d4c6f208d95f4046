"""Where raw videos, images and captions come from: a merged folder (``videos2caption.json``) or any HF dataset.

A source plans the work before any pixel is read: ``plan(samples_per_file)`` gives a ``ChunkPlan``, the inputs
cut into chunks of ``samples_per_file`` (one Parquet shard each), so the work can be split across processes and
resumed per chunk. The plan is lazy: it knows how many inputs there are, and builds the lightweight
``VideoInput`` records (ids, file names, captions, media type; no pixels) of one chunk only when that chunk is
encoded, so a listing of millions of clips stays small (``bench/preprocess.py --listing`` measures it).
``video_for`` fetches one input's path or bytes only when it is about to be decoded. Ids are stable for the same
input, which is what lets a re-run skip finished shards.

An input is an image (``media_type`` "image": a jpg, png, webp or bmp, or a one-frame GIF) or a video (any
other file, and an animated GIF or WebP). Images are recognised by their bytes' signature when the bytes are at
hand (an HF dataset), else by the file's extension; only a GIF or WebP is opened to see whether it is animated.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .image_decode import (
    IMAGE_EXTENSIONS,
    IMAGE_HEADER_BYTES,
    MAYBE_ANIMATED_EXTENSIONS,
    extension,
    image_format_of_header,
    is_animated,
)


@dataclass
class VideoInput:
    id: str
    file_name: str
    captions: list[str] = field(default_factory=list)
    path: str | None = None  # local file, when the source has one
    row_index: int | None = None  # row in an HF dataset, when the source is one
    problem: str | None = None  # a reason to skip known before decoding (bad metadata entry)
    media_type: str = "video"  # "image" for a still image (decode with image_decode.decode_image)


def choose_caption(item: VideoInput, seed: int) -> str | None:
    """One caption of ``item``; a list gives a seeded choice that does not depend on rank or order."""
    captions = [caption for caption in item.captions if isinstance(caption, str) and caption.strip()]
    if not captions:
        return None
    if len(captions) == 1:
        return captions[0]
    return random.Random(f"{seed}:{item.id}").choice(captions)


NOT_TEXT = "caption is not text"
OUTSIDE_FOLDER = (
    "path leaves the data folder: {path!r} is {how}; list files by their path inside DIR/videos/ (or DIR), "
    "and symlink files kept elsewhere into the folder"
)


def leaves_folder(path: str) -> str | None:
    """How ``path`` (as listed in ``videos2caption.json``) points outside the folder it is relative to, or None:
    an absolute path, or one whose ``..`` climb above it. Decided on the text alone, so nothing outside is opened
    or even looked up."""
    if os.path.isabs(path):
        return "absolute"
    if os.path.normpath(path).split(os.sep)[0] == os.pardir:
        return "above the folder (..)"
    return None


def caption_list(value: Any) -> tuple[list[str], str | None]:
    """The captions of one input, and the reason to skip it when they are not text.

    A number, boolean or dict is refused rather than turned into the text "12345", "True" or "{'text': ...}":
    training on such a caption teaches the model nothing the user meant. ``None`` means no caption.
    """
    if value is None:
        return [], None
    if isinstance(value, str):
        return [value], None
    if isinstance(value, (list, tuple)):
        captions = [caption for caption in value if caption is not None]
        wrong = [caption for caption in captions if not isinstance(caption, str)]
        if wrong:
            return [], f"{NOT_TEXT} (a list holding {type(wrong[0]).__name__} {wrong[0]!r:.60})"
        return captions, None
    return [], f"{NOT_TEXT} ({type(value).__name__} {value!r:.60})"


ANIMATED_WEBP = (
    "animated WebP: the video decoders (decord, PyAV) read only its first frame; convert it to mp4 or GIF, "
    "e.g. `ffmpeg -i in.gif out.mp4` after `convert in.webp in.gif` (ImageMagick)"
)
# rows read per Arrow batch when streaming a whole HF dataset's listing (bounds memory, amortises the calls)
_LISTING_BATCH = 8192


class ChunkPlan(Sequence[list[VideoInput]]):
    """The inputs of a source in listing order, cut into chunks of ``samples_per_file``; chunk ``i`` is the inputs
    ``[i * samples_per_file, (i + 1) * samples_per_file)``, built into ``VideoInput`` records only when asked for.

    It is a sequence of chunks (``len(plan)``, ``plan[i]``), so code written for a list of lists works unchanged,
    but ``plan[i]`` does the listing work of that chunk each time (and may open a GIF or WebP to see whether it
    is animated): count inputs with ``chunk_size`` and digest the listing with ``listing``, never by building
    every chunk.
    """

    def __init__(
        self,
        num_inputs: int,
        samples_per_file: int,
        build: Callable[[int, int], list[VideoInput]],
        listing: Callable[[], Iterator[tuple[str, ...]]],
    ):
        if samples_per_file < 1:
            raise ValueError("samples_per_file must be at least 1")
        self.num_inputs, self.samples_per_file = num_inputs, samples_per_file
        self._build, self._listing = build, listing

    def __len__(self) -> int:
        return math.ceil(self.num_inputs / self.samples_per_file)

    def _bounds(self, index: int) -> tuple[int, int]:
        if not isinstance(index, int):
            raise TypeError(f"chunk index must be an int, got {type(index).__name__}")
        if not 0 <= index < len(self):
            raise IndexError(f"chunk {index} out of range (the plan has {len(self)} chunks)")
        start = index * self.samples_per_file
        return start, min(start + self.samples_per_file, self.num_inputs)

    def chunk_size(self, index: int) -> int:
        """How many inputs chunk ``index`` holds, without building them."""
        start, stop = self._bounds(index)
        return stop - start

    def chunk(self, index: int) -> list[VideoInput]:
        """The ``VideoInput`` records of chunk ``index``, built now."""
        return self._build(*self._bounds(index))

    def __getitem__(self, index: int) -> list[VideoInput]:  # type: ignore[override]  # no slices
        return self.chunk(index)

    def listing(self) -> Iterator[tuple[str, ...]]:
        """``(id, file_name, *captions)`` of every input in order, streamed (for the manifest's digest): the same
        tuples as ``(item.id, item.file_name, *item.captions)`` over every chunk, without building the records."""
        return self._listing()


def _image_or_video(
    name: str, header: bytes | None, declared: str | None, read: Callable[[], str | bytes]
) -> tuple[str, str | None]:
    """The media type of one input and a skip reason known before decoding (an animated WebP).

    ``declared`` is what the dataset's feature says ("image" for ``datasets.Image``, "video" for
    ``datasets.Video``, None for a path or bytes column); ``header`` the first bytes when the input is bytes;
    ``read`` fetches the file, called only for a GIF or WebP (the one case where the file must be opened).
    """
    if declared == "video":
        return "video", None
    kind = image_format_of_header(header) if header else None
    kind = kind or extension(name)
    if kind in MAYBE_ANIMATED_EXTENSIONS:
        if is_animated(read()):
            return "video", ANIMATED_WEBP if kind == "webp" else None
        return "image", None
    if declared == "image" or kind in IMAGE_EXTENSIONS:
        return "image", None
    return "video", None


@dataclass
class _MergedListing:
    """A merged folder's entries, kept compact: about 150 bytes per entry rather than a dict and a record each."""

    names: list[str]  # the listed path ("" when the entry has none)
    captions: list[Any]  # the raw "cap" (or "caption") value
    ids: dict[int, str]  # the entries whose id is not their name (repeats, entries without a path)
    in_root: bytearray  # 1 where the file is DIR/path rather than DIR/videos/path
    duplicate_of: dict[int, str]  # entry -> id of the usable entry listing the same file first


class MergedFolderSource:
    """FastVideo's merged layout: ``DIR/videos2caption.json`` listing ``{"path", "cap"}`` entries.

    ``path`` is relative to ``DIR/videos/`` (or else to ``DIR``); ``cap`` is a string or a list of strings.
    A path that is absolute or climbs out with ``..`` is skipped with that reason, before anything is opened: the
    listing may come from someone else (a shared or downloaded dataset folder), and it must not make a run read,
    encode and publish any file the user can read. Symlinks inside the folder are the folder owner's choice and
    are followed. Optional fields (fps, resolution, num_frames...) are ignored: the real values are read from
    the file.
    A path may name an image (jpg, png, webp, bmp; a one-frame GIF): it becomes a 1-frame input.
    The metadata file is read once per source (so once per process), whatever number of plans is made.
    """

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.metadata_file = self.data_dir / "videos2caption.json"
        if not self.metadata_file.is_file():
            raise FileNotFoundError(
                f"{self.metadata_file} not found: --data_dir must be a folder with videos2caption.json "
                '(a JSON list of {"path": ..., "cap": ...}); for an HF dataset use --dataset_name.'
            )
        self._listing: _MergedListing | None = None

    def describe(self) -> str:
        return str(self.data_dir)

    def plan(self, samples_per_file: int) -> ChunkPlan:
        """The entries cut into chunks of ``samples_per_file``; records are built per chunk."""
        listing = self._read_listing()
        return ChunkPlan(len(listing.names), samples_per_file, self._build, self._stream_listing)

    def _read_listing(self) -> _MergedListing:
        """One pass over the entries: ids, where each file is, and duplicates.

        A file listed again after a usable entry is a duplicate (the same clip twice would be trained on twice as
        often, silently); "the same file" is the same inode (any spelling, symlink or hard link) for a file that
        exists, the same normalised path for one that does not. One ``stat`` or two per entry, no ``realpath``
        (ten times slower): a million entries list in seconds.
        """
        if self._listing is not None:
            return self._listing
        entries = self._read_entries()
        names, captions, ids, in_root, duplicate_of = [], [], {}, bytearray(len(entries)), {}
        times_named: dict[str, int] = {}
        first_id_of_file: dict[int | str, str] = {}
        videos_dir, root = os.path.join(self.data_dir, "videos"), str(self.data_dir)
        for index in range(len(entries)):
            entry, entries[index] = entries[index], None  # free each dict as it is read: flat memory
            name = str(entry.get("path", "")) if isinstance(entry, dict) else ""
            caption = entry.get("cap", entry.get("caption")) if isinstance(entry, dict) else None
            names.append(name)
            captions.append(caption)
            key_name = name or f"entry-{index}"
            seen = times_named.get(key_name, 0)
            times_named[key_name] = seen + 1
            item_id = key_name if seen == 0 else f"{key_name}#{seen}"
            if item_id != name:
                ids[index] = item_id
            if not name or leaves_folder(name):
                continue
            file_key = _file_key(os.path.join(videos_dir, name))
            if isinstance(file_key, str):  # not in videos/: the entry may name a file under DIR itself
                root_key = _file_key(os.path.join(root, name))
                if not isinstance(root_key, str):
                    file_key, in_root[index] = root_key, 1
            texts, problem = caption_list(caption)
            if file_key in first_id_of_file:
                duplicate_of[index] = first_id_of_file[file_key]
            elif problem is None and any(text.strip() for text in texts):
                first_id_of_file[file_key] = item_id  # an unusable entry does not claim the file
        self._listing = _MergedListing(names, captions, ids, in_root, duplicate_of)
        return self._listing

    def _entry(self, listing: _MergedListing, index: int) -> tuple[str, str, list[str], str | None]:
        """``(id, name, captions, problem)`` of entry ``index``, as both the records and the digest see it."""
        name = listing.names[index]
        item_id = listing.ids.get(index, name)
        if not name:
            return item_id, "", [], "metadata entry has no 'path'"
        how = leaves_folder(name)
        if how:
            return item_id, name, [], OUTSIDE_FOLDER.format(path=name, how=how)
        if index in listing.duplicate_of:
            return item_id, name, [], f"duplicate: same file as {listing.duplicate_of[index]}"
        captions, problem = caption_list(listing.captions[index])
        return item_id, name, captions, problem

    def _build(self, start: int, stop: int) -> list[VideoInput]:
        listing = self._read_listing()
        inputs = []
        for index in range(start, stop):
            item_id, name, captions, problem = self._entry(listing, index)
            if not name or leaves_folder(name):
                inputs.append(VideoInput(id=item_id, file_name=name, problem=problem))
                continue
            path = str(self.data_dir / name if listing.in_root[index] else self.data_dir / "videos" / name)
            media_type, media_problem = _image_or_video(name, None, None, lambda path=path: path)
            inputs.append(VideoInput(item_id, name, captions, path, None, problem or media_problem, media_type))
        return inputs

    def _stream_listing(self) -> Iterator[tuple[str, ...]]:
        listing = self._read_listing()
        for index in range(len(listing.names)):
            item_id, name, captions, _ = self._entry(listing, index)
            yield item_id, name, *captions

    def _read_entries(self) -> list:
        """The JSON list of the metadata file; UTF-8 with or without a byte-order mark."""
        try:
            text = self.metadata_file.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{self.metadata_file} is not UTF-8 (byte {error.object[error.start]:#x} at offset {error.start}): "
                "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 old.json > videos2caption.json`"
            ) from error
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.metadata_file} is not valid JSON: {error}") from error
        if not isinstance(entries, list):
            raise ValueError(f"{self.metadata_file} must hold a JSON list of objects, got {type(entries).__name__}")
        return entries

    def video_for(self, item: VideoInput) -> str:
        return item.path


def _file_key(path: str) -> int | str:
    """What identifies the file at ``path``: its device and inode when it exists, else its normalised path."""
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return os.path.normpath(path)
    except OSError:  # a name too long, a folder we may not read: the decoder will say why it cannot open it
        return os.path.normpath(path)
    return (stat.st_dev << 64) | stat.st_ino


class HFDatasetSource:
    """Any ``datasets`` dataset (Hub id or local folder, e.g. a ``videofolder`` or an ``imagefolder``) with a media
    and a caption column.

    The media column may be a ``datasets.Video`` or ``datasets.Image`` feature (read undecoded: ``datasets``
    decodes video only through torchcodec, and images are decoded by ``image_decode`` so EXIF, CMYK, 16-bit
    and alpha are handled one way), a path string, or raw bytes; a path or bytes column may mix images and
    videos. ``--video_column`` defaults to ``video``: a dataset with no such column but an ``image`` column (what
    ``load_dataset`` gives for an imagefolder with ``metadata.jsonl``) uses that one.
    """

    def __init__(
        self,
        name: str,
        config_name: str | None = None,
        split: str = "train",
        video_column: str = "video",
        caption_column: str = "caption",
        revision: str | None = None,
    ):
        from datasets import Image, Video, load_dataset

        self.name, self.split = name, split
        try:
            dataset = load_dataset(name, config_name, split=split, revision=revision)
        except OSError as error:  # FileNotFoundError for a missing path, ConnectionError for an unreachable Hub
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(
                f"cannot load --dataset_name {name!r}: {reason} (pass a local dataset folder, e.g. a videofolder "
                "or imagefolder with metadata.jsonl, or a Hub dataset id; use --data_dir for a folder with "
                "videos2caption.json)"
            ) from error
        if video_column == "video" and "video" not in dataset.column_names and "image" in dataset.column_names:
            video_column = "image"  # an imagefolder: the default names the column a videofolder has
        self.video_column, self.caption_column = video_column, caption_column
        missing = [column for column in (video_column, caption_column) if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"dataset {name!r} has no column(s) {missing}; its columns are {dataset.column_names}. "
                "Pass --video_column (the video or image column) / --caption_column."
            )
        feature = dataset.features[video_column]
        self.declared_media: str | None = None  # what the column's feature says every row is
        if isinstance(feature, Video):
            dataset = dataset.cast_column(video_column, Video(decode=False))
            self.declared_media = "video"
        elif isinstance(feature, Image):
            dataset = dataset.cast_column(video_column, Image(decode=False))
            self.declared_media = "image"
        self.dataset = dataset
        self._arrow = dataset.with_format("arrow")
        self.base_dir = Path(name) if os.path.isdir(name) else None

    def describe(self) -> str:
        return f"{self.name} (split {self.split})"

    def plan(self, samples_per_file: int) -> ChunkPlan:
        """Chunk ``i`` is rows ``[i * samples_per_file, (i + 1) * samples_per_file)``: nothing is read per row
        until a chunk is built, and a chunk reads only its own rows' captions, paths and first bytes."""
        return ChunkPlan(len(self.dataset), samples_per_file, self._build, self._stream_listing)

    def _rows(self, start: int, stop: int) -> tuple[list[Any], list[str | None], list[bytes | None]]:
        """Captions, paths and first bytes of rows ``[start, stop)``, read from Arrow without the media bytes."""
        import pyarrow as pa
        import pyarrow.compute as pc

        table = self._arrow[start:stop]
        captions = table[self.caption_column].to_pylist()
        column = table[self.video_column]
        paths: list[str | None] = [None] * len(column)
        data = None
        if pa.types.is_struct(column.type):
            names = {column.type.field(i).name for i in range(column.type.num_fields)}
            if "path" in names:
                paths = pc.struct_field(column, "path").to_pylist()
            if "bytes" in names:
                data = pc.struct_field(column, "bytes")
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            paths = column.to_pylist()
        elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            data = column
        headers = [None] * len(column) if data is None else pc.binary_slice(data, 0, IMAGE_HEADER_BYTES).to_pylist()
        return captions, paths, headers

    def _build(self, start: int, stop: int) -> list[VideoInput]:
        inputs = []
        for offset, (caption, path, header) in enumerate(zip(*self._rows(start, stop), strict=True)):
            index = start + offset
            texts, problem = caption_list(caption)
            item = VideoInput(self._id(index), self._file_name(index, path), texts, row_index=index, problem=problem)
            item.media_type, media_problem = _image_or_video(
                path or "", header, self.declared_media, lambda item=item: self.video_for(item)
            )
            item.problem = item.problem or media_problem
            inputs.append(item)
        return inputs

    def _stream_listing(self) -> Iterator[tuple[str, ...]]:
        for start in range(0, len(self.dataset), _LISTING_BATCH):
            captions, paths, _ = self._rows(start, min(start + _LISTING_BATCH, len(self.dataset)))
            for offset, (caption, path) in enumerate(zip(captions, paths, strict=True)):
                yield self._id(start + offset), self._file_name(start + offset, path), *caption_list(caption)[0]

    def _id(self, index: int) -> str:
        return f"{self.split}-{index:08d}"

    @staticmethod
    def _file_name(index: int, path: str | None) -> str:
        return os.path.basename(path) if path else f"row-{index:08d}"

    def video_for(self, item: VideoInput) -> str | bytes:
        value = self.dataset[item.row_index][self.video_column]
        if isinstance(value, dict):
            if value.get("bytes"):
                return value["bytes"]
            value = value.get("path")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str):
            if not os.path.isabs(value) and self.base_dir is not None and not os.path.exists(value):
                value = str(self.base_dir / value)
            return value
        return b""
