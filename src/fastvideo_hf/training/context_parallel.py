"""Context parallelism for training: one sample's token sequence sharded over a group of processes.

The engine is diffusers' own (``ContextParallelConfig`` and ``ModelMixin.enable_parallelism``): the hooks of the
transformer's ``_cp_plan`` split the sequence after the patch embedding, Ulysses' all-to-all (or ring
attention) makes each attention see every token, and the output is gathered before ``proj_out``. This module
adds what training needs around it:

- One device mesh ``("dp", "ring", "ulysses")`` over the whole world, rank ``r`` at
  ``(r // degree, ..., r % ulysses)``: the processes of one context-parallel group are consecutive ranks.
- The ranks of a group take the same samples, noise, sigmas and caption dropout. The global batch holds
  ``train_batch_size`` rows per *data-parallel* rank; ``ContextParallelBatchSampler`` repeats each such slice once
  per rank of its group, in rank order, so Accelerate's ``split_batches`` hands every rank of a group the same
  rows, and the noise is seeded by the data-parallel position (``first_position``), not by the process.
- The gathered output makes every rank of a group compute the same loss, and the backward of the all-to-all leaves
  on each rank its share of the gradient: the sum over the group is the gradient of that loss. DDP (or FSDP)
  averages over the whole world, so the loss is scaled by the group size (``loss_scale``); the mean over the world
  is then the mean over the data-parallel ranks of each slice's full gradient.
- Ring attention merges each process's partial attention with the log-sum-exp of its scores, which diffusers' default
  (``native``) backend does not return ("Native attention does not support return_lse=True" at the first step). On
  CUDA the experts run diffusers' cuDNN backend, as its context-parallel guide does; on a CPU (how ring is tested)
  diffusers has no such backend, so the native backend's context-parallel path is given forward and backward ops over
  PyTorch's CPU flash-attention kernel, which returns it (``use_cpu_attention_with_lse``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler

from ..library_internals import RING_CUDA_BACKEND, parallel_config_of, use_cpu_attention_with_lse
from ..models import ModelSpec, expert_modules
from ..refusal import SettingRefused

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParallelLayout:
    """How the world's processes split into data-parallel ranks and context-parallel groups."""

    ulysses: int = 1
    ring: int = 1
    world_size: int = 1
    process_index: int = 0

    @property
    def degree(self) -> int:
        """Processes sharing one sample's sequence (1: no context parallelism)."""
        return self.ulysses * self.ring

    @property
    def enabled(self) -> bool:
        return self.degree > 1

    @property
    def data_parallel_size(self) -> int:
        return self.world_size // self.degree

    @property
    def data_parallel_rank(self) -> int:
        return self.process_index // self.degree

    def first_position(self, train_batch_size: int) -> int:
        """Offset of this process's rows in the global batch of distinct rows (what seeds their noise)."""
        return self.data_parallel_rank * train_batch_size

    @property
    def loss_scale(self) -> float:
        """Factor on the loss before backward so that the world-mean gradient is the data-parallel mean."""
        return float(self.degree)


def parallel_layout(args: argparse.Namespace, world_size: int, process_index: int) -> ParallelLayout:
    """The layout of ``--context_parallel_ulysses`` x ``--context_parallel_ring`` over ``world_size`` processes,
    refusing a world the groups do not divide."""
    layout = ParallelLayout(args.context_parallel_ulysses, args.context_parallel_ring, world_size, process_index)
    if world_size % layout.degree:
        raise SettingRefused(
            f"--context_parallel_ulysses {layout.ulysses} x --context_parallel_ring {layout.ring} = {layout.degree} "
            f"processes per sample does not divide the {world_size} processes of this run: launch a multiple of "
            f"{layout.degree} processes"
        )
    return layout


