"""Our ``kernel`` VSA backend through fastvideo-kernel's real Triton code, on the CPU, in Triton's interpreter.

``tests/vsa/test_vsa_kernel_call.py`` checks the call against a stand-in of the package; this checks it against the
package itself: ``vsa_attention(..., backend="kernel")`` runs the unmodified Python and Triton source of
``fastvideo_kernel`` (``video_sparse_attn``: its fused block mean, fused top-k mask, ``map_to_index`` and the
block-sparse forward and backward kernels) with ``TRITON_INTERPRET=1``, and is compared with our ``torch`` backend:

- output and q, k, v, gate gradients within bf16 rounding (the package computes in bf16), for float32 and bf16
  inputs, with and without a gate, batch 2, on a grid of whole tiles and one of partial tiles on every axis;
- the key tiles the package selects (its ``fused_topk_mask``) equal ours (``coarse_stage``);
- the package's own limits: a direct float32 call fails in ``tl.dot`` (our backend casts to bf16 for it).

Not part of ``make test``: it needs triton, the package's source and patches that let GPU-only code run on a CPU.
None changes what the kernels compute; they only get it past CUDA-only checks and interpreter gaps:

1. the package's import asks Triton's active driver for its target (``st_attn_triton.is_cuda()``): a stand-in
   driver answers "cuda, sm_90";
2. its ops are ``torch.library.custom_op(..., device_types="cuda")``: registered here for every device;
3. ``_as_int32_contig``, ``_map_to_index`` and ``invert_indices`` refuse CPU tensors: redefined from their own
   source with the ``is_cuda`` tests made False;
4. the autotuner would time 12 configs through the GPU benchmarker: the forward kernel keeps its first config
   (BLOCK_M = BLOCK_N = 64 in all of them; the others differ in pipelining only);
5. interpreter gaps (triton 3.7.1): it multiplies bf16 ``tl.dot`` operands as their raw uint16 bits (so bf16 dots
   are converted to float32 first), casts float32 to bf16 by truncation (so with round-to-nearest-even, as GPUs
   do), and runs a kernel's ``for i in range(n)`` with a Python int ``i`` where a GPU has an int32 scalar, on
   which ``(i % 2).to(tl.int32)`` in the dq kernel fails (so such loops yield int32 tensors).

Setup, in a throwaway venv (never the project's .venv; triton 3.7.1 is torch 2.13's pin)::

    python3 -m venv /tmp/kvenv
    /tmp/kvenv/bin/pip install torch==2.13.0 triton==3.7.1 einops numpy
    pip download --no-deps fastvideo-kernel==0.3.5 -d /tmp/fvk
    tar xzf /tmp/fvk/fastvideo_kernel-0.3.5.tar.gz -C /tmp/fvk
    /tmp/kvenv/bin/python bench/vsa_kernel_interpreter.py --kernel_src /tmp/fvk/fastvideo_kernel-0.3.5/python

``--kernel_src`` is the folder holding ``fastvideo_kernel`` (in a FastVideo checkout: ``fastvideo-kernel/python``).
It prints one line per case and exits 1 when a case is outside its bound. 2 to 3 minutes on 2 cores.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import os
import re
import sys
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
os.environ["FASTVIDEO_VSA_TRITON"] = "1"  # the package's Triton path (no compiled extension here anyway)

import harness  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(harness.REPO / "src"))

from fastvideo_hf.vsa import attention  # noqa: E402
from fastvideo_hf.vsa.tiling import TILE_TOKENS, tile_layout, tile_tokens  # noqa: E402

# Largest difference from the torch backend (float32) allowed, in units of the reference's largest magnitude: the
# package rounds q, k, v, its block means, tile scores, probabilities and output to bf16 (2^-8 relative steps);
# measured: output <= 5.1e-3, gradients <= 8.1e-3 (0.3.5 at head dim 64, the 2f3d407 snapshot at 128).
OUTPUT_BOUND = 1e-2
GRADIENT_BOUND = 1.5e-2
GRIDS = ((4, 8, 8), (5, 6, 7))  # whole tiles; partial tiles on every axis
DTYPES = (torch.float32, torch.bfloat16)


def patch_triton_interpreter() -> None:
    """Patches 1 and 5 of the module docstring (before the package is imported)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.runtime import interpreter

    class InterpreterDriver:
        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

    triton.runtime.driver.set_active(InterpreterDriver())

    builder = interpreter.InterpreterBuilder
    import triton.language as tl

    def as_float32(handle):
        if handle.dtype.scalar == tl.bfloat16:  # stored as uint16 bits
            return torch.from_numpy(handle.data.astype(np.uint16).view(np.int16)).view(torch.bfloat16).float().numpy()
        return handle.data

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if a.dtype.scalar == tl.bfloat16 or b.dtype.scalar == tl.bfloat16:
            product = np.matmul(as_float32(a), as_float32(b), dtype=np.float32)
            return interpreter.TensorHandle(product.astype(d.data.dtype) + d.data, d.dtype.scalar)
        return original_dot(self, a, b, d, input_precision, max_num_imprecise_acc)

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            rounded = torch.from_numpy(np.ascontiguousarray(src.data)).to(torch.bfloat16)  # round to nearest even
            return interpreter.TensorHandle(rounded.view(torch.int16).numpy().view(np.uint16), tl.bfloat16)
        return original_cast(self, src, dst_type)

    original_dot, original_cast = builder.create_dot, builder.cast_impl
    builder.create_dot, builder.cast_impl = create_dot, cast_impl  # create_fp_trunc & co. call cast_impl


