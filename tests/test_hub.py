"""`--push_to_hub` uploads exactly the dataset folder (shards, card, skips); only the HTTP side is mocked."""

import shutil
from unittest import mock

from huggingface_hub import HfApi, RepoUrl

from fastvideo_hf.preprocess import main as preprocess_main

from .helpers import PREPROCESS_SETTINGS


def test_push_to_hub_uploads_the_folder_without_progress_files(tmp_path, tiny_model_dir, demo_dir, latents_dir):
    output = tmp_path / "out"
    shutil.copytree(latents_dir, output)  # a finished folder: the command only (re)writes the card and pushes
    commits = []

    def fake_create_commit(self, repo_id, operations, **kwargs):
        commits.append({"repo_id": repo_id, "paths": sorted(op.path_in_repo for op in operations), **kwargs})
        return mock.MagicMock(commit_url=f"https://hf.co/datasets/{repo_id}/commit/1")

    argv = ["--pretrained_model_name_or_path", str(tiny_model_dir), "--data_dir", str(demo_dir)]
    argv += ["--output_dir", str(output), "--samples_per_file", "3", "--push_to_hub", "--hub_dataset_id", "me/lat"]
    for key, value in PREPROCESS_SETTINGS.items():
        argv += [f"--{key}", str(value)]
    repo_url = RepoUrl("https://huggingface.co/datasets/me/lat")
    with (
        mock.patch.object(HfApi, "create_repo", return_value=repo_url) as create_repo,
        mock.patch.object(HfApi, "create_commit", fake_create_commit),
        mock.patch.object(HfApi, "preupload_lfs_files", return_value=None),
        mock.patch.object(HfApi, "_validate_yaml", return_value=None),  # a POST to the Hub's YAML validator
        # hf_xet's streamed upload talks to the Hub's storage directly; without it upload_folder makes one commit.
        mock.patch("huggingface_hub.hf_api.is_xet_available", return_value=False),
    ):
        assert preprocess_main(argv) == 0

    create_repo.assert_called_once()
    assert create_repo.call_args.kwargs["repo_type"] == "dataset"
    (commit,) = commits
    assert commit["repo_id"] == "me/lat" and commit["repo_type"] == "dataset"
    shards = sorted(f"data/{path.name}" for path in (output / "data").glob("*.parquet"))
    assert commit["paths"] == sorted(["README.md", "skipped.jsonl", *shards])
    card = (output / "README.md").read_text()
    assert 'load_dataset("me/lat", split="train")' in card
