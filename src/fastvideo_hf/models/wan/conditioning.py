"""The transformer call of a Wan training step, built the way Wan's pipelines build it at inference.

- T2V: the noisy latents, one timestep per sample.
- I2V (Wan2.1, Wan2.2 A14B): ``[noisy latents, mask, first-frame latent]`` on the channel axis, the mask being 1
  on the first latent frame (``WanImageToVideoPipeline.prepare_latents``), and the CLIP features as
  ``encoder_hidden_states_image`` when the model has an image encoder.
- Wan2.2 TI2V (``expand_timesteps``): one timestep per token. For I2V the first latent frame is the clean
  first-frame latent with timestep 0, and the loss ignores it, since inference never denoises it.
"""

from __future__ import annotations

import torch

from ..family import ModelSpec, TransformerCall


def first_frame_mask(latents: torch.Tensor, channels: int) -> torch.Tensor:
    """The I2V mask ``[B, channels, T, H, W]``: ones on the first latent frame (the given image), zeros after."""
    batch, _, frames, height, width = latents.shape
    mask = latents.new_zeros(batch, channels, frames, height, width)
    mask[:, :, 0] = 1
    return mask


def wan_transformer_call(
    spec: ModelSpec,
    noisy_latents: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    first_frame_latent: torch.Tensor | None = None,
    clip_feature: torch.Tensor | None = None,
) -> TransformerCall:
    """The transformer inputs for noisy latents ``[B, C, T, H, W]`` at per-sample ``timesteps`` ``[B]``."""
    if spec.expand_timesteps:
        keep = torch.ones_like(noisy_latents[:, :1])
        hidden_states = noisy_latents
        if first_frame_latent is not None:
            keep[:, :, 0] = 0
            hidden_states = (1 - keep) * first_frame_latent.to(noisy_latents.dtype) + keep * noisy_latents
        # as WanPipeline / WanImageToVideoPipeline: the timestep of each 1x2x2 patch
        per_token = keep[:, 0, :, ::2, ::2] * timesteps.view(-1, 1, 1, 1).to(keep.dtype)
        return TransformerCall(
            hidden_states,
            per_token.flatten(1),
            prompt_embeds,
            loss_mask=keep if first_frame_latent is not None else None,
        )
    if first_frame_latent is None:
        return TransformerCall(noisy_latents, timesteps, prompt_embeds)
    mask = first_frame_mask(noisy_latents, spec.vae_scale_factor_temporal)
    hidden_states = torch.cat([noisy_latents, mask, first_frame_latent.to(noisy_latents.dtype)], dim=1)
    return TransformerCall(
        hidden_states, timesteps, prompt_embeds, extra={"encoder_hidden_states_image": clip_feature}
    )
