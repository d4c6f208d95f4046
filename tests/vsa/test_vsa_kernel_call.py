"""The ``kernel`` VSA backend's call into FastVideo's ``fastvideo_kernel``, checked on CPU against a stand-in.

The stand-in enforces the contract of ``video_sparse_attn`` as written in hao-ai-lab/FastVideo
``fastvideo-kernel/python/fastvideo_kernel/ops.py`` (commit 2f3d407; the same in fastvideo-kernel 0.3.5): its own
argument checks with its own messages, plus what its compiled parts take, so that a call the real package would
reject, or would answer with garbage, fails here:

- bfloat16 only (its Triton kernels fail in ``tl.dot`` on float32 or float16: "Both operands must be same dtype");
- batch 1 (its H100 forward, which the package picks by itself on sm_90, checks ``batch == 1``);
- head dim 64 or 128 (its H100 forward handles no other, and returns an output it never wrote for them);
- 64-token tiles (``block_size`` is the tile shape; 128 and 256 are other paths), int32 tokens-per-tile vectors,
  contiguous tensors, zeros in padding slots.

It then computes VSA on the padded tensors it was given (in float32, output rounded to bf16 as the package
writes it), so the output of ``vsa_attention(..., backend="kernel")`` can be compared with the ``torch`` backend.
``bench/vsa_kernel_interpreter.py`` runs the same call through the package's real Triton code in Triton's
interpreter (not here: it needs triton and patches to run GPU-only code on a CPU).
"""

import logging
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel

from fastvideo_hf.testing import TEXT_DIM, tiny_wan_transformer
from fastvideo_hf.vsa import attention, enable_vsa
from fastvideo_hf.vsa.attention import kernel_available, num_selected_tiles, vsa_attention
from fastvideo_hf.vsa.tiling import tile_layout, tile_tokens

KERNEL_HEAD_DIMS = (64, 128)
# bf16 keeps 8 significant bits: a value rounded to it is within 2^-9 of itself, relatively
BF16_RTOL = 2**-8


class KernelStandIn:
    """``fastvideo_kernel.video_sparse_attn``: the wrapper's checks, the limits of its kernels, then the VSA math."""

    def __init__(self):
        self.calls = []

    def __call__(
        self, q, k, v, variable_block_sizes, q_variable_block_sizes, topk, block_size=64, compress_attn_weight=None
    ):
        self.calls.append(
            {"block_size": block_size, "topk": topk, "gate": compress_attn_weight is not None, "batch": q.shape[0]}
        )
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
        # What the kernels take: the 64-token path (128/256 are Blackwell tiles), bf16 (Triton's tl.dot of a bf16
        # probability tile with the values; the H100 forward reads bf16 pointers), batch 1 and head dims 64/128
        # (the H100 forward), raw int32 pointers, contiguous [B, H, S, D], zeros in padding (the block means
        # divide sums by the sizes).
        if block_elements != 64:
            raise ValueError(f"tile {block_size} is not the 64-token path")
        tensors = [q, k, v] + ([] if compress_attn_weight is None else [compress_attn_weight])
        for t in tensors:
            if t.dtype != torch.bfloat16:
                raise ValueError(f"Both operands must be same dtype. Got bf16 and {t.dtype}")
        if batch != 1:
            raise RuntimeError("Batch size dim will be removed in the future, please set batch to 1")
        if dim not in KERNEL_HEAD_DIMS:
            raise RuntimeError(f"head dim {dim}: the H100 forward handles 64 and 128 only (and leaves o unwritten)")
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

        q, k, v = q.float(), k.float(), v.float()

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
            return (out_c * compress_attn_weight.float() + out_s).bfloat16()
        return (out_c + out_s).bfloat16()


@pytest.fixture(autouse=True)
def fresh_kernel_check():
    """``kernel_available`` is cached and warnings are logged once per process; each test here starts afresh."""
    kernel_available.cache_clear()
    attention._warned.clear()
    yield
    kernel_available.cache_clear()
    attention._warned.clear()


@pytest.fixture
def kernel(monkeypatch):
    stand_in = KernelStandIn()
    module = types.ModuleType("fastvideo_kernel")
    module.video_sparse_attn = stand_in
    monkeypatch.setitem(sys.modules, "fastvideo_kernel", module)
    return stand_in


