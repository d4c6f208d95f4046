"""Does a run under the shipped FSDP config equal the plain run, resume exactly, and save loadable weights?

Accelerate 1.15 turns a launch config's FSDP section on only for GPU (accelerator) processes; CPU processes run
plain DDP over gloo (``training/accelerator_setup.create_accelerator`` warns). So FSDP can only be checked where a
GPU is: this script is part (e) of ``bench/gpu_check.sh``. It runs the user's commands on a tiny Wan pipeline and demo
latents (made here, offline), for the full finetune and the LoRA script:

1. the reference: ``accelerate launch --num_processes N`` without FSDP (``ddp.yaml`` for N > 1), 4 steps;
2. the same under ``--config_file examples/accelerate_configs/fsdp.yaml`` (FSDP2, full shard, sharded checkpoints);
3. the FSDP run resumed from its ``checkpoint-2`` (copied alone into a new folder, as a crash leaves it).

It reports which distributed type each run really got (from Accelerate's log), the largest weight difference of
2 vs 1 and of 3 vs 2 (goal <= 1e-5; float32 everywhere) and whether the final weights load with diffusers. N is
``--num_processes`` (default: the GPUs present, at least 1). ``--dry-run`` runs it on the CPU, where the FSDP rows
say they ran as MULTI_CPU. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import harness
import torch
from safetensors.torch import load_file

FSDP_CONFIG = harness.REPO / "examples" / "accelerate_configs" / "fsdp.yaml"
DDP_CONFIG = harness.REPO / "examples" / "accelerate_configs" / "ddp.yaml"
WEIGHTS = {
    "train_wan.py": "transformer/diffusion_pytorch_model.safetensors",
    "train_wan_lora.py": "pytorch_lora_weights.safetensors",
}
STEPS = ["--max_train_steps", "4", "--checkpointing_steps", "2", "--validation_steps", "100", "--report_to", "none"]
STEPS += ["--learning_rate", "1e-3", "--seed", "7", "--train_batch_size", "1"]


def prepare(work: Path) -> tuple[Path, Path]:
    """A tiny T2V pipeline and a latent dataset of demo clips, made with the project's own commands."""
    model, raw, latents = work / "tiny-wan", work / "raw", work / "latents"
    cli = [str(Path(sys.executable).with_name("fastvideo-hf"))]
    if not model.exists():
        subprocess.run([*cli, "tiny-model", "--output", str(model)], check=True, capture_output=True)
    if not latents.exists():
        subprocess.run([*cli, "demo-data", "--output", str(raw), "--num_videos", "4"], check=True, capture_output=True)
        command = [*cli, "preprocess", "--pretrained_model_name_or_path", str(model), "--data_dir", str(raw)]
        command += ["--output_dir", str(latents), "--height", "64", "--width", "96", "--num_frames", "17"]
        subprocess.run(command, check=True, capture_output=True)
    return model, latents


def launch(script: str, model: Path, latents: Path, output: Path, num_processes: int, fsdp: bool, *extra) -> str:
    """One training run as users start it; returns the distributed type Accelerate reports."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
    if fsdp or num_processes > 1:
        command += ["--config_file", str(FSDP_CONFIG if fsdp else DDP_CONFIG)]
    else:
        command += ["--num_machines", "1", "--dynamo_backend", "no"]
    command += ["--mixed_precision", "no", str(harness.REPO / "training_scripts" / script)]
    command += ["--pretrained_model_name_or_path", str(model), "--dataset_name", str(latents)]
    command += ["--output_dir", str(output), *STEPS, *extra]
    if script == "train_wan_lora.py":
        command += ["--rank", "4", "--lora_alpha", "4"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    found = re.search(r"Distributed environment: (?:DistributedType\.)?(\w+)", result.stderr + result.stdout)
    return found.group(1) if found else "unknown"


def max_difference(first: Path, second: Path) -> float:
    a, b = load_file(first), load_file(second)
    if a.keys() != b.keys():
        return float("inf")
    return max((a[key].float() - b[key].float()).abs().max().item() for key in a)


def loads_in_diffusers(script: str, output: Path, model: Path) -> bool:
    from diffusers import WanPipeline, WanTransformer3DModel

    if script == "train_wan.py":
        WanTransformer3DModel.from_pretrained(output / "transformer")
    else:
        WanPipeline.from_pretrained(model).load_lora_weights(output)
    return True


def check(script: str, model: Path, latents: Path, work: Path, num_processes: int) -> dict:
    plain, fsdp, resumed = work / f"{script}-plain", work / f"{script}-fsdp", work / f"{script}-fsdp-resumed"
    for folder in (plain, fsdp, resumed):
        shutil.rmtree(folder, ignore_errors=True)
    plain_type = launch(script, model, latents, plain, num_processes, fsdp=False)
    fsdp_type = launch(script, model, latents, fsdp, num_processes, fsdp=True)
    resumed.mkdir(parents=True)
    shutil.copytree(fsdp / "checkpoint-2", resumed / "checkpoint-2")
    launch(script, model, latents, resumed, num_processes, True, "--resume_from_checkpoint", "latest")
    weights = WEIGHTS[script]
    return {
        "script": script,
        "num_processes": num_processes,
        "plain_type": plain_type,
        "fsdp_type": fsdp_type,
        "fsdp_vs_plain": max_difference(plain / weights, fsdp / weights),
        "resumed_vs_fsdp": max_difference(fsdp / weights, resumed / weights),
        "loads_in_diffusers": loads_in_diffusers(script, fsdp, model),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = harness.make_parser(__doc__, summary_only=True)
    harness.add_work_dir(parser, "fsdp_work", "Scratch folder.")
    harness.add_output_json(parser, "fsdp_check.json", "JSON file.", flag="--output")
    parser.add_argument("--num_processes", type=int, default=None, help="Processes (default: GPUs, at least 1).")
    parser.add_argument("--dry-run", action="store_true", help="On the CPU: FSDP rows run as MULTI_CPU.")
    args = parser.parse_args(argv)
    num_processes = args.num_processes or max(torch.cuda.device_count(), 1)
    if args.dry_run:
        num_processes = args.num_processes or 2
    args.work_dir.mkdir(parents=True, exist_ok=True)
    model, latents = prepare(args.work_dir)
    rows = [check(script, model, latents, args.work_dir, num_processes) for script in WEIGHTS]
    columns = ["script", "processes", "plain run", "FSDP run", "FSDP vs plain (max abs)", "resumed vs FSDP", "loads"]
    cells = [
        [row["script"], row["num_processes"], row["plain_type"], row["fsdp_type"], f"{row['fsdp_vs_plain']:.2e}"]
        + [f"{row['resumed_vs_fsdp']:.2e}", row["loads_in_diffusers"]]
        for row in rows
    ]
    print(harness.markdown_table(columns, cells, "lllllll"))
    engaged = all(row["fsdp_type"] == "FSDP" for row in rows)
    exact = all(row["fsdp_vs_plain"] <= 1e-5 and row["resumed_vs_fsdp"] <= 1e-5 for row in rows)
    print(f"FSDP engaged: {engaged}; equal to the plain run and resumed exactly (<= 1e-5): {exact}")
    harness.write_json(args.output, {"rows": rows, "fsdp_engaged": engaged, "exact": exact}, announce=False)
    return rows


if __name__ == "__main__":
    main()
