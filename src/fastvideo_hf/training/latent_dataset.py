"""Training-time reading of a latent dataset made by ``fastvideo-hf preprocess``.

Rows are rebuilt from their bytes/shape/dtype columns (honouring ``_dtype``, which FastVideo's loader ignores),
latents are normalized with the VAE's ``latents_mean`` / ``latents_std`` (the stored latents are raw posterior
means), and prompt embeddings are zero-padded to the text encoder's length exactly as the family's pipeline pads
them, so the transformer sees the same conditioning in training and at inference.

Batches only group rows of the same latent shape. A batch is a *global* batch (all processes together) that
Accelerate splits across processes, so N processes see exactly the samples one process would.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from ..schema import columns_to_tensor, has_tensor
from .dataset_checks import LatentDatasetChangedError, LatentDatasetNotFoundError, check_latent_folder

if TYPE_CHECKING:
    from ..dataset_card import LatentsCard

logger = logging.getLogger(__name__)

TENSOR_COLUMNS = ("vae_latent", "text_embedding")
IMAGE_TENSOR_COLUMNS = ("first_frame_latent", "clip_feature")  # image-to-video datasets
# The shards of a local folder, as the card's ``configs:`` names them.
SHARD_PATTERN = "data/train-*.parquet"


def load_latent_dataset(name_or_path: str, revision: str | None = None, split: str = "train"):
    """The ``datasets.Dataset`` of a local folder or Hub repo made by ``preprocess``.

    A Hub dataset is loaded with plain ``load_dataset`` (its cache is keyed by the commit). A local folder is
    loaded as its Parquet shards (``load_dataset("parquet", data_files=...)``), cached under a key made from each
    shard's path, size and modification time: ``load_dataset(FOLDER)`` keys the cache of a folder whose card has
    ``configs:`` on the folder's name and the card alone, so shards rewritten after a first load, or another
    folder of the same name and size, would be served stale rows without a word. Shards that no longer hold
    the rows their card counts are refused.
    """
    from datasets import load_dataset

    folder = Path(name_or_path)
    if not folder.is_dir():
        return load_dataset(name_or_path, split=split, revision=revision)
    shards = sorted(folder.glob(SHARD_PATTERN))
    _check_shards_match_card(folder, shards)
    # datasets keys the cache on each file's mtime only: a shard copied over another with its time kept (cp -p,
    # rsync -a) would be served stale, so the config name also carries every shard's size and mtime
    stats = [(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in shards]
    name = "shards-" + hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
    return load_dataset("parquet", name=name, data_files={split: [str(path) for path in shards]}, split=split)


def _check_shards_match_card(folder: Path, shards: list[Path]) -> None:
    import pyarrow.parquet as pq

    from ..dataset_card import read_card_metadata

    card = read_card_metadata(folder)
    card_rows = None if card is None else card.num_rows
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in shards)
    if card_rows is not None and rows != card_rows:
        raise LatentDatasetChangedError(
            f"the shards of {folder} ({rows} rows) no longer match its card ({card_rows} rows): they changed after "
            "`fastvideo-hf preprocess` wrote them: make the folder again with it (into a fresh --output_dir)"
        )


def read_dataset_card_metadata(name_or_path: str, revision: str | None = None) -> LatentsCard | None:
    """The ``fastvideo_hf`` block of the dataset's card (local folder or Hub repo), or None without one.

    Raises ``LatentDatasetNotFoundError`` saying what ``name_or_path`` is instead (a missing path, a folder
    without shards, a folder of videos, no such Hub dataset) and what to run.
    """
    from ..dataset_card import read_card_metadata

    if Path(name_or_path).exists():
        check_latent_folder(name_or_path)
        return read_card_metadata(name_or_path)
    readme = _download_hub_card(name_or_path, revision)
    return None if readme is None else read_card_metadata(readme.parent)


def _download_hub_card(repo_id: str, revision: str | None) -> Path | None:
    """The README.md of a Hub dataset (from the HF cache when offline), None for a repo without one."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision))
    except HFValidationError as error:
        raise LatentDatasetNotFoundError(
            f"{repo_id} does not exist locally and is not a Hub dataset id (user/name): check the path"
        ) from error
    except RevisionNotFoundError as error:
        raise LatentDatasetNotFoundError(f"the Hub dataset {repo_id} has no revision {revision!r}") from error
    except RepositoryNotFoundError as error:  # also gated and private repos the token cannot see
        raise LatentDatasetNotFoundError(
            f"{repo_id} does not exist locally and is not a dataset on the Hub (if it is private, log in with "
            "`hf auth login` or set HF_TOKEN; to make one, run `fastvideo-hf preprocess --push_to_hub`)"
        ) from error
    except RemoteEntryNotFoundError:
        return None  # a dataset repo without a card: the model check reports it
    except LocalEntryNotFoundError as error:  # offline, or the Hub unreachable, and the card not in the HF cache
        raise LatentDatasetNotFoundError(
            f"{repo_id} does not exist locally and the Hub could not be reached to read its card "
            f"({type(error).__name__}): check the network or HF_HUB_OFFLINE, or pass a local folder"
        ) from error


class LatentDataset(Dataset):
    """Normalized latents ``[C, T, H, W]`` and prompt embeddings padded to ``max_sequence_length`` tokens
    ``[L_max, D]`` (the length the model's pipeline encodes prompts to) of a latent dataset."""

    def __init__(
        self,
        hf_dataset,
        latents_mean: list[float],
        latents_std: list[float],
        max_sequence_length: int,
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


def image_conditioning(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image-to-video columns of a batch (none for text-to-video): the conditioning of the family's transformer
    call."""
    return {name: batch[name] for name in IMAGE_TENSOR_COLUMNS if name in batch}


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
