"""The activation memory of one Wan transformer block, term by term: what ``fastvideo-hf plan`` adds up.

Each term follows diffusers' ``WanTransformerBlock`` forward (norms, self- and cross-attention, FFN) and was checked
against ``torch.autograd.graph``'s saved-tensor hooks on tiny models at two sizes (within 15%, measured within 7%);
``training.memory_plan`` holds the family-agnostic rest of the estimate.
"""

from __future__ import annotations

import math

from ..family import ActivationBytes

CLIP_IMAGE_TOKENS = 257  # Wan2.1 I2V: the CLIP ViT-H/14 hidden states of one 224x224 image (256 patches + class token)
ACTIVATION_ASSUMPTION = (
    "activations: what autograd saves, term by term from diffusers' WanTransformerBlock (validated on the CPU within "
    "15%); text context 512 tokens, plus 257 CLIP tokens for Wan2.1 I2V"
)

# Which tensor each Linear of a block reads: Linears reading the same tensor share one saved copy, and the context
# (text / CLIP tokens) is the same tensor in every block. The attention outputs are saved by SDPA already.
_LINEAR_INPUTS = {
    "attn1.to_q": ("norm1_out", "video", "dim"),
    "attn1.to_k": ("norm1_out", "video", "dim"),
    "attn1.to_v": ("norm1_out", "video", "dim"),
    "attn1.to_out.0": ("attn1_out", "video", "dim"),
    "attn2.to_q": ("norm2_out", "video", "dim"),
    "attn2.to_k": ("context", "text", "dim"),
    "attn2.to_v": ("context", "text", "dim"),
    "attn2.add_k_proj": ("image_context", "image", "dim"),
    "attn2.add_v_proj": ("image_context", "image", "dim"),
    "attn2.to_out.0": ("attn2_out", "video", "dim"),
    "ffn.net.0.proj": ("norm3_out", "video", "dim"),
    "ffn.net.2": ("ffn_hidden", "video", "ffn"),
}
_SAVED_BY_SDPA = {"attn1_out", "attn2_out"}
_SHARED_BY_BLOCKS = {"context", "image_context"}


