"""The VSA attention processor for a diffusers transformer's video self-attention, and how to install it.

Installing::

    from fastvideo_hf.vsa import enable_vsa
    context = enable_vsa(pipe.transformer, sparsity=0.9)   # every self-attention; cross-attention stays dense
    context.sparsity = 0.75                                  # change it at any time (training ramps it)

The processor asks the model's family for q, k and v (projections, q/k norms and RoPE exactly as the family's own
processor computes them), then runs ``vsa_attention`` instead of dense attention. Attention processors do not see
the token grid, so a forward pre-hook on the transformer records (frames, height, width) after patchify for them;
the family says how to read it from the transformer's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from ..models import family_of_transformer
from .attention import BACKENDS, vsa_attention
from .tiling import tile_layout
from .ulysses import gather_sequence, scatter_sequence, ulysses_group

if TYPE_CHECKING:
    from ..models.family import ModelFamily

GATE_MODULE = "to_gate_compress"


@dataclass
class VSAContext:
    """State shared by the processors of one transformer: sparsity, backend and the current token grid."""

    sparsity: float = 0.0
    backend: str = "auto"
    grid: tuple[int, int, int] | None = None
    _hook: object = field(default=None, repr=False)


class VSAAttnProcessor:
    """A video self-attention with Video Sparse Attention; ``family`` computes its q, k and v."""

    def __init__(self, context: VSAContext, family: ModelFamily):
        self.context = context
        self.family = family
        # set by diffusers' ``enable_parallelism``: under Ulysses the processor exchanges sequence for heads itself
        self._parallel_config = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("VSAAttnProcessor is for self-attention without a mask")
        if self.context.grid is None:
            raise RuntimeError("VSA does not know the token grid: install it with enable_vsa(transformer)")
        query, key, value = self.family.vsa_qkv(attn, hidden_states, rotary_emb)
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


def _record_grid(context: VSAContext, family: ModelFamily):
    def hook(module, args, kwargs):
        context.grid = family.token_grid(module, args, kwargs)

    return hook


def install_vsa(transformer, family: ModelFamily, sparsity: float = 0.9, backend: str = "auto") -> VSAContext:
    """Install VSA on every video self-attention of a ``family`` transformer; returns the context to change sparsity.
    (``enable_vsa`` finds the family itself.)

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
    for attn in family.vsa_attentions(transformer):
        if not hasattr(attn, GATE_MODULE):
            reference = attn.to_q.weight
            gate = nn.Linear(reference.shape[1], reference.shape[0], device=reference.device, dtype=reference.dtype)
            nn.init.zeros_(gate.weight)
            nn.init.zeros_(gate.bias)
            gate.requires_grad_(attn.to_q.weight.requires_grad)
            setattr(attn, GATE_MODULE, gate)
        attn.set_processor(VSAAttnProcessor(context, family))
    context._hook = transformer.register_forward_pre_hook(_record_grid(context, family), with_kwargs=True)
    transformer._vsa_context = context
    return context


def enable_vsa(transformer, sparsity: float = 0.9, backend: str = "auto") -> VSAContext:
    """Install VSA on every video self-attention of ``transformer`` (any family fastvideo-hf knows); returns the
    context to change sparsity. See ``install_vsa``."""
    return install_vsa(transformer, family_of_transformer(transformer), sparsity, backend)


def vsa_context(transformer) -> VSAContext | None:
    """The VSA context of a transformer, or None if VSA is not installed."""
    return getattr(transformer, "_vsa_context", None)
