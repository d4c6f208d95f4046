"""The chunk plan is lazy and equals the eager listing: same chunks, same records, same manifest digest.

At a few million clips a listing of one record per input would cost gigabytes and minutes on every process;
``source.plan`` keeps a count and builds a chunk's records only when it is encoded. These tests pin that the lazy
plan changes nothing a run can see (so resuming a folder an older version wrote still matches its manifest), and
that it really is lazy. ``bench/preprocess.py --listing`` measures it at 1,000,000 rows.
"""

import json
import os

import pytest
from datasets import Dataset, Features, Value

from fastvideo_hf.preprocess.shard_progress import listing_digest
from fastvideo_hf.preprocess.sources import ChunkPlan, HFDatasetSource, MergedFolderSource

from ..helpers import every_input


def eager_chunks(inputs, size):
    return [inputs[start : start + size] for start in range(0, len(inputs), size)]


def listing_of(chunks):
    return [(item.id, item.file_name, *item.captions) for chunk in chunks for item in chunk]


def merged_source(tmp_path):
    (tmp_path / "videos").mkdir()
    for name in ("a.mp4", "b.mp4", "c.png"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    (tmp_path / "top.mp4").write_bytes(b"x")
    os.symlink(tmp_path / "videos" / "b.mp4", tmp_path / "videos" / "b_link.mp4")
    entries = [
        {"path": "a.mp4", "cap": "one"},
        {"cap": "no path"},
        {"path": "b.mp4", "cap": ["two", "three"]},
        {"path": "a.mp4", "cap": "again"},
        {"path": "videos/../videos/a.mp4", "cap": "another spelling"},
        {"path": "b_link.mp4", "cap": "through a symlink"},
        {"path": "top.mp4", "cap": "under DIR itself"},
        {"path": "gone.mp4", "cap": "missing"},
        {"path": "gone.mp4", "cap": "missing twice"},
        {"path": "c.png", "cap": 12345},
        {"path": "c.png", "cap": "the image, usable"},
    ]
    (tmp_path / "videos2caption.json").write_text(json.dumps(entries))
    return MergedFolderSource(tmp_path)


def test_merged_folder_plan_equals_the_eager_listing(tmp_path):
    source = merged_source(tmp_path)
    inputs = every_input(source)
    assert [item.id for item in inputs] == [
        "a.mp4",
        "entry-1",
        "b.mp4",
        "a.mp4#1",
        "videos/../videos/a.mp4",
        "b_link.mp4",
        "top.mp4",
        "gone.mp4",
        "gone.mp4#1",
        "c.png",
        "c.png#1",
    ]
    problems = {item.id: item.problem for item in inputs if item.problem}
    assert problems == {
        "entry-1": "metadata entry has no 'path'",
        "a.mp4#1": "duplicate: same file as a.mp4",
        "videos/../videos/a.mp4": "duplicate: same file as a.mp4",
        "b_link.mp4": "duplicate: same file as b.mp4",
        "gone.mp4#1": "duplicate: same file as gone.mp4",
        "c.png": "caption is not text (int 12345)",
    }
    by_id = {item.id: item for item in inputs}
    assert by_id["top.mp4"].path == str(tmp_path / "top.mp4")
    assert by_id["gone.mp4"].path == str(tmp_path / "videos" / "gone.mp4")
    assert (by_id["c.png#1"].media_type, by_id["a.mp4"].media_type) == ("image", "video")
    for size in (1, 3, 4, 64):
        plan = source.plan(size)
        assert len(plan) == len(eager_chunks(inputs, size))
        assert [plan.chunk_size(index) for index in range(len(plan))] == [
            len(chunk) for chunk in eager_chunks(inputs, size)
        ]
        assert list(plan) == eager_chunks(inputs, size)
        assert list(plan.listing()) == listing_of(eager_chunks(inputs, size))
        assert listing_digest(plan.listing()) == listing_digest(listing_of(eager_chunks(inputs, size)))


def test_merged_folder_reads_its_metadata_once(tmp_path, monkeypatch):
    source = merged_source(tmp_path)
    reads = []
    original = MergedFolderSource._read_entries
    monkeypatch.setattr(MergedFolderSource, "_read_entries", lambda self: reads.append(1) or original(self))
    plan = source.plan(4)
    source.plan(2)
    list(plan), list(plan.listing()), every_input(source)
    assert len(reads) == 1


def hf_source(tmp_path, num_rows):
    captions = [f"caption {index}" if index % 7 else None for index in range(num_rows)]
    captions[3] = "x"
    paths = [f"clips/clip_{index}.{'png' if index % 5 == 0 else 'mp4'}" for index in range(num_rows)]
    features = Features({"video": Value("string"), "caption": Value("string")})
    (tmp_path / "ds").mkdir()
    Dataset.from_dict({"video": paths, "caption": captions}, features=features).to_parquet(
        tmp_path / "ds" / "train.parquet"
    )
    return HFDatasetSource(str(tmp_path / "ds"))


def test_hf_plan_equals_the_eager_listing(tmp_path):
    source = hf_source(tmp_path, 23)
    inputs = every_input(source)
    assert [item.id for item in inputs[:2]] == ["train-00000000", "train-00000001"]
    assert [item.row_index for item in inputs] == list(range(23))
    assert [item.media_type for item in inputs[:3]] == ["image", "video", "video"]
    plan = source.plan(5)
    assert (len(plan), plan.num_inputs, plan.chunk_size(4)) == (5, 23, 3)
    assert list(plan) == eager_chunks(inputs, 5)
    assert listing_digest(plan.listing()) == listing_digest(listing_of(eager_chunks(inputs, 5)))
    with pytest.raises(IndexError, match="chunk 5 out of range"):
        plan[5]


def test_hf_plan_builds_only_the_chunk_asked_for(tmp_path, monkeypatch):
    source = hf_source(tmp_path, 20_000)
    built = []
    original = HFDatasetSource._build
    monkeypatch.setattr(
        HFDatasetSource, "_build", lambda self, start, stop: built.append((start, stop)) or original(self, start, stop)
    )
    plan = source.plan(64)
    assert (len(plan), built) == (313, [])
    assert sum(plan.chunk_size(index) for index in range(len(plan))) == 20_000 and built == []
    chunk = plan[312]
    assert built == [(19_968, 20_000)] and [item.row_index for item in chunk] == list(range(19_968, 20_000))
    # the streamed listing reads Arrow in batches and builds no record
    assert sum(1 for _ in plan.listing()) == 20_000 and len(built) == 1


def test_chunk_plan_checks_its_arguments():
    plan = ChunkPlan(0, 8, lambda start, stop: [], lambda: iter(()))
    assert len(plan) == 0 and list(plan) == []
    with pytest.raises(ValueError, match="samples_per_file"):
        ChunkPlan(3, 0, lambda start, stop: [], lambda: iter(()))
