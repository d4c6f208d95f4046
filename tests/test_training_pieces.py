"""Checkpoint bookkeeping, validation files, the model card and Hub push of a training run, and the CLI tools."""

import argparse
import json
from unittest import mock

import pytest
from huggingface_hub import HfApi, RepoUrl

from fastvideo_hf.checkpointing import (
    TrainingState,
    list_checkpoints,
    prune_checkpoints,
    resolve_resume_checkpoint,
    save_training_state,
)
from fastvideo_hf.cli import main as cli_main
from fastvideo_hf.hub import push_training_output
from fastvideo_hf.training_args import build_training_parser, validate_training_args
from fastvideo_hf.validation import load_validation_entries


def make_checkpoints(root, steps):
    for step in steps:
        save_training_state_dir = root / f"checkpoint-{step}"
        save_training_state_dir.mkdir(parents=True)
        save_training_state(save_training_state_dir, TrainingState(step, 0, step))


def test_latest_is_the_highest_step_directory_and_files_are_ignored(tmp_path):
    make_checkpoints(tmp_path, [5, 40, 200])
    (tmp_path / "checkpoint-999.safetensors").write_text("not a checkpoint dir")
    assert resolve_resume_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-200"
    assert resolve_resume_checkpoint(tmp_path, "checkpoint-40") == tmp_path / "checkpoint-40"
    assert resolve_resume_checkpoint(tmp_path / "empty", "latest") is None
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        resolve_resume_checkpoint(tmp_path, "checkpoint-7")


def test_pruning_keeps_room_for_the_next_checkpoint(tmp_path):
    make_checkpoints(tmp_path, [10, 20, 30, 40])
    prune_checkpoints(tmp_path, 3)
    assert [path.name for path in list_checkpoints(tmp_path)] == ["checkpoint-30", "checkpoint-40"]
    prune_checkpoints(tmp_path, None)
    assert len(list_checkpoints(tmp_path)) == 2


def test_validation_file_in_fastvideo_format_with_defaults_and_relative_paths(tmp_path):
    (tmp_path / "validation.json").write_text(
        json.dumps(
            {
                "data": [
                    {"caption": "a press crushes a can", "num_inference_steps": 50, "height": 480, "width": 832},
                    {"caption": "a cat", "image_path": "images/cat.png", "num_frames": 33},
                ]
            }
        )
    )
    entries = load_validation_entries(str(tmp_path / "validation.json"), None, 64, 96, 17, 4)
    assert [(e.caption, e.height, e.width, e.num_frames, e.num_inference_steps) for e in entries] == [
        ("a press crushes a can", 480, 832, 17, 50),
        ("a cat", 64, 96, 33, 4),
    ]
    assert entries[1].image_path == str(tmp_path / "images" / "cat.png")
    assert load_validation_entries(None, "a dog", 64, 96, 17, 4)[0].caption == "a dog"
    assert load_validation_entries(None, None, 64, 96, 17, 4) == []


def test_wandb_with_a_hub_token_is_refused_as_in_diffusers():
    args = build_training_parser("x", lora=True).parse_args(
        ["--pretrained_model_name_or_path", "m", "--dataset_name", "d", "--output_dir", "o"]
        + ["--report_to", "wandb", "--hub_token", "secret"]
    )
    with pytest.raises(ValueError, match="security risk"):
        validate_training_args(args)


def test_push_writes_a_model_card_and_uploads_without_checkpoints(tmp_path):
    output = tmp_path / "wan-lora"
    (output / "checkpoint-10").mkdir(parents=True)
    (output / "checkpoint-10" / "optimizer.bin").write_bytes(b"x")
    (output / "logs").mkdir()
    (output / "logs" / "events").write_bytes(b"x")
    (output / "pytorch_lora_weights.safetensors").write_bytes(b"x")
    (output / "validation" / "step-10").mkdir(parents=True)
    (output / "validation" / "step-10" / "video_0.mp4").write_bytes(b"x")
    args = argparse.Namespace(
        output_dir=str(output),
        hub_model_id="me/wan-lora",
        hub_token=None,
        validation_prompt="a red circle",
        pretrained_model_name_or_path="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        dataset_name="me/latents",
        train_batch_size=1,
        mixed_precision="bf16",
    )
    commits = []

    def fake_create_commit(self, repo_id, operations, **kwargs):
        commits.append(sorted(op.path_in_repo for op in operations))
        return mock.MagicMock()

    with (
        mock.patch.object(HfApi, "create_repo", return_value=RepoUrl("https://huggingface.co/me/wan-lora")),
        mock.patch.object(HfApi, "create_commit", fake_create_commit),
        mock.patch.object(HfApi, "_validate_yaml", return_value=None),
        mock.patch("huggingface_hub.hf_api.is_xet_available", return_value=False),
    ):
        push_training_output(
            args, lora=True, recipe={"rank": 32}, steps=10, videos=[output / "validation" / "step-10" / "video_0.mp4"]
        )

    assert commits == [["README.md", "pytorch_lora_weights.safetensors", "validation/step-10/video_0.mp4"]]
    card = (output / "README.md").read_text()
    assert "base_model: Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in card and "- me/latents" in card
    assert 'pipe.load_lora_weights("me/wan-lora")' in card and "validation/step-10/video_0.mp4" in card
    assert "| `rank` | `32` |" in card


def test_generate_and_plot_loss_commands(tmp_path, tiny_model_dir):
    from torch.utils.tensorboard import SummaryWriter

    from fastvideo_hf.video_decode import decode_clip

    video = tmp_path / "video.mp4"
    assert (
        cli_main(
            ["generate", "--pretrained_model_name_or_path", str(tiny_model_dir), "--prompt", "a red circle"]
            + [
                "--height",
                "32",
                "--width",
                "48",
                "--num_frames",
                "9",
                "--num_inference_steps",
                "2",
                "--output",
                str(video),
            ]
        )
        == 0
    )
    clip = decode_clip(str(video), fps=16, num_frames=9)
    assert (clip.source_width, clip.source_height, clip.source_num_frames) == (48, 32, 9)

    writer = SummaryWriter(tmp_path / "logs" / "run")
    for step in range(1, 31):
        writer.add_scalar("loss", 2.0 - step / 30, step)
    writer.close()
    assert (
        cli_main(["plot-loss", f"run={tmp_path / 'logs'}", "--output", str(tmp_path / "loss.png"), "--window", "5"])
        == 0
    )
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_the_data_position_moves_to_the_next_epoch_after_its_last_batch():
    from fastvideo_hf.training import advance

    assert advance(TrainingState(4, 1, 2), epoch=1, batches_done=4, batches_per_epoch=6) == TrainingState(5, 1, 4)
    assert advance(TrainingState(5, 1, 4), epoch=1, batches_done=6, batches_per_epoch=6) == TrainingState(6, 2, 0)
