"""Benchmark of the training data path and step: does the loader keep the model fed, and how fast does it read?

Training reads a latent dataset made by ``fastvideo-hf preprocess`` through ``LatentDataset`` (rows rebuilt from
bytes, latents normalized, prompt embeddings padded), batches of one latent shape (``SameShapeBatchSampler``) and
``collate_latents``. This script builds demo videos, a tiny random Wan pipeline and a latent dataset of them in a
work folder, and measures on the CPU:

(a) The split of a training step, with the pieces ``training_scripts/train_wan.py`` uses (``compute_loss``,
    AdamW, gradient clipping), for each ``--num_workers``: data wait (time blocked in ``next()`` of the
    dataloader iterator, a new epoch's iterator and workers included), forward (``compute_loss``), backward and
    optimizer step (clipping, ``step``, ``zero_grad``). Each worker count runs ``--rounds`` times, interleaved,
    with a fresh model and loader; medians are over all measured steps (after ``--warmup`` per round). The goal
    is data wait < 5% of the step time. The tiny model computes almost nothing, so the fraction measured here is
    an upper bound of what a real model sees; what carries over is the absolute data wait per sample, and the
    table gives the fraction it implies for a real step of ``--reference_step_seconds``. Accelerate's dataloader
    wrapper, which the scripts add, is not measured.
(b) Loader throughput in samples/s: ``LatentDataset`` through a DataLoader (batch size 1, no workers, collate
    included) and as a plain ``dataset[i]`` loop, against a bare pyarrow read of the same columns (``read_table``
    of every shard, then per row ``np.frombuffer(...).reshape(shape)`` of both tensors into torch tensors). The
    readers are timed interleaved, ``--repeats`` times in one process, and the medians compared; the goal is
    ours / bare >= 0.8. ``LatentDataset`` reads Arrow files that ``datasets`` converted once at load, while the
    bare read opens and decodes Parquet on every pass, so the table also compares against a stricter floor: the
    same per-row work on tables already in memory. The readers run under ``--reader_threads`` torch threads (1,
    as in a DataLoader worker): on a shared machine, multi-threaded elementwise ops stall on a busy core.
(c) The same readers on ``--real_rows`` rows of random tensors of real size (Wan2.1 latents of 480x832, 77
    frames, and a 120-token umT5 embedding): the tiny rows of (a) and (b) are ~100 KiB, real ones ~10 MiB, so
    only this gives the data wait per sample a real run would see (without workers to hide it).

(d) Our training step against a bare loop over the same transformer and batch, per memory/speed option: ours is
    what the scripts run per step (``compute_loss``: noise, sigmas and caption dropout drawn from per-sample
    generators, the transformer call built from the model spec, the float32 flow-matching loss; backward;
    gradient clipping; AdamW from ``create_optimizer``), the bare loop a forward of precomputed noisy inputs,
    ``F.mse_loss``, backward and ``torch.optim.AdamW``; ours' clipping, which the bare loop lacks by definition, is
    also shown on its own. Options: plain (full finetune), gradient checkpointing, fp8 layerwise casting (LoRA)
    and group offload (LoRA), set up by the scripts' helpers (``add_adapter``, ``cast_training_params``,
    ``place_frozen_weights``) on a small random Wan transformer (``--overhead_*``). Both steps run on the same
    module with the same option, interleaved in one process (``--overhead_rounds`` rounds of ``--overhead_steps``
    steps of each, one by one), under ``--overhead_threads`` torch threads; the goal is median ours / median bare
    <= 1.05 in CPU time (one thread: the step's own work; the wall-time ratio is shown too). Context parallelism
    needs several processes and is not measured here.

``--sections`` picks which of (a)-(d) run (default all); ``--profile`` prints where ``LatentDataset.__getitem__``
spends its time on both datasets. Everything lives in
``--work_dir`` (``datasets``' Arrow cache included). Run it with ``.venv/bin/python bench/train.py``; it prints
markdown tables and writes JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import harness
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

from fastvideo_hf.models import ModelSpec, load_model_spec
from fastvideo_hf.training.flow_matching import FlowMatchingConfig
from fastvideo_hf.training.latent_dataset import LatentDataset, SameShapeBatchSampler, collate_latents
from fastvideo_hf.training.steps import StepInputs, compute_loss

DATA_WAIT_GOAL = 0.05  # data wait may take at most 5% of a training step
THROUGHPUT_GOAL = 0.8  # LatentDataset must read at least 80% as many samples/s as a bare pyarrow read
TENSORS = ("vae_latent", "text_embedding")
COLUMNS = [f"{name}_{part}" for name in TENSORS for part in ("bytes", "shape", "dtype")]
PARTS = ("data_wait", "forward", "backward", "optimizer")
BARE = "bare pyarrow: read_table + rows"  # the reference of the goal
BARE_IN_MEMORY = "bare pyarrow: rows of tables in memory"  # a stricter floor: no file read or Parquet decode
OURS = ("LatentDataset + DataLoader", "LatentDataset[i]")
REAL_LATENT_SHAPE = (16, 20, 60, 104)  # Wan2.1 VAE latents of 77 frames of 480x832 (31,200 transformer tokens)
REAL_EMBEDDING_SHAPE = (120, 4096)  # a 120-token prompt through umT5-XXL, stored trimmed
OVERHEAD_GOAL = 1.05  # our training step may take at most 5% longer than a bare loop over the same model and batch
# (d): name, LoRA, --gradient_checkpointing, --layerwise_casting, --group_offload
STEP_OPTIONS = (
    ("plain (full finetune)", False, False, None, None),
    ("gradient checkpointing (full finetune)", False, True, None, None),
    ("fp8 layerwise casting (LoRA)", True, False, "float8_e4m3fn", None),
    ("group offload block_level (LoRA)", True, False, None, "block_level"),
)
# Context parallelism has landed (--context_parallel_ulysses / --context_parallel_ring), but its step runs in two or
# more processes, and this section times ours and the bare step interleaved in one.
CONTEXT_PARALLEL_ROW = "context parallel: not measured here (its step needs 2+ processes; this section runs in one)"


def prepare(work_dir: Path, num_videos: int) -> tuple[Path, Path]:
    """Write demo videos, the tiny model and their latent dataset into ``work_dir``; returns (model, latents)."""
    from fastvideo_hf.preprocess.builder import VideoLatents
    from fastvideo_hf.preprocess.writer import write_to_folder
    from fastvideo_hf.tools.demo_data import write_demo_dataset
    from fastvideo_hf.tools.tiny_models import save_tiny_wan_pipeline

    shutil.rmtree(work_dir, ignore_errors=True)
    model, raw, latents = work_dir / "tiny-wan-t2v", work_dir / "videos", work_dir / "latents"
    save_tiny_wan_pipeline(model)
    write_demo_dataset(raw, num_videos, seed=0)
    builder = VideoLatents(
        task="t2v",
        pretrained_model_name_or_path=str(model),
        data_dir=str(raw),
        height=64,
        width=96,
        num_frames=17,
        fps=16.0,
        samples_per_file=8,
        cache_dir=str(work_dir / "datasets_cache"),  # the builder's lock files stay in the work folder
    )
    write_to_folder(builder, latents)
    return model, latents


def write_real_size_rows(folder: Path, num_rows: int) -> Path:
    """One Parquet shard of ``num_rows`` rows of random tensors of real size, in the latent dataset's columns."""
    from datasets import Dataset

    from fastvideo_hf.schema import tensor_to_columns

    generator = torch.Generator().manual_seed(0)
    rows = [
        {
            **tensor_to_columns("vae_latent", torch.randn(REAL_LATENT_SHAPE, generator=generator)),
            **tensor_to_columns("text_embedding", torch.randn(REAL_EMBEDDING_SHAPE, generator=generator)),
        }
        for _ in range(num_rows)
    ]
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(rows).to_parquet(folder / "data" / "train-00000.parquet")
    return folder


