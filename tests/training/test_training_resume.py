"""Resume as a preempted cloud job lives it: SIGKILL during a save, re-runs of finished runs, changed settings.

Every run is a real training process; kills are real SIGKILLs landed while a checkpoint is being written.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from fastvideo_hf.preprocess.writer import write_to_folder
from fastvideo_hf.tools.demo_data import write_demo_dataset

from ..helpers import REPO, make_builder, run_training

FULL_WEIGHTS = "transformer/diffusion_pytorch_model.safetensors"


def training_command(script, model_dir, dataset_dir, output_dir, *extra):
    command = [sys.executable, str(REPO / "training_scripts" / script)]
    command += ["--pretrained_model_name_or_path", str(model_dir), "--dataset_name", str(dataset_dir)]
    return command + ["--output_dir", str(output_dir), "--report_to", "none", "--seed", "7", *map(str, extra)]


def kill_when(command, output_dir: Path, moment, timeout=180) -> None:
    """Start ``command`` and SIGKILL it the moment ``moment(names in output_dir)`` holds."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while True:
            names = set(os.listdir(output_dir)) if output_dir.is_dir() else set()
            if moment(names):
                break
            assert process.poll() is None, "training ended before the moment to kill it came"
            assert time.time() < deadline, "the moment to kill never came"
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()


def assert_same_weights(got_file, expected_file):
    got, expected = load_file(got_file), load_file(expected_file)
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_sigkill_while_checkpointing_then_latest_resumes_exactly(tmp_path, latents_dir, tiny_model_dir):
    # Checkpoint every step, keep one: the save of step N must not cost the checkpoint of step N - 1.
    flags = ["--max_train_steps", "8", "--checkpointing_steps", "1", "--checkpoints_total_limit", "1"]
    flags += ["--learning_rate", "1e-3", "--lr_scheduler", "cosine", "--lr_warmup_steps", "2"]
    flags += ["--validation_steps", "100"]
    run_training("train_wan.py", tiny_model_dir, latents_dir, tmp_path / "uninterrupted", *flags)

    output = tmp_path / "preempted"
    command = training_command("train_wan.py", tiny_model_dir, latents_dir, output, *flags)
    command += ["--resume_from_checkpoint", "latest"]
    # 1. killed while checkpoint-3 is being written (its staging folder exists, half full)
    kill_when(command, output, lambda names: "checkpoint-3.tmp" in names)
    left = sorted(name for name in os.listdir(output) if name.startswith("checkpoint-"))
    assert left in (["checkpoint-2", "checkpoint-3.tmp"], ["checkpoint-3"]), left
    # 2. the resumed run killed the moment a new checkpoint appears (the kill of the bug report)
    kill_when(command, output, lambda names: "checkpoint-5" in names)
    # 3. resumed to the end: the weights of the run that was never interrupted
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resuming from" in result.stderr
    assert_same_weights(output / FULL_WEIGHTS, tmp_path / "uninterrupted" / FULL_WEIGHTS)
    assert sorted(name for name in os.listdir(output) if name.startswith("checkpoint")) == ["checkpoint-8"]


def test_rerun_of_a_finished_run_changes_no_weight(tmp_path, latents_dir, tiny_model_dir):
    flags = ["--max_train_steps", "3", "--checkpointing_steps", "2", "--validation_steps", "100"]
    flags += ["--rank", "4", "--lora_alpha", "8", "--learning_rate", "1e-3", "--resume_from_checkpoint", "latest"]
    output = tmp_path / "lora"
    run_training("train_wan_lora.py", tiny_model_dir, latents_dir, output, *flags)
    weights = output / "pytorch_lora_weights.safetensors"
    first = load_file(weights)
    marker = (output / "checkpoint-3" / "training_state.json").read_text()

    # A scheduler re-runs the job that already finished
    result = run_training("train_wan_lora.py", tiny_model_dir, latents_dir, output, *flags)
    assert "the run is already complete" in result.stderr
    again = load_file(weights)
    assert again.keys() == first.keys() and all(torch.equal(again[key], first[key]) for key in first)
    assert not (output / "checkpoint-4").exists()
    assert (output / "checkpoint-3" / "training_state.json").read_text() == marker

    # A new run into a folder holding a run's checkpoints would prune them or be mixed with them: refused
    fresh = [flag for flag in flags if flag not in ("--resume_from_checkpoint", "latest")]
    result = run_training("train_wan_lora.py", tiny_model_dir, latents_dir, output, *fresh, check=False)
    assert (
        result.returncode != 0 and "holds checkpoints of an earlier run (checkpoint-2, checkpoint-3)" in result.stderr
    )
    # A checkpoint past --max_train_steps does not hold the weights of the shorter run: refused
    shorter = [*flags, "--max_train_steps", "2"]
    result = run_training("train_wan_lora.py", tiny_model_dir, latents_dir, output, *shorter, check=False)
    assert result.returncode != 0 and "past --max_train_steps 2" in result.stderr
    assert all(torch.equal(load_file(weights)[key], first[key]) for key in first)


