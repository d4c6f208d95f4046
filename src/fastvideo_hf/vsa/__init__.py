"""Video Sparse Attention (VSA, arXiv 2505.13389) for diffusers' video transformers.

``enable_vsa(transformer, sparsity=0.9)`` installs ``VSAAttnProcessor`` on every video self-attention
and adds the zero-initialised ``to_gate_compress`` projection; cross-attention stays dense. ``load_vsa_gates``
reloads saved gates, in our key names or FastVideo's (``checkpoints``).
"""

from .checkpoints import load_vsa_gates, read_vsa_config, rename_gate_keys, vsa_gate_naming
from .processor import VSAAttnProcessor, VSAContext, enable_vsa, install_vsa, vsa_context
from .schedule import vsa_sparsity_at_step

__all__ = [
    "VSAAttnProcessor",
    "VSAContext",
    "enable_vsa",
    "install_vsa",
    "load_vsa_gates",
    "read_vsa_config",
    "rename_gate_keys",
    "vsa_context",
    "vsa_gate_naming",
    "vsa_sparsity_at_step",
]