def block_activation_bytes(
    config: dict,
    tokens: int,
    mode: str,
    compute_bytes: int,
    lora_rank: int = 0,
    lora_layers: tuple[str, ...] = (),
    *,
    context_tokens: int,
    peft_casts_input: bool = True,
    per_token_modulation: bool = False,
) -> ActivationBytes:
    """The activation bytes of one sample of ``tokens`` video tokens, term by term from ``WanTransformerBlock``.

    ``a`` is the compute dtype's size; the norms run in float32 (``FP32LayerNorm``, RMSNorm's upcast). Per video token
    and block, both modes save: three LayerNorm inputs in float32 and their mean / rstd, three RMSNorm (q, k of self-
    attention, q of cross-attention) float32 inputs and rstd, the self-attention's q, k (after RoPE), v, output and
    log-sum-exp, the cross-attention's q, output and log-sum-exp, the GELU's input. A full finetune also saves what the
    weight gradients need: every Linear's input (q/k/v share one), the normalized RMSNorm output, the modulated
    LayerNorm outputs, the gated attention and FFN outputs. A LoRA saves the inputs of its adapted Linears (peft casts
    each to float32 and autocast back, so each layer gets its own copy, unless fp8 casting turns peft's cast off) and
    the rank-``r`` input of each ``lora_B``. Per context token and block: the cross-attention's k, v and the k-norm.
    With ``per_token_modulation`` (Wan2.2 TI2V-5B) the six modulations are per token: each block keeps their float32
    sum (the gates are views of it) and the two ``1 + scale`` factors, and the time embedding runs per token.
    """
    a = compute_bytes
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    ffn, heads = config["ffn_dim"], config["num_attention_heads"]
    image_tokens = CLIP_IMAGE_TOKENS if config.get("added_kv_proj_dim") else 0
    widths = {"dim": dim, "ffn": ffn}
    full = mode == "full"
    rms_bytes = 8 * dim + 4 if full else 4 * dim + 4  # float32 input (+ normalized output for the weight) and rstd

    video = 3 * (4 * dim + 8) + 3 * rms_bytes  # LayerNorm inputs + stats, RMSNorms
    video += 4 * a * dim + 4 * heads + 2 * a * dim + 4 * heads + a * ffn  # SDPA self, SDPA cross, GELU input
    # cross-attention k and v; the k-norm saves only where a gradient flows (a LoRA on to_k / add_k_proj, or full)
    text = 2 * a * dim + (rms_bytes if full or "attn2.to_k" in lora_layers else 0)
    image = (2 * a * dim + (rms_bytes if full or "attn2.add_k_proj" in lora_layers else 0)) if image_tokens else 0
    saved_by_sdpa = _SAVED_BY_SDPA
    if image_tokens:
        video += a * dim + 4 * heads  # the image attention's output and log-sum-exp
        saved_by_sdpa = {"attn1_out"}  # attn2's to_out reads the sum of the text and image attentions
    once = {"video": 0, "text": 0, "image": 0}
    per_block_extra = 0
    tokens_of = {"video": tokens, "text": context_tokens, "image": image_tokens}

    if full:
        video += 2 * 4 * dim + a * dim + 4 * dim  # modulated norm1 / norm3 outputs, gated attention and FFN outputs
        sources = {source: (kind, width) for source, kind, width in _LINEAR_INPUTS.values()}
        for source, (kind, width) in sources.items():
            if source in saved_by_sdpa or (kind == "image" and not image_tokens):
                continue
            if source in _SHARED_BY_BLOCKS:
                once[kind] += a * widths[width]
            else:
                video += a * widths[width]
    else:
        seen: set[str] = set()
        for layer in lora_layers:
            source, kind, width = _LINEAR_INPUTS[layer]
            bytes_per_token = a * widths[width]
            if peft_casts_input:
                per_block_extra += tokens_of[kind] * (bytes_per_token + a * lora_rank)
            else:
                per_block_extra += tokens_of[kind] * a * lora_rank
                if source in seen or source in saved_by_sdpa:
                    continue
                seen.add(source)
                if source in _SHARED_BY_BLOCKS:
                    once[kind] += bytes_per_token
                else:
                    per_block_extra += tokens_of[kind] * bytes_per_token
        if a < 4:  # autocast's compute-dtype copies of the float32 LoRA weights
            per_block_extra += a * lora_rank * sum(layer_width(config, layer) for layer in lora_layers)

    head_dim = config["attention_head_dim"]
    rope = 2 * head_dim * (4 if full else a)  # cos and sin: the buffers follow the model's dtype
    out_width = config["out_channels"] * math.prod(config.get("patch_size", (1, 2, 2)))
    outside = rope + 4 * dim + 8 + 4 * out_width  # norm_out input and stats; the float32 error the loss squares
    outside_text = sum(once[kind] * tokens_of[kind] for kind in once)
    if full:
        in_width = config["in_channels"] * math.prod(config.get("patch_size", (1, 2, 2)))
        outside += 4 * dim + a * dim + a * in_width  # modulated norm_out output, proj_out input, patch input
        outside_text += context_tokens * (a * config["text_dim"] + 2 * a * dim)  # text embedder's inputs
        if image_tokens:  # the CLIP embedder: LayerNorm, FFN (width image_dim), LayerNorm
            outside_text += image_tokens * (4 * config["image_dim"] + 8 + 3 * a * config["image_dim"] + 4 * dim + 8)
    modulation_input = 0
    if per_token_modulation:
        video += 6 * 4 * dim + 2 * 4 * dim  # the float32 sum of the six modulations, the two (1 + scale)
        modulation_input = 6 * a * dim  # timestep_proj, every block's input
        if full:  # norm_out's (1 + scale), the time embedder's inputs and SiLU inputs
            outside += 4 * dim + 4 * a * dim + a * config["freq_dim"]
        else:
            outside += a * dim  # norm_out's (1 + scale), in the model's dtype
    per_block = tokens * video + context_tokens * text + image_tokens * image + per_block_extra
    # A block's backward peaks at its start, in the FFN: every tensor the block saved is still live, plus the FFN's
    # two gradients and the residual stream's (float32 inside the block). By the self-attention's backward the FFN's
    # and cross-attention's saved tensors are freed, more than flash attention's dq, dk, dv and dq accumulator take.
    workspace = tokens * (2 * 4 * dim + 2 * a * ffn)
    return ActivationBytes(
        per_block=per_block,
        block_input=tokens * a * dim,
        outside=tokens * outside + outside_text,
        first_block_saving=0 if full else tokens * (4 * dim + 8 + 4 * dim * per_token_modulation),
        held_once=(0 if once["text"] else (context_tokens + image_tokens) * a * dim) + tokens * modulation_input,
        workspace=workspace,
    )


def layer_width(config: dict, layer: str) -> int:
    """in_features + out_features of a block's Linear, from the config."""
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    if layer == "ffn.net.0.proj" or layer == "ffn.net.2":
        return dim + config["ffn_dim"]
    return 2 * dim