def build_latent_dataset(latents: Path, spec: ModelSpec, cache_dir: Path) -> LatentDataset:
    """``LatentDataset`` as the training scripts build it: ``load_latent_dataset``'s plain ``load_dataset`` (with
    its Arrow cache in the work folder) and the VAE config's latents_mean/std (read by ``ModelSpec``)."""
    from datasets import load_dataset

    hf_dataset = load_dataset(str(latents), split="train", cache_dir=str(cache_dir))
    # prompt embeddings padded to the text encoder's length, as the pipeline pads them
    return LatentDataset(hf_dataset, spec.latents_mean, spec.latents_std, spec.max_sequence_length)


def endless_batches(loader: DataLoader, sampler: SameShapeBatchSampler) -> Iterator[dict[str, torch.Tensor]]:
    """Batches over epochs, a new iterator (and new workers) per epoch as the training loop does."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def time_steps(
    dataset: LatentDataset, spec: ModelSpec, model: Path, args: argparse.Namespace, num_workers: int
) -> dict[str, list[float]]:
    """Seconds of each part of ``args.warmup + args.steps`` training steps of a fresh model and loader; the
    warmup steps are dropped."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    transformer = WanTransformer3DModel.from_pretrained(str(model), subfolder="transformer")
    transformer.train()
    parameters = list(transformer.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    sampler = SameShapeBatchSampler(dataset.shapes, args.batch_size, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_latents, num_workers=num_workers)
    batches, config = endless_batches(loader, sampler), FlowMatchingConfig()
    seconds: dict[str, list[float]] = {part: [] for part in PARTS}
    for step in range(args.warmup + args.steps):
        marks = [time.perf_counter()]
        batch = next(batches)
        marks.append(time.perf_counter())
        loss = compute_loss(transformer, batch, config, StepInputs(0, step, 0), 0, torch.float32, spec)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)  # the scripts' default --max_grad_norm
        optimizer.step()
        optimizer.zero_grad()
        marks.append(time.perf_counter())
        if step >= args.warmup:
            for part, start, end in zip(PARTS, marks[:-1], marks[1:], strict=True):
                seconds[part].append(end - start)
    return seconds


