"""The data of a run: the latent dataset, checked against the model before any step, and its dataloader.

The dataset card says what made the latents; a dataset of another model is refused here (or warned about under
``--allow_model_mismatch``), and the card's text length sets the padding of the prompt embeddings. The dataloader
yields global batches of one latent shape, repeated per context-parallel group when sequences are sharded.
"""

from __future__ import annotations

import argparse
import logging

import torch
from torch.utils.data import DataLoader

from ..models import ModelSpec
from .context_parallel import ContextParallelBatchSampler, ParallelLayout
from .dataset_checks import check_dataset_matches_model
from .latent_dataset import (
    LatentDataset,
    SameShapeBatchSampler,
    collate_latents,
    load_latent_dataset,
    read_dataset_card_metadata,
)
from .resume_settings import dataset_fingerprint

logger = logging.getLogger(__name__)


def load_checked_latent_dataset(args: argparse.Namespace, spec: ModelSpec) -> tuple[LatentDataset, str]:
    """The latent dataset, after checking its card against the model (refusing a mismatch), and its fingerprint
    (which rows, in which order and shapes: what a resume must find unchanged).

    Prompt embeddings are padded to the text length the card records, else to the length the model's pipeline
    encodes (a card of an older version may not say)."""
    card = read_dataset_card_metadata(args.dataset_name, args.dataset_revision)
    problems = check_dataset_matches_model(
        card, args.pretrained_model_name_or_path, spec, allow_mismatch=args.allow_model_mismatch
    )
    for problem in problems:
        logger.warning("dataset/model mismatch allowed by --allow_model_mismatch: %s", problem)
    hf_dataset = load_latent_dataset(args.dataset_name, args.dataset_revision)
    card_length = None if card is None else card.max_sequence_length
    dataset = LatentDataset(hf_dataset, spec.latents_mean, spec.latents_std, card_length or spec.max_sequence_length)
    return dataset, dataset_fingerprint(hf_dataset, None if card is None else card.as_written)


def create_dataloader(
    dataset: LatentDataset, args: argparse.Namespace, layout: ParallelLayout
) -> tuple[DataLoader, SameShapeBatchSampler | ContextParallelBatchSampler]:
    """A dataloader of global batches (``train_batch_size`` per process) of equal latent shape; under context
    parallelism each data-parallel slice is repeated for the processes of its group."""
    batch_sampler = SameShapeBatchSampler(
        dataset.shapes, args.train_batch_size * layout.data_parallel_size, seed=args.seed
    )
    if layout.enabled:
        batch_sampler = ContextParallelBatchSampler(batch_sampler, args.train_batch_size, layout.degree)
    dataloader = DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate_latents,
        num_workers=args.dataloader_num_workers,
        persistent_workers=args.dataloader_num_workers > 0,  # no worker restart (and wait) at every epoch
        pin_memory=torch.cuda.is_available(),
    )
    return dataloader, batch_sampler
