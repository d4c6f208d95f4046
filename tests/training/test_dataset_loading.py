"""What training is told about ``--dataset_name``: what a wrong one is, and a cache that went stale.

Real folders and the real ``datasets`` cache (in a temporary folder): plain ``load_dataset(FOLDER)`` keys the
cache of a folder whose card has ``configs:`` on the folder's name and the card, not on the shards.
"""

import logging
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastvideo_hf.training.dataset_checks import LatentDatasetChangedError, LatentDatasetNotFoundError
from fastvideo_hf.training.latent_dataset import load_latent_dataset, read_dataset_card_metadata

from ..helpers import run_training


def rewrite_first_shard(folder, edit):
    shard = sorted((folder / "data").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    pq.write_table(edit(table), shard)


def test_training_on_a_missing_path_says_it_is_neither_a_folder_nor_a_hub_dataset(tmp_path, tiny_model_dir):
    missing = tmp_path / "no-such-latents"
    result = run_training(
        "train_wan_lora.py", tiny_model_dir, missing, tmp_path / "out", "--max_train_steps", "1", check=False
    )
    assert result.returncode != 0
    assert f"{missing} does not exist locally and is not a Hub dataset id" in result.stderr
    assert "no fastvideo_hf card metadata" not in result.stderr


def test_an_empty_folder_and_a_folder_of_videos_are_named_with_the_command_to_run(tmp_path, demo_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        LatentDatasetNotFoundError, match=r"holds no latent shards .*fastvideo-hf preprocess --output_dir"
    ):
        read_dataset_card_metadata(str(empty))
    with pytest.raises(LatentDatasetNotFoundError, match=r"holds 11 video file\(s\) but no latent shards") as raised:
        read_dataset_card_metadata(str(demo_dir))
    assert f"fastvideo-hf preprocess --data_dir {demo_dir} --output_dir LATENTS" in str(raised.value)
    videofolder = tmp_path / "videofolder"
    shutil.copytree(demo_dir / "videos", videofolder)
    with pytest.raises(LatentDatasetNotFoundError, match=f"preprocess --dataset_name {videofolder} "):
        read_dataset_card_metadata(str(videofolder))


def test_shards_changed_after_a_first_load_are_reloaded_not_read_from_the_stale_cache(tmp_path, latents_dir, caplog):
    from datasets import load_dataset

    folder = tmp_path / "latents"
    shutil.copytree(latents_dir, folder)
    assert "EDITED" not in load_latent_dataset(str(folder))["caption"]
    assert "EDITED" not in load_dataset(str(folder), split="train")["caption"]  # plain datasets caches it too
    with caplog.at_level(logging.WARNING, logger="fastvideo_hf.training.latent_dataset"):
        load_latent_dataset(str(folder))
    assert caplog.records == []  # an unchanged folder keeps its cache

    def edit_caption(table):
        captions = table.column("caption").to_pylist()
        return table.set_column(
            table.schema.get_field_index("caption"), "caption", pa.array(["EDITED", *captions[1:]])
        )

    rewrite_first_shard(folder, edit_caption)
    assert "EDITED" not in load_dataset(str(folder), split="train")["caption"]  # what plain datasets gives
    reloaded = load_latent_dataset(str(folder))
    assert "EDITED" in reloaded["caption"] and len(reloaded) == 6

    # Another folder of the same name and card (a copy elsewhere) shares plain datasets' cache entry, not ours.
    twin = tmp_path / "elsewhere" / "latents"
    shutil.copytree(latents_dir, twin)
    assert "EDITED" not in load_latent_dataset(str(twin))["caption"]


def test_shards_that_no_longer_match_their_card_are_refused(tmp_path, latents_dir):
    folder = tmp_path / "latents"
    shutil.copytree(latents_dir, folder)
    assert len(load_latent_dataset(str(folder))) == 6
    rewrite_first_shard(folder, lambda table: table.slice(0, table.num_rows - 1))
    with pytest.raises(LatentDatasetChangedError, match=r"\(5 rows\) no longer match its card \(6 rows\)"):
        load_latent_dataset(str(folder))


def test_a_shard_replaced_with_its_modification_time_kept_is_read_anew(tmp_path, latents_dir):
    """cp -p, rsync -a and tar keep modification times: the size still tells the shard changed."""
    import os

    folder = tmp_path / "latents"
    shutil.copytree(latents_dir, folder)
    assert "EDITED" not in load_latent_dataset(str(folder))["caption"]
    shard = sorted((folder / "data").glob("*.parquet"))[0]
    before = shard.stat()

    def edit_caption(table):
        captions = table.column("caption").to_pylist()
        edited = ["EDITED" + " longer" * 50, *captions[1:]]
        return table.set_column(table.schema.get_field_index("caption"), "caption", pa.array(edited))

    rewrite_first_shard(folder, edit_caption)
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert shard.stat().st_mtime_ns == before.st_mtime_ns and shard.stat().st_size != before.st_size
    assert any(caption.startswith("EDITED") for caption in load_latent_dataset(str(folder))["caption"])
