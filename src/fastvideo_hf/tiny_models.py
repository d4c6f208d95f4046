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


def build_tiny_wan_pipeline(task: str = "t2v", seed: int = 0):
    """A ``WanPipeline`` with random weights small enough to run on a CPU in well under a second per step."""
    if task != "t2v":
        raise ValueError(f"tiny-model supports --task t2v for now, got {task!r}")
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
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
    ).eval()
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    return WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler, transformer=transformer
    )


def save_tiny_wan_pipeline(output_dir: str | Path, task: str = "t2v", seed: int = 0) -> Path:
    """Build the tiny pipeline and write it as a diffusers-format folder; returns the folder."""
    output_dir = Path(output_dir)
    build_tiny_wan_pipeline(task=task, seed=seed).save_pretrained(output_dir)
    return output_dir