def bf16_values(*shape: int) -> torch.Tensor:
    """Random float32 values that bf16 holds exactly: the kernel's cast loses nothing, so both backends see the
    same numbers (and select the same tiles) and differ only by the kernel's rounding of what it computes."""
    return torch.randn(*shape).bfloat16().float()


def assert_within_bf16_rounding(actual: torch.Tensor, expected: torch.Tensor, rounding_steps: float = 1.0) -> None:
    """``actual`` is ``expected`` up to a few roundings to bf16, relative to the largest value (near-zero elements
    of a gradient are sums of rounded terms, so elementwise relative error is not the measure)."""
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(
        actual.float(), expected, rtol=rounding_steps * BF16_RTOL, atol=rounding_steps * BF16_RTOL * scale
    )


@pytest.mark.parametrize("grid", [(4, 8, 8), (5, 6, 7)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8])
@pytest.mark.parametrize("with_gate", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_backend_meets_the_kernels_limits_and_equals_the_torch_backend(
    kernel, grid, sparsity, with_gate, dtype
):
    torch.manual_seed(0)
    shape = (2, math.prod(grid), 2, 64)  # batch 2: one kernel call per sample
    values = [bf16_values(*shape) for _ in range(4 if with_gate else 3)]
    weights = torch.randn(shape)
    layout = tile_layout(grid)

    def run(backend, tensors):
        leaves = [t.clone().requires_grad_(True) for t in tensors]
        gate = leaves[3] if with_gate else None
        out = vsa_attention(*leaves[:3], gate, layout, sparsity, backend=backend)
        (out.float() * weights).sum().backward()
        return out, [leaf.grad for leaf in leaves]

    out, grads = run("kernel", [t.to(dtype) for t in values])
    expected, expected_grads = run("torch", values)
    assert out.shape == expected.shape and out.dtype == dtype
    assert_within_bf16_rounding(out, expected)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert grad.dtype == dtype
        assert_within_bf16_rounding(grad, expected_grad, rounding_steps=2)
    topk = num_selected_tiles(layout.num_tiles, sparsity)
    assert kernel.calls == [{"block_size": (4, 4, 4), "topk": topk, "gate": with_gate, "batch": 1}] * 2


def stand_in_arguments(batch=1, head_dim=64, dtype=torch.bfloat16, block_size=(4, 4, 4)):
    layout = tile_layout((4, 4, 8))
    q = tile_tokens(torch.randn(batch, layout.num_tokens, 1, head_dim), layout).transpose(1, 2).contiguous()
    q = q.to(dtype)
    return (q, q, q, layout.tile_sizes, layout.tile_sizes, 1), {"block_size": block_size, "compress_attn_weight": q}


@pytest.mark.parametrize(
    "change, message",
    [
        ({}, None),
        ({"dtype": torch.float32}, "Both operands must be same dtype"),
        ({"dtype": torch.float16}, "Both operands must be same dtype"),
        ({"batch": 2}, "please set batch to 1"),
        ({"head_dim": 32}, "handles 64 and 128 only"),
        ({"head_dim": 128}, None),
        ({"block_size": 4}, None),  # an int n is an n x n x n tile
        ({"block_size": 64}, "must be divisible by block_elements=262144"),
        ({"block_size": (4, 4, 8)}, "must have length kv_num_blocks=1"),  # 128-token tiles: another path
    ],
)
def test_the_stand_in_refuses_what_the_real_package_refuses(change, message):
    args, kwargs = stand_in_arguments(**change)
    if message is None:
        assert KernelStandIn()(*args, **kwargs).dtype == torch.bfloat16
    else:
        with pytest.raises((ValueError, RuntimeError), match=message):
            KernelStandIn()(*args, **kwargs)


@pytest.mark.parametrize("grad", [False, True])
def test_a_head_dim_the_kernel_cannot_take_runs_without_it_and_says_why_once(kernel, caplog, grad):
    torch.manual_seed(0)
    layout = tile_layout((4, 8, 8))
    q, k, v, gate = (torch.randn(1, layout.num_tokens, 2, 16, requires_grad=grad) for _ in range(4))
    fallback = "torch" if grad else "flex"  # as auto on a CPU: flex has no CPU backward
    with torch.set_grad_enabled(grad), caplog.at_level(logging.WARNING, logger="fastvideo_hf.vsa.attention"):
        out = vsa_attention(q, k, v, gate, layout, 0.5, backend="kernel")
        vsa_attention(q, k, v, gate, layout, 0.5, backend="kernel")
        expected = vsa_attention(q, k, v, gate, layout, 0.5, backend=fallback)
    assert kernel.calls == []
    torch.testing.assert_close(out, expected)
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "head dims 64 and 128 only" in warnings[0].getMessage()
    assert "head dim is 16" in warnings[0].getMessage()
    assert f"the {fallback} backend runs instead" in warnings[0].getMessage()


def wan_transformer_with_heads_of_64() -> WanTransformer3DModel:
    """A tiny Wan transformer whose attention the kernel takes (the test pipeline's heads are of 12)."""
    torch.manual_seed(0)
    return tiny_wan_transformer(attention_head_dim=64).eval()


@pytest.mark.parametrize("autocast", [False, True])
def test_a_wan_transformer_with_the_kernel_backend_gives_the_torch_backends_output(kernel, autocast):
    """float32 training hands the processor float32; under bf16 autocast q/k/v come as the norms and RoPE leave
    them. Either way the kernel gets bf16 and the model gets its dtype back."""
    transformer = wan_transformer_with_heads_of_64()
    context = enable_vsa(transformer, sparsity=0.5, backend="torch")
    for block in transformer.blocks:  # a trained gate, so the coarse branch counts
        torch.nn.init.normal_(block.attn1.to_gate_compress.weight, std=0.2)
    latents = torch.randn(2, 16, 5, 10, 14)  # grid 5 x 5 x 7: partial tiles on every axis; batch 2
    inputs = (latents, torch.tensor([500.0, 300.0]), torch.randn(2, 16, TEXT_DIM))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        expected = transformer(*inputs).sample
        context.backend = "kernel"
        out = transformer(*inputs).sample
    assert out.dtype == expected.dtype
    # the kernel's bf16 attention against the torch backend's (float32, or bf16 under autocast) through 2 blocks
    torch.testing.assert_close(out, expected, rtol=0.025, atol=0.025 * float(expected.abs().max()))  # measured 0.012
    assert len(kernel.calls) == len(transformer.blocks) * 2  # one call per block and sample


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
        # fastvideo-kernel 0.3.5 imports einops (vmoba.py) without declaring it
        (
            "from einops_not_installed import rearrange\n",
            "ModuleNotFoundError: No module named 'einops_not_installed'",
        ),
        ("raise RuntimeError('no kernel image is available')\n", "RuntimeError: no kernel image is available"),
        ("raise OSError('libcudart.so.13: cannot open')\n", "OSError: libcudart.so.13: cannot open"),
    ],
)
def test_a_kernel_that_cannot_run_here_is_a_warning_once(tmp_path, monkeypatch, caplog, import_body, reason):
    write_kernel_package(tmp_path, import_body)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "fastvideo_kernel", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level(logging.WARNING, logger="fastvideo_hf.vsa.attention"):
        assert not kernel_available()
        assert not kernel_available()  # every attention call asks; the reason is logged once
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert f"not using FastVideo's kernel ({reason}" in warnings[0].getMessage()
    assert "flex backend runs instead" in warnings[0].getMessage()
    assert "pip install fastvideo-kernel einops" in warnings[0].getMessage()


def test_a_bug_in_the_kernel_package_is_not_taken_for_a_missing_kernel(tmp_path, monkeypatch):
    write_kernel_package(tmp_path, "raise TypeError('unsupported operand')\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "fastvideo_kernel", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(TypeError, match="unsupported operand"):
        kernel_available()


def test_asking_for_the_kernel_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastvideo_kernel", None)
    q = torch.randn(1, 64, 2, 64)
    with pytest.raises(ImportError, match="pip install fastvideo-kernel einops .*or use backend 'flex'"):
        vsa_attention(q, q, q, q, tile_layout((4, 4, 4)), 0.5, backend="kernel")
