"""VSA attention over a tiled token grid, behind one function with three backends.

``vsa_attention(q, k, v, gate, layout, sparsity)``:

1. coarse stage: q, k, v mean-pooled per tile over its real tokens; tile-level attention gives ``out_c``
   (broadcast to the tile's tokens) and tile scores;
2. selection: per query tile and head, the ``k = max(1, ceil((1 - sparsity) * num_tiles))`` best key tiles;
3. fine stage: block-sparse attention of each query tile over the tokens of its selected key tiles, padded
   key tokens masked;
4. ``out = out_c * gate + out_fine``; without a gate ``out = out_c + out_fine``, as in FastVideo.

Backends: ``torch`` (plain PyTorch with autograd: the reference, runs anywhere, CPU training), ``flex``
(FlexAttention with a BlockMask built straight from the top-k tile indices; GPU forward and backward, CPU
forward), ``kernel`` (FastVideo's ``fastvideo_kernel`` package, imported lazily, GPU only). ``auto`` picks the
kernel on a GPU that has it, else flex, except for CPU training (flex has no CPU backward) where it picks torch.
A call the kernel cannot take (a head dim other than 64 or 128) runs where ``auto`` would run without it, with a
warning that says why; each warning is logged once per process.

Parity with FastVideo (hao-ai-lab/FastVideo at commit 2f3d407, ``fastvideo/attention/backends/video_sparse_attn.py``):
the same tiles in the same order, the same number of selected tiles and the same math, gate-less form included.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..library_internals import dynamo_recompile_limit_at_least
from .tiling import TILE, TILE_TOKENS, TileLayout, tile_tokens, untile_tokens

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "flex", "kernel")

# What fastvideo-kernel (0.3.x, checked against 0.3.5) takes. Its Triton kernels are bfloat16 only: ``tl.dot``
# of a bf16 probability tile with fp32 or fp16 values fails ("Both operands must be same dtype"). Its compiled
# H100 forward (``block_sparse_h100.cu``, picked by the package on sm_90, not by us) reads bf16 pointers, checks
# ``batch == 1`` and handles head dims 64 and 128 only: for another it returns an output it never wrote.
KERNEL_DTYPE = torch.bfloat16
KERNEL_HEAD_DIMS = (64, 128)
# einops: fastvideo_kernel/vmoba.py imports it at package import, and fastvideo-kernel 0.3.5 does not declare it
KERNEL_INSTALL_HINT = "pip install fastvideo-kernel einops (a fastvideo-kernel built for this torch)"

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning logged once per process (the attention runs in every layer at every step)."""
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def num_selected_tiles(num_tiles: int, sparsity: float) -> int:
    """Key tiles kept per query tile: ``max(1, min(ceil((1 - sparsity) * num_tiles), num_tiles))``.

    Bit for bit FastVideo's ``compute_topk``, float rounding included (no epsilon), so a model trained there
    attends to the same tiles here: ``(1 - 0.7) * 1440`` is 432.00000000000006 in floats, so 433 tiles.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"VSA sparsity must be in [0, 1), got {sparsity}")
    return max(1, min(math.ceil((1 - sparsity) * num_tiles), num_tiles))


@lru_cache(maxsize=1)
def kernel_available() -> bool:
    """True when FastVideo's kernel package imports here, on a CUDA machine (cached: it cannot change in a process).

    It is imported only when CUDA is available, since the package (like its older ``vsa`` ancestor) may query
    the device at import. The errors that mean "not usable here" are ImportError (not installed, built for
    another torch, or without ``einops``, which it imports but 0.3.5 does not declare), OSError (a shared library
    it links is missing) and RuntimeError (its compiled part refuses this GPU or CUDA); ``auto`` then runs flex,
    and the reason is a WARNING, once per process (this function is cached). Anything else is a bug and propagates.
    """
    if not torch.cuda.is_available():
        return False
    try:
        import fastvideo_kernel  # noqa: F401
    except (ImportError, OSError, RuntimeError) as error:
        logger.warning(
            "VSA: not using FastVideo's kernel (%s: %s); the flex backend runs instead. To use the kernel: %s",
            type(error).__name__,
            error,
            KERNEL_INSTALL_HINT,
        )
        return False
    return True


def kernel_refusal(q: torch.Tensor) -> str | None:
    """Why FastVideo's kernel cannot take ``q`` ``[B, S, H, D]``, or None when it can.

    Dtype and batch are not reasons: ``_kernel_vsa`` casts to bf16 and runs one sample at a time.
    """
    head_dim = q.shape[-1]
    if head_dim not in KERNEL_HEAD_DIMS:
        return (
            f"it takes head dims {' and '.join(map(str, KERNEL_HEAD_DIMS))} only (its H100 forward returns an "
            f"output it never wrote for others), and this attention's head dim is {head_dim}"
        )
    return None


def _backend_without_kernel(q: torch.Tensor) -> str:
    """What ``auto`` runs when the kernel is not an option: flex, or torch for training on the CPU."""
    if q.is_cuda:
        return "flex"
    return "torch" if torch.is_grad_enabled() and q.requires_grad else "flex"


def resolve_backend(backend: str, q: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown VSA backend {backend!r}; choose from {BACKENDS}")
    if backend != "auto":
        return backend
    if q.is_cuda and kernel_available():
        return "kernel"
    return _backend_without_kernel(q)


def vsa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gate: torch.Tensor | None,
    layout: TileLayout,
    sparsity: float,
    backend: str = "auto",
) -> torch.Tensor:
    """VSA of ``q, k, v`` ``[B, S, H, D]`` (token order, RoPE applied).

    ``gate`` is like them, or None for FastVideo's gate-less form ``out_c + out_fine`` (a gate of 1 on every
    backend); the processor always passes its ``to_gate_compress`` output, which starts at zero.
    """
    if q.shape[1] != layout.num_tokens:
        raise ValueError(f"{q.shape[1]} tokens do not fill the grid {layout.grid} ({layout.num_tokens} tokens)")
    topk = num_selected_tiles(layout.num_tiles, sparsity)
    backend = resolve_backend(backend, q)
    if backend == "kernel":
        refusal = kernel_refusal(q)
        if refusal is None:
            return _kernel_vsa(q, k, v, gate, layout, topk)
        backend = _backend_without_kernel(q)
        _warn_once(f"VSA: not using FastVideo's kernel: {refusal}; the {backend} backend runs instead")
    # [B, S, H, D] -> tile order [B, H, n, 64, D]
    q_t, k_t, v_t = (
        tile_tokens(x, layout).transpose(1, 2).unflatten(2, (layout.num_tiles, TILE_TOKENS)) for x in (q, k, v)
    )
    out_coarse, tile_index = coarse_stage(q_t, k_t, v_t, layout, topk)
    if backend == "torch":
        out_fine = _fine_stage_torch(q_t, k_t, v_t, layout, tile_index)
    else:
        out_fine = _fine_stage_flex(q_t, k_t, v_t, layout, tile_index)
    out_fine_tokens = untile_tokens(out_fine.flatten(2, 3).transpose(1, 2), layout)  # [B, S, H, D]
    # each token takes its tile's coarse output, gathered straight from [B, H, n, D]
    out_coarse_tokens = out_coarse[:, :, layout.scatter_index // TILE_TOKENS].transpose(1, 2)
    if gate is None:
        return out_fine_tokens + out_coarse_tokens
    return torch.addcmul(out_fine_tokens, out_coarse_tokens, gate)


def coarse_stage(
    q_t: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor, layout: TileLayout, topk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tile-level output ``out_c`` ``[B, H, n, D]``, selected key tiles ``[B, H, n, topk]``)."""
    counts = layout.tile_sizes.to(q_t.dtype).view(-1, 1)
    q_c, k_c, v_c = (x.sum(dim=3) / counts for x in (q_t, k_t, v_t))  # padding slots hold zeros
    scores = (q_c @ k_c.transpose(-2, -1)) * q_t.shape[-1] ** -0.5
    out_c = scores.softmax(dim=-1) @ v_c
    tile_index = scores.detach().topk(topk, dim=-1).indices
    return out_c, tile_index


