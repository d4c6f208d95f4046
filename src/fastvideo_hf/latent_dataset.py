"""Training-time reading of a latent dataset made by ``fastvideo-hf preprocess``.

Rows are rebuilt from their bytes/shape/dtype columns (honouring ``_dtype``, which FastVideo's loader ignores),
latents are normalized with the VAE's ``latents_mean`` / ``latents_std`` (the stored latents are raw posterior
means), and prompt embeddings are zero-padded to the text encoder's length exactly as ``WanPipeline`` pads them,
so the transformer sees the same conditioning in training and at inference.

Batches only group rows of the same latent shape. A batch is a *global* batch (all processes together) that
Accelerate splits across processes, so N processes see exactly the samples one process would.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from .encoders import WAN_MAX_SEQUENCE_LENGTH
from .schema import columns_to_tensor, has_tensor

logger = logging.getLogger(__name__)

TENSOR_COLUMNS = ("vae_latent", "text_embedding")
IMAGE_TENSOR_COLUMNS = ("first_frame_latent", "clip_feature")  # image-to-video datasets


def load_latent_dataset(name_or_path: str, revision: str | None = None, split: str = "train"):
    """The ``datasets.Dataset`` of a local folder or Hub repo made by ``preprocess`` (plain ``load_dataset``)."""
    from datasets import load_dataset

    return load_dataset(name_or_path, split=split, revision=revision)


def read_dataset_card_metadata(name_or_path: str, revision: str | None = None) -> dict[str, Any] | None:
    """The ``fastvideo_hf`` block of the dataset's card (local folder or Hub repo), or None without one."""
    from .dataset_card import CARD_METADATA_KEY, read_card_metadata

    if Path(name_or_path).is_dir():
        return read_card_metadata(name_or_path)
    from huggingface_hub import DatasetCard

    try:
        card = DatasetCard.load(name_or_path, repo_type="dataset", revision=revision)
    except Exception as error:  # no card on the Hub, or no network: the check below reports it
        logger.warning("could not read the dataset card of %s: %s", name_or_path, error)
        return None
    return card.data.to_dict().get(CARD_METADATA_KEY)


class LatentDataset(Dataset):
    """Normalized latents ``[C, T, H, W]`` and padded prompt embeddings ``[L_max, D]`` of a latent dataset."""

    def __init__(
        self,
        hf_dataset,
        latents_mean: list[float],
        latents_std: list[float],
        max_sequence_length: int = WAN_MAX_SEQUENCE_LENGTH,
    ):
        self.tensors = TENSOR_COLUMNS + tuple(
            name for name in IMAGE_TENSOR_COLUMNS if f"{name}_bytes" in hf_dataset.column_names
        )
        columns = [f"{name}_{part}" for name in self.tensors for part in ("bytes", "shape", "dtype")]
        self.rows = hf_dataset.select_columns(columns)
        self.shapes = [tuple(shape) for shape in hf_dataset["vae_latent_shape"]]
        channels = len(latents_mean)
        self.latents_mean = torch.tensor(latents_mean, dtype=torch.float32).view(channels, 1, 1, 1)
        self.latents_std = torch.tensor(latents_std, dtype=torch.float32).view(channels, 1, 1, 1)
        self.max_sequence_length = max_sequence_length

    @property
    def task(self) -> str:
        return "i2v" if "first_frame_latent" in self.tensors else "t2v"

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.rows[index]
        latents = columns_to_tensor(row, "vae_latent").float()  # a private copy: normalize in place
        latents.sub_(self.latents_mean).div_(self.latents_std)
        embedding = columns_to_tensor(row, "text_embedding").float()[: self.max_sequence_length]
        padded = F.pad(embedding, (0, 0, 0, self.max_sequence_length - embedding.shape[0]))
        item = {"latents": latents, "prompt_embeds": padded, "index": index}
        for name in self.tensors[2:]:
            if has_tensor(row, name):  # first-frame latents are stored normalized, as the I2V pipeline makes them
                item[name] = columns_to_tensor(row, name).float()
        return item


def collate_latents(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    batch = {"index": torch.tensor([example["index"] for example in examples])}
    for name in examples[0]:
        if name == "index":
            continue
        if len(examples) == 1:  # batch size 1 (the usual one): a view, not a copy of a 15 MiB sample
            batch[name] = examples[0][name].unsqueeze(0)
        else:
            batch[name] = torch.stack([example[name] for example in examples])
    return batch


class SameShapeBatchSampler(Sampler[list[int]]):
    """Seeded, epoch-dependent global batches whose rows share one latent shape.

    A shape bucket whose size is not a multiple of the batch size is completed with rows of the same bucket
    (wrapping around its shuffled order), so every row is seen every epoch and no video is dropped by the
    bucketing; the batch order is shuffled across buckets.
    """

    def __init__(self, shapes: list[tuple[int, ...]], batch_size: int, seed: int = 0, shuffle: bool = True):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.epoch = 0
        self.buckets: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, shape in enumerate(shapes):
            self.buckets[shape].append(index)
        padded = sum(-len(indices) % batch_size for indices in self.buckets.values())
        if padded:
            logger.info(
                "%d latent shape bucket(s); %d repeated rows complete their last batches", len(self.buckets), padded
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        batches = []
        for shape in sorted(self.buckets):
            indices = list(self.buckets[shape])
            if self.shuffle:
                rng.shuffle(indices)
            indices += [indices[i % len(indices)] for i in range(-len(indices) % self.batch_size)]
            batches += [indices[start : start + self.batch_size] for start in range(0, len(indices), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return sum(-(-len(indices) // self.batch_size) for indices in self.buckets.values())
