"""Decoding in worker processes (issue 10, section 5): the same bytes as in-process decoding, exact resume after
kill -9, and a decoder crash costs its file only. Real processes and real files throughout."""

import json
import os
import signal
import subprocess

import psutil
import pytest
import torch

from fastvideo_hf.models import load_model_spec
from fastvideo_hf.preprocess import decode_workers
from fastvideo_hf.preprocess.writer import write_to_folder
from fastvideo_hf.schema import columns_to_tensor

from ..helpers import (
    NUM_DEMO_VIDEOS,
    make_builder,
    rows_by_id,
    slow_preprocess_command,
    start_and_wait_for,
)

CRASHING_FILE = "clip_0002.mp4"


def decode_or_crash(job):
    """A decoder that segfaults on one file, as a broken native decoder would; runs in the worker process."""
    if isinstance(job.source, str) and job.source.endswith(CRASHING_FILE):
        os.kill(os.getpid(), signal.SIGSEGV)
    return decode_workers.decode_pixels(job)


def folder_bytes(folder):
    """Every file of a finished folder but the resume bookkeeping, as bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".progress" not in path.parts
    }


def test_two_decode_workers_write_the_bytes_of_in_process_decoding(tmp_path, tiny_model_dir, demo_dir):
    # today's path exactly (in-process decoding, one caption per text-encoder call) against 2 workers and
    # caption batches of 2 (the 3-input shards are then encoded as batches of 2 and 1)
    in_process, workers = tmp_path / "in_process", tmp_path / "workers"
    write_to_folder(make_builder(tiny_model_dir, data_dir=demo_dir, num_workers=0, text_batch_size=1), in_process)
    write_to_folder(make_builder(tiny_model_dir, data_dir=demo_dir, num_workers=2, text_batch_size=2), workers)
    expected, written = folder_bytes(in_process), folder_bytes(workers)
    assert sorted(written) == sorted(expected)
    assert len([name for name in expected if name.endswith(".parquet")]) == 2  # the other 2 chunks: bad inputs only
    for name in expected:
        assert written[name] == expected[name], f"{name} differs"


def test_a_batch_of_captions_encodes_each_exactly_as_alone(tiny_model_dir):
    model = str(tiny_model_dir)
    encoder = load_model_spec(model).family.prompt_encoder(model, None, "cpu", torch.float32)
    captions = ["a cat", "a dog runs along the beach at sunset", "x" * 300, "", "two   spaces", "ünïcode"]
    alone = [encoder([caption])[0] for caption in captions]
    batched = encoder(captions)
    for caption, one, together in zip(captions, alone, batched, strict=True):
        assert one.shape == together.shape and torch.equal(one, together), caption


def test_a_worker_that_crashes_on_one_file_costs_that_file_only(
    tmp_path, tiny_model_dir, demo_dir, latents_dir, monkeypatch
):
    monkeypatch.setattr(decode_workers, "decode_pixels", decode_or_crash)
    output = tmp_path / "out"
    summary = write_to_folder(make_builder(tiny_model_dir, data_dir=demo_dir, num_workers=2), output)
    assert summary.finalized
    skipped = [json.loads(line) for line in (output / "skipped.jsonl").read_text().splitlines()]
    crashed = [entry for entry in skipped if entry["id"] == CRASHING_FILE]
    assert crashed == [
        {
            "id": CRASHING_FILE,
            "file_name": CRASHING_FILE,
            "reason": "the decoder crashed on this file (worker exit code -11)",
        }
    ]
    expected_skips = (latents_dir / "skipped.jsonl").read_text().splitlines()
    assert [entry for entry in skipped if entry not in crashed] == [json.loads(line) for line in expected_skips]
    rows, expected = rows_by_id(output), rows_by_id(latents_dir)
    assert sorted(rows) == sorted(set(expected) - {CRASHING_FILE})
    for row_id, row in rows.items():
        for column in ("vae_latent", "text_embedding"):
            assert torch.equal(columns_to_tensor(row, column), columns_to_tensor(expected[row_id], column)), row_id


def test_kill_9_with_a_decode_worker_then_rerun_gives_every_row_once_and_leaves_no_worker(
    tmp_path, tiny_model_dir, demo_dir
):
    output = tmp_path / "out"
    command = slow_preprocess_command(tiny_model_dir, demo_dir, output, "--num_workers", "1")
    process = start_and_wait_for(command, output / ".progress" / "chunk-00002.json")
    helpers = psutil.Process(process.pid).children(recursive=True)  # the forkserver and the decode worker
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert helpers, "the run should have started a decode worker"
    _, alive = psutil.wait_procs(helpers, timeout=10)
    assert not alive, f"processes left behind by the killed run: {alive}"
    assert not (output / "README.md").exists()

    assert subprocess.run(command, capture_output=True).returncode == 0

    rows = rows_by_id(output)
    assert sorted(rows) == [f"clip_{index:04d}.mp4" for index in range(NUM_DEMO_VIDEOS)]
    assert sum(1 for _ in (output / "data").glob("*.parquet")) == NUM_DEMO_VIDEOS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"num_workers": -1}, "--num_workers must be 0"), ({"text_batch_size": 0}, "--text_batch_size must be")],
)
def test_bad_worker_settings_are_refused_before_any_model_loads(tmp_path, demo_dir, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_builder(tmp_path / "no-model", data_dir=demo_dir, **overrides)
