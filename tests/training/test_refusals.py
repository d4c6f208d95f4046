"""Refused settings: one line that says what to do, exit 2, printed by one process, before the first step.

A refusal is a ``SettingRefused``; any other exception is a bug and keeps its traceback.
"""

import re
from dataclasses import replace

import pytest

from fastvideo_hf.models import load_model_spec
from fastvideo_hf.refusal import SettingRefused
from fastvideo_hf.training.accelerator_setup import tracker_config
from fastvideo_hf.training.args import (
    build_training_parser,
    run_refusing_in_one_line,
    validate_training_args,
)
from fastvideo_hf.training.memory_savers import check_memory_saver_args
from fastvideo_hf.training.validation import ValidationEntry, check_validation_entries, load_validation_entries

from ..helpers import run_training


def parsed(*flags):
    return build_training_parser("test", lora=True).parse_args(
        ["--pretrained_model_name_or_path", "m", "--dataset_name", "d", "--output_dir", "o", *flags]
    )


def test_a_refusal_is_one_line_from_the_first_process_and_a_bug_keeps_its_traceback(capsys, monkeypatch):
    def refuse(args):
        raise SettingRefused("--flag 3 is wrong: pass 4")

    monkeypatch.setattr("sys.argv", ["train_wan_lora.py"])
    assert run_refusing_in_one_line(refuse, lambda: None) == 2
    assert capsys.readouterr().err.splitlines() == ["train_wan_lora.py: error: --flag 3 is wrong: pass 4"]
    monkeypatch.setenv("RANK", "1")  # what torchrun / accelerate launch set in the second process
    assert run_refusing_in_one_line(refuse, lambda: None) == 2
    assert capsys.readouterr().err == ""

    def bug(args):
        return {}["missing"]

    with pytest.raises(KeyError):
        run_refusing_in_one_line(bug, lambda: None)


def test_flags_that_would_be_ignored_are_refused():
    for flags in (["--vsa_sparsity", "0.5"], ["--vsa_backend", "torch", "--vsa_decay_rate", "0.1"]):
        with pytest.raises(SettingRefused, match="without --attention_backend vsa would be ignored"):
            validate_training_args(parsed(*flags))
    validate_training_args(parsed("--attention_backend", "vsa", "--vsa_sparsity", "0.5"))
    validate_training_args(parsed())
    for flags in (
        ["--offload_blocks_per_group", "2"],
        ["--group_offload", "leaf_level", "--offload_blocks_per_group", "2"],
    ):
        with pytest.raises(
            SettingRefused, match="add --group_offload block_level, or drop --offload_blocks_per_group"
        ):
            check_memory_saver_args(parsed(*flags), lora=True)
    check_memory_saver_args(parsed("--group_offload", "block_level", "--offload_blocks_per_group", "2"), lora=True)
    assert "_given" not in tracker_config(parsed("--attention_backend", "vsa", "--vsa_sparsity", "0.5"))


def test_validation_sizes_the_pipeline_would_refuse_or_round_are_refused(tiny_model_dir, tmp_path):
    spec = load_model_spec(str(tiny_model_dir))

    def entry(height, width, frames, steps=2):
        return ValidationEntry("a cat", height=height, width=width, num_frames=frames, num_inference_steps=steps)

    check_validation_entries([entry(64, 96, 17), entry(480, 832, 81), entry(64, 96, 1)], spec)
    for bad, why in [
        (entry(65, 96, 17), r"65x96x17 \(e.g. 64x96x17\)"),  # WanPipeline: "divisible by 16" at the first validation
        (entry(64, 96, 16), r"64x96x16 \(e.g. 64x96x17\)"),  # WanPipeline rounds the frames with a warning
        (entry(8, 96, 17), r"8x96x17 \(e.g. 16x96x17\)"),
        (entry(64, 96, 17, steps=0), "0 inference steps"),
    ]:
        with pytest.raises(SettingRefused, match=why):
            check_validation_entries([entry(64, 96, 17), bad], spec)
    # a VAE with 16x spatial compression (Wan2.2 TI2V-5B) and patch 2: multiples of 32
    with pytest.raises(SettingRefused, match="multiples of 32"):
        check_validation_entries([entry(48, 96, 17)], replace(spec, vae_scale_factor_spatial=16))
    with pytest.raises(SettingRefused, match="no such file"):
        load_validation_entries(str(tmp_path / "missing.json"), None, 64, 96, 17, 2)
    (tmp_path / "broken.json").write_text('{"data": [')
    with pytest.raises(SettingRefused, match="is not valid JSON"):
        load_validation_entries(str(tmp_path / "broken.json"), None, 64, 96, 17, 2)


