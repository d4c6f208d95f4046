"""The VSA attention processor for diffusers' Wan self-attention, and how to install and reload it.

Installing::

    from fastvideo_hf.vsa import enable_vsa
    context = enable_vsa(pipe.transformer, sparsity=0.9)   # every attn1; cross-attention stays dense
    context.sparsity = 0.75                                  # change it at any time (training ramps it)

The processor computes q, k, v, the q/k RMS norms and RoPE exactly as diffusers' ``WanAttnProcessor`` does,
then runs ``vsa_attention`` instead of dense attention. Attention processors do not see the token grid, so a
forward pre-hook on the transformer records (frames, height, width) after patchify for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..library_internals import wan_qkv_projections
from .attention import BACKENDS, vsa_attention
from .tiling import tile_layout
from .ulysses import gather_sequence, scatter_sequence, ulysses_group

GATE_MODULE = "to_gate_compress"


@dataclass
class VSAContext:
    """State shared by the processors of one transformer: sparsity, backend and the current token grid."""

    sparsity: float = 0.0
    backend: str = "auto"
    grid: tuple[int, int, int] | None = None
    _hook: object = field(default=None, repr=False)


def _apply_rotary_emb(hidden_states: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on interleaved pairs, as in diffusers' ``WanAttnProcessor``."""
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


class WanVSAAttnProcessor:
    """Self-attention of a ``WanAttention`` (``attn1``) with Video Sparse Attention."""

    def __init__(self, context: VSAContext):
        self.context = context
        # set by diffusers' ``enable_parallelism``: under Ulysses the processor exchanges sequence for heads itself
        self._parallel_config = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("WanVSAAttnProcessor is for self-attention (attn1) without a mask")
        if self.context.grid is None:
            raise RuntimeError("VSA does not know the token grid: install it with enable_vsa(transformer)")
        query, key, value = wan_qkv_projections(attn, hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query = _apply_rotary_emb(query, *rotary_emb)
            key = _apply_rotary_emb(key, *rotary_emb)
        gate = getattr(attn, GATE_MODULE)(hidden_states).unflatten(2, (attn.heads, -1))
        group = ulysses_group(self._parallel_config)
        if group is not None:  # whole sequence (complete tiles) for a subset of heads
            query, key, value, gate = (gather_sequence(tensor, group) for tensor in (query, key, value, gate))
        layout = tile_layout(self.context.grid, query.device)
        hidden_states = vsa_attention(query, key, value, gate, layout, self.context.sparsity, self.context.backend)
        if group is not None:
            hidden_states = scatter_sequence(hidden_states, group)
        hidden_states = hidden_states.flatten(2, 3).type_as(query)
        hidden_states = attn.to_out[0](hidden_states)
        return attn.to_out[1](hidden_states)


def _record_grid(context: VSAContext):
    def hook(module, args, kwargs):
        hidden_states = kwargs.get("hidden_states", args[0] if args else None)
        _, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = module.config.patch_size
        context.grid = (frames // p_t, height // p_h, width // p_w)

    return hook


def enable_vsa(transformer, sparsity: float = 0.9, backend: str = "auto") -> VSAContext:
    """Install VSA on every ``attn1`` of a ``WanTransformer3DModel``; returns the context to change sparsity.

    Adds a zero-initialised ``to_gate_compress`` Linear(dim, dim) to each self-attention (kept if it already
    exists, e.g. loaded weights), so the coarse branch starts switched off. Calling it twice updates the
    settings of the installed processors.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown VSA backend {backend!r}; choose from {BACKENDS}")
    existing = vsa_context(transformer)
    if existing is not None:
        existing.sparsity, existing.backend = sparsity, backend
        return existing
    context = VSAContext(sparsity=sparsity, backend=backend)
    for block in transformer.blocks:
        attn = block.attn1
        if not hasattr(attn, GATE_MODULE):
            reference = attn.to_q.weight
            gate = nn.Linear(reference.shape[1], reference.shape[0], device=reference.device, dtype=reference.dtype)
            nn.init.zeros_(gate.weight)
            nn.init.zeros_(gate.bias)
            gate.requires_grad_(attn.to_q.weight.requires_grad)
            setattr(attn, GATE_MODULE, gate)
        attn.set_processor(WanVSAAttnProcessor(context))
    context._hook = transformer.register_forward_pre_hook(_record_grid(context), with_kwargs=True)
    transformer._vsa_context = context
    return context


def vsa_context(transformer) -> VSAContext | None:
    """The VSA context of a transformer, or None if VSA is not installed."""
    return getattr(transformer, "_vsa_context", None)
