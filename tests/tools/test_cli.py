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


# A mixed folder small enough for a test: (fps, width, height, seconds, rotation) as shown, and still images
# (extension, width, height, EXIF orientation). Buckets are 32x48, 48x32 and 48x48; frames 1, 9 and 17 at 16 fps.
SMALL_MIXED_FORMATS = [
    (8, 48, 32, 2.5, 0),  # landscape 2.5 s: two back-to-back 17-frame clips, from 0 and 1.0625 s
    (12, 32, 48, 1.0, 90),  # portrait stored turned (a phone clip), 1 s: too short for 17 frames, one of 9
    (10, 40, 40, 2.0, 0),  # square 2 s: one 17-frame clip (a second would need 2.06 s)
]
SMALL_MIXED_IMAGES = [("png", 48, 32, 0), ("png", 44, 44, 0), ("jpg", 32, 48, 6)]
SMALL_MIXED_FLAGS = ["--resolution_buckets", "32x48,48x32,48x48", "--frame_buckets", "1,9,17"]


def test_demo_data_mixed_writes_turned_portraits_long_clips_and_exif_images(tmp_path):
    from PIL import Image

    from fastvideo_hf.tools.demo_data import MIXED_FORMATS, MIXED_IMAGES

    assert cli_main(["demo-data", "--output", str(tmp_path), "--num_videos", "1", "--mixed"]) == 0
    entries = json.loads((tmp_path / "videos2caption.json").read_text())
    metadata = [json.loads(line) for line in (tmp_path / "videos" / "metadata.jsonl").read_text().splitlines()]
    assert len(entries) == 1 + len(MIXED_FORMATS) + len(MIXED_IMAGES)
    assert len({entry["cap"][0] for entry in entries}) == len(entries), "captions must tell inputs apart"
    # the videofolder lists videos only; images are in the merged folder's listing
    assert [row["file_name"] for row in metadata] == [entry["path"] for entry in entries[: 1 + len(MIXED_FORMATS)]]
    videos = entries[1 : 1 + len(MIXED_FORMATS)]
    for entry, (fps, width, height, seconds, _rotation) in zip(videos, MIXED_FORMATS, strict=True):
        clip = decode_clip(str(tmp_path / "videos" / entry["path"]), fps=8, num_frames=5)
        assert (clip.source_width, clip.source_height) == (width, height), "as a player shows it"
        assert clip.source_num_frames == round(fps * seconds) == entry["num_frames"]
    assert {seconds for *_, seconds, _ in MIXED_FORMATS} >= {1.0, 12.0}
    assert any(rotation for *_, rotation in MIXED_FORMATS), "one clip is stored turned, as phones store them"
    for entry, (kind, width, height, orientation) in zip(entries[1 + len(MIXED_FORMATS) :], MIXED_IMAGES, strict=True):
        with Image.open(tmp_path / "videos" / entry["path"]) as image:
            assert image.format == {"png": "PNG", "jpg": "JPEG"}[kind]
            stored = (height, width) if orientation == 6 else (width, height)
            assert image.size == stored and image.getexif().get(0x0112, 0) == orientation


