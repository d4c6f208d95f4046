"""The frozen encoders of preprocessing: Wan's UMT5 prompt encoder and its VAE.

Both load through the normal diffusers / transformers ``from_pretrained`` path from a diffusers-format Wan
folder or Hub id. The prompt encoder reproduces ``WanPipeline._get_t5_prompt_embeds`` step for step (same
``prompt_clean``, same tokenizer call, attention mask passed to the encoder), so what training sees is exactly
what inference will feed the transformer; it returns each embedding trimmed to its real token count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.pipelines.wan.pipeline_wan import prompt_clean

from ..model_spec import WAN_MAX_SEQUENCE_LENGTH, has_component, model_index


class WanPromptEncoder:
    def __init__(self, tokenizer, text_encoder, max_sequence_length: int = WAN_MAX_SEQUENCE_LENGTH):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.max_sequence_length = max_sequence_length

    @classmethod
    def from_pretrained(
        cls, model: str, revision: str | None = None, device: str | torch.device = "cpu", dtype=torch.float32
    ) -> WanPromptEncoder:
        from transformers import AutoTokenizer, UMT5EncoderModel

        tokenizer = AutoTokenizer.from_pretrained(model, subfolder="tokenizer", revision=revision)
        text_encoder = UMT5EncoderModel.from_pretrained(
            model, subfolder="text_encoder", revision=revision, dtype=dtype
        )
        return cls(tokenizer, text_encoder.to(device))

    def truncates(self, caption: str) -> bool:
        """Whether ``caption`` has more tokens than are encoded: the rest is cut, as ``WanPipeline`` cuts it."""
        limit = self.max_sequence_length
        inputs = self.tokenizer(prompt_clean(caption), max_length=limit + 1, truncation=True, add_special_tokens=True)
        return len(inputs.input_ids) > limit

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> list[torch.Tensor]:
        """Embeddings ``[L_i, D]`` of each caption, ``L_i`` = its token count (with EOS), in the encoder dtype."""
        inputs = self.tokenizer(
            [prompt_clean(caption) for caption in captions],
            padding="max_length",
            max_length=self.max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = self.text_encoder.device
        mask = inputs.attention_mask.to(device)
        hidden = self.text_encoder(inputs.input_ids.to(device), mask).last_hidden_state
        lengths = mask.gt(0).sum(dim=1).tolist()
        # clone: a view would keep the whole padded [512, D] buffer alive with the row
        return [embedding[:length].clone() for embedding, length in zip(hidden, lengths, strict=True)]


class WanVaeEncoder:
    def __init__(self, vae):
        self.vae = vae.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls, model: str, revision: str | None = None, device: str | torch.device = "cpu", dtype=torch.float32
    ) -> WanVaeEncoder:
        from diffusers import AutoencoderKLWan

        return cls(
            AutoencoderKLWan.from_pretrained(model, subfolder="vae", revision=revision, torch_dtype=dtype).to(device)
        )

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """Posterior mean ``[C, T', H', W']`` (not normalized) of pixels ``[3, T, H, W]`` in [-1, 1]."""
        batch = pixels.unsqueeze(0).to(self.vae.device, self.vae.dtype)
        return self.vae.encode(batch).latent_dist.mean[0]


@dataclass
class PipelineConfigs:
    """The configs of a Wan pipeline's components: small files, read before any weight is loaded."""

    index: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: Any  # a transformers PretrainedConfig
    patch_size: tuple[int, int, int]  # the transformer's (t, h, w) patch, (1, 1, 1) without a transformer

    @property
    def spatial_multiple(self) -> tuple[int, int]:
        """What height and width must be multiples of: the VAE's downsampling times the transformer's patch."""
        spatial = self.vae.get("scale_factor_spatial") or 8
        return spatial * self.patch_size[1], spatial * self.patch_size[2]


def load_pipeline_configs(model: str, revision: str | None = None) -> PipelineConfigs:
    """The configs of ``model``, or a ``ValueError`` saying what to pass instead (missing folder, not a diffusers
    pipeline, unknown or unreachable Hub id), so a wrong path fails in a second, not at the first clip."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoConfig

    try:
        index = model_index(model, revision)
        vae = dict(AutoencoderKLWan.load_config(model, subfolder="vae", revision=revision))
        text_encoder = AutoConfig.from_pretrained(model, subfolder="text_encoder", revision=revision)
        patch_size = (1, 1, 1)
        if has_component(index, "transformer"):
            transformer = WanTransformer3DModel.load_config(model, subfolder="transformer", revision=revision)
            patch_size = tuple(transformer.get("patch_size") or (1, 2, 2))
    except (OSError, ValueError) as error:  # diffusers/transformers raise OSError; a malformed Hub id ValueError
        raise ValueError(_unloadable_model_message(model, error)) from error
    return PipelineConfigs(index, vae, text_encoder, patch_size)


def _unloadable_model_message(model: str, error: Exception) -> str:
    reason = (str(error).splitlines() or [type(error).__name__])[0]
    if os.path.isdir(model):
        return (
            f"{model} is not a diffusers-format Wan pipeline ({reason}): pass the folder written by "
            "save_pretrained (model_index.json, vae/, text_encoder/, tokenizer/) or a Hub id"
        )
    if os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") != 1:
        return (
            f"--pretrained_model_name_or_path {model}: no such folder; pass a diffusers-format Wan folder "
            "or a Hub id such as Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
        )
    return (
        f"cannot load the model {model!r} from the Hub ({reason}): check the id and --revision, "
        "and run `hf auth login` for a gated or private model"
    )


class WanImageConditionEncoder:
    """The image conditioning of image-to-video, computed by diffusers' own ``WanImageToVideoPipeline`` code.

    The pipeline object holds only the VAE (and the CLIP encoder where the model has one); its
    ``prepare_latents`` gives the first-frame latent (the VAE latent of the first frame followed by zero
    frames, or of the frame alone for Wan2.2 TI2V, normalized with latents_mean/std) and its ``encode_image``
    the CLIP features (``hidden_states[-2]``), so training sees exactly what inference feeds the transformer.
    """

    def __init__(self, pipeline):
        self.pipeline = pipeline

    @classmethod
    def from_pretrained(cls, model: str, vae, revision: str | None = None, device="cpu", dtype=torch.float32):
        from diffusers import WanImageToVideoPipeline

        index = model_index(model, revision)
        components = {"image_encoder": None, "image_processor": None}
        if has_component(index, "image_encoder"):
            from transformers import CLIPImageProcessor, CLIPVisionModel

            components["image_encoder"] = CLIPVisionModel.from_pretrained(
                model, subfolder="image_encoder", revision=revision, dtype=dtype
            ).to(device)
            components["image_processor"] = CLIPImageProcessor.from_pretrained(
                model, subfolder="image_processor", revision=revision
            )
        pipeline = WanImageToVideoPipeline(
            tokenizer=None,
            text_encoder=None,
            vae=vae,
            scheduler=None,
            expand_timesteps=bool(index.get("expand_timesteps")),
            **components,
        )
        return cls(pipeline)

    @property
    def has_image_encoder(self) -> bool:
        return self.pipeline.image_encoder is not None

    @torch.no_grad()
    def __call__(self, image, num_frames: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(first-frame latent ``[C, T', H', W']``, CLIP features ``[L, D]`` or None) of a PIL ``image``."""
        pipeline = self.pipeline
        device = pipeline.vae.device
        pixels = pipeline.video_processor.preprocess(image, height=image.height, width=image.width)
        outputs = pipeline.prepare_latents(
            pixels.to(device, torch.float32),
            batch_size=1,
            num_channels_latents=pipeline.vae.config.z_dim,
            height=image.height,
            width=image.width,
            num_frames=num_frames,
            dtype=torch.float32,
            device=device,
        )
        if pipeline.config.expand_timesteps:
            first_frame_latent = outputs[1]
        else:  # [mask (vae_scale_factor_temporal channels), latent]
            first_frame_latent = outputs[1][:, pipeline.vae_scale_factor_temporal :]
        clip_feature = pipeline.encode_image(image, device)[0] if self.has_image_encoder else None
        return first_frame_latent[0], clip_feature
