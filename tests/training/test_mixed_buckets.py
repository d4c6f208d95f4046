"""A LoRA trains over a dataset of several (frames, height, width) buckets, and validates at its usual size.

On such a dataset training keeps the guarantees of a one-shape dataset: one latent shape per batch, every row
seen each epoch, exact resume after a SIGKILL that lands between batches of different shapes, and N processes
equal to one with the same global batch. The runs are real processes; a small wrapper script records the
batches each process collates (row ids and latent shape), since the training scripts do not log them.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch
from safetensors.torch import load_file

from fastvideo_hf.dataset_card import LatentsCard
from fastvideo_hf.preprocess.cli import main as preprocess_main
from fastvideo_hf.training.latent_dataset import SameShapeBatchSampler, load_latent_dataset
from fastvideo_hf.training.validation import most_common_video_bucket

from ..helpers import REPO, run_training
from ..preprocess.test_buckets import bucket_args, card, mixed_dir  # noqa: F401 (the fixture)
from .test_training_resume import kill_when

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
# Wraps a training script: every batch the process collates is appended to BATCH_LOG_DIR/rank-R.jsonl, then the
# script runs as ``python SCRIPT`` would run it. The training modules take collate_latents from the module when
# they are imported, which happens after the patch.
RECORDER = """
import json, os, runpy, sys
from fastvideo_hf.training import latent_dataset

collate = latent_dataset.collate_latents


def recording_collate(examples):
    batch = collate(examples)
    path = os.path.join(os.environ["BATCH_LOG_DIR"], "rank-%s.jsonl" % os.environ.get("RANK", "0"))
    with open(path, "a") as log:
        log.write(json.dumps({"rows": batch["index"].tolist(), "shape": list(batch["latents"].shape[1:])}) + "\\n")
    return batch


latent_dataset.collate_latents = recording_collate
script = sys.argv.pop(1)
sys.argv[0] = script
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""
# 5 rows in 3 shape buckets (2, 2 and 1 rows: one clip per video); a global batch of 2 gives 3 batches per epoch
# (the 1-row bucket completes its batch with a repeat). 2 epochs; the checkpoint at step 4 sits mid-epoch 1.
GLOBAL_BATCH, EPOCHS, KILL_STEP = 2, 2, 4
RESUME_FLAGS = ["--num_train_epochs", str(EPOCHS), "--checkpointing_steps", str(KILL_STEP), "--rank", "4"]
RESUME_FLAGS += ["--lora_alpha", "8", "--learning_rate", "1e-3", "--lr_scheduler", "cosine", "--lr_warmup_steps", "2"]
RESUME_FLAGS += ["--caption_dropout", "0.2", "--validation_steps", "100"]


@pytest.fixture(scope="module")
def mixed_latents(tmp_path_factory, tiny_model_dir, mixed_dir):  # noqa: F811
    output = tmp_path_factory.mktemp("mixed_latents") / "out"
    assert preprocess_main(bucket_args(tiny_model_dir, mixed_dir, output)) == 0
    return output


@pytest.fixture(scope="module")
def recorder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recorder") / "record_batches.py"
    path.write_text(RECORDER)
    return path


def recorded_command(recorder: Path, script: str, model_dir, dataset_dir, output_dir, *extra) -> list[str]:
    """The arguments of ``script`` as tests run it, behind the recorder (a launcher in front runs N processes)."""
    command = [str(recorder), str(REPO / "training_scripts" / script)]
    command += ["--pretrained_model_name_or_path", str(model_dir), "--dataset_name", str(dataset_dir)]
    return command + ["--output_dir", str(output_dir), "--report_to", "none", "--seed", "7", *map(str, extra)]


def recorded_batches(log_dir: Path, rank: int = 0) -> list[dict]:
    return [json.loads(line) for line in (log_dir / f"rank-{rank}.jsonl").read_text().splitlines()]


def batch_log_env(log_dir: Path) -> dict[str, str]:
    log_dir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "BATCH_LOG_DIR": str(log_dir)}


def sampler_epochs(dataset_dir: Path, batch_size: int, epochs: int) -> tuple[list[tuple], list[list[list[int]]]]:
    """The latent shape of each row and the global batches the training sampler gives each epoch (seed 7)."""
    shapes = [tuple(shape) for shape in load_latent_dataset(str(dataset_dir))["vae_latent_shape"]]
    sampler = SameShapeBatchSampler(shapes, batch_size, seed=7)
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.append(list(sampler))
    return shapes, batches


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, mixed_latents, recorder):
    """The 1-process LoRA run over the mixed buckets (global batch 2, two epochs) and the batches it collated."""
    root = tmp_path_factory.mktemp("uninterrupted")
    command = recorded_command(recorder, "train_wan_lora.py", tiny_model_dir, mixed_latents, root / "lora")
    command += [*RESUME_FLAGS, "--train_batch_size", str(GLOBAL_BATCH)]
    env = batch_log_env(root / "log")
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return root / "lora", recorded_batches(root / "log")


