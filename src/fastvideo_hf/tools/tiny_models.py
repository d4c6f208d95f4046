"""Tiny random Wan pipelines in diffusers format, built offline, for the demo and the tests.

They are real diffusers / transformers classes with small configs (diffusers' own test sizes) written with
``save_pretrained``; everything downstream loads them through ``from_pretrained`` exactly as it would load
``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``, so no code path is special-cased for them.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEXT_DIM = 32
# Words of the demo captions (and some common ones) so tokenization gives real multi-token captions.
_VOCAB_WORDS = (
    "a an the of on over in with and to from moves moving left right top bottom background red green blue yellow "
    "white purple black grey gray dark circle square shape video clip file text empty truncated three frames "
    "that does not exist cat dog person walks runs street city water sky"
).split()


def tiny_tokenizer():
    """A UMT5-style sentencepiece tokenizer from an in-memory unigram vocabulary (no files needed)."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + word, -1.0) for word in _VOCAB_WORDS]
    vocab += [(char, -5.0) for char in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


MODELS = ("wan2.1", "wan2.2-a14b", "wan2.2-ti2v-5b")
# Wan2.2 A14B switches from the high-noise to the low-noise expert at these fractions of the 1000 timesteps.
A14B_BOUNDARY_RATIO = {"t2v": 0.875, "i2v": 0.9}


def _tiny_text_encoder(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return UMT5EncoderModel(config).eval()


def _tiny_vae(wan22: bool):
    from diffusers import AutoencoderKLWan

    common = {"dim_mult": [1, 1, 1, 1], "num_res_blocks": 1, "temperal_downsample": [False, True, True]}
    if not wan22:
        return AutoencoderKLWan(base_dim=3, z_dim=16, **common).eval()
    # Wan2.2's VAE: 48 latent channels, 2x2 pixel patches in, 16x spatial compression
    return AutoencoderKLWan(
        base_dim=12,
        decoder_base_dim=12,
        z_dim=48,
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        **common,
    ).eval()


def tiny_wan_transformer(
    in_channels: int = 16,
    out_channels: int = 16,
    image_dim: int | None = None,
    attention_head_dim: int = 12,
    num_attention_heads: int = 2,
    ffn_dim: int = 32,
):
    """diffusers' own test configuration of the Wan transformer (2 blocks, 2 heads); ``attention_head_dim`` 64 gives
    heads FastVideo's VSA kernel takes, and more heads and a wider ``ffn_dim`` give a transformer roomy enough to
    memorise a clip (the default one cannot)."""
    from diffusers import WanTransformer3DModel

    inner_dim = num_attention_heads * attention_head_dim  # the image keys and values are projected from this width
    image_kwargs = {"image_dim": image_dim, "added_kv_proj_dim": inner_dim} if image_dim else {}
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=num_attention_heads,
        attention_head_dim=attention_head_dim,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=ffn_dim,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        **image_kwargs,
    )


def _tiny_clip():
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        hidden_size=4,
        projection_dim=4,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        image_size=32,
        patch_size=4,
    )
    return CLIPVisionModel(config).eval(), CLIPImageProcessor(crop_size=32, size=32)


def build_tiny_wan_pipeline(
    task: str = "t2v",
    model: str = "wan2.1",
    seed: int = 0,
    num_attention_heads: int = 2,
    attention_head_dim: int = 12,
    ffn_dim: int = 32,
):
    """A Wan pipeline with random weights small enough to run on a CPU in well under a second per step.

    ``model`` picks the architecture: ``wan2.1`` (T2V, or I2V with a CLIP image encoder as Wan2.1 I2V 14B),
    ``wan2.2-a14b`` (two experts, ``transformer`` for high noise and ``transformer_2`` for low noise, split at
    the boundary ratio; its I2V has no image encoder) or ``wan2.2-ti2v-5b`` (Wan2.2's 48-channel VAE and
    per-token timesteps; one folder serves text- and image-to-video). ``num_attention_heads``,
    ``attention_head_dim`` and ``ffn_dim`` size every transformer (the defaults are diffusers' test sizes).
    """
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline

    if task not in ("t2v", "i2v"):
        raise ValueError(f"--task must be t2v or i2v, got {task!r}")
    if model not in MODELS:
        raise ValueError(f"--model must be one of {MODELS}, got {model!r}")
    sizes = {"num_attention_heads": num_attention_heads, "attention_head_dim": attention_head_dim, "ffn_dim": ffn_dim}
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    components = {
        "tokenizer": tokenizer,
        "text_encoder": _tiny_text_encoder(len(tokenizer)),
        "vae": _tiny_vae(wan22=model == "wan2.2-ti2v-5b"),
        "scheduler": UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
        ),
    }
    if model == "wan2.2-ti2v-5b":
        return WanPipeline(transformer=tiny_wan_transformer(48, 48, **sizes), expand_timesteps=True, **components)
    in_channels = 36 if task == "i2v" else 16  # I2V: noisy latents + 4 mask channels + first-frame latents
    if model == "wan2.2-a14b":
        experts = {
            "transformer": tiny_wan_transformer(in_channels, 16, **sizes),
            "transformer_2": tiny_wan_transformer(in_channels, 16, **sizes),
        }
        pipeline_class = WanImageToVideoPipeline if task == "i2v" else WanPipeline
        return pipeline_class(boundary_ratio=A14B_BOUNDARY_RATIO[task], **experts, **components)
    if task == "i2v":
        image_encoder, image_processor = _tiny_clip()
        return WanImageToVideoPipeline(
            transformer=tiny_wan_transformer(in_channels, 16, image_dim=4, **sizes),
            image_encoder=image_encoder,
            image_processor=image_processor,
            **components,
        )
    return WanPipeline(transformer=tiny_wan_transformer(16, 16, **sizes), **components)


def save_tiny_wan_pipeline(
    output_dir: str | Path, task: str = "t2v", model: str = "wan2.1", seed: int = 0, **transformer_sizes
) -> Path:
    """Build the tiny pipeline and write it as a diffusers-format folder; returns the folder. ``transformer_sizes``
    are ``build_tiny_wan_pipeline``'s ``num_attention_heads``, ``attention_head_dim`` and ``ffn_dim``."""
    output_dir = Path(output_dir)
    build_tiny_wan_pipeline(task=task, model=model, seed=seed, **transformer_sizes).save_pretrained(output_dir)
    return output_dir
