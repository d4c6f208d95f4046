"""VSA under diffusers' Ulysses context parallelism.

Ulysses shards the token sequence over a group of processes outside attention; diffusers' dense processors then
call ``dispatch_attention_fn``, whose context-parallel path exchanges the shards for heads with an all-to-all. The
VSA processor does not go through that dispatch (it has its own kernels), so it makes the same exchange itself:
after it each process holds the *whole* sequence for ``heads / ulysses`` heads, every tile of the video is complete
and VSA's block selection is exactly that of one process; the inverse exchange returns the sequence shard. The
exchange is diffusers' own autograd-aware ``SeqAllToAllDim``, so the backward is the inverse all-to-all.
Ring attention splits the keys over processes, which VSA's tile selection cannot follow: the training scripts
refuse it with VSA.
"""

from __future__ import annotations

import torch

from ..library_internals import sequence_all_to_all, ulysses_process_group


def ulysses_group(parallel_config):
    """The Ulysses process group of a diffusers ``ParallelConfig`` set on the processor, or None without one."""
    context_parallel = getattr(parallel_config, "context_parallel_config", None)
    if context_parallel is None or context_parallel.ulysses_degree == 1:
        return None
    if context_parallel.ring_degree > 1:
        raise ValueError("VSA runs under Ulysses context parallelism only: ring attention splits the video's tiles")
    return ulysses_process_group(context_parallel)


def gather_sequence(tensor: torch.Tensor, group) -> torch.Tensor:
    """[B, S / N, H, D] sequence shard -> [B, S, H / N, D]: all tokens, this process's heads."""
    return sequence_all_to_all(group, tensor, 2, 1)


def scatter_sequence(tensor: torch.Tensor, group) -> torch.Tensor:
    """[B, S, H / N, D] -> [B, S / N, H, D]: the inverse of ``gather_sequence``."""
    return sequence_all_to_all(group, tensor, 1, 2)
