"""Full-size orientation run on the CPU: the user's commands on a Wan2.1-1.3B-shaped pipeline with random weights.

The tests and the demo run tiny models; this script runs the same commands at the real model sizes, so what a
user's first run costs in time and memory on a CPU machine is measured, not guessed. The pipeline has the real
Wan2.1 T2V 1.3B transformer config, the real Wan2.1 VAE config and a UMT5 encoder of the real width (d_model
4096, d_ff 10240, 64 heads, the real 256,384-token embedding table) but 2 of its 24 layers (the whole encoder
does not fit beside everything else on a 24 GiB machine); the tokenizer is the tiny in-memory one, since only
the embedding table's size matters here.

Steps, each a child process whose time and peak RSS (``os.wait4``'s ``ru_maxrss``: the largest process of the
child's tree, decode workers and ``accelerate launch``'s training process included) are reported:

1. build: the random-weight pipeline written with ``save_pretrained`` (one component in memory at a time);
2. ``fastvideo-hf preprocess`` of one 480x832x33 clip (the split into decode, text and VAE seconds is read from
   its log);
3. ``fastvideo-hf preprocess`` of the same clip at 128x128x9, the training data of step 4;
4. ``accelerate launch training_scripts/train_wan_lora.py``: two LoRA steps with ``--gradient_checkpointing`` and
   ``--checkpointing_steps 1`` (a resumable checkpoint after each step) at 128x128x9.

Everything lives in ``--work_dir`` (default ``bench/results/full_size_work``, git-ignored; about 11 GB: the
transformer and the text encoder are 5.7 and 5.6 GB in float32). Not part of ``make test``: it takes tens of
minutes on a 2-core machine. Run it with ``nice -n 10 .venv/bin/python bench/full_size.py``; it prints a markdown
table and writes JSON.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness

from fastvideo_hf.models.wan.family import KNOWN_MODELS

VENV_BIN = Path(sys.executable).parent
GIB = 1024**3
CAPTION = "A red circle moves from left to right over a black background."
# Wan2.1 T2V 1.3B (public config) and umT5-XXL's encoder at its real width, 2 of 24 layers
TRANSFORMER_CONFIG = KNOWN_MODELS["wan2.1-t2v-1.3b"].config  # the real config.json, kept by `fastvideo-hf plan`
TEXT_ENCODER_CONFIG = {
    "vocab_size": 256384,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 2,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}
PREPROCESS_SECONDS = re.compile(r"seconds: (\{.*\})")
STEP_RATE = re.compile(r"([\d.]+)s/it")  # tqdm's rate in the training log, once steps take over a second


@dataclass
class Step:
    """One child process: its command line, wall seconds, peak RSS and what its log told."""

    name: str
    command: list[str]
    seconds: float = 0.0
    peak_rss_gib: float = 0.0
    returncode: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def build_pipeline(folder: Path) -> None:
    """Write the random-weight pipeline: the tiny pipeline's folder (model_index.json, tokenizer, scheduler), then
    each model replaced by its full-size version, built, saved and freed one at a time."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from fastvideo_hf.tools.tiny_models import save_tiny_wan_pipeline

    shutil.rmtree(folder, ignore_errors=True)
    save_tiny_wan_pipeline(folder)
    torch.manual_seed(0)
    builders = {
        "transformer": lambda: WanTransformer3DModel(**TRANSFORMER_CONFIG),
        "vae": lambda: AutoencoderKLWan(),  # diffusers' defaults are Wan2.1's VAE
        "text_encoder": lambda: UMT5EncoderModel(UMT5Config(**TEXT_ENCODER_CONFIG)),
    }
    for name, build in builders.items():
        shutil.rmtree(folder / name)
        model = build().eval()
        model.save_pretrained(folder / name)
        print(f"{name}: {sum(param.numel() for param in model.parameters()) / 1e9:.2f} B parameters", flush=True)
        del model


