"""The GPU proof of the fast path, written before any GPU ran it: one command, one table, one JSON file.

``bash bench/gpu_check.sh`` runs this on one H100/H200 in under 10 minutes (it installs what it needs first);
``bash bench/gpu_check.sh --dry-run`` runs the same code at tiny sizes on the CPU, and ``tests/test_gpu_check.py``
runs that dry run, so this script cannot rot while no GPU is at hand. Four parts, each with the project's own code
(``vsa_attention``, ``enable_vsa``, ``steps.compute_loss`` and the optimizer/LoRA helpers the training scripts
call, ``memory_savers.place_frozen_weights``, the ``VideoLatents`` preprocessing builder):

(a) VSA forward and forward+backward against dense SDPA (FlashAttention on a GPU in bf16) at sparsity 0.875 and 0.9
    for 31,200 tokens (Wan2.1 1.3B at 480x832x77: a 20x30x52 grid) and 75,600 tokens (720x1280x81: 21x45x80), 12
    heads of 128, backends ``kernel`` (FastVideo's fused kernel) and ``flex``; each backend's output and input
    gradients against the ``torch`` reference backend on the same inputs (on the first heads only: the reference
    gathers every selected key tile per query tile, tens of GB at these sizes with all heads; heads are
    independent, so agreement on one head is agreement).
(b) One LoRA step and one full-finetune step of a Wan2.1-1.3B-shaped transformer (random weights) on a
    480x832x81 latent (21x60x104, 32,760 tokens), dense vs VSA 0.9, with gradient checkpointing (without it the
    activations of 30 blocks at 32k tokens exceed any GPU) and bf16 autocast as ``--mixed_precision bf16`` gives;
    time of the second step and peak ``torch.cuda.max_memory_allocated`` over both.
(c) Preprocessing videos/s with the real-size Wan2.1 VAE (random weights; a tiny text encoder, since the VAE and
    decoding are what take the time) at 480x832x81, decode workers off (``--num_workers 0``) and on (the
    default count), with the GPU utilisation sampled from ``nvidia-smi`` meanwhile.
(d) The memory savers on a Wan2.1-14B-shaped transformer: one LoRA step at 480x832x81 with bf16 weights, fp8
    layerwise casting, group offload, and both, all with gradient checkpointing (one step each: its time includes
    first-call costs); does the peak allocated memory stay within 24 GiB, and what does ``fastvideo-hf plan``
    estimate for the same options (its ``allocated_bytes``, run in-process through the CLI's ``main``).

The parts' sizes are set to end in under 10 minutes on an H100/H200 (an estimate: no GPU has run it yet); the JSON is
rewritten after every part, and ``--parts ab`` / ``--parts cd`` split the check in two if one call runs too long.

Transformers are built straight on the device inside ``torch.device(...)``, so their random initialisation runs
there in a second: a meta-device build with ``to_empty`` would leave the RoPE tables that Wan computes at
construction uninitialised. Every row that cannot run says why (no CUDA, kernel not installed, out of memory);
on a GPU a RuntimeError of one row (a CUDA or compile failure) is recorded and the run goes on, since a GPU
session is short; the dry run lets it propagate, so a broken code path fails the test.

Goals the table is read against: VSA forward+backward at 0.875 at most 0.15x dense at 31,200 tokens and 0.125x at
75,600; flex within 1.5x of the kernel; a 14B LoRA step within 24 GiB.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never the Hub: every model here is built from a config

import harness
import torch
import torch.nn.functional as F

from fastvideo_hf.models.wan.family import KNOWN_MODELS, WAN

GIB = 1024**3
MEMORY_GOAL_BYTES = 24 * GIB  # a 24 GB card (RTX 4090, L4 class) holds 24 GiB
FLEX_VS_KERNEL_GOAL = 1.5
FORWARD, FORWARD_BACKWARD = "fwd", "fwd+bwd"
TEXT_TOKENS = 512  # the loader pads prompt embeddings to umT5's 512, as WanPipeline does

# Public configs (DESIGN.md 7): Wan2.1 T2V 1.3B and 14B; diffusers' defaults of AutoencoderKLWan are Wan2.1's VAE.
WAN_1_3B = KNOWN_MODELS["wan2.1-t2v-1.3b"].config  # the real config.json, kept by `fastvideo-hf plan`
WAN_14B = KNOWN_MODELS["wan2.1-t2v-14b"].config
WAN21_VAE: dict[str, Any] = {}
# diffusers' own test sizes (DESIGN.md 5), for the dry run
TINY_TRANSFORMER = {
    **WAN_1_3B,
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "text_dim": 32,
    "ffn_dim": 32,
    "num_layers": 2,
    "rope_max_seq_len": 32,
}
TINY_VAE = {"base_dim": 3, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1}

# (d): name, --layerwise_casting, --group_offload; all with --gradient_checkpointing
SAVER_OPTIONS = (
    ("no memory saver", None, None),
    ("fp8 layerwise casting", "float8_e4m3fn", None),
    ("group offload block_level", None, "block_level"),
    ("fp8 + group offload", "float8_e4m3fn", "block_level"),
)


@dataclass(frozen=True)
class Sizes:
    """What each part runs on: the real sizes, or tiny ones for the CPU dry run."""

    vsa_grids: tuple[tuple[tuple[int, int, int], float | None], ...]  # token grid, its fwd+bwd goal ratio
    vsa_sparsities: tuple[float, ...]
    vsa_heads: int
    head_dim: int
    agreement_heads: int
    repeats: int
    small_transformer: dict[str, Any]
    small_name: str
    large_transformer: dict[str, Any]
    large_name: str
    train_video: tuple[int, int, int]  # height, width, frames of the training batch of (b) and (d)
    train_sparsity: float
    vae: dict[str, Any]
    video: tuple[int, int, int]  # height, width, frames of (c)
    num_videos: int

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """Wan2.1's VAE latent of ``train_video``: 16 channels, 4x fewer frames (plus the first), 8x smaller."""
        height, width, frames = self.train_video
        return (16, (frames - 1) // 4 + 1, height // 8, width // 8)


FULL = Sizes(
    vsa_grids=(((20, 30, 52), 0.15), ((21, 45, 80), 0.125)),
    vsa_sparsities=(0.875, 0.9),
    vsa_heads=12,
    head_dim=128,
    agreement_heads=1,
    repeats=3,
    small_transformer=WAN_1_3B,
    small_name="1.3B-shaped",
    large_transformer=WAN_14B,
    large_name="14B-shaped",
    train_video=(480, 832, 81),
    train_sparsity=0.9,
    vae=WAN21_VAE,
    video=(480, 832, 81),
    num_videos=4,
)
DRY_RUN = Sizes(
    vsa_grids=(((6, 10, 20), None),),  # partial edge tiles; one grid: FlexAttention compiles once per grid
    vsa_sparsities=(0.875, 0.9),
    vsa_heads=2,
    head_dim=64,
    agreement_heads=2,
    repeats=2,
    small_transformer=TINY_TRANSFORMER,
    small_name="tiny",
    large_transformer={**TINY_TRANSFORMER, "num_layers": 3},
    large_name="tiny",
    train_video=(128, 128, 17),
    train_sparsity=0.9,
    vae=TINY_VAE,
    video=(64, 96, 9),
    num_videos=2,
)


@dataclass
class Row:
    """One line of the table. ``status`` is ``ok`` or says why the row has no numbers."""

    part: str
    case: str
    status: str = "ok"
    seconds: float | None = None
    dense_ratio: float | None = None
    peak_gib: float | None = None
    notes: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    """What every part needs: the sizes, where to run, and how strictly."""

    sizes: Sizes
    device: torch.device
    work_dir: Path
    kernel_status: str
    strict: bool  # the dry run: a RuntimeError is a bug and propagates

    @property
    def dtype(self) -> torch.dtype:
        """bf16 on a GPU (what training runs in); float32 on the CPU, whose bf16 kernels are slow."""
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def guarded(check: Check, row: Row, measure: Callable[[Row], None]) -> Row:
    """Run ``measure(row)``; out of memory is a result, recorded in the row. On a GPU a RuntimeError (a CUDA or
    compile failure) or TypeError (another kernel API) is recorded too, so one broken row does not cost the rest of
    a short GPU session; the dry run lets them propagate."""
    try:
        measure(row)
    except torch.OutOfMemoryError as error:
        row.status = f"failed: out of memory ({str(error).splitlines()[0][:120]})"
    except (RuntimeError, TypeError) as error:  # TypeError: a kernel release whose call signature differs
        if check.strict:
            raise
        row.status = f"failed: {type(error).__name__}: {(str(error).splitlines() or [''])[0][:160]}"
    finally:
        free_memory(check.device)
    return row


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def median_seconds(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median seconds of ``step`` over ``repeats`` calls after one warmup call (compiles, allocator)."""
    step()
    return statistics.median(harness.seconds_per_call(step, device) for _ in range(repeats))


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """``||value - reference|| / ||reference||`` in float32."""
    value, reference = value.float(), reference.float()
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))


def kernel_skip_reason(check: Check) -> str | None:
    """Why the ``kernel`` backend cannot run here, or None when it can."""
    from fastvideo_hf.vsa.attention import kernel_available

    if not check.cuda:
        return "skipped: no CUDA"
    if not kernel_available():
        return f"skipped: fastvideo-kernel {check.kernel_status}"
    return None


# -- (a) VSA against dense attention ---------------------------------------------------------------------------


class AttentionInputs:
    """Random ``q, k, v, gate`` ``[1, S, H, D]`` of one grid, with an output gradient for backward."""

    def __init__(self, check: Check, grid: tuple[int, int, int]):
        from fastvideo_hf.vsa.tiling import tile_layout

        sizes = check.sizes
        self.layout = tile_layout(grid, check.device)
        shape = (1, self.layout.num_tokens, sizes.vsa_heads, sizes.head_dim)
        generator = torch.Generator().manual_seed(0)
        self.q, self.k, self.v, self.gate, self.grad_out = (
            torch.randn(shape, generator=generator).to(check.device, check.dtype) for _ in range(5)
        )
        self.inputs = [x.requires_grad_() for x in (self.q, self.k, self.v, self.gate)]

    def run(self, forward: Callable[[], torch.Tensor], mode: str) -> None:
        if mode == FORWARD:
            with torch.no_grad():
                forward()
            return
        for tensor in self.inputs:
            tensor.grad = None
        forward().backward(self.grad_out)

    def dense(self) -> torch.Tensor:
        q, k, v = (x.transpose(1, 2) for x in (self.q, self.k, self.v))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)

    def vsa(self, sparsity: float, backend: str) -> torch.Tensor:
        from fastvideo_hf.vsa.attention import vsa_attention

        return vsa_attention(self.q, self.k, self.v, self.gate, self.layout, sparsity, backend)

    def agreement(self, sparsity: float, backend: str, heads: int, backward: bool) -> dict[str, float | None]:
        """``backend`` on these inputs against the ``torch`` reference on their first ``heads`` heads: relative
        error of the output and (with ``backward``) the largest relative error of the q, k, v, gate gradients. The
        backend runs on every head, in the shape its timing compiled FlexAttention for (heads are independent)."""
        from fastvideo_hf.vsa.attention import vsa_attention

        for tensor in self.inputs:
            tensor.grad = None
        with torch.set_grad_enabled(backward):
            out = self.vsa(sparsity, backend)
            if backward:
                out.backward(self.grad_out)
        out = out.detach()[:, :, :heads]
        grads = [x.grad[:, :, :heads] for x in self.inputs] if backward else []
        sliced = [x.detach()[:, :, :heads].clone().requires_grad_(backward) for x in self.inputs]
        with torch.set_grad_enabled(backward):
            reference = vsa_attention(*sliced, self.layout, sparsity, "torch")
            if backward:
                reference.backward(self.grad_out[:, :, :heads])
        return {
            "max_abs_vs_torch": float((out.float() - reference.detach().float()).abs().max()),
            "rel_vs_torch": relative_error(out, reference.detach()),
            "grad_rel_vs_torch": max(map(relative_error, grads, [x.grad for x in sliced])) if backward else None,
        }


def part_vsa(check: Check) -> list[Row]:
    """(a): per grid, the dense rows of each mode, then one row per (sparsity, backend, mode)."""
    kernel_reason = kernel_skip_reason(check)
    rows = []
    for grid, goal in check.sizes.vsa_grids:
        rows.extend(vsa_grid_rows(check, grid, goal, kernel_reason))
        free_memory(check.device)  # the grid's inputs are gone
    return rows


def vsa_grid_rows(
    check: Check, grid: tuple[int, int, int], goal: float | None, kernel_reason: str | None
) -> list[Row]:
    from fastvideo_hf.vsa.attention import num_selected_tiles

    inputs = AttentionInputs(check, grid)
    tokens, tiles = inputs.layout.num_tokens, inputs.layout.num_tiles
    label = f"{tokens:,} tokens ({'x'.join(map(str, grid))})"
    rows, dense_seconds = [], {}
    for mode in (FORWARD, FORWARD_BACKWARD):
        row = guarded(
            check,
            Row("a", f"{label} dense SDPA {mode}", values={"tokens": tokens}),
            partial(measure_dense, check, inputs, mode),
        )
        dense_seconds[mode] = row.seconds
        rows.append(row)
    for sparsity in check.sizes.vsa_sparsities:
        topk = num_selected_tiles(tiles, sparsity)
        for backend in ("kernel", "flex"):
            for mode in (FORWARD, FORWARD_BACKWARD):
                values = {"tokens": tokens, "tiles": tiles, "topk": topk, "sparsity": sparsity, "goal": goal}
                row = Row(
                    "a",
                    f"{label} VSA {sparsity:g} {backend} {mode}",
                    values={**values, "backend": backend, "mode": mode},
                )
                if backend == "kernel" and kernel_reason:
                    row.status = kernel_reason
                elif backend == "flex" and mode == FORWARD_BACKWARD and not check.cuda:
                    row.status = "skipped: FlexAttention has no CPU backward"
                else:
                    guarded(
                        check, row, partial(measure_vsa, check, inputs, sparsity, backend, mode, dense_seconds[mode])
                    )
                rows.append(row)
    return rows


def measure_dense(check: Check, inputs: AttentionInputs, mode: str, row: Row) -> None:
    row.seconds = median_seconds(lambda: inputs.run(inputs.dense, mode), check.device, check.sizes.repeats)


def measure_vsa(
    check: Check,
    inputs: AttentionInputs,
    sparsity: float,
    backend: str,
    mode: str,
    dense_seconds: float | None,
    row: Row,
) -> None:
    def step() -> None:
        inputs.run(lambda: inputs.vsa(sparsity, backend), mode)

    row.seconds = median_seconds(step, check.device, check.sizes.repeats)
    if dense_seconds:
        row.dense_ratio = row.seconds / dense_seconds
    agreement = inputs.agreement(sparsity, backend, check.sizes.agreement_heads, backward=mode == FORWARD_BACKWARD)
    row.values.update(agreement)
    row.notes = f"vs torch: out rel {agreement['rel_vs_torch']:.1e}"
    if agreement["grad_rel_vs_torch"] is not None:
        row.notes += f", grads rel {agreement['grad_rel_vs_torch']:.1e}"
    row.notes += f" ({check.sizes.agreement_heads} head{'s' if check.sizes.agreement_heads > 1 else ''})"


# -- (b) and (d): training steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSetup:
    lora: bool
    vsa_sparsity: float | None = None
    layerwise_casting: str | None = None
    group_offload: str | None = None
    gradient_checkpointing: bool = True


def training_args(setup: StepSetup) -> argparse.Namespace:
    """The LoRA script's flags with their defaults (rank, alpha, targets, AdamW, clipping) and ``setup``'s options,
    from the scripts' own parser, so the step is configured as a user's run is."""
    from fastvideo_hf.training.args import build_training_parser

    parser = build_training_parser("gpu check", lora=True)
    args = parser.parse_args(["--pretrained_model_name_or_path", "-", "--dataset_name", "-", "--output_dir", "-"])
    args.layerwise_casting, args.group_offload = setup.layerwise_casting, setup.group_offload
    args.gradient_checkpointing = setup.gradient_checkpointing
    return args


def model_spec(config: dict[str, Any], folder: Path):
    """``ModelSpec`` of a T2V pipeline with this transformer and the Wan2.1 VAE, read back from config files as
    the training scripts read it. The models are built on the meta device: only their configs are written."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from fastvideo_hf.models import load_model_spec

    with torch.device("meta"):
        WanTransformer3DModel(**config).save_config(folder / "transformer")
        AutoencoderKLWan(**WAN21_VAE).save_config(folder / "vae")
    index = {
        "_class_name": "WanPipeline",
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    (folder / "model_index.json").write_text(json.dumps(index))
    return load_model_spec(str(folder))


def spec_folder(check: Check, config: dict[str, Any]) -> Path:
    return check.work_dir / f"spec-{config['num_layers']}x{config['num_attention_heads']}"


def build_transformer(config: dict[str, Any], device: torch.device):
    """A random-weight ``WanTransformer3DModel`` (float32) initialised on ``device`` (see the module docstring)."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device):
        return WanTransformer3DModel(**config)


def prepare_step(check: Check, config: dict[str, Any], setup: StepSetup):
    """(transformer, trained parameters, optimizer, weight dtype) set up in the training scripts' order."""
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    from fastvideo_hf.training.memory_savers import base_weights_device, place_frozen_weights
    from fastvideo_hf.training.model_loading import resolve_lora_targets
    from fastvideo_hf.training.steps import create_optimizer
    from fastvideo_hf.vsa import enable_vsa

    args = training_args(setup)
    weight_dtype = check.dtype
    transformer = build_transformer(config, check.device)
    if setup.lora:
        transformer.requires_grad_(False)
        transformer.to(base_weights_device(args, check.device), dtype=weight_dtype)
    if setup.vsa_sparsity is not None:
        enable_vsa(transformer, sparsity=setup.vsa_sparsity, backend=args.vsa_backend)
    if setup.lora:
        targets = resolve_lora_targets(transformer, list(WAN.default_lora_targets))
        if setup.vsa_sparsity is not None:
            targets.append("to_gate_compress")
        config_lora = LoraConfig(
            r=args.rank, lora_alpha=args.lora_alpha, init_lora_weights=True, target_modules=targets
        )
        transformer.add_adapter(config_lora)
    if setup.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    if setup.lora:
        cast_training_params(transformer, dtype=torch.float32)
        place_frozen_weights(transformer, args, check.device, weight_dtype)
    parameters = [param for param in transformer.parameters() if param.requires_grad]
    return transformer, parameters, create_optimizer(parameters, args), weight_dtype, args


def measure_steps(check: Check, config: dict[str, Any], setup: StepSetup, steps: int, row: Row) -> None:
    """``steps`` training steps (``compute_loss``, backward, clipping, AdamW) on one random 480x832x81 batch;
    records the last step's seconds, the first's, and the peak memory of the steps."""
    from fastvideo_hf.training.flow_matching import FlowMatchingConfig
    from fastvideo_hf.training.steps import StepInputs, compute_loss

    spec = model_spec(config, spec_folder(check, config))
    transformer, parameters, optimizer, weight_dtype, args = prepare_step(check, config, setup)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "latents": torch.randn((1, *check.sizes.latent_shape), generator=generator).to(check.device),
        "prompt_embeds": torch.randn((1, TEXT_TOKENS, config["text_dim"]), generator=generator).to(check.device),
    }
    autocast = torch.autocast("cuda", dtype=weight_dtype) if check.cuda else nullcontext()
    if check.cuda:
        torch.cuda.reset_peak_memory_stats(check.device)
    seconds = []
    for step in range(steps):
        harness.synchronize(check.device)
        started = time.perf_counter()
        with autocast:
            loss = compute_loss(
                transformer, batch, FlowMatchingConfig(), StepInputs(0, step, 0), 0, weight_dtype, spec
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        harness.synchronize(check.device)
        seconds.append(time.perf_counter() - started)
    row.seconds = seconds[-1]
    row.values.update(
        first_step_seconds=seconds[0],
        loss=loss.item(),
        trained_parameters=sum(param.numel() for param in parameters),
        parameters=sum(param.numel() for param in transformer.parameters()),
    )
    if check.cuda:
        row.peak_gib = torch.cuda.max_memory_allocated(check.device) / GIB
        row.values["peak_reserved_gib"] = torch.cuda.max_memory_reserved(check.device) / GIB
    else:
        row.notes = "peak memory: n/a (no CUDA)"


def part_training(check: Check) -> list[Row]:
    """(b): LoRA and full finetune, dense and VSA, two steps each with gradient checkpointing."""
    from fastvideo_hf.vsa.attention import resolve_backend

    sizes, rows = check.sizes, []
    probe = torch.zeros(1, device=check.device, requires_grad=True)
    vsa_backend = resolve_backend("auto", probe)
    for lora in (True, False):
        kind = "LoRA" if lora else "full finetune"
        dense_seconds = None
        for sparsity in (None, sizes.train_sparsity):
            attention = "dense" if sparsity is None else f"VSA {sparsity:g} ({vsa_backend})"
            setup = StepSetup(lora=lora, vsa_sparsity=sparsity)
            row = Row("b", f"{sizes.small_name} {kind} step, {attention}", values={"kind": kind, "sparsity": sparsity})
            guarded(check, row, partial(measure_steps, check, sizes.small_transformer, setup, 2))
            if sparsity is None:
                dense_seconds = row.seconds
            elif row.seconds is not None and dense_seconds:
                row.dense_ratio = row.seconds / dense_seconds
            rows.append(row)
    return rows


# -- (c) preprocessing --------------------------------------------------------------------------------------------


class GpuUtilisation:
    """Samples ``nvidia-smi``'s GPU utilisation (percent) every ``interval`` seconds in a thread while open."""

    def __init__(self, device: torch.device, interval: float = 0.5):
        self.command = shutil.which("nvidia-smi")
        self.index = (device.index or 0) if device.type == "cuda" else None
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def available(self) -> bool:
        return self.command is not None and self.index is not None

    def _sample(self) -> None:
        query = [self.command, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(self.index)]
        while not self._stop.wait(self.interval):
            result = subprocess.run(query, capture_output=True, text=True, check=False)
            if result.returncode == 0 and result.stdout.strip().isdigit():
                self.samples.append(int(result.stdout.strip()))

    def __enter__(self) -> GpuUtilisation:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()

    def summary(self) -> dict[str, float] | str:
        if not self.available:
            return "n/a (no CUDA device or no nvidia-smi)"
        if not self.samples:
            return "n/a (no sample: the run was shorter than one interval)"
        return {"mean": statistics.mean(self.samples), "max": max(self.samples), "samples": len(self.samples)}


def write_preprocess_pipeline(folder: Path, vae_config: dict[str, Any]) -> Path:
    """The tiny random Wan pipeline with its VAE replaced by one of ``vae_config`` (random weights)."""
    from diffusers import AutoencoderKLWan, WanPipeline

    from fastvideo_hf.tools.tiny_models import build_tiny_wan_pipeline

    pipeline = build_tiny_wan_pipeline()
    components = {name: module for name, module in pipeline.components.items() if name != "vae"}
    WanPipeline(**components, vae=AutoencoderKLWan(**vae_config).eval()).save_pretrained(folder)
    return folder


def write_videos(folder: Path, height: int, width: int, frames: int, count: int) -> Path:
    """``count`` H.264 clips of a moving shape, 4 frames longer than sampled, as a merged folder."""
    from fastvideo_hf.tools.demo_data import render_clip
    from fastvideo_hf.video_writer import write_mp4

    (folder / "videos").mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(count):
        name = f"clip_{index}.mp4"
        direction = ("left to right", "top to bottom")[index % 2]
        write_mp4(
            render_clip("circle", "red", "black", direction, width, height, frames + 4), folder / "videos" / name, 16
        )
        entries.append({"path": name, "cap": f"A red circle moves from {direction} over a black background."})
    (folder / "videos2caption.json").write_text(json.dumps(entries))
    return folder


def part_preprocess(check: Check) -> list[Row]:
    """(c): the whole ``write_to_folder`` of the builder (decode, text, VAE, Parquet, card), encoders loaded before
    the clock, once without and once with decode workers."""
    from fastvideo_hf.preprocess.builder import VideoLatents
    from fastvideo_hf.preprocess.decode_workers import default_num_workers
    from fastvideo_hf.preprocess.writer import write_to_folder

    sizes, rows = check.sizes, []
    height, width, frames = sizes.video
    model = write_preprocess_pipeline(check.work_dir / "vae-pipeline", sizes.vae)
    videos = write_videos(check.work_dir / "videos", height, width, frames, sizes.num_videos)
    for num_workers in dict.fromkeys((0, max(1, default_num_workers()))):

        def measure(row: Row, num_workers: int = num_workers) -> None:
            output = check.work_dir / f"latents-workers{num_workers}"
            shutil.rmtree(output, ignore_errors=True)
            builder = VideoLatents(
                task="t2v",
                pretrained_model_name_or_path=str(model),
                data_dir=str(videos),
                height=height,
                width=width,
                num_frames=frames,
                fps=16.0,
                samples_per_file=sizes.num_videos,
                num_workers=num_workers,
                device=str(check.device),
                cache_dir=str(check.work_dir / "datasets_cache"),
            )
            # the models load, and the VAE's first call (kernel loading, allocator) runs, before the clock
            builder.encoders[1](torch.zeros(3, frames, height, width))
            with GpuUtilisation(check.device) as utilisation:
                started = time.perf_counter()
                summary = write_to_folder(builder, output)
                wall = time.perf_counter() - started
            if summary.rows_written != sizes.num_videos:
                raise RuntimeError(f"preprocessing wrote {summary.rows_written} of {sizes.num_videos} rows")
            util = utilisation.summary()
            row.seconds = wall / sizes.num_videos
            row.values.update(
                videos_per_second=sizes.num_videos / wall,
                wall_seconds=wall,
                gpu_utilisation=util,
                timings=dict(builder.timings),
            )
            util_text = f"{util['mean']:.0f}% mean, {util['max']}% max" if isinstance(util, dict) else util
            row.notes = f"{sizes.num_videos / wall:.3f} videos/s; GPU utilisation {util_text}"

        case = f"preprocess {height}x{width}x{frames}, --num_workers {num_workers}"
        rows.append(guarded(check, Row("c", case, values={"num_workers": num_workers}), measure))
    return rows


# -- (d) memory savers on the 14B ---------------------------------------------------------------------------------


def run_plan(check: Check, folder: Path) -> dict[str, Any] | str:
    """``fastvideo-hf plan ... --json FILE`` for the LoRA step of (d) on the model configs in ``folder``: its
    JSON, or why there is none. Run in-process through the CLI's own ``main`` (its table goes into the JSON's
    ``text``), which spares a second import of torch and diffusers."""
    from fastvideo_hf.tools.cli import main as cli_main

    height, width, frames = check.sizes.train_video
    output = check.work_dir / "plan.json"
    flags = ["--pretrained_model_name_or_path", str(folder), "--height", str(height), "--width", str(width)]
    flags += ["--num_frames", str(frames), "--mode", "lora", "--rank", "32", "--gpu_memory", "24", "--num_gpus", "1"]
    flags += ["--mixed_precision", "bf16" if check.cuda else "no", "--json", str(output)]
    text = io.StringIO()
    try:
        with redirect_stdout(text), redirect_stderr(text):
            code = cli_main(["plan", *flags])
    except SystemExit as error:  # argparse: this checkout's plan takes other flags
        code = error.code
    if code != 0:
        return f"plan: failed (exit {code}: {(text.getvalue().strip().splitlines() or [''])[-1][:160]})"
    return {**json.loads(output.read_text()), "text": text.getvalue()}


def plan_combination(plan: dict[str, Any], casting: str | None, offload: str | None) -> dict[str, Any] | None:
    """The plan's combination of (d)'s options: gradient checkpointing on, one GPU, no FSDP."""
    wanted = {
        "gradient_checkpointing": True,
        "layerwise_casting": casting is not None,
        "group_offload": offload,
        "context_parallel": 1,
        "fsdp": False,
    }
    return next((combination for combination in plan["combinations"] if combination["options"] == wanted), None)


def part_memory_savers(check: Check) -> list[Row]:
    """(d): one LoRA step of the 14B-shaped transformer per combination of the memory savers, each against the
    plan's estimate of its allocated bytes (what ``torch.cuda.max_memory_allocated`` measures)."""
    sizes, rows = check.sizes, []
    folder = spec_folder(check, sizes.large_transformer)
    model_spec(sizes.large_transformer, folder)
    plan = run_plan(check, folder)
    for name, casting, offload in SAVER_OPTIONS:
        setup = StepSetup(lora=True, layerwise_casting=casting, group_offload=offload)
        row = Row("d", f"{sizes.large_name} LoRA step, {name}, checkpointing")
        row.values.update(layerwise_casting=casting, group_offload=offload)
        guarded(check, row, partial(measure_steps, check, sizes.large_transformer, setup, 1))
        notes = [row.notes]
        if row.peak_gib is not None:
            row.values["fits_24gib"] = row.peak_gib * GIB <= MEMORY_GOAL_BYTES
            notes = [f"fits 24 GiB: {'yes' if row.values['fits_24gib'] else 'no'}"]
        combination = plan_combination(plan, casting, offload) if isinstance(plan, dict) else None
        if combination is None:
            row.values["plan"] = plan if isinstance(plan, str) else "plan: no such combination in its table"
            notes.append(row.values["plan"])
        else:
            estimate = combination["allocated_bytes"] / GIB
            row.values["plan"] = {"allocated_gib": estimate, "total_gib": combination["total_bytes"] / GIB}
            row.values["plan"]["fits"] = combination["fits"]
            notes.append(f"plan: {estimate:.3g} GiB allocated")
            if row.peak_gib is not None:
                row.values["plan"]["measured_over_plan"] = row.peak_gib / estimate
                notes[-1] += f" (measured / plan {row.peak_gib / estimate:.2f})"
        row.notes = "; ".join(note for note in notes if note)
        rows.append(row)
    return rows


# -- report ---------------------------------------------------------------------------------------------------------

PARTS: dict[str, tuple[str, Callable[[Check], list[Row]]]] = {
    "a": ("VSA vs dense attention", part_vsa),
    "b": ("training steps, dense vs VSA", part_training),
    "c": ("preprocessing with the real-size VAE", part_preprocess),
    "d": ("memory savers on the 14B", part_memory_savers),
}


def goals(rows: list[Row], check: Check) -> list[dict[str, Any]]:
    """Each goal with PASS/FAIL per measured row, or why it was not measured."""
    results = []
    vsa = [row for row in rows if row.part == "a" and row.status == "ok" and "backend" in row.values]
    for grid, goal in FULL.vsa_grids:
        tokens = math.prod(grid)
        text = f"VSA fwd+bwd at 0.875 and {tokens:,} tokens <= {goal}x dense"
        matching = [
            row
            for row in vsa
            if row.values["tokens"] == tokens
            and row.values["mode"] == FORWARD_BACKWARD
            and row.values["sparsity"] == 0.875
        ]
        verdicts = [
            {"case": row.case, "value": row.dense_ratio, "verdict": harness.verdict(row.dense_ratio <= goal)}
            for row in matching
            if row.dense_ratio is not None
        ]
        results.append({"goal": text, "rows": verdicts, "result": None if verdicts else not_measured(check)})
    pairs = []
    for row in vsa:
        if row.values["backend"] != "flex":
            continue
        kernel = next((other for other in vsa if other.case == row.case.replace(" flex ", " kernel ")), None)
        if kernel is not None:
            ratio = row.seconds / kernel.seconds
            pairs.append({"case": row.case, "value": ratio, "verdict": harness.verdict(ratio <= FLEX_VS_KERNEL_GOAL)})
    results.append(
        {
            "goal": f"flex within {FLEX_VS_KERNEL_GOAL}x of the kernel",
            "rows": pairs,
            "result": None
            if pairs
            else "not measured (the kernel did not run)"
            if check.cuda
            else not_measured(check),
        }
    )
    memory = [row for row in rows if row.part == "d" and row.peak_gib is not None]
    verdicts = [
        {"case": row.case, "value": row.peak_gib, "verdict": harness.verdict(row.values["fits_24gib"])}
        for row in memory
    ]
    results.append(
        {"goal": "a 14B LoRA step in 24 GiB", "rows": verdicts, "result": None if verdicts else not_measured(check)}
    )
    return results


def not_measured(check: Check) -> str:
    return "not measured (dry run: tiny sizes on the CPU)" if check.strict else "not measured (no row ran)"


def number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[Row]) -> str:
    columns = ["part", "case", "status", "time s", "x dense", "peak GiB", "notes"]
    cells = [
        [row.part, row.case, row.status, number(row.seconds, 4), number(row.dense_ratio, 3), number(row.peak_gib, 2)]
        + [row.notes]
        for row in rows
    ]
    return harness.markdown_table(columns, cells, "lllrrrl")


def format_goals(results: list[dict[str, Any]]) -> str:
    lines = []
    for goal in results:
        lines.append(f"- {goal['goal']}: {goal['result'] or ''}".rstrip(": "))
        lines.extend(f"  - {row['case']}: {row['value']:.3f} -> {row['verdict']}" for row in goal["rows"])
    return "\n".join(lines)


def machine(check: Check) -> dict[str, Any]:
    return harness.machine_record(
        torch=torch.__version__,
        cuda=torch.version.cuda,
        gpu=torch.cuda.get_device_name(check.device) if check.cuda else None,
        gpu_memory_gib=torch.cuda.get_device_properties(check.device).total_memory / GIB if check.cuda else None,
        kernel=check.kernel_status,
    )


@contextmanager
def timed_part(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started
    print(f"part ({name}): {timings[name]:.0f} s", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = harness.make_parser(__doc__)
    parser.add_argument(
        "--dry-run", action="store_true", help="Tiny sizes on the CPU: the same code, in under a minute."
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=harness.RESULTS / "gpu_check",
        help="Folder for gpu_check.json and the work files of (b)-(d) (default bench/results/gpu_check).",
    )
    parser.add_argument("--parts", default="abcd", help="Which parts to run, e.g. ad (default abcd).")
    parser.add_argument(
        "--kernel_status",
        default="not installed (gpu_check.sh was not used)",
        help="What gpu_check.sh found when it tried to install fastvideo-kernel (shown in skipped kernel rows).",
    )
    return parser


def write_report(check: Check, rows: list[Row], timings: dict[str, float], output: Path) -> list[dict[str, Any]]:
    """Write the JSON of the parts run so far (after each part: a run cut short still leaves its results)."""
    results = goals(rows, check)
    report = {
        "machine": machine(check),
        "dry_run": check.strict,
        "sizes": asdict(check.sizes),
        "parts": {
            name: {
                "title": PARTS[name][0],
                "seconds": seconds,
                "rows": [asdict(row) for row in rows if row.part == name],
            }
            for name, seconds in timings.items()
        },
        "goals": results,
        "total_seconds": sum(timings.values()),
    }
    harness.write_json(output, report, announce=False)
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"--parts: unknown part(s) {''.join(sorted(unknown))}; choose from {''.join(PARTS)}")
    cuda = torch.cuda.is_available() and not args.dry_run
    check = Check(
        sizes=DRY_RUN if args.dry_run else FULL,
        device=torch.device("cuda" if cuda else "cpu"),
        work_dir=args.output / "work",
        kernel_status=args.kernel_status,
        strict=args.dry_run,
    )
    check.work_dir.mkdir(parents=True, exist_ok=True)
    output = args.output / "gpu_check.json"
    timings: dict[str, float] = {}
    rows: list[Row] = []
    for name in sorted(set(args.parts)):
        with timed_part(timings, name):
            rows.extend(PARTS[name][1](check))
        results = write_report(check, rows, timings, output)

    info = machine(check)
    kind = "dry run: tiny sizes on the CPU" if args.dry_run else f"{info['gpu']}, bfloat16"
    print(f"## GPU check ({kind}; torch {info['torch']}, fastvideo-kernel {info['kernel']})\n")
    print(format_table(rows))
    print("\nGoals:\n" + format_goals(results))
    print(
        f"\ntotal {sum(timings.values()):.0f} s ("
        + ", ".join(f"({name}) {seconds:.0f} s" for name, seconds in timings.items())
        + ")"
    )
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