def summarize_steps(seconds: dict[str, list[float]], args: argparse.Namespace) -> dict[str, Any]:
    totals = [sum(parts) for parts in zip(*seconds.values(), strict=True)]
    median = {part: statistics.median(values) for part, values in seconds.items()}
    step = statistics.median(totals)
    wait = median["data_wait"]
    return {
        "median_seconds": median,
        "mean_data_wait_seconds": statistics.mean(seconds["data_wait"]),
        "max_data_wait_seconds": max(seconds["data_wait"]),
        "median_step_seconds": step,
        "data_wait_fraction": wait / step,
        "data_wait_ms_per_sample": 1000 * wait / args.batch_size,
        "implied_fraction_at_reference": wait / (wait + args.reference_step_seconds),
    }


def rebuild_rows(table: pa.Table) -> int:
    """Per row, ``np.frombuffer(...).reshape(shape)`` of both tensors into torch tensors; returns the rows."""
    columns = table.to_pydict()
    for index in range(table.num_rows):
        for name in TENSORS:
            raw, shape = columns[f"{name}_bytes"][index], columns[f"{name}_shape"][index]
            array = np.frombuffer(raw, dtype=np.dtype(columns[f"{name}_dtype"][index])).reshape(shape)
            torch.from_numpy(array.copy())  # a copy, as torch needs a writable buffer (and ours copies too)
    return table.num_rows


def bare_pyarrow_read(shards: list[Path]) -> int:
    """The reference: read the tensor columns of every shard from disk and rebuild every row."""
    return sum(rebuild_rows(pq.read_table(shard, columns=COLUMNS)) for shard in shards)


def ours_dataloader(dataset: LatentDataset) -> int:
    loader = DataLoader(dataset, batch_size=1, num_workers=0, collate_fn=collate_latents)
    return sum(len(batch["index"]) for batch in loader)


def ours_getitem(dataset: LatentDataset) -> int:
    for index in range(len(dataset)):
        dataset[index]
    return len(dataset)


