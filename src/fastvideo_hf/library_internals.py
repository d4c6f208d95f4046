"""Every use fastvideo-hf makes of a library's private internals, in one place.

A private name can change in any release, so each one we rely on is reached through this module only: when a
new release moves it, ``tests/test_library_internals.py`` fails naming the function here, ``make check-latest``
shows it before a fresh machine does, and the fix is one function. The ranges in ``pyproject.toml`` stop below the
next breaking release of each library named here.

Checked against the versions pinned in ``requirements/lock.txt``: ``make lock`` writes the lock only from an
environment in which the whole suite passed, these tests included, so the lock always names versions every function
here was checked against (when this module was written: diffusers 0.42.1, datasets 5.2.0, torch 2.13.0, peft 0.22.0).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

# the name ``diffusers.hooks.group_offloading`` registers its hook under (its private ``_GROUP_OFFLOADING``)
_GROUP_OFFLOADING_HOOK = "group_offloading"


# --- diffusers: Wan attention ------------------------------------------------------------------------------------


def wan_qkv_projections(attn: torch.nn.Module, hidden_states: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v of a Wan attention module for self-attention, computed as diffusers' Wan attention processor computes
    them (fused or not): diffusers' private ``transformer_wan._get_qkv_projections``."""
    from diffusers.models.transformers.transformer_wan import _get_qkv_projections

    return _get_qkv_projections(attn, hidden_states, None)


# --- diffusers: group offload and layerwise casting --------------------------------------------------------------


def layerwise_casting_layer_types() -> tuple[type[torch.nn.Module], ...]:
    """The layer types whose weights ``enable_layerwise_casting`` / group offload store and move: diffusers'
    private ``hooks._common._GO_LC_SUPPORTED_PYTORCH_LAYERS``."""
    from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS

    return tuple(_GO_LC_SUPPORTED_PYTORCH_LAYERS)


def offload_groups(module: torch.nn.Module) -> list[Any]:
    """The distinct diffusers ``ModuleGroup`` objects whose group-offload hooks are installed in ``module``: read
    from each submodule's private ``_diffusers_hook`` registry."""
    groups = {}
    for submodule in module.modules():
        registry = getattr(submodule, "_diffusers_hook", None)
        hook = registry.get_hook(_GROUP_OFFLOADING_HOOK) if registry is not None else None
        if hook is not None:
            groups[id(hook.group)] = hook.group
    return list(groups.values())


def group_tensors(group: Any) -> list[torch.Tensor]:
    """Every parameter and buffer an onload / offload of ``group`` moves (``ModuleGroup.modules``, ``.parameters``,
    ``.buffers``)."""
    tensors = [tensor for module in group.modules for tensor in (*module.parameters(), *module.buffers())]
    return list(dict.fromkeys([*tensors, *group.parameters, *group.buffers]))


def set_group_tensors(group: Any, parameters: list[torch.Tensor], buffers: list[torch.Tensor]) -> None:
    """Make ``group`` move exactly these tensors, listed one by one instead of through its modules (diffusers' own
    form for the top-level group), and refresh the pinned CPU copies its stream path restores from (the private
    ``ModuleGroup._init_cpu_param_dict``)."""
    group.parameters, group.buffers, group.modules = parameters, buffers, []
    if group.stream is not None:
        group.cpu_param_dict = group._init_cpu_param_dict()


# --- diffusers: context parallelism ------------------------------------------------------------------------------


def parallel_config_of(module: Any) -> Any:
    """The ``ParallelConfig`` diffusers' ``enable_parallelism`` stored on a model or an attention processor (private
    ``_parallel_config``), or None."""
    return getattr(module, "_parallel_config", None)


# diffusers' attention backend for ring attention on CUDA (a private one): it supports context parallelism and returns
# the log-sum-exp ring attention merges partial results with; the default native backend refuses ``return_lse``
RING_CUDA_BACKEND = "_native_cudnn"


def use_cpu_attention_with_lse() -> None:
    """Route the context-parallel path of diffusers' native backend through ``_cpu_attention_forward_op`` /
    ``_cpu_attention_backward_op``, which return and use the log-sum-exp (for this process; idempotent).

    diffusers' own native ops refuse ``return_lse=True``; its backends that return it (cuDNN, flash) are CUDA
    kernels. The native backend looks its ops up at every call, so replacing them here changes only attention under
    context parallelism: attention without it (cross-attention, validation's other models) still calls SDPA."""
    from diffusers.models import attention_dispatch

    attention_dispatch._native_attention_forward_op = _cpu_attention_forward_op
    attention_dispatch._native_attention_backward_op = _cpu_attention_backward_op


