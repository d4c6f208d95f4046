"""Inputs: a merged folder and an HF dataset (videofolder, path strings, bytes) give the same clips."""

import json

import pytest
import torch
from datasets import Dataset, Features, Value, load_dataset

from fastvideo_hf.preprocess.sources import HFDatasetSource, MergedFolderSource, VideoInput, choose_caption
from fastvideo_hf.preprocess.writer import write_to_folder
from fastvideo_hf.schema import columns_to_tensor

from ..helpers import NUM_DEMO_VIDEOS, every_input, make_builder


def latents_by(dataset_dir, key="file_name"):
    rows = load_dataset(str(dataset_dir), split="train")
    return {row[key]: columns_to_tensor(row, "vae_latent") for row in rows}


def test_videofolder_input_gives_the_same_latents_as_the_merged_folder(
    tmp_path, tiny_model_dir, demo_dir, latents_dir
):
    output = tmp_path / "from_videofolder"
    summary = write_to_folder(make_builder(tiny_model_dir, video_dataset=str(demo_dir / "videos")), output)
    assert summary.total_rows == NUM_DEMO_VIDEOS
    skipped = {json.loads(line)["file_name"] for line in (output / "skipped.jsonl").read_text().splitlines()}
    # metadata.jsonl lists the bad files that exist; each is skipped, none crashes the run
    assert skipped == {"bad_empty.mp4", "bad_not_a_video.mp4", "bad_truncated.mp4", "bad_too_short.mp4"} | {
        "bad_empty_caption.mp4"
    }
    merged, videofolder = latents_by(latents_dir), latents_by(output)
    assert merged.keys() == videofolder.keys()
    for name in merged:
        assert torch.equal(merged[name], videofolder[name])


@pytest.mark.parametrize("kind", ["path", "bytes"])
def test_datasets_with_path_or_bytes_video_columns_work(tmp_path, tiny_model_dir, demo_dir, latents_dir, kind):
    rows = [json.loads(line) for line in (demo_dir / "videos" / "metadata.jsonl").read_text().splitlines()]
    rows = [row for row in rows if row["file_name"].startswith("clip_")][:2]
    videos = [str(demo_dir / "videos" / row["file_name"]) for row in rows]
    if kind == "bytes":
        videos = [open(path, "rb").read() for path in videos]
    features = Features({"clip": Value("string" if kind == "path" else "binary"), "text": Value("string")})
    Dataset.from_dict({"clip": videos, "text": [row["caption"] for row in rows]}, features=features).save_to_disk(
        tmp_path / "hf"
    )
    load_dataset_dir = tmp_path / "parquet"
    load_dataset_dir.mkdir()
    Dataset.load_from_disk(tmp_path / "hf").to_parquet(load_dataset_dir / "train.parquet")
    builder = make_builder(
        tiny_model_dir, video_dataset=str(load_dataset_dir), video_column="clip", caption_column="text"
    )
    write_to_folder(builder, tmp_path / "out")
    got, expected = latents_by(tmp_path / "out", "caption"), latents_by(latents_dir, "caption")
    assert len(got) == 2
    for name, latent in got.items():
        assert torch.equal(latent, expected[name])


def test_missing_columns_are_named_in_the_error(tmp_path):
    (tmp_path / "data.jsonl").write_text(json.dumps({"file": "a.mp4", "caption": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['video'\].*--video_column"):
        HFDatasetSource(str(tmp_path))


def test_merged_folder_errors_and_entry_problems(tmp_path):
    with pytest.raises(FileNotFoundError, match="videos2caption.json"):
        MergedFolderSource(tmp_path)
    (tmp_path / "videos2caption.json").write_text(json.dumps({"path": "a.mp4"}))
    with pytest.raises(ValueError, match="JSON list"):
        every_input(MergedFolderSource(tmp_path))
    entries = [{"path": "a.mp4", "cap": "one"}, {"cap": "no path"}, {"path": "b.mp4", "cap": ["two", "three"]}]
    entries += [{"path": "a.mp4", "cap": "again"}]
    (tmp_path / "videos2caption.json").write_text(json.dumps(entries))
    inputs = every_input(MergedFolderSource(tmp_path))
    assert [item.id for item in inputs] == ["a.mp4", "entry-1", "b.mp4", "a.mp4#1"]
    assert inputs[1].problem == "metadata entry has no 'path'"
    assert inputs[2].captions == ["two", "three"]
    assert inputs[3].problem == "duplicate: same file as a.mp4"


def test_caption_choice_is_seeded_per_input_and_ignores_blank_captions():
    item = VideoInput(id="x", file_name="x.mp4", captions=["", "  ", "a", "b", "c", "d"])
    picks = {choose_caption(item, seed) for seed in range(40)}
    assert picks == {"a", "b", "c", "d"}
    assert choose_caption(item, 7) == choose_caption(item, 7)
    assert choose_caption(VideoInput(id="y", file_name="y", captions=[" "]), 0) is None