def time_readers(
    dataset: LatentDataset, latents: Path, args: argparse.Namespace, passes: int
) -> dict[str, list[float]]:
    """Samples/s of each reader, ``args.repeats`` times interleaved, under ``args.reader_threads`` torch threads;
    one measurement reads all rows ``passes`` times."""
    shards = sorted(latents.glob("data/*.parquet"))
    tables = [pq.read_table(shard, columns=COLUMNS) for shard in shards]
    readers: dict[str, Callable[[], int]] = {
        BARE: lambda: bare_pyarrow_read(shards),
        BARE_IN_MEMORY: lambda: sum(rebuild_rows(table) for table in tables),
        OURS[0]: lambda: ours_dataloader(dataset),
        OURS[1]: lambda: ours_getitem(dataset),
    }
    rates: dict[str, list[float]] = {name: [] for name in readers}
    threads = torch.get_num_threads()
    torch.set_num_threads(args.reader_threads)
    for _ in range(args.repeats):
        for name, read in readers.items():
            started = time.perf_counter()
            rows = sum(read() for _ in range(passes))
            rates[name].append(rows / (time.perf_counter() - started))
    torch.set_num_threads(threads)
    return rates


def reader_ratios(rates: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median samples/s of each of ours over that of each bare reader."""
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {name: {bare: medians[name] / medians[bare] for bare in (BARE, BARE_IN_MEMORY)} for name in OURS}


def profile_getitem(dataset: LatentDataset, passes: int, label: str, top: int = 12) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(passes):
        ours_getitem(dataset)
    profiler.disable()
    print(f"\n### cProfile of {passes} passes of dataset[i], {label} (top {top} by own time)\n")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def sample_kib(dataset: LatentDataset) -> float:
    """KiB of one sample as the model gets it (normalized latents and padded embeddings, float32)."""
    item = dataset[0]
    return (item["latents"].nbytes + item["prompt_embeds"].nbytes) / 1024


def format_steps_table(steps: dict[int, dict[str, Any]], args: argparse.Namespace) -> str:
    columns = ["num_workers", "data wait ms (mean, max)", "forward ms", "backward ms", "optimizer ms", "step ms"]
    columns += [f"data wait % (goal < {100 * DATA_WAIT_GOAL:.0f}%)", "data wait ms/sample"]
    columns.append(f"implied % at {args.reference_step_seconds:g} s/step")
    rows = []
    for num_workers, summary in steps.items():
        median = summary["median_seconds"]
        fraction = summary["data_wait_fraction"]
        implied = summary["implied_fraction_at_reference"]
        rows.append(
            [
                num_workers,
                f"{1000 * median['data_wait']:.2f} ({1000 * summary['mean_data_wait_seconds']:.2f}, "
                f"{1000 * summary['max_data_wait_seconds']:.1f})",
                *(f"{1000 * median[part]:.1f}" for part in PARTS[1:]),
                f"{1000 * summary['median_step_seconds']:.1f}",
                f"{100 * fraction:.1f}% {harness.verdict(fraction < DATA_WAIT_GOAL)}",
                f"{summary['data_wait_ms_per_sample']:.2f}",
                f"{100 * implied:.3f}% {harness.verdict(implied < DATA_WAIT_GOAL)}",
            ]
        )
    return harness.markdown_table(columns, rows, "r" * len(columns))


def format_readers_table(rates: dict[str, list[float]]) -> str:
    ratios = reader_ratios(rates)
    columns = ["reader", "samples/s (median)", "min–max", "ms/sample"]
    columns += [f"ours / bare read (goal >= {THROUGHPUT_GOAL})", "ours / bare in memory"]
    rows = []
    for name, values in rates.items():
        median = statistics.median(values)
        ratio, strict = "-", "-"
        if name in OURS:
            ratio = f"{ratios[name][BARE]:.2f} {harness.verdict(ratios[name][BARE] >= THROUGHPUT_GOAL)}"
            strict = f"{ratios[name][BARE_IN_MEMORY]:.2f}"
        rows.append(
            [name, f"{median:.0f}", f"{min(values):.0f}–{max(values):.0f}", f"{1000 / median:.3f}", ratio, strict]
        )
    return harness.markdown_table(columns, rows, "lrrrrr")


# -- (d) our step against a bare loop --------------------------------------------------------------------------


def overhead_transformer_config(args: argparse.Namespace) -> dict[str, Any]:
    """A small Wan transformer: the tiny model's text width (so the tiny pipeline's spec applies), bigger blocks
    so the step does real work and the fixed costs of a step are not everything."""
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": args.overhead_heads,
        "attention_head_dim": 32,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 32,
        "freq_dim": 256,
        "ffn_dim": 4 * 32 * args.overhead_heads,
        "num_layers": args.overhead_layers,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 32,
    }


def option_training_args(lora: bool, checkpointing: bool, casting: str | None, offload: str | None):
    """The scripts' flags with their defaults (rank, alpha, targets, AdamW, clipping) and one option set."""
    from fastvideo_hf.training.args import build_training_parser

    parser = build_training_parser("train bench", lora=True)
    flags = parser.parse_args(["--pretrained_model_name_or_path", "-", "--dataset_name", "-", "--output_dir", "-"])
    flags.gradient_checkpointing, flags.layerwise_casting, flags.group_offload = checkpointing, casting, offload
    return flags


