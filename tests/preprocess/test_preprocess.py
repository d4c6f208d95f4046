"""What users of `fastvideo-hf preprocess` rely on: exact latents and embeddings, skips, card, plain loading."""

import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from datasets import load_dataset
from diffusers import AutoencoderKLWan, WanPipeline

from fastvideo_hf.preprocess.cli import main as preprocess_main
from fastvideo_hf.preprocess.frame_sampling import resize_and_center_crop
from fastvideo_hf.preprocess.video_decode import decode_clip
from fastvideo_hf.preprocess.writer import write_to_folder
from fastvideo_hf.schema import columns_to_tensor
from fastvideo_hf.tools.demo_data import write_demo_dataset

from ..helpers import NUM_DEMO_VIDEOS, PREPROCESS_SETTINGS, make_builder, rows_by_id

EXPECTED_SKIPS = {
    "bad_empty.mp4": "empty file (0 bytes)",
    "bad_not_a_video.mp4": "cannot decode video",
    "bad_truncated.mp4": "cannot decode video",
    "bad_too_short.mp4": "too short",
    "bad_missing.mp4": "file not found",
    "bad_empty_caption.mp4": "empty caption",
}


def test_every_good_video_is_one_row_and_every_bad_input_is_skipped_with_its_reason(latents_dir):
    rows = rows_by_id(latents_dir)
    assert sorted(rows) == [f"clip_{index:04d}.mp4" for index in range(NUM_DEMO_VIDEOS)]
    skipped = [json.loads(line) for line in (latents_dir / "skipped.jsonl").read_text().splitlines()]
    assert {item["file_name"]: item["reason"] for item in skipped}.keys() == EXPECTED_SKIPS.keys()
    for item in skipped:
        assert item["reason"].startswith(EXPECTED_SKIPS[item["file_name"]]), item


