"""The `fastvideo-hf` command: tiny-model and demo-data give real files that the normal loaders read."""

import json
import subprocess
import sys

import torch
from diffusers import WanPipeline

from fastvideo_hf.preprocess.video_decode import decode_clip
from fastvideo_hf.tools.cli import main as cli_main
from fastvideo_hf.tools.demo_data import FORMATS


def test_tiny_model_is_a_diffusers_wan_pipeline_that_generates(tmp_path):
    assert cli_main(["tiny-model", "--task", "t2v", "--output", str(tmp_path / "tiny")]) == 0
    pipe = WanPipeline.from_pretrained(tmp_path / "tiny")
    assert type(pipe.transformer).__name__ == "WanTransformer3DModel"
    assert type(pipe.vae).__name__ == "AutoencoderKLWan"
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    video = pipe(
        "a red circle",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=2,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert video.shape == (1, 5, 3, 32, 32) and torch.isfinite(video).all()


def test_demo_data_writes_real_h264_clips_in_both_layouts(tmp_path):
    assert cli_main(["demo-data", "--output", str(tmp_path), "--num_videos", "6"]) == 0
    entries = json.loads((tmp_path / "videos2caption.json").read_text())
    metadata = [json.loads(line) for line in (tmp_path / "videos" / "metadata.jsonl").read_text().splitlines()]
    assert [entry["path"] for entry in entries] == [row["file_name"] for row in metadata]
    assert len({row["caption"] for row in metadata}) == 6, "captions must tell clips apart"
    for entry, (fps, width, height, _) in zip(entries, FORMATS, strict=True):
        clip = decode_clip(str(tmp_path / "videos" / entry["path"]), fps=16, num_frames=17)
        assert (clip.source_width, clip.source_height) == (width, height)
        assert abs(clip.source_fps - fps) < 0.01 and clip.source_num_frames == entry["num_frames"]
        assert clip.frames.float().std() > 5, "frames should show a shape, not a flat colour"


def test_console_script_help_lists_every_preprocess_flag():
    result = subprocess.run(
        [sys.executable, "-m", "fastvideo_hf.tools.cli", "preprocess", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for flag in ["--data_dir", "--dataset_name", "--output_dir", "--num_frames", "--storage_dtype", "--push_to_hub"]:
        assert flag in result.stdout


def test_inspect_summarizes_rows_shapes_and_skips(latents_dir, capsys):
    assert cli_main(["inspect", str(latents_dir)]) == 0
    out = capsys.readouterr().out
    assert "rows:            6" in out and "16x5x8x12" in out and "skipped inputs:  6" in out