def write_video(folder: Path, frames: int) -> Path:
    """One 480x832 H.264 clip of ``frames`` frames at 16 fps as a merged folder."""
    from fastvideo_hf.tools.demo_data import render_clip
    from fastvideo_hf.video_writer import write_mp4

    (folder / "videos").mkdir(parents=True, exist_ok=True)
    write_mp4(
        render_clip("circle", "red", "black", "left to right", 832, 480, frames), folder / "videos" / "clip.mp4", 16
    )
    (folder / "videos2caption.json").write_text(json.dumps([{"path": "clip.mp4", "cap": CAPTION}]))
    return folder


def run_step(step: Step, log: Path) -> Step:
    """Run ``step.command`` with its output in ``log``; time it and read its tree's peak RSS from ``wait4``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print(f"[{time.strftime('%H:%M:%S')}] {step.name}: {' '.join(step.command)}", flush=True)
    with log.open("w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(step.command, cwd=harness.REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        step.seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen, so it does not wait again
    step.returncode = process.returncode
    step.peak_rss_gib = usage.ru_maxrss * 1024 / GIB  # KiB on Linux
    print(f"  {step.seconds:.0f} s, peak RSS {step.peak_rss_gib:.2f} GiB, exit {step.returncode}", flush=True)
    if step.returncode != 0:
        tail = log.read_text().splitlines()[-20:]
        raise SystemExit(f"{step.name} failed (exit {step.returncode}); the end of {log}:\n" + "\n".join(tail))
    return step


def preprocess_step(name: str, model: Path, videos: Path, output: Path, height: int, width: int, frames: int) -> Step:
    command = [
        str(VENV_BIN / "fastvideo-hf"),
        "preprocess",
        "--pretrained_model_name_or_path",
        str(model),
        "--data_dir",
        str(videos),
        "--output_dir",
        str(output),
        "--height",
        str(height),
        "--width",
        str(width),
        "--num_frames",
        str(frames),
        "--fps",
        "16",
    ]
    return Step(name, command)


def read_preprocess_log(step: Step, log: Path, output: Path) -> None:
    """The stage seconds the preprocess CLI logs and the shape of the latent it wrote."""
    import pyarrow.parquet as pq

    match = PREPROCESS_SECONDS.search(log.read_text())
    if match:
        step.details["seconds"] = ast.literal_eval(match.group(1))
    table = pq.read_table(next(output.glob("data/*.parquet")), columns=["vae_latent_shape", "text_embedding_shape"])
    step.details["latent_shape"] = table.column("vae_latent_shape")[0].as_py()
    step.details["text_embedding_shape"] = table.column("text_embedding_shape")[0].as_py()


def read_training_log(step: Step, log: Path, lora: Path) -> None:
    """Seconds per optimizer step (tqdm's last rate), the checkpoints written, and that the LoRA was saved."""
    rates = STEP_RATE.findall(log.read_text())
    if rates:
        step.details["seconds_per_step"] = float(rates[-1])
    step.details["checkpoints"] = sorted(path.name for path in lora.glob("checkpoint-*"))
    if not (lora / "pytorch_lora_weights.safetensors").exists():
        raise SystemExit(f"the LoRA run wrote no pytorch_lora_weights.safetensors in {lora}")


def format_table(steps: list[Step]) -> str:
    rows = []
    for step in steps:
        details = []
        if "seconds" in step.details:
            parts = step.details["seconds"]
            details.append(", ".join(f"{key} {value:.0f} s" for key, value in parts.items() if value >= 0.5))
        if "latent_shape" in step.details:
            details.append("latent " + "x".join(map(str, step.details["latent_shape"])))
        if "checkpoints" in step.details:
            rate = step.details.get("seconds_per_step")
            details.append(f"{rate:.0f} s per optimizer step" if rate else "optimizer steps under a second")
            details.append(f"checkpoints {', '.join(step.details['checkpoints'])}")
        rows.append([step.name, f"{step.seconds:,.0f}", f"{step.peak_rss_gib:.2f}", "; ".join(details)])
    return harness.markdown_table(["step", "wall s", "peak RSS GiB", "details"], rows, "lrrl")


def build_parser() -> argparse.ArgumentParser:
    parser = harness.make_parser(__doc__)
    harness.add_work_dir(
        parser,
        "full_size_work",
        "Folder for the pipeline, the video, the latents and the LoRA run (about 11 GB; rewritten).",
    )
    harness.add_output_json(
        parser, "full_size.json", "Where to write the measurements (default bench/results/full_size.json)."
    )
    parser.add_argument("--frames", type=int, default=33, help="Frames of the 480x832 clip preprocessed in step 2.")
    parser.add_argument(
        "--train_size",
        default="128x128x9",
        help="HEIGHTxWIDTHxFRAMES of the training data of steps 3-4 (default 128x128x9).",
    )
    parser.add_argument(
        "--skip_build", action="store_true", help="Reuse the pipeline of an earlier run in --work_dir."
    )
    parser.add_argument("--_build", type=Path, help=argparse.SUPPRESS)  # the child process of step 1
    return parser


def main() -> int:
    args = build_parser().parse_args()
    if args._build is not None:
        build_pipeline(args._build)
        return 0
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    model, logs = work / "wan-1.3b-random", work / "logs"
    logs.mkdir(exist_ok=True)
    free_gib = shutil.disk_usage(work).free / GIB
    if free_gib < 15 and not args.skip_build:
        raise SystemExit(f"{work} has {free_gib:.0f} GiB free; the pipeline needs about 11 GB")
    train_height, train_width, train_frames = (int(part) for part in args.train_size.lower().split("x"))
    videos = write_video(work / "videos", max(args.frames, train_frames) + 4)

    steps: list[Step] = []
    if not args.skip_build:
        build = Step("build the random pipeline (save_pretrained)", [sys.executable, __file__, "--_build", str(model)])
        steps.append(run_step(build, logs / "build.log"))
    for name, folder, size in (
        (f"preprocess 1 clip 480x832x{args.frames}", work / "latents-480x832", (480, 832, args.frames)),
        (f"preprocess 1 clip {args.train_size}", work / "latents-train", (train_height, train_width, train_frames)),
    ):
        shutil.rmtree(folder, ignore_errors=True)
        log = logs / f"{folder.name}.log"
        step = run_step(preprocess_step(name, model, videos, folder, *size), log)
        read_preprocess_log(step, log, folder)
        steps.append(step)
    lora = work / "lora"
    shutil.rmtree(lora, ignore_errors=True)
    train = Step(
        f"2 LoRA steps at {args.train_size} (gradient + step checkpointing)",
        [
            str(VENV_BIN / "accelerate"),
            "launch",
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(harness.REPO / "training_scripts" / "train_wan_lora.py"),
            "--pretrained_model_name_or_path",
            str(model),
            "--dataset_name",
            str(work / "latents-train"),
            "--output_dir",
            str(lora),
            "--max_train_steps",
            "2",
            "--checkpointing_steps",
            "1",
            "--gradient_checkpointing",
            "--report_to",
            "none",
            "--seed",
            "0",
        ],
    )
    steps.append(run_step(train, logs / "train.log"))
    read_training_log(train, logs / "train.log", lora)

    print(
        f"\n## full-size pipeline on the CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)\n"
    )
    print(format_table(steps))
    report = {
        "machine": harness.machine_record(),
        "settings": {key: str(value) for key, value in vars(args).items() if not key.startswith("_")},
        "transformer_config": TRANSFORMER_CONFIG,
        "text_encoder_config": TEXT_ENCODER_CONFIG,
        "steps": [asdict(step) for step in steps],
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    harness.write_json(args.output_json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
