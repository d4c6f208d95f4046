"""Video Sparse Attention: tiling, tile selection, backends against references, and the diffusers processor."""

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel

from fastvideo_hf.vsa import enable_vsa, vsa_sparsity_at_step
from fastvideo_hf.vsa.attention import coarse_stage, num_selected_tiles, vsa_attention
from fastvideo_hf.vsa.tiling import TILE_TOKENS, tile_layout, tile_tokens, untile_tokens

GRIDS = [(4, 8, 8), (5, 6, 7), (1, 3, 9), (8, 4, 12)]


@pytest.mark.parametrize("grid", GRIDS)
def test_tiling_round_trips_tokens_exactly_and_pads_with_zeros(grid):
    layout = tile_layout(grid)
    tokens = math.prod(grid)
    x = torch.randn(2, tokens, 3, 5)
    tiled = tile_tokens(x, layout)
    assert tiled.shape == (2, layout.num_tiles * TILE_TOKENS, 3, 5)
    assert torch.equal(untile_tokens(tiled, layout), x)
    padding = ~layout.valid.flatten()
    assert torch.all(tiled[:, padding] == 0)
    assert int(layout.tile_sizes.sum()) == tokens
    expected_tiles = math.prod(math.ceil(size / 4) for size in grid)
    assert layout.num_tiles == expected_tiles
    # real tokens come first in every tile: slot j is real exactly when j < the tile's size
    slots = torch.arange(TILE_TOKENS).expand(layout.num_tiles, -1)
    assert torch.equal(layout.valid, slots < layout.tile_sizes.view(-1, 1))


def test_a_tile_holds_a_4x4x4_block_of_the_grid():
    grid = (4, 8, 8)
    layout = tile_layout(grid)
    positions = torch.stack(torch.meshgrid(*(torch.arange(s) for s in grid), indexing="ij"), -1).view(-1, 3)
    tiled = tile_tokens(positions.unsqueeze(0), layout)[0].view(layout.num_tiles, TILE_TOKENS, 3)
    for tile in tiled:
        assert all(len(set(tile[:, axis].tolist())) == 4 for axis in range(3))
        assert all(int(tile[:, axis].max() - tile[:, axis].min()) == 3 for axis in range(3))


@pytest.mark.parametrize(
    "num_tiles, sparsity, expected", [(520, 0.9, 52), (520, 0.875, 65), (8, 0.99, 1), (8, 0.0, 8)]
)
def test_selected_tiles_per_query_tile(num_tiles, sparsity, expected):
    assert num_selected_tiles(num_tiles, sparsity) == max(1, math.ceil((1 - sparsity) * num_tiles)) == expected


def fastvideo_compute_topk(sparsity, num_blocks):
    """FastVideo's count (fastvideo/attention/backends/video_sparse_attn.py, commit 2f3d407), written out."""
    return max(1, min(math.ceil((1 - sparsity) * num_blocks), num_blocks))


def test_selected_tiles_equal_fastvideos_count_for_every_size_and_sparsity():
    assert num_selected_tiles(1440, 0.7) == 433  # (1 - 0.7) * 1440 == 432.00000000000006 in floats
    sparsities = [i / 100 for i in range(100)] + [0.875, 0.9375]
    mismatches = [
        (tiles, sparsity)
        for tiles in range(1, 4097)
        for sparsity in sparsities
        if num_selected_tiles(tiles, sparsity) != fastvideo_compute_topk(sparsity, tiles)
    ]
    assert mismatches == []


def test_coarse_stage_selects_that_many_distinct_tiles_per_query_tile_and_head():
    grid = (5, 6, 7)
    layout = tile_layout(grid)
    q, k, v = (tile_tokens(torch.randn(2, math.prod(grid), 3, 8), layout) for _ in range(3))
    q, k, v = (x.transpose(1, 2).unflatten(2, (layout.num_tiles, TILE_TOKENS)) for x in (q, k, v))
    for sparsity in (0.0, 0.5, 0.75, 0.9):
        topk = num_selected_tiles(layout.num_tiles, sparsity)
        _, index = coarse_stage(q, k, v, layout, topk)
        assert index.shape == (2, 3, layout.num_tiles, topk)
        assert all(len(set(row.tolist())) == topk for row in index.view(-1, topk))


def dense_masked_reference(q, k, v, gate, grid, sparsity):
    """VSA written as dense attention with a token mask: mean pooling and selection computed independently."""
    layout = tile_layout(grid)
    tokens = math.prod(grid)
    tile_of = torch.empty(tokens, dtype=torch.long)
    tile_of[layout.gather_index[layout.valid.flatten()]] = torch.arange(layout.num_tiles).repeat_interleave(
        layout.tile_sizes.long()
    )
    one_hot = F.one_hot(tile_of, layout.num_tiles).to(q.dtype)  # [S, n]
    pool = one_hot / one_hot.sum(0)
    qh, kh, vh = (x.transpose(1, 2) for x in (q, k, v))  # [B, H, S, D]
    q_c, k_c, v_c = (pool.T @ x for x in (qh, kh, vh))
    scores = q_c @ k_c.transpose(-1, -2) / q.shape[-1] ** 0.5
    out_c = scores.softmax(-1) @ v_c
    topk = num_selected_tiles(layout.num_tiles, sparsity)
    selected = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, scores.topk(topk, dim=-1).indices, True)
    token_mask = selected[:, :, tile_of][:, :, :, tile_of]  # [B, H, S, S]
    fine = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=token_mask)
    out = fine + (out_c[:, :, tile_of] * gate.transpose(1, 2))
    return out.transpose(1, 2)


