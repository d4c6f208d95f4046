"""The ``kernel`` VSA backend's call into FastVideo's ``fastvideo_kernel``, checked on CPU against a stand-in.

The stand-in enforces the contract of ``video_sparse_attn`` as written in hao-ai-lab/FastVideo
``fastvideo-kernel/python/fastvideo_kernel/ops.py`` (commit 2f3d407): its own argument checks with its own
messages, plus what its compiled parts read from the inputs (int32 tokens-per-tile vectors, contiguous tensors of
one float dtype, zeros in padding slots). It then computes VSA on the padded tensors it was given, so the output
of ``vsa_attention(..., backend="kernel")`` can be compared with the ``torch`` backend.
"""

import logging
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel

from fastvideo_hf.vsa import enable_vsa
from fastvideo_hf.vsa.attention import kernel_available, num_selected_tiles, vsa_attention
from fastvideo_hf.vsa.tiling import tile_layout

KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class KernelStandIn:
    """``fastvideo_kernel.video_sparse_attn``: the wrapper's checks, then the VSA math on padded tiles."""

    def __init__(self):
        self.calls = []

    def __call__(
        self, q, k, v, variable_block_sizes, q_variable_block_sizes, topk, block_size=64, compress_attn_weight=None
    ):
        self.calls.append({"block_size": block_size, "topk": topk, "gate": compress_attn_weight is not None})
        if isinstance(block_size, int):
            block_size = (block_size, block_size, block_size)
        block_elements = block_size[0] * block_size[1] * block_size[2]
        batch, heads, q_seq_len, dim = q.shape
        kv_seq_len = k.shape[2]
        if k.shape[:2] != (batch, heads) or v.shape[:2] != (batch, heads):
            raise ValueError("Expected q/k/v to have the same batch and head dimensions.")
        if v.shape[2] != kv_seq_len:
            raise ValueError(f"Expected k and v to have the same sequence length, got {kv_seq_len}, {v.shape[2]}")
        if q_seq_len % block_elements != 0 or kv_seq_len % block_elements != 0:
            raise ValueError(
                f"q_seq_len and kv_seq_len must be divisible by block_elements={block_elements}, "
                f"got q_seq_len={q_seq_len}, kv_seq_len={kv_seq_len}"
            )
        q_blocks, kv_blocks = q_seq_len // block_elements, kv_seq_len // block_elements
        if variable_block_sizes.numel() != kv_blocks:
            raise ValueError(f"variable_block_sizes must have length kv_num_blocks={kv_blocks}")
        if q_variable_block_sizes.numel() != q_blocks:
            raise ValueError(f"q_variable_block_sizes must have length q_num_blocks={q_blocks}")
        # What the compiled parts read: the 64-token path (128/256 are Blackwell tiles), raw int32 pointers,
        # contiguous [B, H, S, D] of one float dtype, zeros in padding (the block means divide sums by the sizes).
        assert block_elements == 64, f"tile {block_size} is not the 64-token path"
        tensors = [q, k, v] + ([] if compress_attn_weight is None else [compress_attn_weight])
        assert all(t.dtype == q.dtype and t.dtype in KERNEL_DTYPES for t in tensors), [t.dtype for t in tensors]
        assert all(t.is_contiguous() and t.device == q.device for t in tensors)
        assert compress_attn_weight is None or compress_attn_weight.shape == q.shape
        for sizes in (variable_block_sizes, q_variable_block_sizes):
            assert sizes.dtype == torch.int32 and sizes.dim() == 1 and sizes.is_contiguous(), sizes
            assert sizes.device == q.device and int(sizes.min()) >= 1 and int(sizes.max()) <= block_elements
        assert isinstance(topk, int) and 1 <= topk <= kv_blocks, topk
        slots = torch.arange(block_elements)
        q_real = (slots < q_variable_block_sizes.view(-1, 1)).flatten()
        kv_real = (slots < variable_block_sizes.view(-1, 1)).flatten()
        assert torch.all(q[:, :, ~q_real] == 0) and torch.all(k[:, :, ~kv_real] == 0)
        assert torch.all(v[:, :, ~kv_real] == 0), "padding slots are not zero or real tokens are not first"

        def block_mean(x, sizes):
            return x.unflatten(2, (-1, block_elements)).sum(3) / sizes.view(-1, 1).to(x.dtype)

        q_c = block_mean(q, q_variable_block_sizes)
        k_c, v_c = block_mean(k, variable_block_sizes), block_mean(v, variable_block_sizes)
        scores = q_c @ k_c.transpose(-2, -1) / dim**0.5
        out_c = (scores.softmax(-1) @ v_c).repeat_interleave(block_elements, dim=2)
        selected = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, scores.topk(topk, dim=-1).indices, True)
        mask = selected.repeat_interleave(block_elements, 2).repeat_interleave(block_elements, 3) & kv_real
        out_s = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if compress_attn_weight is not None:
            return out_c * compress_attn_weight + out_s
        return out_c + out_s


