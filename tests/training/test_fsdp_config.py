"""The shipped FSDP launch config, as users launch it: `accelerate launch --config_file examples/.../fsdp.yaml`.

Accelerate 1.15 runs FSDP only on accelerators (``AcceleratorState`` switches a MULTI_GPU-type run to FSDP, never
a MULTI_CPU one), so on this CPU machine the config can only be shown to launch and to be reported honestly; the
FSDP equality with DDP is part of ``bench/gpu_check.sh``."""

import subprocess
import sys

import torch
from diffusers import WanTransformer3DModel

from ..helpers import REPO


def test_the_fsdp_config_launches_and_a_cpu_run_says_it_is_not_sharded(tmp_path, latents_dir, tiny_model_dir):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command += [str(REPO / "examples" / "accelerate_configs" / "fsdp.yaml"), "--num_processes", "2"]
    command += [
        str(REPO / "training_scripts" / "train_wan.py"),
        "--pretrained_model_name_or_path",
        str(tiny_model_dir),
    ]
    command += ["--dataset_name", str(latents_dir), "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    command += ["--max_train_steps", "1", "--validation_steps", "100", "--checkpointing_steps", "100"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "the launch config asks for FSDP, but Accelerate runs FSDP only on GPUs" in result.stderr
    assert "this run is DistributedType.MULTI_CPU" in result.stderr
    trained = WanTransformer3DModel.from_pretrained(tmp_path / "out" / "transformer").state_dict()
    base = WanTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer").state_dict()
    assert trained.keys() == base.keys()
    assert any(not torch.equal(trained[key], base[key]) for key in base), "the step changed no weight"
