"""fastvideo-hf: finetune video diffusion models on your own videos with diffusers, datasets and Accelerate.

The package is two halves joined by one contract: ``preprocess/`` turns videos into a Parquet dataset of latents
(the columns in ``schema``, described by the card of ``dataset_card``) and ``training/`` turns that dataset into
weights. Both ask ``models/`` (one module per model family, and the registry of families) about everything that
differs between families; ``vsa/`` and ``tools/`` stand beside them, and ``testing`` holds the tiny offline models
tests build. The names users need are importable from here; they are imported on first use, so
``import fastvideo_hf`` loads neither torch nor datasets.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC_NAMES = {
    "VideoLatents": "preprocess.builder",
    "VideoLatentsConfig": "preprocess.builder",
    "LatentFolderWriter": "preprocess.writer",
    "write_to_folder": "preprocess.writer",
    "LatentDataset": "training.latent_dataset",
    "SameShapeBatchSampler": "training.latent_dataset",
    "load_latent_dataset": "training.latent_dataset",
    "ModelSpec": "models",
    "load_model_spec": "models",
    "LatentsCard": "dataset_card",
    "columns_to_tensor": "schema",
    "tensor_to_columns": "schema",
    "read_card_metadata": "dataset_card",
    "enable_vsa": "vsa",
    "load_vsa_gates": "vsa",
    "vsa_context": "vsa",
}

__all__ = sorted(_PUBLIC_NAMES)


def __getattr__(name: str):
    if name not in _PUBLIC_NAMES:
        raise AttributeError(f"module 'fastvideo_hf' has no attribute {name!r}")
    value = getattr(import_module(f".{_PUBLIC_NAMES[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC_NAMES])
