"""Benchmark of Video Sparse Attention: how much faster than dense attention is ``vsa_attention``, and where does
its time go?

VSA's promise is that attending each 64-token query tile to the top ``(1 - sparsity)`` fraction of key tiles costs
about that fraction of dense attention. This script measures it for ``fastvideo_hf.vsa.vsa_attention`` on random
``q, k, v, gate`` ``[B, S, H, D]`` over token grids (tokens per axis after patchify) from a small one up to
Wan2.1-1.3B's 480x832x77 video (20x30x52 = 31,200 tokens, with partial edge tiles), against dense
``torch.nn.functional.scaled_dot_product_attention`` on the same tensors transposed to ``[B, H, S, D]``.

For each (grid, sparsity, backend) it reports medians over ``--repeats`` rounds (a sample of a call shorter than
0.2 s averages back-to-back calls filling 0.2 s) of:

- VSA time: the whole ``vsa_attention`` call (tiling, coarse stage, selection, fine stage, untiling, gating);
  forward only, or forward+backward with ``--backward``;
- dense time: SDPA in the same mode. Timings on a shared machine are noisy, so dense and VSA are measured
  interleaved in one process: each round times dense once per grid and mode (it does not depend on the
  sparsity), then every VSA row of that grid; each row's dense time is the grid's dense median;
- ratio: median VSA / median dense;
- coarse share: tiling + ``coarse_stage`` (tile mean-pool, tile attention, top-k; with its backward under
  ``--backward``), timed alone in the same round, as a fraction of the VSA time; not separable for ``kernel``;
- mask share (``flex`` only): ``block_mask_from_tiles`` timed alone, as a fraction of the VSA time.

Before the rounds each row is called once and that first call is reported on its own: for ``flex`` it includes
``torch.compile`` of FlexAttention for the grid's shape (one compile per grid and mode; other sparsities reuse it;
Inductor's on-disk cache makes it shorter when the shape was compiled by an earlier run). The 1-minute load
average before and after is printed too: other jobs on the machine are what makes timings noisy.
The goals checked at the end: on a CPU, forward at 0.875 sparsity and >= 16k tokens in at most 0.3x the dense time;
on a GPU, forward+backward at 0.875 sparsity at 31k tokens in at most 0.2x the dense time.

Run it with ``.venv/bin/python bench/vsa.py``; it prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import harness
import torch
import torch._dynamo
import torch.nn.functional as F

from fastvideo_hf.vsa.attention import (
    block_mask_from_tiles,
    coarse_stage,
    kernel_available,
    num_selected_tiles,
    vsa_attention,
)
from fastvideo_hf.vsa.tiling import TILE_TOKENS, TileLayout, tile_layout, tile_tokens

DEFAULT_GRIDS = "8x16x16,12x24x40,16x32x32,20x30x52"
DEFAULT_SPARSITIES = "0.5,0.75,0.875,0.9"
TORCH_BACKEND_MAX_TOKENS = 16_384  # the reference backend gathers topk * 64 keys per query tile: small grids only
GOAL_SPARSITY = 0.875
CPU_GOAL = ("forward at 0.875 sparsity and >= 16k tokens in at most 0.3x the dense time", 16_384, 0.3)
GPU_GOAL = ("forward+backward at 0.875 sparsity at 31k tokens in at most 0.2x the dense time", 31_000, 0.2)
FORWARD, FORWARD_BACKWARD = "fwd", "fwd+bwd"
MIN_SAMPLE_SECONDS = 0.2  # a timing sample repeats calls shorter than this and averages them


@dataclass
class Row:
    """One (grid, sparsity, backend) measurement; times in seconds, one entry per round."""

    grid: tuple[int, int, int]
    tokens: int
    tiles: int
    sparsity: float
    topk: int
    backend: str
    mode: str
    first_call_seconds: float = 0.0
    vsa_seconds: list[float] = field(default_factory=list)
    dense_seconds: list[float] = field(default_factory=list)
    coarse_seconds: list[float] = field(default_factory=list)
    mask_seconds: list[float] = field(default_factory=list)

    @property
    def vsa(self) -> float:
        return statistics.median(self.vsa_seconds)

    @property
    def dense(self) -> float:
        return statistics.median(self.dense_seconds)

    @property
    def ratio(self) -> float:
        return self.vsa / self.dense

    @property
    def coarse_share(self) -> float | None:
        return statistics.median(self.coarse_seconds) / self.vsa if self.coarse_seconds else None

    @property
    def mask_share(self) -> float | None:
        return statistics.median(self.mask_seconds) / self.vsa if self.mask_seconds else None

    def summary(self) -> dict[str, object]:
        return {
            **asdict(self),
            "vsa_median": self.vsa,
            "dense_median": self.dense,
            "ratio": self.ratio,
            "coarse_share": self.coarse_share,
            "mask_share": self.mask_share,
        }


def parse_grid(text: str) -> tuple[int, int, int]:
    sizes = tuple(int(part) for part in text.lower().split("x"))
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"a grid is TxHxW tokens, e.g. 16x32x32; got {text!r}")
    return sizes


def grid_name(grid: tuple[int, int, int]) -> str:
    return "x".join(map(str, grid))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(device: torch.device) -> str:
    line = f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    if device.type == "cuda":
        line += f", {torch.cuda.get_device_name(device)}"
    return line


def backends_for(grid_tokens: int, args: argparse.Namespace, device: torch.device) -> list[str]:
    """``--backends`` when given, else flex on a CPU; on a GPU flex, kernel where installed, torch for small grids."""
    if args.backends:
        return args.backends
    if device.type == "cpu":
        return ["flex"]
    backends = ["flex"]
    if kernel_available():
        backends.append("kernel")
    if grid_tokens <= TORCH_BACKEND_MAX_TOKENS:
        backends.append("torch")
    return backends


def mode_for(backend: str, args: argparse.Namespace, device: torch.device) -> str:
    """Forward+backward under ``--backward``, except flex on a CPU: FlexAttention has no CPU backward."""
    if args.backward and not (backend == "flex" and device.type == "cpu"):
        return FORWARD_BACKWARD
    return FORWARD


class GridBench:
    """Inputs of one grid, and the steps timed on them (each a call of ``() -> None``)."""

    def __init__(self, grid: tuple[int, int, int], args: argparse.Namespace, device: torch.device, grad: bool):
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
        self.layout: TileLayout = tile_layout(grid, device)
        shape = (1, self.layout.num_tokens, args.heads, args.head_dim)
        generator = torch.Generator(device="cpu").manual_seed(0)
        self.q, self.k, self.v, self.gate = (
            torch.randn(shape, generator=generator).to(device=device, dtype=dtype).requires_grad_(grad)
            for _ in range(4)
        )
        self.grad_out = torch.randn(shape, generator=generator).to(device=device, dtype=dtype) if grad else None
        tiled_shape = (1, args.heads, self.layout.num_tiles, TILE_TOKENS, args.head_dim)
        self.grad_coarse = torch.randn(tiled_shape, generator=generator).to(device, dtype) if grad else None
        self.tile_index = torch.empty(0, dtype=torch.long)

    def run(self, forward: Callable[[], torch.Tensor], mode: str) -> None:
        """``forward`` under no_grad, or forward then backward of ``grad_out``."""
        if mode == FORWARD:
            with torch.no_grad():
                forward()
            return
        self.clear_grads()
        forward().backward(self.grad_out)

    def clear_grads(self) -> None:
        """Drop the inputs' gradients, so that a backward writes them instead of accumulating."""
        for tensor in (self.q, self.k, self.v, self.gate):
            tensor.grad = None

    def dense(self, mode: str) -> None:
        def forward() -> torch.Tensor:
            q, k, v = (x.transpose(1, 2) for x in (self.q, self.k, self.v))
            return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)

        self.run(forward, mode)

    def vsa(self, row: Row) -> None:
        self.run(
            lambda: vsa_attention(self.q, self.k, self.v, self.gate, self.layout, row.sparsity, row.backend), row.mode
        )

    def coarse(self, row: Row) -> None:
        """Tiling and the coarse stage as ``vsa_attention`` runs them (with their backward in fwd+bwd mode); keeps
        the selected tiles for ``mask``."""
        with torch.set_grad_enabled(row.mode == FORWARD_BACKWARD):
            q_t, k_t, v_t = (
                tile_tokens(x, self.layout).transpose(1, 2).unflatten(2, (self.layout.num_tiles, TILE_TOKENS))
                for x in (self.q, self.k, self.v)
            )
            out_coarse, self.tile_index = coarse_stage(q_t, k_t, v_t, self.layout, row.topk)
            if row.mode == FORWARD_BACKWARD:
                self.clear_grads()
                out_coarse.backward(self.grad_coarse)

    def mask(self) -> None:
        """The flex backend's BlockMask from the tiles the last ``coarse`` call selected."""
        block_mask_from_tiles(self.layout, self.tile_index)


