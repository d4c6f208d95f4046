"""Resolution and frame buckets and clips from long videos, through the CLI on real mp4 files.

A mixed folder (landscape, portrait and square clips of several lengths, one of them a portrait phone clip stored
turned) is preprocessed with buckets; the tests check where each input landed, how many clips a long video gives
and where they start, that ids are stable across runs and process counts, and what the card records.
"""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset
from PIL import Image as PILImage

from fastvideo_hf.preprocess.buckets import auto_resolution_buckets, choose_resolution_bucket, plan_clips
from fastvideo_hf.preprocess.cli import main as preprocess_main
from fastvideo_hf.schema import columns_to_tensor
from fastvideo_hf.video_writer import write_mp4

BUCKETS = "64x96,96x64,80x80"
FPS = 16


def moving_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """A bright square crossing a dark frame: each frame differs, so a wrong sample time shows."""
    rng = np.random.default_rng(seed)
    frames = np.full((num_frames, height, width, 3), 30, dtype=np.uint8)
    frames[..., rng.integers(0, 3)] = 60
    for index in range(num_frames):
        x = (index * 3) % max(1, width - 16)
        frames[index, height // 3 : height // 3 + 16, x : x + 16] = 230
    return frames


# name: (shown height, width, frames at 16 fps, rotation of the stored file)
INPUTS = {
    "landscape_long.mp4": (72, 112, 40, 0),  # 2.5 s: chunk gives two 17-frame clips (0 and 1.0625 s)
    "portrait.mp4": (112, 72, 17, 0),
    "phone_portrait.mp4": (112, 72, 17, 90),  # stored landscape + a quarter turn: shown portrait
    "square_short.mp4": (80, 80, 12, 0),  # 0.75 s: too short for 17 frames, fills the 9-frame bucket
    "tiny.mp4": (32, 48, 17, 0),
    "too_short.mp4": (64, 96, 6, 0),  # shorter than the smallest video bucket (9)
}


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "videos").mkdir()
    entries = []
    for seed, (name, (height, width, num_frames, rotation)) in enumerate(INPUTS.items()):
        write_mp4(moving_frames(num_frames, height, width, seed), folder / "videos" / name, FPS, rotation=rotation)
        entries.append({"path": name, "cap": f"Clip {name}."})
    (folder / "videos2caption.json").write_text(json.dumps(entries))
    return folder


def bucket_args(model_dir, data_dir, output_dir, *extra) -> list[str]:
    argv = ["--pretrained_model_name_or_path", str(model_dir), "--data_dir", str(data_dir)]
    argv += ["--output_dir", str(output_dir), "--fps", str(FPS), "--samples_per_file", "2"]
    argv += ["--resolution_buckets", BUCKETS, "--frame_buckets", "1,9,17", *extra]
    return argv


def shard_rows(output_dir):
    shards = sorted(str(path) for path in (output_dir / "data").glob("*.parquet"))
    return {row["id"]: row for row in load_dataset("parquet", data_files=shards, split="train")}


def card(output_dir):
    return yaml.safe_load((output_dir / "README.md").read_text().split("---")[1])["fastvideo_hf"]


@pytest.fixture(scope="module")
def chunked(tmp_path_factory, tiny_model_dir, mixed_dir):
    output = tmp_path_factory.mktemp("chunked") / "out"
    assert preprocess_main(bucket_args(tiny_model_dir, mixed_dir, output, "--frame_extraction", "chunk")) == 0
    return output


