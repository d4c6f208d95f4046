"""Wan2.1 / Wan2.2 as a ``ModelFamily``: what is true of Wan and of nothing else.

Wan2.1 T2V and I2V, Wan2.2 A14B (two experts split at ``boundary_ratio``) and Wan2.2 TI2V-5B (per-token
timesteps, ``expand_timesteps``, a 16x spatial VAE) are one family: a UMT5 prompt encoder padded to 512 tokens,
``AutoencoderKLWan`` latents normalised with ``latents_mean`` / ``latents_std``, ``WanTransformer3DModel`` with a
1x2x2 patch, ``WanPipeline`` / ``WanImageToVideoPipeline`` at inference. The heavier pieces have their own modules
beside this one: ``encoders`` (preprocessing), ``conditioning`` (the training call), ``experts``, ``lora_keys``
(original / ComfyUI names), ``memory`` (activation bytes for ``plan``) and ``vsa`` (q, k, v and RoPE of VSA).
"""

from __future__ import annotations

from typing import Any

import torch

from ..family import (
    EXPERT_SLOTS,
    ActivationBytes,
    ImageConditionEncoder,
    KnownModel,
    ModelFamily,
    ModelSpec,
    PromptEncoder,
    TransformerCall,
    VideoEncoder,
    has_component,
)
from .memory import ACTIVATION_ASSUMPTION

# WanPipeline.__call__ encodes prompts to this many tokens; the training loader pads back to it.
MAX_SEQUENCE_LENGTH = 512

_WAN_14B = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-06,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}
_WAN_I2V_14B = {**_WAN_14B, "in_channels": 36, "image_dim": 1280, "added_kv_proj_dim": 5120}

# The transformer config.json of each public model (diffusers' scripts/convert_wan_to_diffusers.py).
KNOWN_MODELS = {
    "wan2.1-t2v-1.3b": KnownModel(
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        {**_WAN_14B, "num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},
    ),
    "wan2.1-t2v-14b": KnownModel("Wan-AI/Wan2.1-T2V-14B-Diffusers", _WAN_14B),
    "wan2.1-i2v-14b-480p": KnownModel("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", _WAN_I2V_14B),
    "wan2.1-i2v-14b-720p": KnownModel("Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", _WAN_I2V_14B),
    "wan2.2-t2v-a14b": KnownModel("Wan-AI/Wan2.2-T2V-A14B-Diffusers", _WAN_14B, EXPERT_SLOTS),
    "wan2.2-i2v-a14b": KnownModel("Wan-AI/Wan2.2-I2V-A14B-Diffusers", {**_WAN_14B, "in_channels": 36}, EXPERT_SLOTS),
    "wan2.2-ti2v-5b": KnownModel(
        "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        {**_WAN_14B, "num_attention_heads": 24, "ffn_dim": 14336, "num_layers": 30, "in_channels": 48,
         "out_channels": 48},
        vae_scale_spatial=16,
        expand_timesteps=True,
    ),
}  # fmt: skip

_USAGE_LORA = """```python
import torch
from diffusers import WanPipeline
from diffusers.utils import export_to_video

pipe = WanPipeline.from_pretrained("{base_model}", torch_dtype=torch.bfloat16).to("cuda")
pipe.load_lora_weights("{repo_id}")
video = pipe("{prompt}", num_frames=81).frames[0]
export_to_video(video, "video.mp4", fps=16)
```

For ComfyUI, load `pytorch_lora_weights_comfy.safetensors` with a LoRA loader node (original Wan key names).
For image-to-video use `WanImageToVideoPipeline` and pass `image=`. For a Wan2.2 low-noise expert, add
`load_into_transformer_2=True` (with `--expert both`, its file is `pytorch_lora_weights_transformer_2.safetensors`:
pass it as `weight_name`)."""