@pytest.fixture(autouse=True)
def fresh_kernel_check():
    """``kernel_available`` is cached per process; each test here changes what it would find."""
    kernel_available.cache_clear()
    yield
    kernel_available.cache_clear()


@pytest.fixture
def kernel(monkeypatch):
    stand_in = KernelStandIn()
    module = types.ModuleType("fastvideo_kernel")
    module.video_sparse_attn = stand_in
    monkeypatch.setitem(sys.modules, "fastvideo_kernel", module)
    return stand_in


@pytest.mark.parametrize("grid", [(4, 8, 8), (5, 6, 7)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8])
@pytest.mark.parametrize("with_gate", [True, False])
def test_kernel_backend_meets_the_wrappers_contract_and_equals_the_torch_backend(kernel, grid, sparsity, with_gate):
    torch.manual_seed(0)
    q, k, v, gate = (torch.randn(2, math.prod(grid), 3, 16) for _ in range(4))
    gate = gate if with_gate else None
    layout = tile_layout(grid)
    out = vsa_attention(q, k, v, gate, layout, sparsity, backend="kernel")
    expected = vsa_attention(q, k, v, gate, layout, sparsity, backend="torch")
    assert out.shape == q.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    topk = num_selected_tiles(layout.num_tiles, sparsity)
    assert kernel.calls == [{"block_size": (4, 4, 4), "topk": topk, "gate": with_gate}]


def test_a_wan_transformer_with_the_kernel_backend_gives_the_torch_backends_output(kernel, tiny_model_dir):
    transformer = WanTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer").eval()
    context = enable_vsa(transformer, sparsity=0.5, backend="torch")
    torch.manual_seed(0)
    for block in transformer.blocks:  # a trained gate, so the coarse branch counts
        torch.nn.init.normal_(block.attn1.to_gate_compress.weight, std=0.2)
    latents = torch.randn(1, 16, 5, 10, 14)  # grid 5 x 5 x 7: partial tiles on every axis
    inputs = (latents, torch.tensor([500.0]), torch.randn(1, 512, 32))
    with torch.no_grad():
        expected = transformer(*inputs).sample
        context.backend = "kernel"
        out = transformer(*inputs).sample
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert len(kernel.calls) == len(transformer.blocks)


def test_the_kernel_counts_as_available_on_cuda_when_it_imports(kernel, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert kernel_available()


def write_kernel_package(folder, body: str) -> None:
    package = folder / "fastvideo_kernel"
    package.mkdir()
    (package / "__init__.py").write_text(body)


@pytest.mark.parametrize(
    "import_body, reason",
    [
        ("import fastvideo_kernel_missing_dependency\n", "ModuleNotFoundError: No module named"),
        ("raise RuntimeError('no kernel image is available')\n", "RuntimeError: no kernel image is available"),
        ("raise OSError('libcudart.so.13: cannot open')\n", "OSError: libcudart.so.13: cannot open"),
    ],
)
def test_a_kernel_that_cannot_run_here_is_logged_and_skipped(tmp_path, monkeypatch, caplog, import_body, reason):
    write_kernel_package(tmp_path, import_body)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "fastvideo_kernel", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level(logging.INFO, logger="fastvideo_hf.vsa.attention"):
        assert not kernel_available()
    assert f"not using FastVideo's kernel ({reason}" in caplog.text


def test_a_bug_in_the_kernel_package_is_not_taken_for_a_missing_kernel(tmp_path, monkeypatch):
    write_kernel_package(tmp_path, "raise TypeError('unsupported operand')\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "fastvideo_kernel", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(TypeError, match="unsupported operand"):
        kernel_available()


def test_asking_for_the_kernel_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastvideo_kernel", None)
    q = torch.randn(1, 64, 2, 16)
    with pytest.raises(ImportError, match="pip install fastvideo-kernel, or use backend 'flex'"):
        vsa_attention(q, q, q, q, tile_layout((4, 4, 4)), 0.5, backend="kernel")