def test_each_input_lands_in_the_bucket_nearest_its_aspect_with_the_clips_it_fills(chunked):
    rows = shard_rows(chunked)
    landed = {row_id: (row["num_frames"], row["height"], row["width"]) for row_id, row in rows.items()}
    assert landed == {
        "landscape_long.mp4@0.000": (17, 64, 96),
        "landscape_long.mp4@1.062": (17, 64, 96),  # the second back-to-back clip starts at 17/16 s
        "portrait.mp4@0.000": (17, 96, 64),
        "phone_portrait.mp4@0.000": (17, 96, 64),  # rotation applied before choosing the bucket
        "square_short.mp4@0.000": (9, 80, 80),
        "tiny.mp4@0.000": (17, 64, 96),  # upscaled to cover (no --bucket_no_upscale)
    }
    assert rows["landscape_long.mp4@1.062"]["clip_start_sec"] == pytest.approx(17 / 16)
    for row in rows.values():
        latent = columns_to_tensor(row, "vae_latent")
        assert list(latent.shape) == [16, (row["num_frames"] - 1) // 4 + 1, row["height"] // 8, row["width"] // 8]
    skipped = [json.loads(line) for line in (chunked / "skipped.jsonl").read_text().splitlines()]
    assert [(item["id"], item["reason"].split(":")[0]) for item in skipped] == [("too_short.mp4", "too short")]
    assert "9 frames at 16 fps" in skipped[0]["reason"]


def test_a_clip_decodes_the_frames_a_player_shows_from_its_start(chunked, mixed_dir):
    from fastvideo_hf.preprocess.video_decode import decode_clip

    source = str(mixed_dir / "videos" / "landscape_long.mp4")
    second = decode_clip(source, FPS, 17, start=17 / 16)
    assert second.indices == list(range(17, 34))  # 16 fps source: the frames shown at 17/16 s + j/16
    whole = decode_clip(source, FPS, 34)
    assert np.array_equal(second.frames.numpy(), whole.frames[17:].numpy())


def test_card_records_buckets_and_rows_per_bucket_and_plain_load_dataset_reads_it(chunked):
    metadata = card(chunked)
    assert metadata["resolution_buckets"] == [[64, 96], [80, 80], [96, 64]]
    assert metadata["frame_buckets"] == [1, 9, 17] and metadata["frame_extraction"] == "chunk"
    counts = {(b["num_frames"], b["height"], b["width"]): b["rows"] for b in metadata["bucket_rows"]}
    assert counts == {(17, 64, 96): 3, (17, 96, 64): 2, (9, 80, 80): 1}
    assert metadata["bucket_rows"][0]["latent_shape"] == [16, 5, 8, 12]
    assert metadata["num_rows"] == 6 and metadata["num_inputs"] == 6
    rows = load_dataset(str(chunked), split="train", cache_dir=str(chunked.parent / "cache"))
    assert len(rows) == 6 and "clip_start_sec" in rows.column_names


def test_ids_are_stable_across_runs_and_process_counts(tmp_path, tiny_model_dir, mixed_dir, chunked, monkeypatch):
    output = tmp_path / "two_ranks"
    argv = bucket_args(tiny_model_dir, mixed_dir, output, "--frame_extraction", "chunk")
    for rank in (1, 0):  # two processes' shards, one after the other; the last one writes the card
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert preprocess_main(argv) == 0
    one = sorted(path.name for path in (chunked / "data").glob("*.parquet"))
    assert one == sorted(path.name for path in (output / "data").glob("*.parquet"))
    for name in one:
        assert pq.read_table(output / "data" / name).to_pylist() == pq.read_table(chunked / "data" / name).to_pylist()
    assert card(output)["bucket_rows"] == card(chunked)["bucket_rows"]


def test_uniform_clips_have_evenly_spaced_starts(tmp_path, tiny_model_dir, mixed_dir):
    data = tmp_path / "one_long"
    (data / "videos").mkdir(parents=True)
    (data / "videos" / "long.mp4").symlink_to(mixed_dir / "videos" / "landscape_long.mp4")
    (data / "videos2caption.json").write_text(json.dumps([{"path": "long.mp4", "cap": "A long clip."}]))
    output = tmp_path / "uniform"
    argv = bucket_args(tiny_model_dir, data, output, "--frame_extraction", "uniform", "--clips_per_video", "3")
    assert preprocess_main(argv) == 0
    rows = shard_rows(output)
    # 2.5 s video, 17-frame clips (1 s): the last start that fits is just under 1.5 s, to the millisecond
    assert sorted(rows) == ["long.mp4@0.000", "long.mp4@0.750", "long.mp4@1.499"]
    assert sorted(row["clip_start_sec"] for row in rows.values()) == [0.0, 0.75, 1.499]


def test_no_upscale_sends_small_inputs_to_a_bucket_they_cover_or_skips_them(tmp_path, tiny_model_dir, mixed_dir):
    data = tmp_path / "small"
    (data / "videos").mkdir(parents=True)
    for name in ("tiny.mp4", "square_short.mp4"):
        (data / "videos" / name).symlink_to(mixed_dir / "videos" / name)
    listing = [{"path": name, "cap": "A clip."} for name in ("tiny.mp4", "square_short.mp4")]
    (data / "videos2caption.json").write_text(json.dumps(listing))
    mixed_dir = data
    output = tmp_path / "no_upscale"
    argv = bucket_args(tiny_model_dir, mixed_dir, output, "--bucket_no_upscale")
    argv[argv.index("--resolution_buckets") + 1] = "64x96,96x64,80x80,32x48"
    assert preprocess_main(argv) == 0
    rows = shard_rows(output)
    assert (rows["tiny.mp4"]["height"], rows["tiny.mp4"]["width"]) == (32, 48)
    assert (rows["square_short.mp4"]["height"], rows["square_short.mp4"]["width"]) == (80, 80)
    assert card(output)["bucket_no_upscale"] is True

    output = tmp_path / "no_upscale_skip"
    assert preprocess_main(bucket_args(tiny_model_dir, mixed_dir, output, "--bucket_no_upscale")) == 0
    skipped = {item["id"]: item["reason"] for item in map(json.loads, (output / "skipped.jsonl").open())}
    assert skipped["tiny.mp4"].startswith("too small: 48x32 is smaller than every resolution bucket")


def test_the_manifest_pins_the_buckets(tmp_path, tiny_model_dir, mixed_dir, chunked, caplog):
    import shutil

    output = tmp_path / "copy"
    shutil.copytree(chunked, output)
    argv = bucket_args(tiny_model_dir, mixed_dir, output, "--frame_extraction", "head")
    assert preprocess_main(argv) == 2
    assert "different settings (buckets:" in caplog.text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--height", "64"], "give either --height/--width (one bucket) or --resolution_buckets"),
        (["--num_frames", "17"], "give either --num_frames (one frame bucket) or --frame_buckets"),
        (["--frame_extraction", "uniform"], "--frame_extraction uniform needs --clips_per_video"),
        (["--clips_per_video", "2"], "--clips_per_video applies only to --frame_extraction uniform"),
        (["--bucket_step", "32"], "--bucket_step and --aspect_range apply only to --max_area"),
    ],
)
def test_bad_bucket_settings_exit_2_with_one_line(tmp_path, tiny_model_dir, mixed_dir, caplog, extra, message):
    assert preprocess_main(bucket_args(tiny_model_dir, mixed_dir, tmp_path / "out", *extra)) == 2
    assert message in caplog.text
    assert not (tmp_path / "out" / "data").exists() or not any((tmp_path / "out" / "data").iterdir())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--resolution_buckets", "64x90"], "--resolution_buckets must be positive multiples of 16"),
        (["--resolution_buckets", "64by96"], "--resolution_buckets takes HEIGHTxWIDTH pairs"),
        (["--frame_buckets", "1,16"], "--frame_buckets must all be 4k+1"),
        (["--frame_buckets", "1"], "--frame_buckets needs a video bucket"),
        (["--max_area", "6144", "--bucket_step", "24"], "--bucket_step must be a positive multiple of 16"),
        (["--max_area", "6144", "--aspect_range", "2,1"], "--aspect_range needs 0 < MIN <= MAX"),
    ],
)
def test_bad_bucket_values_exit_2(tmp_path, tiny_model_dir, mixed_dir, caplog, flags, message):
    argv = ["--pretrained_model_name_or_path", str(tiny_model_dir), "--data_dir", str(mixed_dir)]
    assert preprocess_main([*argv, "--output_dir", str(tmp_path / "out"), *flags]) == 2
    assert message in caplog.text


