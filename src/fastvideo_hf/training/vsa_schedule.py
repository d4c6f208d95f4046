"""Video Sparse Attention in a training run: installed before the adapter, ramped step by step, recorded beside
the weights.

``--attention_backend vsa`` replaces every self-attention of each trained transformer (``fastvideo_hf.vsa``) and
starts dense; the sparsity then rises by ``--vsa_decay_rate`` every ``--vsa_decay_interval_steps`` to
``--vsa_sparsity``, as FastVideo's recipes ramp it. Without VSA every function here does nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..models import expert_modules

if TYPE_CHECKING:
    from ..vsa.processor import VSAContext


def setup_vsa(model: torch.nn.Module, args: argparse.Namespace) -> list[VSAContext]:
    """Install VSA in every trained transformer when ``--attention_backend vsa`` (before any adapter, so the
    gate can carry one); returns their contexts (empty without VSA)."""
    if args.attention_backend != "vsa":
        return []
    from ..vsa import enable_vsa

    return [enable_vsa(expert, sparsity=0.0, backend=args.vsa_backend) for expert in expert_modules(model).values()]


def update_vsa_sparsity(contexts: list[VSAContext], args: argparse.Namespace, global_step: int) -> float | None:
    """Set the sparsity of the ramp for the step after ``global_step`` steps; returns it (None without VSA).

    FastVideo numbers the step being taken from 1 (``step // interval`` for step 1, 2, ...): so do we, so that
    each notch of the ramp comes at the same step as in FastVideo's recipes."""
    if not contexts:
        return None
    from ..vsa import vsa_sparsity_at_step

    sparsity = vsa_sparsity_at_step(
        global_step + 1, args.vsa_sparsity, args.vsa_decay_rate, args.vsa_decay_interval_steps
    )
    for context in contexts:
        context.sparsity = sparsity
    return sparsity


def save_vsa_config(folder: str | Path, args: argparse.Namespace) -> None:
    """``vsa_config.json`` beside the weights: what a user needs to rebuild the VSA model for inference."""
    if args.attention_backend != "vsa":
        return
    config = {"attention_backend": "vsa", "sparsity": args.vsa_sparsity, "tile_size": [4, 4, 4]}
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, "vsa_config.json").write_text(json.dumps(config, indent=2) + "\n")
