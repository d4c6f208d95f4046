"""The frozen encoders of Wan preprocessing: the UMT5 prompt encoder, the VAE and the image conditioning.

Both load through the normal diffusers / transformers ``from_pretrained`` path from a diffusers-format Wan
folder or Hub id. The prompt encoder reproduces ``WanPipeline._get_t5_prompt_embeds`` step for step (same
``prompt_clean``, same tokenizer call, attention mask passed to the encoder), so what training sees is exactly
what inference will feed the transformer; it returns each embedding trimmed to its real token count.
"""

from __future__ import annotations

import torch
from diffusers.pipelines.wan.pipeline_wan import prompt_clean

from ..family import has_component, model_index


class WanPromptEncoder:
    def __init__(self, tokenizer, text_encoder, max_sequence_length: int):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.max_sequence_length = max_sequence_length

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        max_sequence_length: int,
        revision: str | None = None,
        device: str | torch.device = "cpu",
        dtype=torch.float32,
    ) -> WanPromptEncoder:
        from transformers import AutoTokenizer, UMT5EncoderModel

        tokenizer = AutoTokenizer.from_pretrained(model, subfolder="tokenizer", revision=revision)
        text_encoder = UMT5EncoderModel.from_pretrained(
            model, subfolder="text_encoder", revision=revision, dtype=dtype
        )
        return cls(tokenizer, text_encoder.to(device), max_sequence_length)

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
    def __call__(self, image, num_frames: int) -> dict[str, torch.Tensor | None]:
        """The ``first_frame_latent`` ``[C, T', H', W']`` and ``clip_feature`` ``[L, D]`` (None without an image
        encoder) of a PIL ``image``, by Parquet column."""
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
        return {"first_frame_latent": first_frame_latent[0], "clip_feature": clip_feature}
