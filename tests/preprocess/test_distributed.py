"""Several processes (torchrun, gloo on CPU) write disjoint shards that add up to the one-process dataset."""

import subprocess
import sys

import pyarrow.parquet as pq

from ..helpers import PREPROCESS_SETTINGS


def test_two_process_torchrun_equals_one_process(tmp_path, tiny_model_dir, demo_dir, latents_dir):
    output = tmp_path / "two_procs"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "fastvideo_hf.preprocess"]
    command += ["--pretrained_model_name_or_path", str(tiny_model_dir), "--data_dir", str(demo_dir)]
    command += ["--output_dir", str(output), "--samples_per_file", "3"]
    for key, value in PREPROCESS_SETTINGS.items():
        command += [f"--{key}", str(value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[rank 0]" in result.stderr and "[rank 1]" in result.stderr

    one = sorted(path.name for path in (latents_dir / "data").glob("*.parquet"))
    two = sorted(path.name for path in (output / "data").glob("*.parquet"))
    assert one == two
    for name in one:
        expected = pq.read_table(latents_dir / "data" / name).to_pylist()
        got = pq.read_table(output / "data" / name).to_pylist()
        assert got == expected, name
    assert (output / "skipped.jsonl").read_text() == (latents_dir / "skipped.jsonl").read_text()
    assert (output / "README.md").exists()