def test_mixed_folder_lands_in_buckets_and_inspect_counts_rows_and_clips(tmp_path, tiny_model_dir, capsys):
    """Every input of a small mixed folder lands in the bucket nearest its aspect as shown (the turned clip and
    the EXIF-tagged JPEG portrait, not landscape), long clips give back-to-back clips, the 1 s clip the 9-frame
    bucket; ``inspect`` prints those counts from the card, and the row-counted fallback agrees with the card."""
    from datasets import load_dataset

    from fastvideo_hf.dataset_card import read_card_metadata
    from fastvideo_hf.preprocess.cli import main as preprocess_main
    from fastvideo_hf.tools.dataset_summary import bucket_rows_of
    from fastvideo_hf.tools.demo_data import write_demo_dataset

    raw, out = tmp_path / "raw", tmp_path / "out"
    write_demo_dataset(
        raw, num_videos=0, mixed=True, mixed_formats=SMALL_MIXED_FORMATS, mixed_images=SMALL_MIXED_IMAGES
    )
    argv = ["--pretrained_model_name_or_path", str(tiny_model_dir), "--data_dir", str(raw), "--output_dir", str(out)]
    argv += [*SMALL_MIXED_FLAGS, "--frame_extraction", "chunk", "--fps", "16", "--samples_per_file", "3"]
    assert preprocess_main(argv) == 0

    columns = ["id", "file_name", "media_type", "num_frames", "height", "width", "vae_latent_shape"]
    rows = load_dataset(str(out), split="train").select_columns(columns)
    landed = sorted((row["id"], row["num_frames"], row["height"], row["width"]) for row in rows)
    assert landed == [
        ("mixed_00_48x32_2.5s.mp4@0.000", 17, 32, 48),
        ("mixed_00_48x32_2.5s.mp4@1.062", 17, 32, 48),
        ("mixed_01_32x48_1s.mp4@0.000", 9, 48, 32),
        ("mixed_02_40x40_2s.mp4@0.000", 17, 48, 48),
        ("still_00_48x32.png", 1, 32, 48),
        ("still_01_44x44.png", 1, 48, 48),
        ("still_02_32x48.jpg", 1, 48, 32),
    ]
    assert {row["file_name"]: row["media_type"] for row in rows}["still_02_32x48.jpg"] == "image"

    card_buckets = read_card_metadata(out).bucket_rows
    expected = {(17, 32, 48): 2, (9, 48, 32): 1, (17, 48, 48): 1, (1, 32, 48): 1, (1, 48, 32): 1, (1, 48, 48): 1}
    assert {(b["num_frames"], b["height"], b["width"]): b["rows"] for b in card_buckets} == expected
    assert sorted(map(str, bucket_rows_of(rows))) == sorted(map(str, card_buckets)), "fallback agrees with card"

    capsys.readouterr()
    assert cli_main(["inspect", str(out)]) == 0
    out_text = capsys.readouterr().out
    assert "rows:            7" in out_text and "media:           3 image, 4 video" in out_text
    assert "clips per video: {1: 2, 2: 1} (clips: videos; 3 videos, most: mixed_00_48x32_2.5s.mp4 with 2)" in out_text
    assert "buckets:         6" in out_text
    table = [line.split() for line in out_text.splitlines() if line.startswith("  ")]
    assert table[0] == ["frames", "height", "width", "rows", "latent", "(C", "x", "T", "x", "H", "x", "W)"]
    assert table[1] == ["17", "32", "48", "2", "16x5x4x6"], "most rows first"
    assert sorted(tuple(row) for row in table[2:]) == [
        ("1", "32", "48", "1", "16x1x4x6"),
        ("1", "48", "32", "1", "16x1x6x4"),
        ("1", "48", "48", "1", "16x1x6x6"),
        ("17", "48", "48", "1", "16x5x6x6"),
        ("9", "48", "32", "1", "16x3x6x4"),
    ]
    assert "chunk extraction" in out_text


def refusal_line(capsys, command: str) -> str:
    """The one line a refused setting prints last on stderr (after any progress bar), nothing on stdout."""
    captured = capsys.readouterr()
    last = captured.err.rstrip("\n").split("\n")[-1]
    assert captured.out == "" and last.startswith(f"fastvideo-hf {command}: error: "), captured
    return last


