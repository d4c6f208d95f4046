"""Settings, builders and runners shared by the tests."""

import subprocess
import sys
import time
from pathlib import Path

from datasets import load_dataset

from fastvideo_hf.preprocess.builder import VideoLatents
from fastvideo_hf.preprocess.sources import HFDatasetSource, MergedFolderSource, VideoInput

# Small enough for a CPU, large enough that the VAE compresses time (17 frames -> 5 latent frames).
PREPROCESS_SETTINGS = {"height": 64, "width": 96, "num_frames": 17, "fps": 16.0}
NUM_DEMO_VIDEOS = 6


def make_builder(model_dir, samples_per_file=3, **overrides) -> VideoLatents:
    """A T2V builder over the tiny model with the test settings; ``overrides`` name the input and any changes."""
    settings = {"task": "t2v", **PREPROCESS_SETTINGS, **overrides}
    if settings.get("data_dir") is not None:
        settings["data_dir"] = str(settings["data_dir"])
    return VideoLatents(pretrained_model_name_or_path=str(model_dir), samples_per_file=samples_per_file, **settings)


def every_input(source: HFDatasetSource | MergedFolderSource) -> list[VideoInput]:
    """Every input of ``source`` as one chunk built at once: the eager listing its lazy chunk plans must match."""
    plan = source.plan(sys.maxsize)
    return plan[0] if len(plan) else []


def decoded_first_frame(path, height, width, num_frames, fps):
    """The conditioning image preprocessing takes from a clip: its first sampled frame after resize and crop."""
    from fastvideo_hf.preprocess.frame_sampling import first_frame_image, resize_and_center_crop
    from fastvideo_hf.preprocess.video_decode import decode_clip

    clip = decode_clip(str(path), fps=fps, num_frames=num_frames)
    return first_frame_image(resize_and_center_crop(clip.frames, height, width))


REPO = Path(__file__).resolve().parents[1]


def run_training(script, model_dir, dataset_dir, output_dir, *extra, nproc=1, check=True, env=None):
    """Run a training script as users do (torchrun gives Accelerate MULTI_CPU with gloo for nproc > 1)."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    command = launcher + [str(REPO / "training_scripts" / script)]
    command += ["--pretrained_model_name_or_path", str(model_dir), "--dataset_name", str(dataset_dir)]
    command += ["--output_dir", str(output_dir), "--report_to", "none", "--seed", "7", *map(str, extra)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def rows_by_id(dataset_dir):
    """The rows on disk, by id. Plain ``load_dataset(FOLDER)`` keys its cache on the folder's name and card, not
    its files, so it can return another folder's rows (a suite once compared a fresh encode against the cached
    rows of an earlier run's ``out``); the shards as Parquet files are keyed by path and modification time."""
    shards = sorted(str(path) for path in (dataset_dir / "data").glob("*.parquet"))
    return {row["id"]: row for row in load_dataset("parquet", data_files=shards, split="train")}


def slow_preprocess_command(model_dir, data_dir, output_dir, *extra) -> list[str]:
    """``python -m fastvideo_hf.preprocess`` with one input per shard at a size slow enough to kill mid-run."""
    settings = {**PREPROCESS_SETTINGS, "height": 128, "width": 192}
    command = [sys.executable, "-m", "fastvideo_hf.preprocess", "--pretrained_model_name_or_path", str(model_dir)]
    command += ["--data_dir", str(data_dir), "--output_dir", str(output_dir), "--samples_per_file", "1", *extra]
    for key, value in settings.items():
        command += [f"--{key}", str(value)]
    return command


def start_and_wait_for(command: list[str], path: Path, timeout: float = 120) -> subprocess.Popen:
    """Start ``command`` and return as soon as ``path`` exists, with the process still running."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None and time.time() < deadline, "the process ended before it could be killed"
        time.sleep(0.02)
    return process