def test_lora_trains_over_mixed_buckets_one_shape_per_batch_and_validates_at_the_usual_bucket(
    tmp_path, tiny_model_dir, mixed_latents
):
    # rows: 17x64x96 (landscape, tiny), 17x96x64 (two portraits), 9x80x80 (the short square); batches of 2
    # only work if each batch holds one shape (a mixed batch cannot be stacked)
    assert most_common_video_bucket(LatentsCard.from_metadata(card(mixed_latents))) == (64, 96, 17)
    output = tmp_path / "lora"
    flags = ["--train_batch_size", "2", "--num_train_epochs", "1", "--rank", "4", "--learning_rate", "1e-3"]
    flags += ["--validation_prompt", "a red square", "--validation_num_inference_steps", "2"]
    flags += ["--validation_steps", "1000", "--checkpointing_steps", "1000"]
    run_training("train_wan_lora.py", tiny_model_dir, mixed_latents, output, *flags)
    assert (output / "pytorch_lora_weights.safetensors").exists()
    videos = sorted((output / "validation").glob("step-*/video_0.mp4"))
    assert videos, "no validation video"
    with av.open(str(videos[-1])) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.height, stream.width, frames) == (64, 96, 17)


def test_sigkill_mid_epoch_between_shapes_then_latest_resumes_to_the_uninterrupted_weights(
    tmp_path, tiny_model_dir, mixed_latents, recorder, uninterrupted, monkeypatch
):
    full, full_batches = uninterrupted
    shapes, epochs = sampler_epochs(mixed_latents, GLOBAL_BATCH, EPOCHS)
    assert len(set(shapes)) == 3 and len(epochs[0]) == 3
    epoch, done = divmod(KILL_STEP, len(epochs[0]))
    assert done, "the checkpoint must sit mid-epoch"
    # the batches either side of the checkpoint have different shapes: the resume must find the right bucket
    before, after = epochs[epoch][done - 1], epochs[epoch][done]
    assert shapes[before[0]] != shapes[after[0]]
    # what the run collated is what the sampler promises: one shape per batch, every row in every epoch
    assert [batch["rows"] for batch in full_batches] == epochs[0] + epochs[1]
    assert all(list(shapes[row]) == batch["shape"] for batch in full_batches for row in batch["rows"])
    assert all({row for batch in epoch for row in batch} == set(range(len(shapes))) for epoch in epochs)

    output, log = tmp_path / "preempted", tmp_path / "log"
    command = [sys.executable, *recorded_command(recorder, "train_wan_lora.py", tiny_model_dir, mixed_latents, output)]
    command += [*RESUME_FLAGS, "--train_batch_size", str(GLOBAL_BATCH), "--resume_from_checkpoint", "latest"]
    monkeypatch.setenv("BATCH_LOG_DIR", str(log))  # kill_when starts the command with this process's environment
    log.mkdir()
    kill_when(command, output, lambda names: f"checkpoint-{KILL_STEP}" in names)
    state = json.loads((output / f"checkpoint-{KILL_STEP}" / "training_state.json").read_text())
    assert (state["global_step"], state["epoch"], state["batches_in_epoch"]) == (KILL_STEP, epoch, done)
    (log / "rank-0.jsonl").unlink()  # the killed run's batches; the resumed run's follow
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=batch_log_env(log))
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"resuming from {output / f'checkpoint-{KILL_STEP}'}" in result.stderr
    # the resumed run collates exactly the batches the uninterrupted run had left, from the next shape on
    assert recorded_batches(log) == full_batches[KILL_STEP:]
    assert_same_weights(output / LORA_WEIGHTS, full / LORA_WEIGHTS)


def assert_same_weights(got_file: Path, expected_file: Path, atol: float = 1e-6) -> None:
    got, expected = load_file(got_file), load_file(expected_file)
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=atol, msg=key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_accelerate_launch_equals_one_process_over_mixed_buckets(
    tmp_path, tiny_model_dir, mixed_latents, recorder, uninterrupted
):
    full, full_batches = uninterrupted
    output, log = tmp_path / "two", tmp_path / "log"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(free_port())]  # not 29500: other test runs may share the machine
    command = launch + recorded_command(recorder, "train_wan_lora.py", tiny_model_dir, mixed_latents, output)
    command += [*RESUME_FLAGS, "--train_batch_size", str(GLOBAL_BATCH // 2)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=batch_log_env(log))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "global batches of 1 x 2 per epoch" in result.stderr

    # each process collates its half of every global batch, one shape per half; together they are the batches
    # of the 1-process run, so each epoch sees every row with one shape per batch
    shapes, epochs = sampler_epochs(mixed_latents, GLOBAL_BATCH, EPOCHS)
    ranks = [recorded_batches(log, rank) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(full_batches) == EPOCHS * len(epochs[0])
    together = []
    for first, second, whole in zip(*ranks, full_batches, strict=True):
        assert len(first["rows"]) == len(second["rows"]) == 1
        assert first["rows"] + second["rows"] == whole["rows"]
        assert first["shape"] == second["shape"] == whole["shape"]
        assert all(list(shapes[row]) == first["shape"] for row in whole["rows"])
        together.append(first["rows"] + second["rows"])
    assert together == epochs[0] + epochs[1]
    assert all({row for batch in epoch for row in batch} == set(range(len(shapes))) for epoch in epochs)
    # same samples, noise and sigmas: only the float order of the gradient all-reduce differs
    assert_same_weights(output / LORA_WEIGHTS, full / LORA_WEIGHTS, atol=1e-5)
