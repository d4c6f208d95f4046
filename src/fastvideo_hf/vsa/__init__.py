"""Video Sparse Attention (VSA, arXiv 2505.13389) for diffusers' ``WanTransformer3DModel``.

``enable_vsa(transformer, sparsity=0.9)`` installs ``WanVSAAttnProcessor`` on every self-attention (``attn1``)
and adds the zero-initialised ``to_gate_compress`` projection; cross-attention stays dense.
"""

from .processor import VSAContext, WanVSAAttnProcessor, enable_vsa, load_vsa_gates, vsa_context
from .schedule import vsa_sparsity_at_step

__all__ = [
    "VSAContext",
    "WanVSAAttnProcessor",
    "enable_vsa",
    "load_vsa_gates",
    "vsa_context",
    "vsa_sparsity_at_step",
]