_USAGE_FULL = """```python
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from diffusers.utils import export_to_video

transformer = WanTransformer3DModel.from_pretrained("{repo_id}", subfolder="transformer", torch_dtype=torch.bfloat16)
pipe = WanPipeline.from_pretrained("{base_model}", transformer=transformer, torch_dtype=torch.bfloat16).to("cuda")
video = pipe("{prompt}", num_frames=81).frames[0]
export_to_video(video, "video.mp4", fps=16)
```"""


class WanFamily(ModelFamily):
    name = "wan"
    title = "Wan"
    pipeline_classes = ("WanPipeline", "WanImageToVideoPipeline")
    transformer_classes = ("WanTransformer3DModel",)
    default_lora_targets = ("to_q", "to_k", "to_v", "to_out.0")
    timestep_scale = 1000.0  # FlowMatchEulerDiscrete / UniPC's num_train_timesteps: WanPipeline passes sigma * 1000
    known_models = KNOWN_MODELS
    comfy_base_model_format = "wan"
    activation_assumption = ACTIVATION_ASSUMPTION

    def read_spec(self, model: str, revision: str | None, index: dict[str, Any]) -> ModelSpec:
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        from transformers import AutoConfig

        vae = AutoencoderKLWan.load_config(model, subfolder="vae", revision=revision)
        text_encoder = None  # a folder of configs for training alone may leave it out: its width is text_dim
        if has_component(index, "text_encoder"):
            text_encoder = AutoConfig.from_pretrained(model, subfolder="text_encoder", revision=revision)
        transformer: dict[str, Any] = {}
        if has_component(index, "transformer"):
            transformer = WanTransformer3DModel.load_config(model, subfolder="transformer", revision=revision)
        in_channels, out_channels = transformer.get("in_channels"), transformer.get("out_channels")
        spatial, temporal = self.vae_scale_factors(vae)
        expand_timesteps = bool(index.get("expand_timesteps"))
        if expand_timesteps:  # TI2V: the first latent frame is kept clean for I2V, noised for T2V
            tasks = ("t2v", "i2v")
        else:  # otherwise the input width tells: I2V adds the mask and first-frame channels
            tasks = ("t2v",) if in_channels == out_channels else ("i2v",)
        return ModelSpec(
            family=self,
            pipeline_class=index.get("_class_name", "WanPipeline"),
            tasks=tasks,
            latent_channels=vae["z_dim"],
            vae_scale_factor_temporal=temporal,
            vae_scale_factor_spatial=spatial,
            latents_mean=list(vae["latents_mean"]),
            latents_std=list(vae["latents_std"]),
            vae_class=vae.get("_class_name", "AutoencoderKLWan"),
            text_encoder_class=((text_encoder and text_encoder.architectures) or ["UMT5EncoderModel"])[0],
            text_dim=transformer.get("text_dim") or text_encoder.d_model,
            prompt_embedding_dim=text_encoder.d_model if text_encoder else transformer["text_dim"],
            max_sequence_length=MAX_SEQUENCE_LENGTH,
            patch_size=tuple(transformer.get("patch_size") or (1, 2, 2)) if transformer else (1, 1, 1),
            in_channels=in_channels,
            out_channels=out_channels,
            image_dim=transformer.get("image_dim"),
            expand_timesteps=expand_timesteps,
            boundary_ratio=index.get("boundary_ratio"),
            has_image_encoder=has_component(index, "image_encoder"),
        )

    def vae_scale_factors(self, vae_config: dict[str, Any]) -> tuple[int, int]:
        # AutoencoderKLWan's defaults: Wan2.1's VAE (Wan2.2 TI2V-5B's config says 16 spatial)
        return vae_config.get("scale_factor_spatial") or 8, vae_config.get("scale_factor_temporal") or 4

    # -- preprocessing ----------------------------------------------------------------------------------------

    def prompt_encoder(self, model: str, revision: str | None, device, dtype: torch.dtype) -> PromptEncoder:
        from .encoders import WanPromptEncoder

        return WanPromptEncoder.from_pretrained(model, MAX_SEQUENCE_LENGTH, revision, device, dtype)

    def video_encoder(self, model: str, revision: str | None, device, dtype: torch.dtype) -> VideoEncoder:
        from .encoders import WanVaeEncoder

        return WanVaeEncoder.from_pretrained(model, revision, device, dtype)

    def image_condition_encoder(
        self, model: str, video_encoder: VideoEncoder, revision: str | None, device, dtype: torch.dtype
    ) -> ImageConditionEncoder:
        from .encoders import WanImageConditionEncoder

        return WanImageConditionEncoder.from_pretrained(model, video_encoder.vae, revision, device, dtype)

    # -- training ---------------------------------------------------------------------------------------------

    def load_transformer(self, model: str, slot: str, revision: str | None, dtype: torch.dtype) -> torch.nn.Module:
        from diffusers import WanTransformer3DModel

        return WanTransformer3DModel.from_pretrained(model, subfolder=slot, revision=revision, torch_dtype=dtype)

    def transformer_from_folder(
        self, folder: str, subfolder: str | None = None, dtype: torch.dtype | None = None
    ) -> torch.nn.Module:
        from diffusers import WanTransformer3DModel

        return WanTransformer3DModel.from_pretrained(folder, subfolder=subfolder, torch_dtype=dtype)

    def meta_transformer(self, config: dict) -> torch.nn.Module:
        from accelerate import init_empty_weights
        from diffusers import WanTransformer3DModel

        with init_empty_weights():
            return WanTransformer3DModel.from_config(config)

    def combine_experts(self, high: torch.nn.Module, low: torch.nn.Module, boundary_ratio: float) -> torch.nn.Module:
        from .experts import WanExperts

        return WanExperts(high, low, boundary_ratio)

    def transformer_call(
        self,
        spec: ModelSpec,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
    ) -> TransformerCall:
        from .conditioning import wan_transformer_call

        return wan_transformer_call(
            spec,
            noisy_latents,
            timesteps,
            prompt_embeds,
            conditioning.get("first_frame_latent"),
            conditioning.get("clip_feature"),
        )

    # -- outputs ----------------------------------------------------------------------------------------------

    def pipeline_class(self, task: str) -> type:
        from diffusers import WanImageToVideoPipeline, WanPipeline

        return WanImageToVideoPipeline if task == "i2v" else WanPipeline

    def original_lora_key(self, module_name: str) -> tuple[str, bool]:
        from .lora_keys import original_wan_key

        return original_wan_key(module_name)

    def usage_snippet(self, base_model: str, repo_id: str, lora: bool, prompt: str = "a video") -> str:
        return (_USAGE_LORA if lora else _USAGE_FULL).format(base_model=base_model, repo_id=repo_id, prompt=prompt)

    # -- sizes and attention ----------------------------------------------------------------------------------

    def block_activation_bytes(
        self,
        config: dict,
        tokens: int,
        mode: str,
        compute_bytes: int,
        lora_rank: int,
        lora_layers: tuple[str, ...],
        peft_casts_input: bool,
        per_token_modulation: bool,
    ) -> ActivationBytes:
        from .memory import block_activation_bytes

        return block_activation_bytes(
            config,
            tokens,
            mode,
            compute_bytes,
            lora_rank,
            lora_layers,
            peft_casts_input=peft_casts_input,
            per_token_modulation=per_token_modulation,
            context_tokens=MAX_SEQUENCE_LENGTH,
        )

    def vsa_attentions(self, transformer: torch.nn.Module) -> list[torch.nn.Module]:
        return [block.attn1 for block in transformer.blocks]

    def vsa_qkv(self, attn: torch.nn.Module, hidden_states: torch.Tensor, rotary_emb) -> tuple[torch.Tensor, ...]:
        from .vsa import self_attention_qkv

        return self_attention_qkv(attn, hidden_states, rotary_emb)

    def token_grid(self, transformer: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[int, int, int]:
        hidden_states = kwargs.get("hidden_states", args[0] if args else None)
        _, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = transformer.config.patch_size
        return frames // p_t, height // p_h, width // p_w


WAN = WanFamily()