def test_automatic_buckets_follow_musubi_and_keep_the_largest_per_aspect():
    buckets = auto_resolution_buckets(399360, 16, (0.5, 2.0))
    assert (480, 832) in buckets and (832, 480) in buckets and (624, 640) in buckets  # 624 x 640 = the area
    assert all(h % 16 == 0 and w % 16 == 0 and h * w <= 399360 and 0.5 <= w / h <= 2.0 for h, w in buckets)
    aspects = [w / h for h, w in buckets]
    assert len(set(aspects)) == len(aspects)  # one bucket per aspect
    assert min(h * w for h, w in buckets) > 0.9 * 399360  # all near the area, none a small same-aspect copy
    height, width = choose_resolution_bucket(buckets, 1080, 1920)
    assert width / height == pytest.approx(16 / 9, rel=0.03)
    assert choose_resolution_bucket(buckets, 1920, 1080) == (width, height)  # portrait: the same bucket turned


def test_frame_bucket_is_the_largest_the_video_fills():
    times = np.arange(60) / 24  # 2.5 s at 24 fps
    assert plan_clips(times, 16, [17, 33, 49, 81]).num_frames == 33  # 49 frames need 3 s
    assert plan_clips(times, 16, [17], "chunk").starts == [0.0, 17 / 16]  # a third would end at 3.125 s
    assert plan_clips(times, 16, [33, 81], "chunk").starts == [0.0]


