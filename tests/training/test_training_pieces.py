"""Checkpoint bookkeeping, validation files, the model card and Hub push of a training run, and the CLI tools."""

import argparse
import json
from unittest import mock

import pytest
from huggingface_hub import HfApi, RepoUrl

from fastvideo_hf.models.wan.family import WAN
from fastvideo_hf.tools.cli import main as cli_main
from fastvideo_hf.training.args import build_training_parser, validate_training_args
from fastvideo_hf.training.checkpointing import (
    TrainingState,
    checkpoint_dir,
    clean_incomplete_checkpoints,
    finish_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    resolve_resume_checkpoint,
    staging_dir,
)
from fastvideo_hf.training.hub import push_training_output
from fastvideo_hf.training.validation import load_validation_entries


def make_checkpoints(root, steps):
    """Complete checkpoints, saved the way training saves them (staging folder, marker last, rename)."""
    for step in steps:
        staging = staging_dir(root, step)
        staging.mkdir(parents=True)
        (staging / "optimizer.bin").write_bytes(b"x" * step)
        finish_checkpoint(staging, checkpoint_dir(root, step), TrainingState(step, 0, step), {"a.json": "{}"})


def test_latest_is_the_highest_complete_step_directory_and_files_are_ignored(tmp_path):
    make_checkpoints(tmp_path, [5, 40, 200])
    (tmp_path / "checkpoint-999.safetensors").write_text("not a checkpoint dir")
    assert resolve_resume_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-200"
    assert resolve_resume_checkpoint(tmp_path, "checkpoint-40") == tmp_path / "checkpoint-40"
    assert resolve_resume_checkpoint(tmp_path / "empty", "latest") is None
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        resolve_resume_checkpoint(tmp_path, "checkpoint-7")
    assert json.loads((tmp_path / "checkpoint-40" / "training_state.json").read_text())["files"] == {
        "a.json": 2,
        "optimizer.bin": 40,
    }


def test_latest_skips_every_kind_of_partial_checkpoint_and_cleanup_removes_them(tmp_path, caplog):
    """The partial checkpoints kills left in 6 of 15 tries: empty, model only, no marker, a truncated file."""
    make_checkpoints(tmp_path, [10, 20])
    (tmp_path / "checkpoint-30").mkdir()  # empty
    (tmp_path / "checkpoint-40").mkdir()
    (tmp_path / "checkpoint-40" / "pytorch_lora_weights.safetensors").write_bytes(b"lora")  # model only
    make_checkpoints(tmp_path, [50])
    with open(tmp_path / "checkpoint-50" / "optimizer.bin", "r+b") as handle:
        handle.truncate(7)  # killed while a file was flushed
    (tmp_path / "checkpoint-60").mkdir()
    (tmp_path / "checkpoint-60" / "training_state.json").write_text('{"global_st')  # a torn marker
    (tmp_path / "checkpoint-70.tmp").mkdir()  # a save that never finished
    with caplog.at_level("WARNING"):
        assert resolve_resume_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-20"
    assert "skipping incomplete checkpoint" in caplog.text and "optimizer.bin has 7 bytes, 50" in caplog.text
    with pytest.raises(FileNotFoundError, match="incomplete"):
        resolve_resume_checkpoint(tmp_path, "checkpoint-40")

    clean_incomplete_checkpoints(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-20"]


def test_a_staging_folder_killed_after_its_marker_is_published_not_deleted(tmp_path):
    make_checkpoints(tmp_path, [10])
    complete = tmp_path / "checkpoint-10"
    complete.rename(staging_dir(tmp_path, 10))  # the state a kill between the marker and the rename leaves
    clean_incomplete_checkpoints(tmp_path)
    assert resolve_resume_checkpoint(tmp_path, "latest") == complete


def test_pruning_runs_after_the_save_and_never_removes_the_newest_checkpoint(tmp_path):
    make_checkpoints(tmp_path, [10, 20, 30, 40])
    prune_checkpoints(tmp_path, 3, keep=tmp_path / "checkpoint-40")
    assert [path.name for path in list_checkpoints(tmp_path)] == ["checkpoint-20", "checkpoint-30", "checkpoint-40"]
    prune_checkpoints(tmp_path, None, keep=tmp_path / "checkpoint-40")
    assert len(list_checkpoints(tmp_path)) == 3
    # A leftover from another run with a higher number neither counts nor makes the run delete its own save.
    (tmp_path / "checkpoint-900").mkdir()
    make_checkpoints(tmp_path, [50])
    prune_checkpoints(tmp_path, 1, keep=tmp_path / "checkpoint-50")
    assert [path.name for path in list_checkpoints(tmp_path)] == ["checkpoint-50", "checkpoint-900"]


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


@pytest.mark.parametrize(
    "flag", ["--checkpointing_steps", "--validation_steps", "--gradient_accumulation_steps", "--train_batch_size"]
)
def test_zero_step_counts_are_refused_up_front(flag):
    """Each would otherwise die in a ZeroDivisionError, some only after the first step."""
    args = build_training_parser("x", lora=True).parse_args(
        ["--pretrained_model_name_or_path", "m", "--dataset_name", "d", "--output_dir", "o", flag, "0"]
    )
    with pytest.raises(ValueError, match=f"{flag} must be at least 1, got 0"):
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
            args,
            WAN,
            lora=True,
            recipe={"rank": 32},
            steps=10,
            videos=[output / "validation" / "step-10" / "video_0.mp4"],
        )

    assert commits == [["README.md", "pytorch_lora_weights.safetensors", "validation/step-10/video_0.mp4"]]
    card = (output / "README.md").read_text()
    assert "base_model: Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in card and "- me/latents" in card
    assert 'pipe.load_lora_weights("me/wan-lora")' in card and "validation/step-10/video_0.mp4" in card
    assert "| `rank` | `32` |" in card


def test_generate_and_plot_loss_commands(tmp_path, tiny_model_dir):
    from torch.utils.tensorboard import SummaryWriter

    from fastvideo_hf.preprocess.video_decode import decode_clip

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
    from fastvideo_hf.training.steps import advance

    assert advance(TrainingState(4, 1, 2), epoch=1, batches_done=4, batches_per_epoch=6) == TrainingState(5, 1, 4)
    assert advance(TrainingState(5, 1, 4), epoch=1, batches_done=6, batches_per_epoch=6) == TrainingState(6, 2, 0)


def test_a_bf16_lora_base_keeps_the_modules_wan_runs_in_float32_as_the_pipeline_loads_them(tiny_model_dir):
    # Training must see the numerics inference has: WanPipeline.from_pretrained(torch_dtype=bf16) keeps RoPE, the
    # time embedding, the modulation table and the norms in float32 (diffusers' _keep_in_fp32_modules).
    import torch
    from diffusers import WanPipeline

    from fastvideo_hf.models import load_model_spec
    from fastvideo_hf.training.model_loading import load_transformer_to_train

    args = argparse.Namespace(pretrained_model_name_or_path=str(tiny_model_dir), revision=None, expert=None)
    transformer, _ = load_transformer_to_train(args, load_model_spec(str(tiny_model_dir)), torch.bfloat16)
    pipeline = WanPipeline.from_pretrained(tiny_model_dir, torch_dtype=torch.bfloat16)
    trained = {name: param.dtype for name, param in transformer.named_parameters()}
    assert trained == {name: param.dtype for name, param in pipeline.transformer.named_parameters()}
    assert trained["scale_shift_table"] == torch.float32 and trained["blocks.0.attn1.to_q.weight"] == torch.bfloat16
