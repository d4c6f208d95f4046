"""Cut the patchified token grid (T, H, W) into 4x4x4 tiles of 64 tokens, and put tokens back.

Edge tiles of a grid whose sides are not multiples of 4 are padded; ``valid`` marks the real tokens so padding is
never averaged into a tile or attended as a key. The index tensors depend only on the grid and are cached per
grid and device; they are small integer tensors (no activations are cached, unlike the tile buffers that made
FastVideo's VSA run out of memory under activation checkpointing, its issue #1423).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

TILE = (4, 4, 4)
TILE_TOKENS = TILE[0] * TILE[1] * TILE[2]


@dataclass(frozen=True)
class TileLayout:
    grid: tuple[int, int, int]  # tokens per axis (T, H, W) after patchify
    num_tiles: int
    gather_index: torch.Tensor  # [num_tiles * 64] token per tile slot, real ones first; padding points at S
    scatter_index: torch.Tensor  # [S] tile slot of each token, to put tokens back in their order
    valid: torch.Tensor  # [num_tiles, 64] bool, real tokens
    tile_sizes: torch.Tensor  # [num_tiles] real tokens per tile (int32)

    @property
    def num_tokens(self) -> int:
        return self.scatter_index.numel()

    @property
    def full_tiles(self) -> torch.Tensor:
        return self.tile_sizes == TILE_TOKENS


@lru_cache(maxsize=32)
def tile_layout(grid: tuple[int, int, int], device: torch.device | str = "cpu") -> TileLayout:
    """The tiling of ``grid`` (token order t-major, as diffusers' video transformers flatten their patches)."""
    t, h, w = grid
    tiles = tuple(math.ceil(size / tile) for size, tile in zip(grid, TILE, strict=True))
    padded = tuple(count * tile for count, tile in zip(tiles, TILE, strict=True))
    num_tokens = t * h * w
    index = torch.full(padded, num_tokens, dtype=torch.long)
    index[:t, :h, :w] = torch.arange(num_tokens).view(t, h, w)
    index = index.view(tiles[0], TILE[0], tiles[1], TILE[1], tiles[2], TILE[2]).permute(0, 2, 4, 1, 3, 5)
    index = index.reshape(-1, TILE_TOKENS)
    # Real tokens first in each tile (raster order), padding last: the layout FastVideo's kernel expects,
    # where slot j of a tile is real exactly when j < the tile's size.
    index = index.gather(1, torch.sort((index == num_tokens).to(torch.int8), dim=1, stable=True).indices)
    gather_index = index.reshape(-1)
    valid = (gather_index < num_tokens).view(-1, TILE_TOKENS)
    scatter_index = torch.empty(num_tokens, dtype=torch.long)
    slots = torch.arange(gather_index.numel())
    scatter_index[gather_index[gather_index < num_tokens]] = slots[gather_index < num_tokens]
    return TileLayout(
        grid=grid,
        num_tiles=valid.shape[0],
        gather_index=gather_index.to(device),
        scatter_index=scatter_index.to(device),
        valid=valid.to(device),
        tile_sizes=valid.sum(dim=1).to(device=device, dtype=torch.int32),
    )


def tile_tokens(x: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """``[B, S, ...]`` in token order -> ``[B, num_tiles * 64, ...]`` in tile order, zeros in padding slots."""
    padding = x.new_zeros((x.shape[0], 1, *x.shape[2:]))
    return torch.cat([x, padding], dim=1)[:, layout.gather_index]


def untile_tokens(x: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """Inverse of ``tile_tokens``: ``[B, num_tiles * 64, ...]`` -> ``[B, S, ...]``, padding slots dropped."""
    return x[:, layout.scatter_index]