class StepPair:
    """One transformer set up with one option, and the two steps timed on it: ours and the bare loop's."""

    def __init__(self, option: tuple, config: dict[str, Any], spec: ModelSpec, args: argparse.Namespace):
        from diffusers import WanTransformer3DModel
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig

        from fastvideo_hf.training.flow_matching import make_training_batch, sample_generators
        from fastvideo_hf.training.memory_savers import place_frozen_weights
        from fastvideo_hf.training.model_loading import resolve_lora_targets
        from fastvideo_hf.training.steps import create_optimizer

        name, lora, checkpointing, casting, offload = option
        self.name, self.spec = name, spec
        self.flags = option_training_args(lora, checkpointing, casting, offload)
        torch.manual_seed(0)
        transformer = WanTransformer3DModel(**config)
        if lora:  # train_wan_lora.py's order: freeze, adapter, checkpointing, fp32 LoRA, then the memory savers
            transformer.requires_grad_(False)
            targets = resolve_lora_targets(transformer, list(spec.family.default_lora_targets))
            transformer.add_adapter(
                LoraConfig(r=self.flags.rank, lora_alpha=self.flags.lora_alpha, target_modules=targets)
            )
        if checkpointing:
            transformer.enable_gradient_checkpointing()
        if lora:
            cast_training_params(transformer, dtype=torch.float32)
            place_frozen_weights(transformer, self.flags, torch.device("cpu"), torch.float32)
        transformer.train()
        self.transformer = transformer
        self.parameters = [param for param in transformer.parameters() if param.requires_grad]
        self.ours_optimizer = create_optimizer(self.parameters, self.flags)
        self.bare_optimizer = torch.optim.AdamW(self.parameters, lr=self.flags.learning_rate)
        generator = torch.Generator().manual_seed(0)
        batch_size = args.overhead_batch_size
        latents = torch.randn((batch_size, *args.overhead_latent_shape), generator=generator)
        prompt_embeds = torch.randn((batch_size, 512, config["text_dim"]), generator=generator)
        self.batch = {"latents": latents, "prompt_embeds": prompt_embeds}
        self.config = FlowMatchingConfig()
        # the bare loop's inputs: one draw of what compute_loss draws at every step
        generators = sample_generators(0, 0, 0, list(range(batch_size)))
        self.bare_inputs = make_training_batch(latents, prompt_embeds, self.config, generators)
        self.step = 0
        self.clip_seconds: list[float] = []  # of ours: the one piece the bare loop lacks by construction

    def ours(self) -> None:
        loss = compute_loss(
            self.transformer, self.batch, self.config, StepInputs(0, self.step, 0), 0, torch.float32, self.spec
        )
        loss.backward()
        started = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.parameters, self.flags.max_grad_norm)
        self.clip_seconds.append(time.perf_counter() - started)
        self.ours_optimizer.step()
        self.ours_optimizer.zero_grad()
        self.step += 1

    def bare(self) -> None:
        inputs = self.bare_inputs
        prediction = self.transformer(
            hidden_states=inputs.noisy_latents,
            timestep=inputs.timesteps,
            encoder_hidden_states=inputs.prompt_embeds,
            return_dict=False,
        )[0]
        torch.nn.functional.mse_loss(prediction.float(), inputs.target.float()).backward()
        self.bare_optimizer.step()
        self.bare_optimizer.zero_grad()