def bench_grid(grid: tuple[int, int, int], args: argparse.Namespace, device: torch.device) -> list[Row]:
    """All rows of one grid: first calls, then ``--repeats`` interleaved rounds of dense and every VSA row."""
    tokens = math.prod(grid)
    backend_modes = {backend: mode_for(backend, args, device) for backend in backends_for(tokens, args, device)}
    modes = sorted(set(backend_modes.values()))
    bench = GridBench(grid, args, device, grad=FORWARD_BACKWARD in modes)
    num_tiles = bench.layout.num_tiles
    rows = [
        Row(
            grid=grid,
            tokens=tokens,
            tiles=num_tiles,
            sparsity=sparsity,
            topk=num_selected_tiles(num_tiles, sparsity),
            backend=backend,
            mode=mode,
        )
        for backend, mode in backend_modes.items()
        for sparsity in args.sparsities
    ]
    for mode in modes:
        harness.seconds_per_call(lambda mode=mode: bench.dense(mode), device)  # warmup
    for row in rows:
        row.first_call_seconds = harness.seconds_per_call(lambda row=row: bench.vsa(row), device)
    dense_seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    sample = partial(harness.seconds_per_call, device=device, min_seconds=MIN_SAMPLE_SECONDS)
    for _ in range(args.repeats):
        for mode in modes:
            dense_seconds[mode].append(sample(lambda mode=mode: bench.dense(mode)))
        for row in rows:
            row.vsa_seconds.append(sample(lambda row=row: bench.vsa(row)))
            if row.backend == "kernel":  # its coarse stage runs inside the fused kernel
                continue
            row.coarse_seconds.append(sample(lambda row=row: bench.coarse(row)))
            if row.backend == "flex":
                row.mask_seconds.append(sample(bench.mask))
    for row in rows:
        row.dense_seconds = dense_seconds[row.mode]
    return rows


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def format_table(rows: list[Row], backward: bool) -> str:
    columns = ["grid", "tokens", "tiles", "sparsity", "backend", "dense ms", "VSA ms", "ratio", "coarse share"]
    columns.append("mask share")
    cells = [
        [
            grid_name(row.grid),
            f"{row.tokens:,}",
            row.tiles,
            f"{row.sparsity:g}",
            f"{row.backend} {row.mode}" if backward else row.backend,
            f"{row.dense * 1e3:,.1f}",
            f"{row.vsa * 1e3:,.1f}",
            f"{row.ratio:.3f}",
            share(row.coarse_share),
            share(row.mask_share),
        ]
        for row in rows
    ]
    return harness.markdown_table(columns, cells, "lrrrlrrrrr")


