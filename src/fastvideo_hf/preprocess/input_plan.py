"""The values an input passes through on its way to rows: its plan, its clips, why it gave none, and its end.

``VideoLatents.rows`` turns the inputs of a chunk into one stream of ``(input, id, value)`` entries, in listing
order, that both ``datasets``' ``_generate_examples`` and the resumable writer consume. Per input it yields a
Parquet row (a dict) per clip made, a ``Skipped`` for the input or for each clip that cannot be used, then one
``InputDone``. A skip is a value, not an exception: it travels from where it is found (listing, planning, a decode
worker in another process) to ``skipped.jsonl`` like any other result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .sources import VideoInput


@dataclass(frozen=True)
class Skipped:
    """An input, or one clip of it, that cannot be used: ``reason`` is what ``skipped.jsonl`` records.
    ``whole_input``: the reason holds for every clip of the input, so its other clips are not tried."""

    reason: str
    whole_input: bool = False


@dataclass(frozen=True)
class Clip:
    """One row to make from an input: ``num_frames`` frames from ``start`` seconds."""

    id: str
    start: float
    num_frames: int


@dataclass
class InputPlan:
    """An input about to be encoded: its caption, its file (path or bytes) and the clips it gives
    (``duplicate_clips``: clips not planned because they would repeat another clip's frames).

    ``given_up`` is set once a clip was skipped for a reason that holds for the whole input: the clips not yet
    decoded are not submitted, and those decoded ahead are dropped."""

    item: VideoInput
    caption: str
    source: str | bytes
    clips: list[Clip]
    text_embedding: torch.Tensor | None = field(default=None, repr=False)  # encoded once for all its clips
    duplicate_clips: int = 0
    given_up: bool = False


@dataclass(frozen=True)
class InputDone:
    """The stream's last word on an input: every row and skip of it came before; ``duplicate_clips`` clips were
    not made because they would have repeated another clip's frames."""

    duplicate_clips: int = 0


# One entry of ``VideoLatents.rows``: the input, the id the value is about (a clip's, or the input's for a skip of
# the whole input and for ``InputDone``), and a Parquet row, a ``Skipped`` or ``InputDone``.
RowEntry = tuple[VideoInput, str, dict[str, Any] | Skipped | InputDone]