def test_resume_with_settings_that_change_the_run_is_refused_listing_each(tmp_path, latents_dir, tiny_model_dir):
    flags = ["--max_train_steps", "4", "--checkpointing_steps", "2", "--validation_steps", "100"]
    flags += ["--rank", "4", "--lora_alpha", "4", "--resume_from_checkpoint", "latest"]
    output = tmp_path / "lora"
    run_training("train_wan_lora.py", tiny_model_dir, latents_dir, output, *flags)
    shutil.rmtree(output / "checkpoint-4")  # the run was preempted after step 2

    changed = flags + ["--train_batch_size", "2", "--gradient_accumulation_steps", "2", "--rank", "8"]
    result = run_training("train_wan_lora.py", tiny_model_dir, latents_dir, output, *changed, check=False)
    assert result.returncode != 0
    assert "Cannot resume" in result.stderr and "size mismatch" not in result.stderr
    for line in ("--gradient_accumulation_steps: 1 -> 2", "--rank: 4 -> 8", "the global batch: 1 x 1 processes"):
        assert line in result.stderr, line

    other_raw, other_data = tmp_path / "other_raw", tmp_path / "other"  # another dataset under the same flags
    write_demo_dataset(other_raw, num_videos=4, seed=3)
    write_to_folder(make_builder(tiny_model_dir, data_dir=other_raw), other_data)
    result = run_training("train_wan_lora.py", tiny_model_dir, other_data, output, *flags, check=False)
    assert (
        result.returncode != 0
        and "the dataset:" in result.stderr
        and "(6 rows) ->" in result.stderr
        and "(4 rows" in result.stderr
    )

    recaptioned = tmp_path / "recaptioned"  # the same clips, ids and shapes with other captions
    shutil.copytree(latents_dir, recaptioned)
    for shard in (recaptioned / "data").glob("*.parquet"):
        table = pq.read_table(shard)
        captions = pa.array([f"another caption {index}" for index in range(table.num_rows)])
        pq.write_table(table.set_column(table.schema.get_field_index("caption"), "caption", captions), shard)
    result = run_training("train_wan_lora.py", tiny_model_dir, recaptioned, output, *flags, check=False)
    assert result.returncode != 0 and "the dataset:" in result.stderr and "(6 rows, other clips)" in result.stderr

    moved_model = tmp_path / "elsewhere" / tiny_model_dir.name  # another model folder of the same name
    shutil.copytree(tiny_model_dir, moved_model)
    command = [*flags, "--allow_model_mismatch"]
    result = run_training("train_wan_lora.py", moved_model, latents_dir, output, *command, check=False)
    assert result.returncode != 0 and "--pretrained_model_name_or_path:" in result.stderr

    # What may change does: a new learning rate is ignored (the optimizer keeps its own) and said so
    result = run_training("train_wan_lora.py", tiny_model_dir, latents_dir, output, *flags, "--learning_rate", "5")
    assert "--learning_rate 5.0 is ignored on resume" in result.stderr
    settings = json.loads((output / "checkpoint-4" / "run_settings.json").read_text())
    assert settings["learning_rate"] == 1e-4 and settings["global_batch_size"] == 1


def test_the_hub_token_is_written_nowhere(tmp_path, latents_dir, tiny_model_dir):
    token = "hf_ThisIsASecretTokenThatMustNotLeak"
    output = tmp_path / "lora"
    command = training_command("train_wan_lora.py", tiny_model_dir, latents_dir, output, "--max_train_steps", "2")
    command[command.index("--report_to") + 1] = "tensorboard"  # hparams.yml and the event file
    command += ["--checkpointing_steps", "1", "--validation_steps", "100", "--hub_token", token, "--rank", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "visible" in result.stderr  # the warning that a token on the command line is visible to others
    assert token not in result.stdout + result.stderr
    files = [path for path in output.rglob("*") if path.is_file()]
    assert any("hparams" in path.name for path in files) and any("events" in path.name for path in files)
    for path in files:
        assert token.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "targets, refused", [("add_k_proj,add_v_proj", True), ("to_q,add_k_proj", False)], ids=["none", "some"]
)
def test_lora_target_modules_that_match_nothing_are_named(tmp_path, latents_dir, tiny_model_dir, targets, refused):
    flags = ["--max_train_steps", "1", "--validation_steps", "100", "--rank", "2", "--lora_target_modules", targets]
    result = run_training("train_wan_lora.py", tiny_model_dir, latents_dir, tmp_path / "out", *flags, check=False)
    if refused:
        assert result.returncode != 0
        assert "no Linear layer of this model has these names" in result.stderr and "attn1.to_q" in result.stderr
    else:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "add_k_proj match no layer of this model and are ignored" in result.stderr
        keys = load_file(tmp_path / "out" / "pytorch_lora_weights.safetensors").keys()
        assert keys and all("to_q" in key for key in keys)