def goal_lines(rows: list[Row], device: torch.device, backward: bool) -> tuple[list[str], dict[str, object]]:
    """The printed goal lines and their JSON record: PASS/FAIL per qualifying row, or why nothing was measured."""
    lines: list[str] = []
    record: dict[str, object] = {}
    for name, (text, min_tokens, max_ratio), goal_device, mode in (
        ("cpu", CPU_GOAL, "cpu", FORWARD),
        ("gpu", GPU_GOAL, "cuda", FORWARD_BACKWARD),
    ):
        qualifying = [
            row
            for row in rows
            if row.mode == mode and row.tokens >= min_tokens and math.isclose(row.sparsity, GOAL_SPARSITY)
        ]
        if device.type != goal_device:
            reason = "not measured (no GPU)" if goal_device == "cuda" else "not measured (this run is on a GPU)"
        elif mode == FORWARD_BACKWARD and not backward:
            reason = "not measured (run with --backward)"
        elif not qualifying:
            reason = "not measured (no row at 0.875 sparsity on a large enough grid)"
        else:
            reason = ""
        lines.append(f"{name.upper()} goal: {text}: {reason}" if reason else f"{name.upper()} goal: {text}:")
        record[name] = {"goal": text, "result": reason or None, "rows": []}
        if reason:
            continue
        for row in qualifying:
            outcome = harness.verdict(row.ratio <= max_ratio)
            lines.append(
                f"- {grid_name(row.grid)} ({row.tokens:,} tokens) {row.backend}: {row.ratio:.3f}x -> {outcome}"
            )
            record[name]["rows"].append(
                {"grid": grid_name(row.grid), "backend": row.backend, "ratio": row.ratio, "verdict": outcome}
            )
    return lines, record