def without_cuda_check(module, name: str) -> None:
    """Redefine ``module.name`` from its own source with its ``not x.is_cuda`` tests made False (patch 3)."""
    source = inspect.getsource(getattr(module, name))
    patched, count = re.subn(r"not \w+\.is_cuda\b", "False", source)
    if not count:
        raise SystemExit(f"{module.__name__}.{name} has no CUDA check to bypass: is this another release?")
    exec(compile(patched, inspect.getsourcefile(module), "exec"), module.__dict__)


def import_kernel_package(kernel_src: Path):
    """Import ``fastvideo_kernel`` from source with patches 2-5."""
    if not (kernel_src / "fastvideo_kernel" / "ops.py").is_file():
        raise SystemExit(f"--kernel_src {kernel_src} does not hold fastvideo_kernel/ops.py")
    sys.path.insert(0, str(kernel_src))
    custom_op = torch.library.custom_op

    def any_device_custom_op(name, fn=None, /, *, mutates_args, device_types=None, schema=None, **kwargs):
        return custom_op(name, fn, mutates_args=mutates_args, device_types=None, schema=schema, **kwargs)

    torch.library.custom_op = any_device_custom_op
    try:
        package = importlib.import_module("fastvideo_kernel")
    finally:
        torch.library.custom_op = custom_op
    sparse = importlib.import_module("fastvideo_kernel.block_sparse_attn")
    index = importlib.import_module("fastvideo_kernel.triton_kernels.index")
    kernels = importlib.import_module("fastvideo_kernel.triton_kernels.block_sparse_attn_triton")
    for module, name in ((sparse, "_as_int32_contig"), (sparse, "_map_to_index"), (index, "invert_indices")):
        without_cuda_check(module, name)
    kernels._attn_fwd_sparse.configs = kernels._attn_fwd_sparse.configs[:1]

    from triton.runtime.interpreter import interpreter_semantic

    def int32_range(*args):
        for i in builtins.range(*(int(arg) for arg in args)):
            yield interpreter_semantic.to_tensor(i, False)

    kernels.range = int32_range  # the kernels' `for ... in range(...)` (the host functions there use no range)
    return package


def record_selections() -> list[torch.Tensor]:
    """Every mask ``fused_topk_mask`` returns, as ``video_sparse_attn`` sees it."""
    ops = sys.modules["fastvideo_kernel.ops"]
    masks, fused_topk_mask = [], ops.fused_topk_mask

    def recording(scores, topk):
        mask = fused_topk_mask(scores, topk)
        masks.append(mask)
        return mask

    ops.fused_topk_mask = recording
    return masks


def bf16_values(*shape: int) -> torch.Tensor:
    """Random float32 values that bf16 holds exactly, so both backends start from the same numbers."""
    return torch.randn(*shape).bfloat16().float()