def _fine_stage_torch(q_t, k_t, v_t, layout: TileLayout, tile_index: torch.Tensor) -> torch.Tensor:
    """Gather the selected key tiles and attend densely within them: exact, autograd, memory ~ topk."""
    batch, heads, num_tiles, _, dim = q_t.shape
    b = torch.arange(batch, device=q_t.device).view(-1, 1, 1, 1)
    h = torch.arange(heads, device=q_t.device).view(1, -1, 1, 1)
    keys = k_t[b, h, tile_index].flatten(3, 4)  # [B, H, n, topk * 64, D]
    values = v_t[b, h, tile_index].flatten(3, 4)
    key_valid = layout.valid[tile_index].flatten(3, 4)  # [B, H, n, topk * 64]
    out = F.scaled_dot_product_attention(
        q_t.flatten(1, 2),
        keys.flatten(1, 2),
        values.flatten(1, 2),
        attn_mask=key_valid.flatten(1, 2).unsqueeze(2),
    )
    return out.view(batch, heads, num_tiles, TILE_TOKENS, dim)


# FlexAttention is compiled per token grid and per grad mode; past torch's default of 8 recompiles it would
# silently fall back to a path that materialises the full score matrix (tens of GB at Wan's sizes).
FLEX_RECOMPILE_LIMIT = 64