def test_a_refused_flag_stops_the_script_with_one_line_and_exit_2(tmp_path, latents_dir, tiny_model_dir):
    # refused while parsing, before anything is loaded (it used to train, ignoring the flag)
    result = run_training(
        "train_wan_lora.py", tiny_model_dir, latents_dir, tmp_path / "out", "--vsa_sparsity", "0.5",
        "--max_train_steps", "1", check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "train_wan_lora.py: error: --vsa_sparsity without --attention_backend vsa would be ignored: add "
        "--attention_backend vsa to train with Video Sparse Attention, or drop --vsa_sparsity"
    ]


def test_a_bad_validation_size_is_refused_before_the_first_step_once_for_two_processes(
    tmp_path, latents_dir, tiny_model_dir
):
    # It used to train, save checkpoint-1 and die at the validation of step 2, with a traceback from each process.
    flags = ["--max_train_steps", "2", "--checkpointing_steps", "1", "--validation_steps", "2", "--rank", "4"]
    flags += [
        "--validation_prompt",
        "a red circle",
        "--validation_height",
        "65",
        "--validation_num_inference_steps",
        "1",
    ]
    result = run_training(
        "train_wan_lora.py", tiny_model_dir, latents_dir, tmp_path / "out", *flags, nproc=2, check=False
    )
    assert result.returncode != 0
    message = "train_wan_lora.py: error: validation videos need height and width multiples of 16"
    assert result.stderr.count(message) == 1, result.stderr[-3000:]
    assert "65x96x17 (e.g. 64x96x17)" in result.stderr
    assert "[rank0]" not in result.stderr and "[rank1]" not in result.stderr  # no process printed a traceback
    assert not list((tmp_path / "out").glob("checkpoint-*"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--learning_rate", "nan"], "--learning_rate must be a finite number in (0.0, inf), got nan"),
        (["--lora_alpha", "nan"], "--lora_alpha must be a finite number in (0.0, inf), got nan"),
        (["--flow_shift", "inf"], "--flow_shift must be a finite number in (0.0, inf), got inf"),
        (["--mode_scale", "nan"], "--mode_scale must be a finite number"),
        (["--logit_std", "-1"], "--logit_std must be a finite number in (0.0, inf), got -1.0"),
        (["--adam_beta1", "1.5"], "--adam_beta1 must be a finite number in [0.0, 1.0), got 1.5"),
        (["--adam_epsilon", "-1"], "--adam_epsilon must be a finite number"),
        (["--adam_weight_decay", "nan"], "--adam_weight_decay must be a finite number"),
        (["--max_grad_norm", "nan"], "--max_grad_norm must be a finite number in [0.0, inf), got nan"),
        (["--rank", "0"], "--rank must be a finite number in [1, inf), got 0"),
        (["--seed", "-1"], "--seed must be a finite number in [0, 4294967296), got -1"),
        (["--dataloader_num_workers", "-1"], "--dataloader_num_workers must be a finite number"),
        (["--checkpoints_total_limit", "0"], "--checkpoints_total_limit must be a finite number in [1, inf), got 0"),
        (["--validation_guidance_scale", "nan"], "--validation_guidance_scale must be a finite number"),
        (["--validation_height", "64"], "--validation_height without --validation_prompt or --validation_file"),
        (["--hub_model_id", "me/lora"], "--hub_model_id without --push_to_hub would be ignored"),
        (["--push_to_hub", "--hub_model_id", "a b/c//d"], "--hub_model_id 'a b/c//d' is not a Hub repo id"),
    ],
)
def test_numbers_that_would_train_to_nan_or_fail_late_are_refused(flags, message):
    # nan and inf used to train to exit 0 and an all-NaN LoRA; the others failed in torch, peft or numpy after the
    # model loaded, or were ignored
    with pytest.raises(SettingRefused, match=re.escape(message)):
        validate_training_args(parsed(*flags))


def test_a_run_whose_loss_is_not_finite_stops_without_saving(tmp_path, latents_dir, tiny_model_dir):
    # a learning rate of 1e30 makes the second step's loss inf / NaN; the run used to finish, save and exit 0
    result = run_training(
        "train_wan_lora.py", tiny_model_dir, latents_dir, tmp_path / "out", "--learning_rate", "1e30",
        "--max_grad_norm", "0", "--max_train_steps", "4", "--checkpointing_steps", "100", check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "train_wan_lora.py: error: the training loss is" in result.stderr
    assert "the run diverged" in result.stderr
    assert not (tmp_path / "out" / "pytorch_lora_weights.safetensors").exists()