def check_context_parallel_args(args: argparse.Namespace) -> None:
    """Refuse, at parse time, the combinations context parallelism cannot run."""
    for flag in ("context_parallel_ulysses", "context_parallel_ring"):
        if getattr(args, flag) < 1:
            raise SettingRefused(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.context_parallel_ulysses * args.context_parallel_ring == 1:
        return
    if args.attention_backend == "vsa" and args.context_parallel_ring > 1:
        raise SettingRefused(
            "VSA needs every tile of the video in one attention call: ring attention splits the keys over processes. "
            "Use --context_parallel_ulysses with --attention_backend vsa (after Ulysses' all-to-all each process "
            "holds the whole sequence for a subset of heads)"
        )
    if getattr(args, "group_offload", None) is not None:
        raise SettingRefused(
            "--group_offload and context parallelism are not supported together: context parallelism is for "
            "several GPUs, where FSDP (examples/accelerate_configs/fsdp.yaml) shards the weights instead"
        )


def check_model_supports(transformer: torch.nn.Module, layout: ParallelLayout) -> None:
    """Ulysses scatters the attention heads over the group: their number must divide evenly."""
    if layout.ulysses == 1:
        return
    for name, expert in expert_modules(transformer).items():
        heads = expert.config.num_attention_heads
        if heads % layout.ulysses:
            raise SettingRefused(
                f"--context_parallel_ulysses {layout.ulysses} must divide the {heads} attention heads of the {name}: "
                f"use a divisor of {heads}, or add --context_parallel_ring"
            )


def check_token_counts(
    latent_shapes: list[tuple[int, ...]], validation: list, spec: ModelSpec, layout: ParallelLayout
) -> None:
    """Every latent shape of the dataset, and the size of every validation entry, must give a token count the
    group divides: diffusers splits the sequence evenly (tokens: the latent grid over the transformer's patch).

    Checked before the first step rather than at the first batch of an odd shape, which may come hours in."""
    if not layout.enabled:
        return
    patch = spec.patch_size
    grids = {("dataset latents", tuple(shape[-3:])) for shape in latent_shapes}
    for entry in validation:
        latent = tuple(spec.latent_shape(entry.num_frames, entry.height, entry.width)[1:])
        grids.add((f"validation {entry.height}x{entry.width}x{entry.num_frames}", latent))
    bad = []
    for source, (frames, height, width) in sorted(grids):
        tokens = (frames // patch[0]) * (height // patch[1]) * (width // patch[2])
        if tokens % layout.degree:
            bad.append(f"{source} {frames}x{height}x{width} -> {tokens} tokens")
    if bad:
        raise SettingRefused(
            f"context parallelism over {layout.degree} processes splits each token sequence evenly, and these do "
            f"not divide: {'; '.join(bad)}. Use sizes whose token count is a multiple of {layout.degree} (preprocess "
            "again, or set --validation_height/--validation_width/--validation_num_frames), or fewer processes per "
            "sample"
        )


class ContextParallelBatchSampler(Sampler[list[int]]):
    """Global batches of ``batch_sampler`` with each data-parallel slice repeated once per context-parallel rank.

    ``batch_sampler`` yields ``train_batch_size * data_parallel_size`` distinct rows; Accelerate then splits the
    repeated batch evenly over the world, so consecutive ranks (one group) receive the same slice."""

    def __init__(self, batch_sampler, train_batch_size: int, degree: int):
        self.batch_sampler, self.train_batch_size, self.degree = batch_sampler, train_batch_size, degree
        self.batch_size = batch_sampler.batch_size * degree

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        size = self.train_batch_size
        for batch in self.batch_sampler:
            slices = [batch[start : start + size] for start in range(0, len(batch), size)]
            yield [index for rows in slices for _ in range(self.degree) for index in rows]

    def __len__(self) -> int:
        return len(self.batch_sampler)


@contextlib.contextmanager
def _one_device_on_cpu():
    """diffusers picks each rank's device as ``rank % torch.accelerator.device_count()``, which divides by zero on
    a machine without an accelerator; a gloo run on CPU (how this is tested) has one device, the CPU."""
    if torch.accelerator.is_available():
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


def enable_context_parallel(
    transformer: torch.nn.Module, layout: ParallelLayout, device: torch.device, compute_dtype: torch.dtype
) -> None:
    """Shard the sequence of every trained transformer over its context-parallel group (no-op when off).

    Call it on every process after the adapter is added and before ``accelerator.prepare``: the hooks live on the
    transformer's own modules, which DDP / FSDP then wrap. ``compute_dtype`` is the dtype attention runs in (the
    mixed-precision dtype), which decides whether ring attention has a backend on a GPU."""
    if not layout.enabled:
        return
    from diffusers import ContextParallelConfig
    from torch.distributed.device_mesh import init_device_mesh

    check_model_supports(transformer, layout)
    if layout.ring > 1:
        use_ring_attention_backend(transformer, device, compute_dtype)
    mesh = init_device_mesh(
        device.type,
        (layout.data_parallel_size, layout.ring, layout.ulysses),
        mesh_dim_names=("dp", "ring", "ulysses"),
    )
    for expert in expert_modules(transformer).values():
        config = ContextParallelConfig(ulysses_degree=layout.ulysses, ring_degree=layout.ring, mesh=mesh)
        with _one_device_on_cpu():
            expert.enable_parallelism(config=config)
    logger.info(
        "context parallelism: %d data-parallel rank(s) x (ring %d x ulysses %d); this is data-parallel rank %d",
        layout.data_parallel_size,
        layout.ring,
        layout.ulysses,
        layout.data_parallel_rank,
    )


def use_ring_attention_backend(transformer: torch.nn.Module, device: torch.device, compute_dtype: torch.dtype) -> None:
    """Make every attention of ``transformer`` return the log-sum-exp that ring attention merges partial results
    with; refuse a device or dtype where no backend does, before the first step rather than at it."""
    if device.type == "cpu":
        use_cpu_attention_with_lse()
        return
    if device.type != "cuda":
        raise SettingRefused(
            f"--context_parallel_ring needs attention that returns its log-sum-exp, which diffusers has on CUDA "
            f"(cuDNN) and not on {device.type}: use --context_parallel_ulysses instead"
        )
    if compute_dtype not in (torch.bfloat16, torch.float16):
        raise SettingRefused(
            "--context_parallel_ring on GPUs runs diffusers' cuDNN attention, which computes in bf16 or fp16 only: "
            "add --mixed_precision bf16, or use --context_parallel_ulysses instead"
        )
    for expert in expert_modules(transformer).values():
        expert.set_attention_backend(RING_CUDA_BACKEND)


def is_context_parallel(transformer: torch.nn.Module) -> bool:
    """Whether the forward of ``transformer`` (unwrapped) needs every process of its group."""
    experts = expert_modules(transformer).values()
    return any(parallel_config_of(expert) is not None for expert in experts)