def _cpu_attention_forward_op(
    ctx,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    return_lse: bool = False,
    _save_ctx: bool = True,
    _parallel_config=None,
):
    """diffusers' forward-op contract (tensors [B, S, H, D], log-sum-exp [B, S, H]) over PyTorch's CPU flash
    attention, as diffusers' ``_native_flash_attention_forward_op`` is over the CUDA one."""
    if attn_mask is not None or dropout_p or enable_gqa:
        raise ValueError("CPU context-parallel attention takes no mask, dropout or grouped heads")
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        *(x.transpose(1, 2) for x in (query, key, value)), dropout_p, is_causal, scale=scale
    )
    out, lse = out.transpose(1, 2).contiguous(), lse.transpose(1, 2).contiguous()
    if _save_ctx:  # model layout, so that ring attention's backward can pass each step's key / value instead
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.is_causal, ctx.scale = is_causal, scale
    return (out, lse) if return_lse else out


def _cpu_attention_backward_op(ctx, grad_out: torch.Tensor, *args, **overrides):
    """Gradients for query, key and value; ring attention passes the key and value of each step and the merged output
    and log-sum-exp (``overrides``), Ulysses nothing (the saved tensors)."""
    saved = dict(zip(("query", "key", "value", "out", "lse"), ctx.saved_tensors, strict=True))
    tensors = {name: overrides.get(name) if overrides.get(name) is not None else saved[name] for name in saved}
    query, key, value, out = (tensors[name].transpose(1, 2) for name in ("query", "key", "value", "out"))
    lse = tensors["lse"].transpose(1, 2).to(torch.float32).contiguous()
    grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out.transpose(1, 2).to(query.dtype), query, key, value, out.to(query.dtype), lse, 0.0, ctx.is_causal,
        scale=ctx.scale,
    )  # fmt: skip
    return tuple(grad.transpose(1, 2) for grad in grads)


def ulysses_process_group(context_parallel_config: Any) -> torch.distributed.ProcessGroup:
    """The process group of the Ulysses degree of a set-up ``ContextParallelConfig`` (its private
    ``_ulysses_mesh``)."""
    return context_parallel_config._ulysses_mesh.get_group()


def sequence_all_to_all(group: torch.distributed.ProcessGroup, tensor: torch.Tensor, scatter: int, gather: int):
    """diffusers' autograd all-to-all of Ulysses attention (``attention_dispatch.SeqAllToAllDim``, not exported):
    scatter dimension ``scatter`` over the group, gather dimension ``gather``."""
    from diffusers.models.attention_dispatch import SeqAllToAllDim

    return SeqAllToAllDim.apply(group, tensor, scatter, gather)


# --- torch: DDP --------------------------------------------------------------------------------------------------


def ddp_ignore_parameters(model: torch.nn.Module, names: list[str]) -> None:
    """Make ``DistributedDataParallel`` leave these parameters out of its start-up broadcast and its gradient
    buckets (torch's private ``DistributedDataParallel._set_params_and_buffers_to_ignore_for_model``); call it before
    the model is wrapped."""
    from torch.nn.parallel import DistributedDataParallel

    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)


# --- datasets ----------------------------------------------------------------------------------------------------


def parquet_writer(features: Any, path: str, writer_batch_size: int) -> Any:
    """datasets' own Parquet writer (``datasets.arrow_writer.ParquetWriter``, not exported), so our shards carry the
    features metadata ``load_dataset`` reads back exactly as ``push_to_hub`` writes it."""
    from datasets.arrow_writer import ParquetWriter

    return ParquetWriter(features=features, path=path, writer_batch_size=writer_batch_size)


# --- peft --------------------------------------------------------------------------------------------------------


def lora_pattern_key(patterns: list[str], module_name: str) -> str:
    """The ``rank_pattern`` / ``alpha_pattern`` key that applies to ``module_name``, as peft matches it
    (``peft.utils.other.get_pattern_key``, not exported)."""
    from peft.utils.other import get_pattern_key

    return get_pattern_key(patterns, module_name)


# --- torch -------------------------------------------------------------------------------------------------------


@contextmanager
def dynamo_recompile_limit_at_least(limit: int) -> Iterator[None]:
    """Raise ``torch._dynamo.config.recompile_limit`` to at least ``limit`` while compiling (flex attention compiles
    once per block mask shape)."""
    with torch._dynamo.config.patch(recompile_limit=max(torch._dynamo.config.recompile_limit, limit)):
        yield