def build_parser() -> argparse.ArgumentParser:
    parser = harness.make_parser(__doc__)
    parser.add_argument(
        "--grids",
        type=lambda text: [parse_grid(part) for part in text.split(",")],
        default=DEFAULT_GRIDS,
        help=f"comma-separated token grids TxHxW after patchify (default {DEFAULT_GRIDS}: small, intermediate, "
        "4x8x8 tiles, Wan2.1 480x832x77)",
    )
    parser.add_argument(
        "--sparsities",
        type=lambda text: [float(part) for part in text.split(",")],
        default=DEFAULT_SPARSITIES,
        help=f"comma-separated VSA sparsities in [0, 1) (default {DEFAULT_SPARSITIES})",
    )
    parser.add_argument(
        "--heads",
        type=int,
        help="attention heads (default 2 on a CPU to keep dense SDPA affordable, 12 as in Wan2.1-1.3B on a GPU; the "
        "VSA/dense ratio depends little on it: every part of both scales linearly with the heads)",
    )
    parser.add_argument("--head_dim", type=int, default=128, help="head dimension (default 128, as in Wan2.1)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds; medians are reported")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to run (default cuda when available); float32 on cpu, bfloat16 on cuda",
    )
    parser.add_argument(
        "--backends",
        type=lambda text: text.split(","),
        help="comma-separated VSA backends among flex, kernel, torch, used on every grid (default: flex on a CPU; "
        f"on a GPU flex, kernel when fastvideo_kernel is installed, and torch on grids of <= "
        f"{TORCH_BACKEND_MAX_TOKENS:,} tokens)",
    )
    parser.add_argument(
        "--backward",
        action="store_true",
        help="time forward+backward (VSA, dense and the coarse stage); flex on a CPU stays forward only, "
        "FlexAttention having no CPU backward",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's, one per core); 1 avoids the stalls a busy neighbour process causes "
        "when torch's threads wait for each other on a shared machine",
    )
    harness.add_output_json(parser, "vsa.json", "where to write the results (default bench/results/vsa.json)")
    return parser


def parse_args() -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU here")
    for backend in args.backends or ():
        if backend not in ("flex", "kernel", "torch"):
            parser.error(f"--backends: unknown backend {backend!r}")
        if backend == "kernel" and (args.device != "cuda" or not kernel_available()):
            parser.error("--backends kernel needs a GPU with fastvideo_kernel installed")
    if not all(0.0 <= sparsity < 1.0 for sparsity in args.sparsities):
        parser.error("--sparsities must be in [0, 1)")
    if args.heads is None:
        args.heads = 2 if args.device == "cpu" else 12
    return args


def main() -> int:
    args = parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    # dynamic=False compiles FlexAttention once per grid shape (and grad mode); keep every grid compiled
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 2 * len(args.grids))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    rows: list[Row] = []
    for grid in args.grids:
        grid_started = time.perf_counter()
        rows.extend(bench_grid(grid, args, device))
        print(f"{grid_name(grid)}: {time.perf_counter() - grid_started:.0f} s", file=sys.stderr, flush=True)
    total_seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]

    dtype = "float32" if device.type == "cpu" else "bfloat16"
    mode = "forward+backward" if args.backward else "forward"
    print(f"## VSA vs dense SDPA ({machine_line(device)})\n")
    print(
        f"{mode} on {args.device}, {dtype}, batch 1, {args.heads} heads of dim {args.head_dim} (Wan2.1-1.3B has 12 of "
        f"dim 128; the ratio depends little on the heads), medians of {args.repeats} interleaved rounds; dense timed "
        "once per round per grid and shared by its rows; 1-minute load average "
        f"{load_before:.1f} before, {load_after:.1f} after"
    )
    if args.backward and device.type == "cpu" and any(row.backend == "flex" for row in rows):
        print("flex rows are forward only: FlexAttention has no CPU backward")
    print()
    print(format_table(rows, args.backward))
    print()
    first_calls = {}
    for row in rows:
        key = f"{grid_name(row.grid)} {row.backend} {row.mode}"
        first_calls.setdefault(key, row.first_call_seconds)  # the first sparsity's call carries the compile
    print(
        "first calls, excluded from the timings (flex: torch.compile for the shape, or a load from Inductor's cache, "
        "+ one run): " + ", ".join(f"{key} {seconds:.1f} s" for key, seconds in first_calls.items())
    )
    lines, goals = goal_lines(rows, device, args.backward)
    print()
    print("\n".join(lines))
    print(f"\ntotal {total_seconds:.0f} s")

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    report = {
        "machine": harness.machine_record(cpu=cpu_model(), **harness.torch_record(), gpu=gpu),
        "settings": {**vars(args), "grids": [grid_name(grid) for grid in args.grids], "dtype": dtype},
        "rows": [row.summary() for row in rows],
        "first_call_seconds": first_calls,
        "goals": goals,
        "load_average_1min": {"before": load_before, "after": load_after},
        "total_seconds": total_seconds,
    }
    harness.write_json(args.output_json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
