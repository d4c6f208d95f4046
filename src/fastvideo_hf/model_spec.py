"""What kind of Wan model is being trained, read from its diffusers folder (no weights loaded).

Wan2.1 T2V and I2V, Wan2.2 A14B (two experts split at ``boundary_ratio``) and Wan2.2 TI2V-5B (per-token
timesteps, ``expand_timesteps``) differ in how the transformer is called; everything that depends on that
asks this spec instead of guessing from names.
"""

from __future__ import annotations

from dataclasses import dataclass

EXPERT_SUBFOLDERS = {"high": "transformer", "low": "transformer_2"}
# WanPipeline.__call__ encodes prompts to this many tokens; the training loader pads back to it.
WAN_MAX_SEQUENCE_LENGTH = 512


@dataclass(frozen=True)
class WanModelSpec:
    pipeline_class: str
    in_channels: int
    out_channels: int
    text_dim: int
    image_dim: int | None  # CLIP width when the transformer takes image embeddings (Wan2.1 I2V)
    expand_timesteps: bool  # Wan2.2 TI2V: one timestep per token, the first frame kept clean for I2V
    boundary_ratio: float | None  # Wan2.2 A14B: timesteps >= ratio * 1000 go to the high-noise expert
    latent_channels: int
    vae_scale_factor_temporal: int
    vae_scale_factor_spatial: int
    latents_mean: list[float]
    latents_std: list[float]

    @classmethod
    def from_pretrained(cls, model: str, revision: str | None = None) -> WanModelSpec:
        from diffusers import AutoencoderKLWan, WanTransformer3DModel

        index = model_index(model, revision)
        transformer = WanTransformer3DModel.load_config(model, subfolder="transformer", revision=revision)
        vae = AutoencoderKLWan.load_config(model, subfolder="vae", revision=revision)
        return cls(
            pipeline_class=index.get("_class_name", "WanPipeline"),
            in_channels=transformer["in_channels"],
            out_channels=transformer["out_channels"],
            text_dim=transformer["text_dim"],
            image_dim=transformer.get("image_dim"),
            expand_timesteps=bool(index.get("expand_timesteps")),
            boundary_ratio=index.get("boundary_ratio"),
            latent_channels=vae["z_dim"],
            vae_scale_factor_temporal=vae.get("scale_factor_temporal") or 4,
            vae_scale_factor_spatial=vae.get("scale_factor_spatial") or 8,
            latents_mean=vae["latents_mean"],
            latents_std=vae["latents_std"],
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this model trains: TI2V does both; otherwise the input width tells (36 = I2V)."""
        if self.expand_timesteps:
            return ("t2v", "i2v")
        return ("t2v",) if self.in_channels == self.out_channels else ("i2v",)

    @property
    def has_experts(self) -> bool:
        return self.boundary_ratio is not None

    def sigma_range(self, expert: str | None) -> tuple[float, float]:
        """The sigmas an expert sees: high noise at or above the boundary, low noise below it."""
        if expert is None or (expert == "both" and self.has_experts):
            return 0.0, 1.0
        if not self.has_experts:
            raise ValueError("--expert is only for two-expert models (Wan2.2 A14B); this model has one transformer")
        return (self.boundary_ratio, 1.0) if expert == "high" else (0.0, self.boundary_ratio)


def model_index(model: str, revision: str | None = None) -> dict:
    """The pipeline's ``model_index.json``: which components exist (image encoder, second expert) and flags."""
    from diffusers import DiffusionPipeline

    return dict(DiffusionPipeline.load_config(model, revision=revision))


def has_component(index: dict, name: str) -> bool:
    return bool(index.get(name)) and index[name][0] is not None