@pytest.mark.parametrize("grid", [(4, 8, 8), (5, 6, 7)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8])
def test_torch_backend_matches_a_dense_masked_reference_in_values_and_gradients(grid, sparsity):
    torch.manual_seed(0)
    tokens = math.prod(grid)
    inputs = [torch.randn(2, tokens, 2, 8, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    out = vsa_attention(*inputs, tile_layout(grid), sparsity, backend="torch")
    expected = dense_masked_reference(*inputs, grid, sparsity)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    expected_grads = torch.autograd.grad((expected * weights).sum(), inputs)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_flex_backend_agrees_with_torch_backend_in_the_forward():
    grid = (5, 8, 10)  # 400 tokens, 24 tiles, partial tiles on two axes
    torch.manual_seed(1)
    q, k, v, gate = (torch.randn(1, math.prod(grid), 2, 16) for _ in range(4))
    layout = tile_layout(grid)
    with torch.no_grad():
        for sparsity in (0.0, 0.75):
            reference = vsa_attention(q, k, v, gate, layout, sparsity, backend="torch")
            flex = vsa_attention(q, k, v, gate, layout, sparsity, backend="flex")
            # float32, different summation order (FlexAttention's online softmax): 1e-5 is a few ulps of these values
            torch.testing.assert_close(flex, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "flex"])
def test_no_gate_means_coarse_plus_fine_as_in_fastvideo(backend):
    grid = (5, 8, 10)  # the flex test's shapes: its compiled graph is reused
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, math.prod(grid), 2, 16) for _ in range(3))
    layout = tile_layout(grid)
    with torch.no_grad():
        gateless = vsa_attention(q, k, v, None, layout, 0.75, backend=backend)
        gate_one = vsa_attention(q, k, v, torch.ones_like(q), layout, 0.75, backend=backend)
        fine_only = vsa_attention(q, k, v, torch.zeros_like(q), layout, 0.75, backend=backend)
    torch.testing.assert_close(gateless, gate_one, rtol=1e-6, atol=1e-6)
    assert (gateless - fine_only).abs().max() > 1e-3


def test_sparsity_zero_with_zero_gate_equals_the_stock_processor(tiny_model_dir):
    transformer = WanTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer").eval()
    torch.manual_seed(0)
    latents = torch.randn(1, 16, 5, 10, 14)  # grid 5 x 5 x 7: partial tiles on every axis
    text = torch.randn(1, 512, 32)
    timestep = torch.tensor([500.0])
    with torch.no_grad():
        stock = transformer(latents, timestep, text).sample
        context = enable_vsa(transformer, sparsity=0.0, backend="torch")
        vsa = transformer(latents, timestep, text).sample
        assert context.grid == (5, 5, 7)
        torch.testing.assert_close(vsa, stock, rtol=1e-5, atol=1e-5)
        context.sparsity = 0.75
        sparse = transformer(latents, timestep, text).sample
    assert (sparse - stock).abs().max() > 1e-4  # sparsity does change the result
    for block in transformer.blocks:
        assert type(block.attn2.processor).__name__ == "WanAttnProcessor"  # cross-attention stays dense
        assert torch.all(block.attn1.to_gate_compress.weight == 0)


@pytest.mark.parametrize(
    "step, expected", [(0, 0.0), (49, 0.0), (50, 0.03), (149, 0.06), (1499, 0.87), (1500, 0.9), (10_000, 0.9)]
)
def test_sparsity_schedule_follows_fastvideos_ramp(step, expected):
    assert vsa_sparsity_at_step(step, target=0.9, rate=0.03, interval=50) == pytest.approx(expected)
    assert vsa_sparsity_at_step(step, target=0.9, rate=None, interval=None) == 0.9


def test_sparsity_ramp_is_fastvideos_float_expression_exactly():
    assert 0.9 // 0.03 == 30.0 and vsa_sparsity_at_step(10_000, 0.9, 0.03, 50) == 30 * 0.03  # 0.8999999999999999
    assert vsa_sparsity_at_step(10_000, 0.3, 0.1, 1) == 0.2  # 0.3 // 0.1 == 2.0, in FastVideo too
    mismatches = [
        (step, target, rate, interval)
        for target in [i / 100 for i in range(1, 100)]
        for rate in (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.125, 0.25)
        for interval in (1, 7, 50)
        for step in range(0, 5_000, 37)
        if vsa_sparsity_at_step(step, target, rate, interval) != min(step // interval, target // rate) * rate
    ]
    assert mismatches == []
