"""The Hub through real HTTP: `--push_to_hub` uploads exactly the dataset folder, training reads a Hub card.

The clients are the real huggingface_hub and datasets, in subprocesses pointed at the loopback Hub (they read
HF_ENDPOINT when imported); only the Hub's HTTP side is emulated.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from fastvideo_hf.dataset_card import read_card_metadata

from .helpers import PREPROCESS_SETTINGS
from .loopback_hub import TOKEN

FASTVIDEO_HF = str(Path(sys.executable).parent / "fastvideo-hf")

READ_CARDS = """
import json, sys
from fastvideo_hf.training.dataset_checks import LatentDatasetNotFoundError
from fastvideo_hf.training.latent_dataset import read_dataset_card_metadata

cards = [read_dataset_card_metadata("user/lat"), read_dataset_card_metadata("user/lat", revision=sys.argv[1])]
cards = [card.to_metadata() for card in cards]
try:
    read_dataset_card_metadata("user/no-such-latents")
except LatentDatasetNotFoundError as error:
    cards.append(str(error))
print(json.dumps(cards))
"""


def test_push_to_hub_uploads_the_folder_without_progress_files(
    tmp_path, tiny_model_dir, demo_dir, latents_dir, loopback_hub
):
    output = tmp_path / "out"
    shutil.copytree(latents_dir, output)  # a finished folder: the command only (re)writes the card and pushes
    command = [FASTVIDEO_HF, "preprocess", "--pretrained_model_name_or_path", str(tiny_model_dir)]
    command += ["--data_dir", str(demo_dir), "--output_dir", str(output), "--samples_per_file", "3"]
    command += ["--push_to_hub", "--hub_dataset_id", "me/lat"]
    for key, value in PREPROCESS_SETTINGS.items():
        command += [f"--{key}", str(value)]
    env = loopback_hub.env(tmp_path / "hf-home")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    (commit,) = loopback_hub.commit_log
    assert (commit.repo_id, commit.repo_type, commit.deleted) == ("me/lat", "dataset", [])
    local = {
        path.relative_to(output).as_posix(): path.read_bytes()
        for path in output.rglob("*")
        if path.is_file() and ".progress" not in path.parts
    }
    shards = sorted(f"data/{path.name}" for path in (output / "data").glob("*.parquet"))
    assert sorted(local) == sorted(["README.md", "skipped.jsonl", *shards])
    assert sorted(commit.added) == sorted(local)
    assert loopback_hub.repo_files("me/lat", "dataset") == local  # byte for byte
    assert 'load_dataset("me/lat", split="train")' in local["README.md"].decode()
    assert all(TOKEN.encode() not in content for content in local.values())

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(loopback_hub.commit_log) == 1  # an unchanged folder uploads nothing


def test_training_reads_the_card_of_a_hub_dataset_by_id_and_revision(tmp_path, latents_dir, loopback_hub):
    first = loopback_hub.add_folder("user/lat", latents_dir, repo_type="dataset")
    changed = tmp_path / "changed"
    shutil.copytree(latents_dir, changed, ignore=shutil.ignore_patterns(".progress"))
    card = (changed / "README.md").read_text()
    (changed / "README.md").write_text(card.replace("task: t2v", "task: i2v", 1))
    loopback_hub.add_folder("user/lat", changed, repo_type="dataset")

    result = subprocess.run(
        [sys.executable, "-c", READ_CARDS, first],
        env=loopback_hub.env(tmp_path / "hf-home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    main, at_first, missing = json.loads(result.stdout)
    expected = read_card_metadata(latents_dir).to_metadata()
    assert at_first == expected and expected["task"] == "t2v"
    assert main == {**expected, "task": "i2v"}
    assert missing.startswith("user/no-such-latents does not exist locally and is not a dataset on the Hub")


def test_the_model_card_names_the_base_model_by_hub_id_never_by_local_path(
    tmp_path, tiny_model_dir, latents_dir, caplog
):
    from fastvideo_hf.models.wan.family import WAN
    from fastvideo_hf.training.model_card import write_model_card

    def card_for(base_model, dataset=str(latents_dir)):
        output = tmp_path / "out"
        output.mkdir(exist_ok=True)
        return write_model_card(output, "me/wan-lora", base_model, dataset, True, {"rank": 4}, family=WAN).read_text()

    snapshot = tmp_path / "hf-home" / "hub" / "models--Wan-AI--Wan2.1-T2V-1.3B-Diffusers" / "snapshots" / "0123abc"
    shutil.copytree(tiny_model_dir, snapshot)
    from_cache = card_for(str(snapshot), "me/latents")
    assert "base_model: Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in from_cache and str(tmp_path) not in from_cache
    assert (
        'WanPipeline.from_pretrained("Wan-AI/Wan2.1-T2V-1.3B-Diffusers"' in from_cache and "- me/latents" in from_cache
    )

    assert "base_model: me/tiny-wan\n" in card_for("me/tiny-wan")

    with caplog.at_level("WARNING", logger="fastvideo_hf.training.model_card"):
        local = card_for(str(tiny_model_dir))
    assert "base_model" not in local.split("---")[1] and "datasets" not in local.split("---")[1]
    assert str(tiny_model_dir.parent) not in local and str(latents_dir.parent) not in local
    assert f"a local Wan model (`{tiny_model_dir.name}`" in local and 'from_pretrained("BASE_MODEL"' in local
    assert "names no base_model" in caplog.text
