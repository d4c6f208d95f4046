"""Original Wan module names of diffusers' Wan transformer modules: the key names ComfyUI reads.

ComfyUI has no key map for diffusers Wan names, only for the original Wan checkpoint's names, so a LoRA in
diffusers names silently does nothing there. diffusers reads the original names too (through
``_convert_non_diffusers_wan_lora_to_diffusers``), and the map below is the exact inverse of that converter.
"""

from __future__ import annotations

import re

# Per transformer block: diffusers module name -> original Wan module name.
_BLOCK_MODULES = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}
# Linear layers outside the blocks that diffusers' converter also maps. Its converter reads an ``.alpha`` only for
# block modules and rejects a leftover one, so these carry none (their scale is folded into ``lora_B``).
_NON_BLOCK_MODULES = {
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "proj_out": "head.head",
}
_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.(.+)")


def original_wan_key(name: str) -> tuple[str, bool]:
    """(original Wan module name, whether it carries an ``.alpha``) of a diffusers Wan transformer module name
    (``blocks.0.attn1.to_q`` -> ``blocks.0.self_attn.q``).

    Raises ``ValueError`` for a module with no known original name: writing its weights under a guessed name
    would give a file that ComfyUI loads while ignoring part of the LoRA.
    """
    match = _BLOCK_NAME.fullmatch(name)
    if match and match.group(2) in _BLOCK_MODULES:
        return f"blocks.{match.group(1)}.{_BLOCK_MODULES[match.group(2)]}", True
    if name in _NON_BLOCK_MODULES:
        return _NON_BLOCK_MODULES[name], False
    raise ValueError(
        f"LoRA module {name!r} has no known original Wan name, so it cannot be written in the ComfyUI format; "
        f"adapt only the Linear layers of the attention (to_q, to_k, to_v, to_out.0, add_k_proj, add_v_proj), "
        f"the feed-forward (ffn.net.0.proj, ffn.net.2) or one of {sorted(_NON_BLOCK_MODULES)}."
    )