def test_inspect_says_what_a_folder_is_not(tmp_path, demo_dir, capsys):
    """A folder of videos was "Column 'vae_latent_shape' doesn't exist", a missing path a Hub lookup."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert cli_main(["inspect", str(demo_dir)]) == 2
    assert f"{demo_dir} is not a preprocess output folder: it has no data/*.parquet" in refusal_line(capsys, "inspect")
    assert cli_main(["inspect", str(tmp_path / "missing")]) == 2
    assert "missing: no such folder (pass the --output_dir of a preprocess run)" in refusal_line(capsys, "inspect")
    (tmp_path / "other" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "other" / "data" / "train-0.parquet")
    assert cli_main(["inspect", str(tmp_path / "other")]) == 2
    assert "holds Parquet without the latent columns" in refusal_line(capsys, "inspect")


def test_export_vsa_refuses_a_missing_or_lora_folder_before_writing(tmp_path, capsys):
    lora = tmp_path / "lora"
    lora.mkdir()
    for folder, message in [(tmp_path / "missing", "no such folder"), (lora, "not a full finetune output")]:
        assert cli_main(["export-vsa", "--input", str(folder), "--output", str(tmp_path / "out")]) == 2
        assert message in refusal_line(capsys, "export-vsa")
    assert not (tmp_path / "out").exists()


def write_loss_log(folder, losses):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(folder)
    for step, loss in enumerate(losses, start=1):
        writer.add_scalar("loss", loss, step)
    writer.close()


def test_plot_loss_labels_a_short_run_by_the_steps_it_averaged(tmp_path, capsys):
    """A 6-step run with the default window of 10 was "first 10 steps" and "last 10 steps", the same 6 steps."""
    write_loss_log(tmp_path / "logs" / "run", [1.0, 0.9, 0.8, 0.4, 0.3, 0.2])
    assert cli_main(["plot-loss", f"short={tmp_path / 'logs'}", "--output", str(tmp_path / "loss.png")]) == 0
    printed = capsys.readouterr().out.splitlines()[0]
    assert printed == (
        "short: loss 0.9000 (mean of the first 3 steps) -> 0.3000 (mean of the last 3 steps; 6 steps logged)"
    )
    write_loss_log(tmp_path / "one" / "run", [0.5])
    assert cli_main(["plot-loss", f"one={tmp_path / 'one'}", "--output", str(tmp_path / "one.png")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "one: loss 0.5000 (1 step logged)"


def test_plot_loss_and_demo_data_refuse_in_one_line(tmp_path, capsys):
    assert cli_main(["plot-loss", str(tmp_path / "missing"), "--output", str(tmp_path / "x.png")]) == 2
    assert "no such folder" in refusal_line(capsys, "plot-loss")
    assert cli_main(["plot-loss", str(tmp_path), "--output", str(tmp_path / "x.png")]) == 2
    assert "no 'loss' scalars under" in refusal_line(capsys, "plot-loss")
    assert cli_main(["plot-loss", str(tmp_path), "--output", str(tmp_path / "x.png"), "--window", "0"]) == 2
    assert "--window must be at least 1" in refusal_line(capsys, "plot-loss")
    assert cli_main(["demo-data", "--output", str(tmp_path / "demo"), "--num_videos", "0"]) == 2
    assert "--num_videos must be at least 1" in refusal_line(capsys, "demo-data")
    assert not (tmp_path / "demo").exists()


def test_an_output_path_of_the_wrong_kind_is_refused_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    assert cli_main(["tiny-model", "--output", str(a_file)]) == 2
    assert refusal_line(capsys, "tiny-model").endswith(f"--output {a_file} is a file: name a folder to write into")
    assert cli_main(["demo-data", "--output", str(a_file / "demo"), "--num_videos", "1"]) == 2
    assert f"{a_file} is a file, not a folder" in refusal_line(capsys, "demo-data")
    plan = ["plan", "--pretrained_model_name_or_path", "wan2.1-t2v-1.3b", "--json"]
    assert cli_main([*plan, str(tmp_path)]) == 2
    assert "name a .json file" in refusal_line(capsys, "plan")
    assert cli_main(["plot-loss", str(tmp_path), "--output", str(tmp_path / "curve.txt")]) == 2
    assert "name a .png file (got .txt)" in refusal_line(capsys, "plot-loss")
    assert cli_main(["plot-loss", str(tmp_path), "--output", str(tmp_path)]) == 2
    assert "name a .png file" in refusal_line(capsys, "plot-loss")
    assert a_file.read_text() == "not a folder"
