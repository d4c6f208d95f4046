"""Where raw videos and captions come from: a merged folder (``videos2caption.json``) or any HF dataset.

A source lists lightweight ``VideoInput`` records first (ids, file names, captions; no video bytes), so the
work can be split into shards and resumed; ``video_for`` fetches one video's path or bytes only when it is
about to be decoded. Ids are stable for the same input, which is what lets a re-run skip finished shards.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def _unique_ids(names: list[str]) -> list[str]:
    """``names`` with repeats made unique as ``name#1``, ``name#2``... (stable for the same listing)."""
    seen: Counter[str] = Counter()
    ids = []
    for name in names:
        ids.append(name if seen[name] == 0 else f"{name}#{seen[name]}")
        seen[name] += 1
    return ids


class MergedFolderSource:
    """FastVideo's merged layout: ``DIR/videos2caption.json`` listing ``{"path", "cap"}`` entries.

    ``path`` is relative to ``DIR/videos/`` (or else to ``DIR``); ``cap`` is a string or a list of strings.
    Optional fields (fps, resolution, num_frames...) are ignored: the real values are read from the file.
    """

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.metadata_file = self.data_dir / "videos2caption.json"
        if not self.metadata_file.is_file():
            raise FileNotFoundError(
                f"{self.metadata_file} not found: --data_dir must be a folder with videos2caption.json "
                '(a JSON list of {"path": ..., "cap": ...}); for an HF dataset use --dataset_name.'
            )

    def describe(self) -> str:
        return str(self.data_dir)

    def list_inputs(self) -> list[VideoInput]:
        """One input per entry; a file listed again after a usable entry is skipped as a duplicate (the same
        clip twice would be trained on twice as often, silently)."""
        entries = self._read_entries()
        names = [str(entry.get("path", "")) if isinstance(entry, dict) else "" for entry in entries]
        ids = _unique_ids([name or f"entry-{index}" for index, name in enumerate(names)])
        first_id_of_file: dict[str, str] = {}
        inputs = []
        for entry, name, item_id in zip(entries, names, ids, strict=True):
            if not name:
                inputs.append(VideoInput(id=item_id, file_name="", problem="metadata entry has no 'path'"))
                continue
            path = self._resolve(name)
            real_path = os.path.realpath(path)
            captions, problem = caption_list(entry.get("cap", entry.get("caption")))
            if real_path in first_id_of_file:
                captions, problem = [], f"duplicate: same file as {first_id_of_file[real_path]}"
            elif problem is None and any(caption.strip() for caption in captions):
                first_id_of_file[real_path] = item_id  # an unusable entry does not claim the file
            inputs.append(VideoInput(item_id, name, captions, path=str(path), problem=problem))
        return inputs

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

    def _resolve(self, name: str) -> Path:
        in_videos = self.data_dir / "videos" / name
        return in_videos if in_videos.exists() or not (self.data_dir / name).exists() else self.data_dir / name

    def video_for(self, item: VideoInput) -> str:
        return item.path


class HFDatasetSource:
    """Any ``datasets`` dataset (Hub id or local folder, e.g. a ``videofolder``) with a video and a caption column.

    The video column may be a ``datasets.Video`` feature (read undecoded: ``datasets`` decodes video only
    through torchcodec), a path string, or raw bytes.
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
        from datasets import Video, load_dataset

        self.name, self.split = name, split
        self.video_column, self.caption_column = video_column, caption_column
        try:
            dataset = load_dataset(name, config_name, split=split, revision=revision)
        except OSError as error:  # FileNotFoundError for a missing path, ConnectionError for an unreachable Hub
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(
                f"cannot load --dataset_name {name!r}: {reason} (pass a local dataset folder, e.g. a videofolder "
                "with metadata.jsonl, or a Hub dataset id; use --data_dir for a folder with videos2caption.json)"
            ) from error
        missing = [column for column in (video_column, caption_column) if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"dataset {name!r} has no column(s) {missing}; its columns are {dataset.column_names}. "
                "Pass --video_column / --caption_column."
            )
        if isinstance(dataset.features[video_column], Video):
            dataset = dataset.cast_column(video_column, Video(decode=False))
        self.dataset = dataset
        self.base_dir = Path(name) if os.path.isdir(name) else None

    def describe(self) -> str:
        return f"{self.name} (split {self.split})"

    def list_inputs(self) -> list[VideoInput]:
        captions = self.dataset[self.caption_column]
        paths = self._video_paths()
        inputs = []
        for index, (caption, path) in enumerate(zip(captions, paths, strict=True)):
            file_name = os.path.basename(path) if path else f"row-{index:08d}"
            texts, problem = caption_list(caption)
            item_id = f"{self.split}-{index:08d}"
            inputs.append(VideoInput(item_id, file_name, texts, row_index=index, problem=problem))
        return inputs

    def _video_paths(self) -> list[str | None]:
        """The path of each video, read from Arrow without touching the video bytes."""
        import pyarrow as pa
        import pyarrow.compute as pc

        column = self.dataset.with_format("arrow")[self.video_column]
        if pa.types.is_struct(column.type):
            return pc.struct_field(column, "path").to_pylist()
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            return column.to_pylist()
        return [None] * len(column)

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