def test_clips_that_would_sample_the_same_frames_are_dropped_and_counted():
    exact = plan_clips(np.arange(17) / 16, 16, [17], "uniform", 5)  # a video exactly as long as its bucket
    assert (exact.starts, exact.duplicates) == ([0.0], 4)
    one_more = plan_clips(np.arange(18) / 16, 16, [17], "uniform", 5)  # one frame to spare: two distinct clips
    assert (one_more.starts, one_more.duplicates) == ([0.0, 0.093], 3)
    assert plan_clips(np.arange(40) / 16, 16, [17], "uniform", 5).duplicates == 0


def folder_of(tmp_path, mixed_dir, *names: str, images: tuple[str, ...] = ()):
    """A merged folder listing ``names`` (linked from the mixed folder) and still images ``images``."""
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    for name in names:
        (data / "videos" / name).symlink_to(mixed_dir / "videos" / name)
    for name in images:
        PILImage.fromarray(moving_frames(1, 64, 96, 0)[0]).save(data / "videos" / name)
    listing = [{"path": name, "cap": f"Clip {name}."} for name in (*names, *images)]
    (data / "videos2caption.json").write_text(json.dumps(listing))
    return data


def test_uniform_clips_never_repeat_frames_and_the_card_says_how_many_were_dropped(
    tmp_path, tiny_model_dir, mixed_dir, caplog
):
    data = folder_of(tmp_path, mixed_dir, "landscape_long.mp4", "portrait.mp4")
    output = tmp_path / "uniform"
    argv = bucket_args(tiny_model_dir, data, output, "--frame_extraction", "uniform", "--clips_per_video", "3")
    assert preprocess_main(argv) == 0
    rows = shard_rows(output)
    # portrait.mp4 is 17 frames, as long as its bucket: every start that fits samples its frames 0-16
    long_clips = [f"landscape_long.mp4@{start}" for start in ("0.000", "0.750", "1.499")]
    assert sorted(rows) == [*long_clips, "portrait.mp4@0.000"]
    latents = [row["vae_latent_bytes"] for row in rows.values()]
    assert len(set(latents)) == len(latents)
    assert card(output)["duplicate_clips_dropped"] == 2
    assert "2 clips not made because they would have sampled the same frames" in (output / "README.md").read_text()
    assert "portrait.mp4: 2 of its 17-frame clips would sample the same frames as another clip" in caplog.text


def test_without_frame_bucket_1_still_images_are_skipped_with_the_reason(tmp_path, tiny_model_dir, mixed_dir):
    data = folder_of(tmp_path, mixed_dir, "portrait.mp4", images=("still.png",))
    output = tmp_path / "no_image_bucket"
    argv = bucket_args(tiny_model_dir, data, output)
    argv[argv.index("--frame_buckets") + 1] = "9,17"
    assert preprocess_main(argv) == 0
    assert sorted(shard_rows(output)) == ["portrait.mp4"]
    skipped = [json.loads(line) for line in (output / "skipped.jsonl").read_text().splitlines()]
    assert [(item["id"], item["reason"]) for item in skipped] == [
        ("still.png", "no image bucket: a still image is a 1-frame row, and --frame_buckets 9,17 has no 1 (add it)")
    ]
    assert card(output)["skipped_reasons"] == {"no image bucket": 1}


def test_max_area_buckets_take_the_models_size_step(tmp_path, mixed_dir, caplog):
    """Wan2.2 TI2V-5B's 16x VAE and 2x2 patch need sides that are multiples of 32: the default step is the model's,
    and a step it cannot take is refused with the one it can."""
    from fastvideo_hf.tools.tiny_models import save_tiny_wan_pipeline

    model = save_tiny_wan_pipeline(tmp_path / "ti2v", task="t2v", model="wan2.2-ti2v-5b")
    data = folder_of(tmp_path, mixed_dir, "portrait.mp4")
    argv = ["--pretrained_model_name_or_path", str(model), "--data_dir", str(data), "--fps", str(FPS)]
    argv += ["--max_area", "6144", "--frame_buckets", "17"]
    assert preprocess_main([*argv, "--output_dir", str(tmp_path / "out")]) == 0
    assert card(tmp_path / "out")["resolution_buckets"] == [[64, 96], [96, 64]]  # step 16 would add 64x80, 80x64
    (row,) = shard_rows(tmp_path / "out").values()
    assert (row["height"], row["width"], row["vae_latent_shape"]) == (96, 64, [48, 5, 6, 4])

    assert preprocess_main([*argv, "--bucket_step", "16", "--output_dir", str(tmp_path / "step16")]) == 2
    assert "got 64x80: pass --bucket_step 32" in caplog.text