@lru_cache(maxsize=1)
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def block_mask_from_tiles(layout: TileLayout, tile_index: torch.Tensor):
    """A FlexAttention BlockMask whose 64-token blocks are the tiles, built from the top-k indices directly.

    Selected tiles that are full need no mask function; tiles with padding are partial blocks whose padded
    key slots the mask function hides.
    """
    from torch.nn.attention.flex_attention import BlockMask

    batch, heads, num_tiles, _ = tile_index.shape
    is_full = layout.full_tiles[tile_index]
    # stable sorts put full tiles first for the full list, partial tiles first for the partial list
    full_first = torch.gather(tile_index, -1, torch.sort((~is_full).to(torch.int8), dim=-1, stable=True).indices)
    partial_first = torch.gather(tile_index, -1, torch.sort(is_full.to(torch.int8), dim=-1, stable=True).indices)

    def padded(indices: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(batch, heads, num_tiles, num_tiles, dtype=torch.int32, device=indices.device)
        out[..., : indices.shape[-1]] = indices
        return out

    valid_keys = layout.valid.flatten()

    def key_is_real(b, h, q_idx, kv_idx):
        return valid_keys[kv_idx]

    return BlockMask.from_kv_blocks(
        (~is_full).sum(-1).to(torch.int32),
        padded(partial_first),
        full_kv_num_blocks=is_full.sum(-1).to(torch.int32),
        full_kv_indices=padded(full_first),
        BLOCK_SIZE=TILE_TOKENS,
        mask_mod=key_is_real,
        compute_q_blocks=torch.is_grad_enabled(),  # the query-side index is only read by the backward
    )


def _fine_stage_flex(q_t, k_t, v_t, layout: TileLayout, tile_index: torch.Tensor) -> torch.Tensor:
    batch, heads, num_tiles, _, dim = q_t.shape
    block_mask = block_mask_from_tiles(layout, tile_index)
    with dynamo_recompile_limit_at_least(FLEX_RECOMPILE_LIMIT):
        out = _compiled_flex_attention()(
            q_t.flatten(2, 3).contiguous(),
            k_t.flatten(2, 3).contiguous(),
            v_t.flatten(2, 3).contiguous(),
            block_mask=block_mask,
        )
    return out.view(batch, heads, num_tiles, TILE_TOKENS, dim)


def _kernel_vsa(q, k, v, gate, layout: TileLayout, topk: int) -> torch.Tensor:
    """FastVideo's fused kernel on tile-ordered, zero-padded ``[1, H, S, D]`` bf16 tensors, one sample at a time.

    The call follows ``video_sparse_attn`` in hao-ai-lab/FastVideo
    ``fastvideo-kernel/python/fastvideo_kernel/ops.py`` (commit 2f3d407, fastvideo-kernel 0.3.x) and its caller
    ``fastvideo/attention/backends/video_sparse_attn.py``: ``block_size`` is the tile *shape* (an int n means an
    n x n x n cube, so 64 would ask for 262,144-token tiles); S is a multiple of 64 with each tile's real tokens
    first and zeros after; ``variable_block_sizes`` and ``q_variable_block_sizes`` are the real tokens per tile
    (int32, ``[num_tiles]``); ``compress_attn_weight=None`` means coarse + fine.

    What the package takes (``KERNEL_DTYPE``): q, k, v and the gate go in as bf16 (training without bf16 mixed
    precision hands us float32; under autocast the dtype depends on where the norms and RoPE computed) and the
    output comes back in q's dtype; autocast is off inside, so the package's own matmuls stay bf16. A batch runs
    one sample at a time: the package picks its H100 forward, which checks ``batch == 1``, by itself, so we cannot
    know beforehand; the work is the same, only the launches are per sample. The head dim is checked by the caller
    (``kernel_refusal``). No device check here: ``auto`` picks this backend only through ``kernel_available``.
    """
    try:
        from fastvideo_kernel import video_sparse_attn
    except ImportError as error:
        raise ImportError(
            f"VSA backend 'kernel' needs FastVideo's kernels on a CUDA GPU: {KERNEL_INSTALL_HINT}; "
            "or use backend 'flex'"
        ) from error

    out_dtype = q.dtype
    with torch.autocast(q.device.type, enabled=False):
        q_t, k_t, v_t = (tile_tokens(x.to(KERNEL_DTYPE), layout).transpose(1, 2).contiguous() for x in (q, k, v))
        gate_t = None if gate is None else tile_tokens(gate.to(KERNEL_DTYPE), layout).transpose(1, 2).contiguous()
        outs = [
            video_sparse_attn(
                q_t[i : i + 1],
                k_t[i : i + 1],
                v_t[i : i + 1],
                layout.tile_sizes,
                layout.tile_sizes,
                topk,
                block_size=TILE,
                compress_attn_weight=None if gate_t is None else gate_t[i : i + 1],
            )
            for i in range(q_t.shape[0])
        ]
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return untile_tokens(out.transpose(1, 2), layout).to(out_dtype)
