"""Interrupted preprocessing resumes where it stopped: no lost rows, no duplicates, no redone shards."""

import json
import os
import shutil
import signal
import subprocess

import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset

from fastvideo_hf.preprocess.writer import write_to_folder
from fastvideo_hf.schema import columns_to_tensor

from ..helpers import NUM_DEMO_VIDEOS, make_builder, slow_preprocess_command, start_and_wait_for


def rows_of(dataset_dir):
    return list(load_dataset(str(dataset_dir), split="train"))


def card(dataset_dir):
    return yaml.safe_load((dataset_dir / "README.md").read_text().split("---")[1])["fastvideo_hf"]


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
    # 4 chunks of 3 inputs; the bad inputs come last, so chunks 2 and 3 have no rows and the finished folder holds
    # train-00000-of-00002 and train-00001-of-00002. Mid-run, a shard has its chunk's name (train-0000i-of-00004).
    assert sorted(path.name for path in data.iterdir()) == [f"train-0000{i}-of-00002.parquet" for i in (0, 1)]
    finished = (data / "train-00000-of-00002.parquet").rename(data / "train-00000-of-00004.parquet").stat()
    # A kill between moving chunk 1's shard into data/ and writing its marker.
    (progress / "chunk-00001.json").unlink()
    (data / "train-00001-of-00002.parquet").rename(data / "train-00001-of-00004.parquet")
    # A kill during chunk 3's encoding: a half-written shard sits in .progress, no marker.
    (progress / "chunk-00003.json").unlink()
    (progress / "train-00003-of-00004.parquet.tmp").write_bytes(b"PAR1 half a shard")
    for name in ("README.md", "skipped.jsonl"):
        (output / name).unlink()

    summary = write_to_folder(make_builder(tiny_model_dir, data_dir=demo_dir), output)

    assert summary.chunks_done == 2 and summary.finalized
    assert (output / "README.md").exists() and (output / "skipped.jsonl").read_text()
    assert sorted(path.name for path in data.iterdir()) == [f"train-0000{i}-of-00002.parquet" for i in (0, 1)]
    kept = (data / "train-00000-of-00002.parquet").stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns), "chunk 0 was rewritten"
    assert_same_rows(output, latents_dir)
    assert (output / "skipped.jsonl").read_text() == (latents_dir / "skipped.jsonl").read_text()


def test_rerun_of_a_finished_folder_loads_no_model_and_changes_nothing(
    tmp_path, tiny_model_dir, demo_dir, latents_dir
):
    output = tmp_path / "out"
    shutil.copytree(latents_dir, output)
    builder = make_builder(tiny_model_dir, data_dir=demo_dir)
    summary = write_to_folder(builder, output)
    assert summary.chunks_done == 0 and summary.total_rows == NUM_DEMO_VIDEOS
    assert builder._encoders is None


def test_resume_with_different_settings_is_refused(tmp_path, tiny_model_dir, demo_dir, latents_dir):
    output = tmp_path / "out"
    shutil.copytree(latents_dir, output)
    with pytest.raises(ValueError, match=r"different settings \(height: 64 -> 128\)"):
        write_to_folder(make_builder(tiny_model_dir, data_dir=demo_dir, height=128), output)


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
    finished = {path.name: path.stat() for path in (output / "data").glob("*.parquet")}

    assert subprocess.run(command, capture_output=True).returncode == 0

    # the finished run renames its shards to contiguous names (chunks of bad inputs have none): a shard kept is
    # the same file (inode) with the same modification time, under whichever name
    kept = {path.stat().st_ino: path.stat().st_mtime_ns for path in (output / "data").glob("*.parquet")}
    for name, stat in finished.items():
        if (output / ".progress" / f"chunk-{name[6:11]}.json").stat().st_mtime_ns < stat.st_mtime_ns:
            continue  # a shard moved in before its marker was written is legitimately redone
        assert kept.get(stat.st_ino) == stat.st_mtime_ns, f"finished shard {name} was redone"
    assert sorted(path.name for path in (output / "data").iterdir()) == [
        f"train-{index:05d}-of-{NUM_DEMO_VIDEOS:05d}.parquet" for index in range(NUM_DEMO_VIDEOS)
    ]
    rows = rows_of(output)
    ids = sorted(row["id"] for row in rows)
    assert ids == [f"clip_{index:04d}.mp4" for index in range(NUM_DEMO_VIDEOS)]
    for row in rows:
        assert list(columns_to_tensor(row, "vae_latent").shape) == [16, 5, 16, 24]


def test_resume_with_another_video_backend_is_refused(tmp_path, tiny_model_dir, demo_dir, latents_dir):
    """decord and PyAV differ by up to 0.029 in the latent on 10-bit sources: one folder holds one decoder's rows."""
    output = tmp_path / "out"
    shutil.copytree(latents_dir, output)
    with pytest.raises(ValueError, match=r"different settings \(video_backend: \['decord', 'pyav'\] -> \['pyav'\]\)"):
        write_to_folder(make_builder(tiny_model_dir, data_dir=demo_dir, video_backend="pyav"), output)
    # a folder made before the decoder was recorded still resumes
    manifest_path = output / ".progress" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["video_backend"]
    manifest_path.write_text(json.dumps(manifest))
    assert write_to_folder(make_builder(tiny_model_dir, data_dir=demo_dir), output).chunks_done == 0


def test_shard_names_are_contiguous_when_a_chunk_has_no_rows(tmp_path, tiny_model_dir, demo_dir, monkeypatch):
    """One input per shard and a missing file in the middle: the shards are 00000 and 00001 of 00002, the same
    names and bytes from two processes, and a kill while they are renamed is finished by the same command."""
    from fastvideo_hf.preprocess.cli import main as preprocess_main

    from .test_preprocess_inputs import cli_args, demo_listing

    data = demo_listing(tmp_path / "raw", demo_dir, ["A red square.", "A blue disc."])
    listing = json.loads((data / "videos2caption.json").read_text())
    listing.insert(1, {"path": "gone.mp4", "cap": "A file that is not there."})
    (data / "videos2caption.json").write_text(json.dumps(listing))

    def run(output, rank=0, world_size=1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world_size))
        return preprocess_main(cli_args(tiny_model_dir, output, data_dir=data, samples_per_file=1))

    def shards(output):
        return {path.name: path.read_bytes() for path in sorted((output / "data").glob("*.parquet"))}

    one = tmp_path / "one"
    assert run(one) == 0
    assert list(shards(one)) == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert [pq.read_table(one / "data" / name)["id"].to_pylist() for name in shards(one)] == [
        ["clip_0000.mp4"],
        ["clip_0001.mp4"],
    ]
    assert [row["id"] for row in rows_of(one)] == ["clip_0000.mp4", "clip_0001.mp4"]
    assert card(one)["num_shards"] == 2

    two = tmp_path / "two"  # rank 1 holds only the chunk with no rows, finishes last and names the shards
    assert run(two, 0, 2) == 0 and not (two / "README.md").exists()
    assert run(two, 1, 2) == 0
    assert shards(two) == shards(one)

    # killed after the first rename, before the card: the same command finishes the folder
    (two / "data" / "train-00001-of-00002.parquet").rename(two / "data" / "train-00002-of-00003.parquet")
    (two / "README.md").unlink()
    assert run(two) == 0
    assert shards(two) == shards(one) and card(two)["num_shards"] == 2