def test_rows_are_read_from_each_folders_own_files_not_a_same_named_folders_cache(tmp_path, latents_dir):
    # Two folders named `out` with the same card and sizes, one latent value apart: what an earlier run (with
    # another H.264 encode of the demo clips) or another test leaves behind under the same datasets cache key.
    first, second = tmp_path / "a" / "out", tmp_path / "b" / "out"
    shutil.copytree(latents_dir, first)
    shutil.copytree(latents_dir, second)
    shard = sorted((second / "data").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    latents = table.column("vae_latent_bytes").to_pylist()
    changed = bytearray(latents[0])
    changed[:4] = torch.tensor([123.0]).numpy().tobytes()
    latents[0] = bytes(changed)
    pq.write_table(
        table.set_column(table.column_names.index("vae_latent_bytes"), "vae_latent_bytes", [latents]), shard
    )
    first_rows, second_rows = rows_by_id(first), rows_by_id(second)
    changed_id = table.column("id")[0].as_py()
    assert columns_to_tensor(second_rows[changed_id], "vae_latent").flatten()[0] == 123.0
    assert columns_to_tensor(first_rows[changed_id], "vae_latent").flatten()[0] != 123.0


def test_row_metadata_describes_the_sampled_clip(latents_dir):
    row = rows_by_id(latents_dir)["clip_0001.mp4"]
    assert row["caption"].startswith("A ") and row["media_type"] == "video"
    assert (row["width"], row["height"], row["num_frames"]) == (96, 64, 17)
    assert row["fps"] == 16.0 and row["duration_sec"] == pytest.approx(17 / 16)
    assert row["vae_latent_shape"] == [16, 5, 8, 12] and row["vae_latent_dtype"] == "float32"


def test_latent_equals_the_vae_posterior_mean_of_the_same_frames(latents_dir, tiny_model_dir, demo_dir):
    row = rows_by_id(latents_dir)["clip_0002.mp4"]
    clip = decode_clip(str(demo_dir / "videos" / "clip_0002.mp4"), fps=16, num_frames=17)
    pixels = resize_and_center_crop(clip.frames, PREPROCESS_SETTINGS["height"], PREPROCESS_SETTINGS["width"])
    vae = AutoencoderKLWan.from_pretrained(tiny_model_dir, subfolder="vae")
    with torch.no_grad():
        expected = vae.encode(pixels.unsqueeze(0)).latent_dist.mean[0]
    stored = columns_to_tensor(row, "vae_latent")
    assert stored.shape == expected.shape
    torch.testing.assert_close(stored, expected, rtol=1e-5, atol=1e-5)


def test_text_embedding_equals_wan_pipeline_encode_prompt_up_to_padding(latents_dir, tiny_model_dir):
    pipe = WanPipeline.from_pretrained(tiny_model_dir)
    for row in list(rows_by_id(latents_dir).values())[:3]:
        stored = columns_to_tensor(row, "text_embedding")
        expected, _ = pipe.encode_prompt(row["caption"], do_classifier_free_guidance=False, max_sequence_length=512)
        length = stored.shape[0]
        assert stored.shape == (length, 32) and 1 < length < 512
        torch.testing.assert_close(stored, expected[0, :length], rtol=1e-5, atol=1e-5)
        assert torch.all(expected[0, length:] == 0)


def test_bfloat16_storage_halves_the_bytes_and_keeps_values(tmp_path, tiny_model_dir, demo_dir, latents_dir):
    output = tmp_path / "bf16"
    write_to_folder(make_builder(tiny_model_dir, data_dir=demo_dir, storage_dtype="bfloat16"), output)
    full, half = rows_by_id(latents_dir), rows_by_id(output)
    assert full.keys() == half.keys()
    for key in full:
        assert half[key]["vae_latent_dtype"] == "bfloat16"
        assert len(half[key]["vae_latent_bytes"]) * 2 == len(full[key]["vae_latent_bytes"])
        restored = columns_to_tensor(half[key], "vae_latent")
        assert torch.equal(restored, columns_to_tensor(full[key], "vae_latent").to(torch.bfloat16))


def test_card_yaml_states_model_sizes_fps_dtype_and_counts(latents_dir, tiny_model_dir):
    header = (latents_dir / "README.md").read_text().split("---")[1]
    card = yaml.safe_load(header)
    assert card["configs"][0]["data_files"][0] == {"split": "train", "path": "data/train-*.parquet"}
    meta = card["fastvideo_hf"]
    assert meta["model"] == str(tiny_model_dir)
    assert (meta["height"], meta["width"], meta["num_frames"], meta["fps"]) == (64, 96, 17, 16.0)
    assert meta["storage_dtype"] == "float32" and meta["task"] == "t2v"
    assert (meta["num_inputs"], meta["num_rows"], meta["num_skipped"]) == (NUM_DEMO_VIDEOS + 6, NUM_DEMO_VIDEOS, 6)
    assert meta["latent_shape"] == [16, 5, 8, 12] and meta["latent_channels"] == 16 and meta["text_dim"] == 32
    assert len(meta["latents_mean"]) == len(meta["latents_std"]) == 16
    assert meta["vae_class"] == "AutoencoderKLWan" and meta["text_encoder_class"] == "UMT5EncoderModel"
    assert meta["skipped_reasons"]["cannot decode video"] == 2
    assert "bad_truncated.mp4" in (latents_dir / "README.md").read_text()


def test_folder_loads_with_plain_datasets_in_a_process_that_never_imports_fastvideo_hf(latents_dir):
    script = (
        "import sys, datasets\n"
        f"ds = datasets.load_dataset({str(latents_dir)!r}, split='train')\n"
        "assert 'fastvideo_hf' not in sys.modules\n"
        "print(len(ds), sorted(ds.column_names)[0])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(NUM_DEMO_VIDEOS), "caption"]


def test_cli_exits_1_with_a_message_when_no_input_is_usable(tmp_path, tiny_model_dir, caplog):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "broken.mp4").write_text("nope")
    (tmp_path / "videos2caption.json").write_text(json.dumps([{"path": "broken.mp4", "cap": "a cat"}]))
    code = preprocess_main(
        ["--pretrained_model_name_or_path", str(tiny_model_dir), "--data_dir", str(tmp_path)]
        + ["--output_dir", str(tmp_path / "out"), "--height", "64", "--width", "96", "--num_frames", "17"]
    )
    assert code == 1
    assert "no usable input" in caplog.text
    assert json.loads((tmp_path / "out" / "skipped.jsonl").read_text())["file_name"] == "broken.mp4"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num_frames", "16"], "4k\\+1"),
        (["--height", "70"], "multiples of 16"),
        (["--dataset_name", "x"], "exactly one input"),
    ],
)
def test_cli_refuses_bad_settings_clearly(tmp_path, tiny_model_dir, demo_dir, caplog, flags, message):
    argv = ["--pretrained_model_name_or_path", str(tiny_model_dir), "--data_dir", str(demo_dir)]
    argv += ["--output_dir", str(tmp_path / "out"), *flags]
    assert preprocess_main(argv) == 2
    assert any(__import__("re").search(message, record.message) for record in caplog.records)


def test_caption_lists_pick_one_caption_per_video_reproducibly(tmp_path, tiny_model_dir):
    write_demo_dataset(tmp_path, num_videos=2, seed=3)
    entries = json.loads((tmp_path / "videos2caption.json").read_text())
    for entry in entries:
        entry["cap"] = [f"{entry['path']} caption {index}" for index in range(5)]
    (tmp_path / "videos2caption.json").write_text(json.dumps(entries))
    picks = []
    for run in range(2):
        write_to_folder(make_builder(tiny_model_dir, data_dir=tmp_path), tmp_path / f"out{run}")
        picks.append({key: row["caption"] for key, row in rows_by_id(tmp_path / f"out{run}").items()})
    assert picks[0] == picks[1]
    for key, caption in picks[0].items():
        assert caption.startswith(f"{key} caption ")


def test_the_builder_also_runs_through_datasets_own_download_and_prepare(
    tmp_path, tiny_model_dir, demo_dir, latents_dir
):
    builder = make_builder(tiny_model_dir, data_dir=demo_dir, cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare(str(tmp_path / "plain"), file_format="parquet")
    shards = [str(path) for path in (tmp_path / "plain").glob("*.parquet")]
    plain = {row["id"]: row for row in load_dataset("parquet", data_files=shards, split="train")}
    expected = rows_by_id(latents_dir)
    assert plain.keys() == expected.keys()
    for key, row in plain.items():
        assert row["vae_latent_bytes"] == expected[key]["vae_latent_bytes"]