def time_step_overhead(spec: ModelSpec, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """CPU seconds (and wall seconds) per step of ours and the bare loop for every option. Steps alternate one by
    one (ours, bare, ours, ... with the first of each round alternating), ``--overhead_steps`` of each per round and
    option. With one torch thread the process's CPU time is the work of the step alone: on a shared machine the wall
    time also counts the moments the process waited for a core, which swamps a 5% difference."""
    threads = torch.get_num_threads()
    torch.set_num_threads(args.overhead_threads)
    config = overhead_transformer_config(args)
    pairs = [StepPair(option, config, spec, args) for option in STEP_OPTIONS]
    seconds = {pair.name: {"ours": [], "bare": [], "ours_wall": [], "bare_wall": []} for pair in pairs}
    for pair in pairs:  # warmup: first calls allocate, and the offload hooks set themselves up
        pair.ours()
        pair.bare()
        pair.clip_seconds.clear()
    for round_index in range(args.overhead_rounds):
        for pair in pairs:
            order = ("ours", "bare") if round_index % 2 == 0 else ("bare", "ours")
            for kind in order * args.overhead_steps:
                wall, cpu = time.perf_counter(), time.process_time()
                getattr(pair, kind)()
                seconds[pair.name][kind].append(time.process_time() - cpu)
                seconds[pair.name][f"{kind}_wall"].append(time.perf_counter() - wall)
    for pair in pairs:
        seconds[pair.name]["ours_clipping"] = pair.clip_seconds
    torch.set_num_threads(threads)
    return seconds


def overhead_summary(seconds: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    summary = {}
    for name, kinds in seconds.items():
        medians = {kind: statistics.median(values) for kind, values in kinds.items()}
        summary[name] = {
            "ours_median_cpu_seconds": medians["ours"],
            "bare_median_cpu_seconds": medians["bare"],
            "ratio": medians["ours"] / medians["bare"],
            "ours_clipping_median_seconds": medians["ours_clipping"],
            "wall_ratio": medians["ours_wall"] / medians["bare_wall"],
        }
    return summary


def format_overhead_table(summary: dict[str, dict[str, float]]) -> str:
    columns = ["option", "ours CPU ms", "of which clipping ms", "bare loop CPU ms"]
    columns += [f"ours / bare, CPU time (goal <= {OVERHEAD_GOAL})", "ours / bare, wall time"]
    rows = [
        [
            name,
            f"{1000 * values['ours_median_cpu_seconds']:.1f}",
            f"{1000 * values['ours_clipping_median_seconds']:.1f}",
            f"{1000 * values['bare_median_cpu_seconds']:.1f}",
            f"{values['ratio']:.3f} {harness.verdict(values['ratio'] <= OVERHEAD_GOAL)}",
            f"{values['wall_ratio']:.3f}",
        ]
        for name, values in summary.items()
    ]
    rows.append([CONTEXT_PARALLEL_ROW, "-", "-", "-", "-", "-"])
    return harness.markdown_table(columns, rows, "lrrrrr")


def build_parser() -> argparse.ArgumentParser:
    parser = harness.make_parser(__doc__)
    parser.add_argument("--num_videos", type=int, default=24, help="Demo videos in the tiny latent dataset.")
    parser.add_argument("--batch_size", type=int, default=2, help="Training batch size of the step benchmark.")
    parser.add_argument("--warmup", type=int, default=5, help="Training steps run before measuring, per round.")
    parser.add_argument("--steps", type=int, default=50, help="Measured training steps per round.")
    parser.add_argument(
        "--rounds", type=int, default=3, help="Rounds of the step benchmark, the worker counts interleaved."
    )
    parser.add_argument(
        "--num_workers", type=int, nargs="+", default=[0, 2], help="Dataloader worker counts of the step benchmark."
    )
    parser.add_argument(
        "--reference_step_seconds",
        type=float,
        default=2.0,
        # Wan2.1 T2V 1.3B at 480x832x77 (31,200 tokens per sample) takes seconds per training step on an H100.
        help="A realistic training step (seconds) to which the measured data wait is compared.",
    )
    parser.add_argument("--repeats", type=int, default=7, help="Interleaved measurements of each reader.")
    parser.add_argument("--passes", type=int, default=20, help="Passes over the tiny rows in one reader measurement.")
    parser.add_argument(
        "--reader_threads",
        type=int,
        default=1,
        help="torch threads while timing the readers: 1 as in a DataLoader worker or under torchrun "
        "(OMP_NUM_THREADS=1); the bare reader is single-threaded anyway. With 2 on a busy 2-core machine, "
        "LatentDataset's tensor ops wait on a descheduled thread and slow down tenfold.",
    )
    parser.add_argument("--real_rows", type=int, default=8, help="Rows of real size for (c); 0 skips (c).")
    parser.add_argument("--real_passes", type=int, default=3, help="Passes over the real-size rows per measurement.")
    parser.add_argument(
        "--profile", action="store_true", help="Also print a cProfile of LatentDataset.__getitem__ (top functions)."
    )
    parser.add_argument(
        "--sections",
        choices=("all", "data", "overhead"),
        default="all",
        help="all: (a)-(d); data: the data path (a)-(c); overhead: our step against a bare loop (d).",
    )
    parser.add_argument("--overhead_rounds", type=int, default=6, help="(d): interleaved rounds.")
    parser.add_argument("--overhead_steps", type=int, default=2, help="(d): steps of each kind per round and option.")
    parser.add_argument(
        "--overhead_threads", type=int, default=1, help="(d): torch threads (1: steadier on a shared machine)."
    )
    parser.add_argument("--overhead_layers", type=int, default=4, help="(d): transformer blocks.")
    parser.add_argument("--overhead_heads", type=int, default=4, help="(d): attention heads (of dim 32).")
    parser.add_argument(
        "--overhead_latent_shape",
        type=lambda text: tuple(int(part) for part in text.split("x")),
        default=(16, 5, 32, 32),
        help="(d): latent CxTxHxW per sample (default 16x5x32x32: 1,280 tokens).",
    )
    parser.add_argument("--overhead_batch_size", type=int, default=1, help="(d): samples per step.")
    harness.add_work_dir(
        parser,
        "train_work",
        "Folder for the tiny model, the demo videos, the latents and their caches (rewritten on every run).",
    )
    harness.add_output_json(parser, "train.json", "Where to write the machine, the settings and all measurements.")
    return parser


def data_path(args: argparse.Namespace) -> dict[str, Any]:
    """Sections (a)-(c): builds the work folder, prints their tables; returns their part of the report."""
    started = time.perf_counter()
    model, latents = prepare(args.work_dir, args.num_videos)
    spec = load_model_spec(str(model))
    cache_dir = args.work_dir / "datasets_cache"
    dataset = build_latent_dataset(latents, spec, cache_dir)
    setup_seconds = time.perf_counter() - started

    step_seconds = {workers: {part: [] for part in PARTS} for workers in args.num_workers}
    for _ in range(args.rounds):
        for workers in args.num_workers:
            for part, values in time_steps(dataset, spec, model, args, workers).items():
                step_seconds[workers][part] += values
    steps = {workers: summarize_steps(seconds, args) for workers, seconds in step_seconds.items()}
    rates = time_readers(dataset, latents, args, args.passes)
    real_rates, real_dataset = None, None
    if args.real_rows:
        real_latents = write_real_size_rows(args.work_dir / "real_size_latents", args.real_rows)
        real_dataset = build_latent_dataset(real_latents, spec, cache_dir)
        real_rates = time_readers(real_dataset, real_latents, args, args.real_passes)
    total_seconds = time.perf_counter() - started

    shape = "x".join(map(str, dataset.shapes[0]))
    print(
        f"## training data path benchmark ({len(dataset)} rows, latents {shape}, {sample_kib(dataset):.0f} KiB/sample,"
        f" tiny Wan, {os.cpu_count()} CPUs, torch {torch.__version__})\n"
    )
    print(
        f"### (a) training step, batch size {args.batch_size}: medians of {args.rounds} x {args.steps} steps "
        f"(after {args.warmup} warmup steps per round)\n"
    )
    print(format_steps_table(steps, args))
    print(
        f"\n### (b) loader throughput, tiny rows: medians of {args.repeats} interleaved runs of {args.passes} passes, "
        f"{args.reader_threads} torch thread(s)\n"
    )
    print(format_readers_table(rates))
    if real_rates is not None:
        shape = "x".join(map(str, REAL_LATENT_SHAPE))
        print(
            f"\n### (c) loader throughput, {args.real_rows} real-size rows (latents {shape}, embeddings "
            f"{REAL_EMBEDDING_SHAPE[0]}x{REAL_EMBEDDING_SHAPE[1]}, {sample_kib(real_dataset) / 1024:.1f} MiB/sample "
            f"as the model gets it): medians of {args.repeats} interleaved runs of {args.real_passes} passes, "
            f"{args.reader_threads} torch thread(s)\n"
        )
        print(format_readers_table(real_rates))
        wait = args.batch_size / statistics.median(real_rates[OURS[0]])
        print(
            f"\nwithout workers, a real batch of {args.batch_size} waits {1000 * wait:.1f} ms for the loader: "
            f"{100 * wait / (wait + args.reference_step_seconds):.2f}% of a {args.reference_step_seconds:g} s step"
        )
    print(f"\nsetup {setup_seconds:.0f} s, total {total_seconds:.0f} s")
    if args.profile:
        profile_getitem(dataset, args.passes, "tiny rows")
        if real_dataset is not None:
            profile_getitem(real_dataset, args.real_passes, "real-size rows")

    return {
        "rows": len(dataset),
        "latent_shape": list(dataset.shapes[0]),
        "sample_kib": sample_kib(dataset),
        "steps": {str(workers): {**steps[workers], "seconds": step_seconds[workers]} for workers in steps},
        "data_wait_goal": DATA_WAIT_GOAL,
        "loader_samples_per_second": rates,
        "loader_ratios": reader_ratios(rates),
        "loader_ratio_goal": THROUGHPUT_GOAL,
        "real_size": None
        if real_rates is None
        else {
            "latent_shape": list(REAL_LATENT_SHAPE),
            "embedding_shape": list(REAL_EMBEDDING_SHAPE),
            "loader_samples_per_second": real_rates,
            "loader_ratios": reader_ratios(real_rates),
        },
        "setup_seconds": setup_seconds,
        "total_seconds": total_seconds,
    }


def step_overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Section (d): prints its table; returns its part of the report."""
    from fastvideo_hf.tools.tiny_models import save_tiny_wan_pipeline

    model = args.work_dir / "tiny-wan-t2v"
    if not (model / "model_index.json").exists():  # section (d) alone: only the spec's configs are needed
        save_tiny_wan_pipeline(model)
    started = time.perf_counter()
    seconds = time_step_overhead(load_model_spec(str(model)), args)
    summary = overhead_summary(seconds)
    shape = "x".join(map(str, args.overhead_latent_shape))
    config = overhead_transformer_config(args)
    print(
        f"\n### (d) our training step vs a bare loop, same transformer and batch ({config['num_layers']} blocks, "
        f"{config['num_attention_heads']} heads of 32, batch {args.overhead_batch_size} of latents {shape}): "
        f"medians of {args.overhead_rounds} interleaved rounds x {args.overhead_steps} steps of each, "
        f"{args.overhead_threads} torch thread(s), 1-minute load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    print(format_overhead_table(summary))
    print(f"\n(d) {time.perf_counter() - started:.0f} s")
    return {
        "step_overhead": {
            "config": config,
            "latent_shape": list(args.overhead_latent_shape),
            "options": {name: {**summary[name], "seconds": seconds[name]} for name in summary},
            "goal": OVERHEAD_GOAL,
            "context_parallel": CONTEXT_PARALLEL_ROW,
        }
    }


def main() -> int:
    args = build_parser().parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait on the network
    report: dict[str, Any] = {"machine": harness.machine_record(**harness.torch_record()), "settings": vars(args)}
    if args.sections in ("all", "data"):
        report.update(data_path(args))
    if args.sections in ("all", "overhead"):
        report.update(step_overhead(args))
    harness.write_json(args.output_json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