def run_case(grid, dtype, with_gate: bool, sparsity: float, head_dim: int, masks: list, heads: int = 2):
    layout = tile_layout(grid)
    torch.manual_seed(0)
    shape = (2, layout.num_tokens, heads, head_dim)
    values = [bf16_values(*shape) for _ in range(4 if with_gate else 3)]
    weights = torch.randn(shape)

    def backend_run(backend: str, tensors: list[torch.Tensor]):
        leaves = [t.clone().requires_grad_(True) for t in tensors]
        gate = leaves[3] if with_gate else None
        out = attention.vsa_attention(*leaves[:3], gate, layout, sparsity, backend=backend)
        (out.float() * weights).sum().backward()
        return out, [leaf.grad for leaf in leaves]

    masks.clear()
    out, grads = backend_run("kernel", [t.to(dtype) for t in values])
    expected, expected_grads = backend_run("torch", values)
    assert out.dtype == dtype, (out.dtype, dtype)
    assert all(g.dtype == dtype for g in grads), [g.dtype for g in grads]

    def relative(a, b):
        return float((a.detach().float() - b.detach()).abs().max() / b.detach().abs().max())

    out_error = relative(out, expected)
    grad_error = max(relative(g, e) for g, e in zip(grads, expected_grads, strict=True))
    # the package's selections (one call per sample) against ours
    q_t, k_t, v_t = (tile_tokens(t, layout).transpose(1, 2).unflatten(2, (-1, TILE_TOKENS)) for t in values[:3])
    topk = attention.num_selected_tiles(layout.num_tiles, sparsity)
    _, ours = attention.coarse_stage(q_t, k_t, v_t, layout, topk)
    ours = torch.zeros(*ours.shape[:-1], layout.num_tiles, dtype=torch.bool).scatter_(-1, ours, True)
    same_tiles = len(masks) == 2 and torch.equal(torch.cat(masks), ours)  # one call per sample
    return out_error, grad_error, same_tiles


def check_float32_fails_in_the_package(package) -> str:
    """The package itself refuses float32 (our backend casts for it): the error it raises."""
    layout = tile_layout((4, 4, 8))
    q = tile_tokens(torch.randn(1, layout.num_tokens, 1, 64), layout).transpose(1, 2).contiguous()
    try:
        package.video_sparse_attn(q, q, q, layout.tile_sizes, layout.tile_sizes, 1, block_size=(4, 4, 4))
    except Exception as error:  # a triton CompilationError or the interpreter's own error
        text = " ".join(str(error).split())
        return "" if "same dtype" not in text else text[text.index("Both operands") :].split("'")[0]
    return ""


def main() -> int:
    parser = harness.make_parser(__doc__, summary_only=True)
    parser.add_argument("--kernel_src", type=Path, required=True, help="the folder holding fastvideo_kernel/")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--head_dim", type=int, default=64, choices=attention.KERNEL_HEAD_DIMS)
    args = parser.parse_args()
    patch_triton_interpreter()
    package = import_kernel_package(args.kernel_src.resolve())
    masks = record_selections()
    print(
        f"fastvideo_kernel {package.__version__} from {args.kernel_src}, torch {torch.__version__}, Triton interpreter"
    )
    print(f"bounds: output {OUTPUT_BOUND:g}, gradients {GRADIENT_BOUND:g} (max |diff| / max |torch backend|)")
    failures = 0
    for grid in GRIDS:
        for dtype in DTYPES:
            for with_gate in (True, False):
                out_error, grad_error, same_tiles = run_case(
                    grid, dtype, with_gate, args.sparsity, args.head_dim, masks
                )
                ok = out_error <= OUTPUT_BOUND and grad_error <= GRADIENT_BOUND and same_tiles
                failures += not ok
                print(
                    f"{'ok  ' if ok else 'FAIL'} grid {'x'.join(map(str, grid))} {str(dtype).removeprefix('torch.')}"
                    f" {'gate' if with_gate else 'no gate'}, batch 2: output {out_error:.1e}, gradients"
                    f" {grad_error:.1e}, same key tiles: {same_tiles}"
                )
    refusal = check_float32_fails_in_the_package(package)
    failures += not refusal
    print(f"{'ok  ' if refusal else 'FAIL'} the package called with float32 directly fails: {refusal or 'it did not'}")
    print("all cases within bounds" if not failures else f"{failures} case(s) out of bounds")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
