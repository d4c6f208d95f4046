"""The Parquet schema of a latent dataset, in one place.

Column names follow FastVideo's layout so its loaders can read our datasets: every tensor is stored as three
columns, ``<name>_bytes`` (C-order raw bytes), ``<name>_shape`` (list of int64) and ``<name>_dtype`` (the numpy
dtype name, or ``bfloat16``). Raw bytes read about 20x faster than ``datasets.Array4D`` and allow any shape and
bfloat16, which ``Array*D`` features do not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from datasets import Features, List, Value

T2V_TENSORS = ("vae_latent", "text_embedding")
# FastVideo's I2V order. ``clip_feature`` is empty (b"", [], "") for models without an image encoder.
I2V_TENSORS = T2V_TENSORS + ("clip_feature", "first_frame_latent")

STORAGE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def tensor_features(name: str) -> dict[str, Any]:
    """The three ``datasets`` features that hold one tensor."""
    return {
        f"{name}_bytes": Value("binary"),
        f"{name}_shape": List(Value("int64")),
        f"{name}_dtype": Value("string"),
    }


# Where a clip starts in its source video (seconds): present only in datasets of several clips per video
# (``--frame_extraction chunk|uniform``), so that one clip per video from t = 0 keeps today's shards byte for byte.
CLIP_START_COLUMN = "clip_start_sec"


def latent_features(task: str = "t2v", clips: bool = False) -> Features:
    """Features of one row for ``task`` ("t2v" or "i2v"), in FastVideo's column order; ``clips`` adds
    ``clip_start_sec`` at the end."""
    tensors = T2V_TENSORS if task == "t2v" else I2V_TENSORS
    columns: dict[str, Any] = {"id": Value("string")}
    for name in tensors[:2]:
        columns.update(tensor_features(name))
    columns.update(
        {
            "file_name": Value("string"),
            "caption": Value("string"),
            "media_type": Value("string"),
            "width": Value("int64"),
            "height": Value("int64"),
            "num_frames": Value("int64"),
            "duration_sec": Value("float64"),
            "fps": Value("float64"),
        }
    )
    for name in tensors[2:]:
        columns.update(tensor_features(name))
    if clips:
        columns[CLIP_START_COLUMN] = Value("float64")
    return Features(columns)


def tensor_to_columns(name: str, tensor: torch.Tensor, storage_dtype: str = "float32") -> dict[str, Any]:
    """Serialise ``tensor`` into the three columns of ``name``, cast to ``storage_dtype``."""
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {storage_dtype!r}")
    tensor = tensor.detach().to("cpu", STORAGE_DTYPES[storage_dtype]).contiguous()
    if storage_dtype == "bfloat16":
        # numpy has no bfloat16: keep the 16-bit pattern and name the real dtype in the dtype column.
        raw = tensor.view(torch.int16).numpy().tobytes()
    else:
        raw = tensor.numpy().tobytes()
    return {f"{name}_bytes": raw, f"{name}_shape": list(tensor.shape), f"{name}_dtype": storage_dtype}


def empty_tensor_columns(name: str) -> dict[str, Any]:
    """The columns of a tensor this row does not have (FastVideo writes missing tensors the same way)."""
    return {f"{name}_bytes": b"", f"{name}_shape": [], f"{name}_dtype": ""}


def has_tensor(row: dict[str, Any], name: str) -> bool:
    return bool(row.get(f"{name}_dtype"))


def columns_to_tensor(row: dict[str, Any], name: str) -> torch.Tensor:
    """Rebuild the tensor ``name`` of ``row``, honouring its ``_dtype`` column (FastVideo's loader does not)."""
    raw, shape, dtype = row[f"{name}_bytes"], row[f"{name}_shape"], row[f"{name}_dtype"]
    if dtype == "bfloat16":
        array = np.frombuffer(raw, dtype=np.int16).reshape(shape)
        return torch.from_numpy(array.copy()).view(torch.bfloat16)
    array = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)
    return torch.from_numpy(array.copy())
