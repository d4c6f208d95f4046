"""q, k and v of a Wan self-attention for VSA, computed exactly as diffusers' ``WanAttnProcessor`` computes them.

The projections (fused or not), the q/k RMS norms across heads and Wan's RoPE on interleaved pairs; the generic
``vsa.processor.VSAAttnProcessor`` then runs sparse attention on them instead of dense attention.
"""

from __future__ import annotations

import torch

from ...library_internals import wan_qkv_projections


def _apply_rotary_emb(hidden_states: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on interleaved pairs, as in diffusers' ``WanAttnProcessor``."""
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


def self_attention_qkv(attn, hidden_states: torch.Tensor, rotary_emb) -> tuple[torch.Tensor, ...]:
    """q, k, v ``[B, S, H, D]`` of the self-attention ``attn`` (``attn1``) on ``hidden_states`` ``[B, S, C]``."""
    query, key, value = wan_qkv_projections(attn, hidden_states)
    query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
    key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
    value = value.unflatten(2, (attn.heads, -1))
    if rotary_emb is not None:
        query = _apply_rotary_emb(query, *rotary_emb)
        key = _apply_rotary_emb(key, *rotary_emb)
    return query, key, value
