"""Interrupted preprocessing resumes where it stopped: no lost rows, no duplicates, no redone shards."""

import os
import shutil
import signal
import subprocess

import pytest
from datasets import load_dataset

from fastvideo_hf.schema import columns_to_tensor

from ..helpers import NUM_DEMO_VIDEOS, make_builder, slow_preprocess_command, start_and_wait_for


def rows_of(dataset_dir):
    return list(load_dataset(str(dataset_dir), split="train"))


def assert_same_rows(got_dir, expected_dir):
    got, expected = rows_of(got_dir), rows_of(expected_dir)
    ids = [row["id"] for row in got]
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert sorted(ids) == sorted(row["id"] for row in expected)
    expected_by_id = {row["id"]: row for row in expected}
    for row in got:
        assert row["vae_latent_bytes"] == expected_by_id[row["id"]]["vae_latent_bytes"]
        assert row["text_embedding_bytes"] == expected_by_id[row["id"]]["text_embedding_bytes"]


def test_resume_redoes_only_unfinished_chunks(tmp_path, tiny_model_dir, demo_dir, latents_dir):
    output = tmp_path / "out"
    shutil.copytree(latents_dir, output)
    data, progress = output / "data", output / ".progress"
    untouched = {path.name: path.stat().st_mtime_ns for path in data.glob("*.parquet")}
    # A kill during chunk 1's encoding: its half-written shard sits in .progress, no marker.
    (progress / "chunk-00001.json").unlink()
    (data / "train-00001-of-00004.parquet").unlink()
    (progress / "train-00001-of-00004.parquet.tmp").write_bytes(b"PAR1 half a shard")
    # A kill between moving chunk 0's shard into data/ and writing its marker.
    (progress / "chunk-00000.json").unlink()
    for name in ("README.md", "skipped.jsonl"):
        (output / name).unlink()

    summary = make_builder(tiny_model_dir, data_dir=demo_dir).write_to_folder(output)

    assert summary.chunks_done == 2 and summary.finalized
    assert (output / "README.md").exists() and (output / "skipped.jsonl").read_text()
    for name, mtime in untouched.items():
        if not name.startswith(("train-00000", "train-00001")):
            assert (data / name).stat().st_mtime_ns == mtime, f"{name} was rewritten"
    assert sorted(path.name for path in data.iterdir()) == sorted(untouched)
    assert_same_rows(output, latents_dir)


def test_rerun_of_a_finished_folder_loads_no_model_and_changes_nothing(
    tmp_path, tiny_model_dir, demo_dir, latents_dir
):
    output = tmp_path / "out"
    shutil.copytree(latents_dir, output)
    builder = make_builder(tiny_model_dir, data_dir=demo_dir)
    summary = builder.write_to_folder(output)
    assert summary.chunks_done == 0 and summary.total_rows == NUM_DEMO_VIDEOS
    assert builder._encoders is None


def test_resume_with_different_settings_is_refused(tmp_path, tiny_model_dir, demo_dir, latents_dir):
    output = tmp_path / "out"
    shutil.copytree(latents_dir, output)
    with pytest.raises(ValueError, match=r"different settings \(height: 64 -> 128\)"):
        make_builder(tiny_model_dir, data_dir=demo_dir, height=128).write_to_folder(output)


def test_kill_9_mid_run_then_rerun_gives_every_row_once(tmp_path, tiny_model_dir, demo_dir):
    output = tmp_path / "out"
    # One input per shard and a slower size, so the kill lands while shards are still being written.
    command = slow_preprocess_command(tiny_model_dir, demo_dir, output)
    process = start_and_wait_for(command, output / ".progress" / "chunk-00002.json")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    markers = list((output / ".progress").glob("chunk-*.json"))
    assert 3 <= len(markers) < NUM_DEMO_VIDEOS + 6, "the kill should land mid-run"
    assert not (output / "README.md").exists()
    finished = {path.name: path.stat().st_mtime_ns for path in (output / "data").glob("*.parquet")}

    assert subprocess.run(command, capture_output=True).returncode == 0

    for name, mtime in finished.items():
        if (output / ".progress" / f"chunk-{name[6:11]}.json").stat().st_mtime_ns < mtime:
            continue  # a shard moved in before its marker was written is legitimately redone
        assert (output / "data" / name).stat().st_mtime_ns == mtime, f"finished shard {name} was redone"
    rows = rows_of(output)
    ids = sorted(row["id"] for row in rows)
    assert ids == [f"clip_{index:04d}.mp4" for index in range(NUM_DEMO_VIDEOS)]
    for row in rows:
        assert list(columns_to_tensor(row, "vae_latent").shape) == [16, 5, 16, 24]
