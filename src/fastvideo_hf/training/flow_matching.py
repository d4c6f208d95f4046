"""Rectified-flow training inputs and loss, as the flow-matching scheduler of the model's pipeline runs them at
inference.

``x_t = (1 - sigma) * x0 + sigma * noise`` and the transformer predicts the velocity ``noise - x0``; the
timestep it is given is ``sigma * timestep_scale`` (the family's: 1000 for Wan), as the pipeline passes
``scheduler.timesteps`` (the family's transformer call shapes it, e.g. per token). Sigmas are drawn with diffusers'
SD3 densities (uniform, logit_normal, mode) and then shifted by ``flow_shift`` with the formula of diffusers'
flow-matching schedulers (``shift * s / (1 + (shift - 1) * s)``): a shift that is parsed but never applied is a known
bug of other trainers.

Every random draw of a sample (sigma, noise, caption dropout) comes from a generator seeded by (seed, optimizer
step, micro-step, position in the global batch): the draws do not depend on the number of processes, and a
resumed run draws exactly what the uninterrupted run drew, without restoring any RNG state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.training_utils import compute_density_for_timestep_sampling


@dataclass
class FlowMatchingConfig:
    weighting_scheme: str = "uniform"  # uniform | logit_normal | mode
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    flow_shift: float = 1.0
    caption_dropout: float = 0.0
    min_sigma: float = 0.0  # a two-expert model's expert trains on one side of the boundary: [min_sigma, max_sigma]
    max_sigma: float = 1.0
    timestep_scale: float = 1000.0  # the transformer's timestep per unit of sigma: ModelFamily.timestep_scale


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """The schedulers' timestep shift: larger ``shift`` moves training (and sampling) toward noisier sigmas."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def unshift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Inverse of ``shift_sigmas``."""
    return sigmas / (shift - (shift - 1) * sigmas)


def sample_generators(seed: int, step: int, micro_step: int, positions: list[int]) -> list[torch.Generator]:
    """One CPU generator per sample, seeded by where the sample sits in training, not by who computes it."""
    return [
        torch.Generator().manual_seed(hash((seed, step, micro_step, position)) & 0x7FFF_FFFF_FFFF_FFFF)
        for position in positions
    ]


def sample_sigmas(config: FlowMatchingConfig, generators: list[torch.Generator]) -> torch.Tensor:
    """Shifted sigmas in ``[min_sigma, max_sigma]``, one per generator."""
    u = torch.cat(
        [
            compute_density_for_timestep_sampling(
                config.weighting_scheme,
                batch_size=1,
                logit_mean=config.logit_mean,
                logit_std=config.logit_std,
                mode_scale=config.mode_scale,
                generator=generator,
            )
            for generator in generators
        ]
    )
    # An expert's range [min_sigma, max_sigma] is mapped back through the shift, so the draw keeps its shape
    # inside the range (for uniform it is exactly the conditional distribution).
    low, high = (
        unshift_sigmas(torch.tensor(bound), config.flow_shift) for bound in (config.min_sigma, config.max_sigma)
    )
    return shift_sigmas(low + (high - low) * u.clamp(0.0, 1.0), config.flow_shift)


@dataclass
class FlowMatchingBatch:
    noisy_latents: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor
    prompt_embeds: torch.Tensor


def make_training_batch(
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    config: FlowMatchingConfig,
    generators: list[torch.Generator],
) -> FlowMatchingBatch:
    """Noise ``latents`` (normalized, ``[B, C, T, H, W]``) at sampled sigmas; drop captions to zero embeddings."""
    sigmas = sample_sigmas(config, generators).to(latents.device)
    noise = torch.stack([torch.randn(latents.shape[1:], generator=generator) for generator in generators])
    noise = noise.to(latents.device, latents.dtype)
    keep = torch.tensor(
        [torch.rand(1, generator=generator).item() >= config.caption_dropout for generator in generators]
    )
    # A dropped caption becomes an all-zero embedding (FastVideo's choice), teaching the unconditional branch.
    prompt_embeds = prompt_embeds * keep.to(prompt_embeds.device, prompt_embeds.dtype).view(-1, 1, 1)
    noisy_latents, timesteps, target = interpolate(latents, noise, sigmas, config.timestep_scale)
    return FlowMatchingBatch(noisy_latents, timesteps, target, prompt_embeds)


def interpolate(
    latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, timestep_scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, timesteps, velocity target)`` for clean ``latents``, ``noise`` and per-sample ``sigmas``; the
    timesteps are ``sigmas * timestep_scale``."""
    sigma = sigmas.view(-1, 1, 1, 1, 1).to(latents.dtype)
    return (1.0 - sigma) * latents + sigma * noise, sigmas * timestep_scale, noise - latents


def flow_matching_loss(
    model_pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error of the predicted velocity in float32, over the positions where ``mask`` is 1."""
    error = (model_pred.float() - target.float()) ** 2
    if mask is None:
        return error.mean()
    mask = mask.float().expand_as(error)
    return (error * mask).sum() / mask.sum()
