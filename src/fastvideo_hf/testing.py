"""What tests of fastvideo-hf, and of code built on it, need: tiny offline models and a fixed-noise loss.

Nothing here is part of a training or preprocessing run. The tiny pipelines are real diffusers pipelines with random
weights, small enough for a CPU, saved and loaded through the normal ``save_pretrained`` / ``from_pretrained`` path
(``fastvideo-hf tiny-model`` writes one for the demo). ``held_out_loss`` says whether a model learned: training
draws random sigmas and noise, so its logged loss moves with luck; two evaluations of the same weights here give the
same number, and a drop between two sets of weights means the model learned.
"""

from __future__ import annotations

import torch

from .models import ModelSpec
from .tools.tiny_models import TEXT_DIM, build_tiny_wan_pipeline, save_tiny_wan_pipeline, tiny_wan_transformer
from .training.flow_matching import flow_matching_loss, interpolate
from .training.latent_dataset import LatentDataset, collate_latents, image_conditioning

__all__ = ["TEXT_DIM", "build_tiny_wan_pipeline", "held_out_loss", "save_tiny_wan_pipeline", "tiny_wan_transformer"]


@torch.no_grad()
def held_out_loss(
    transformer: torch.nn.Module,
    dataset: LatentDataset,
    spec: ModelSpec,
    sigmas: list[float],
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Mean flow-matching loss over every row of ``dataset`` at fixed ``sigmas`` and fixed noise (never dropping a
    caption), through the family's transformer call as training makes it."""
    was_training = transformer.training
    transformer.eval()
    device = next(transformer.parameters()).device
    total, count = 0.0, 0
    for index in range(len(dataset)):
        row = {name: value.to(device) for name, value in collate_latents([dataset[index]]).items()}
        latents = row["latents"]
        for sigma_index, sigma in enumerate(sigmas):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index * 1_009 + sigma_index)
            noise = torch.randn(latents.shape, generator=generator).to(device)
            sigma_tensor = torch.full((1,), sigma, device=device)
            noisy, timesteps, target = interpolate(latents, noise, sigma_tensor, spec.family.timestep_scale)
            call = spec.family.transformer_call(spec, noisy, timesteps, row["prompt_embeds"], image_conditioning(row))
            total += flow_matching_loss(call.run(transformer, dtype), target, call.loss_mask).item()
            count += 1
    transformer.train(was_training)
    return total / count
