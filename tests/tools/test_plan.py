"""`fastvideo-hf plan`: the installed command prints the table and a recommendation and writes the JSON other tools
read; models resolve offline (kept configs, a cached Hub id) and an unknown one is refused with what to do."""

import json
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
from diffusers import WanTransformer3DModel

from fastvideo_hf.models.wan.family import KNOWN_MODELS
from fastvideo_hf.tools.cli import main as cli_main
from fastvideo_hf.training.memory_plan import TrainingSetup, largest_fitting_frames, make_plan, resolve_model

FULL_720P = ["--height", "720", "--width", "1280", "--num_frames", "81", "--mode", "full"]
FULL_720P += ["--gpu_memory", "80", "--num_gpus", "8"]
PART_KEYS = {"weights", "lora", "gradients", "optimizer_states", "weight_copies", "activations", "recompute"}
PART_KEYS = {f"{key}_bytes" for key in PART_KEYS | {"workspace", "overhead"}}


def test_plan_command_prints_the_table_and_writes_the_json(tmp_path):
    out = tmp_path / "plan.json"
    command = [str(Path(sys.executable).with_name("fastvideo-hf")), "plan"]
    command += ["--pretrained_model_name_or_path", "Wan-AI/Wan2.1-T2V-14B-Diffusers", *FULL_720P, "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert "75,600 tokens per sample" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.startswith("options"))
    assert header.split() == "options weights lora grads optim w.copies activ. recomp. worksp. total".split()
    lines = result.stdout.splitlines()
    recommended = next(at for at, line in enumerate(lines) if line.startswith("Recommended:"))
    recommendation, command = lines[recommended], lines[recommended + 1]
    assert "FSDP" in recommendation and "ckpt" in recommendation
    assert "fsdp.yaml --num_processes 8 training_scripts/train_wan.py --gradient_checkpointing" in command

    plan = json.loads(out.read_text())
    assert plan["model"] == "Wan-AI/Wan2.1-T2V-14B-Diffusers" and plan["tokens_per_sample"] == 75_600
    assert plan["setup"]["num_gpus"] == 8 and plan["setup"]["mode"] == "full"
    assert len(plan["combinations"]) == 2 * 2 * 4  # checkpointing x FSDP x context parallel 1, 2, 4, 8
    for row in plan["combinations"]:
        assert set(row["parts"]) == PART_KEYS
        assert row["total_bytes"] == sum(row["parts"].values())
        assert row["allocated_bytes"] == row["total_bytes"] - row["parts"]["overhead_bytes"]
        assert row["fits"] == (row["total_bytes"] <= plan["gpu_memory_bytes"] == 80 * 1024**3)
    best = plan["combinations"][plan["recommended"]]
    assert best["fits"] and best["options"]["fsdp"] and best["options"]["gradient_checkpointing"]
    assert best["description"] in recommendation
    # the JSON is the library's own estimate, byte for byte
    setup = TrainingSetup("full", 720, 1280, 81, num_gpus=8)
    expected = make_plan(resolve_model("wan2.1-t2v-14b"), setup, 80)
    assert [row["total_bytes"] for row in plan["combinations"]] == [row.parts.total for row in expected.rows]


def test_nothing_fits_names_the_smallest_and_the_frames_that_would(tmp_path, capsys):
    out = tmp_path / "plan.json"
    flags = ["plan", "--pretrained_model_name_or_path", "wan2.1-t2v-14b", "--gpu_memory", "8", "--json", str(out)]
    assert cli_main(flags) == 0
    printed = capsys.readouterr().out
    assert "Nothing fits in 8 GiB: the smallest is" in printed and "--num_frames" in printed
    plan = json.loads(out.read_text())
    assert plan["recommended"] is None and not any(row["fits"] for row in plan["combinations"])
    assert len(plan["combinations"]) == 2 * 2 * 3  # checkpointing x fp8 x no / block / leaf offload on one GPU


def test_a_cached_hub_id_plans_offline(tmp_path, monkeypatch, capsys):
    """The Hub cache layout (refs/main -> snapshots/<commit>/...) holding only the configs, as `hf download` of the
    three config files leaves it."""
    snapshot = tmp_path / "models--someone--wan-1.3b" / "snapshots" / ("a" * 40)
    config = dict(KNOWN_MODELS["wan2.1-t2v-1.3b"].config)
    for file, content in {
        "model_index.json": {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]},
        "transformer/config.json": {"_class_name": WanTransformer3DModel.__name__, **config},
        "vae/config.json": {"scale_factor_spatial": 8, "scale_factor_temporal": 4},
    }.items():
        (snapshot / file).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / file).write_text(json.dumps(content))
    (tmp_path / "models--someone--wan-1.3b" / "refs").mkdir()
    (tmp_path / "models--someone--wan-1.3b" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert cli_main(["plan", "--pretrained_model_name_or_path", "someone/wan-1.3b", "--gpu_memory", "80"]) == 0
    printed = capsys.readouterr().out
    assert "1.42B parameters" in printed and "Recommended:" in printed


def test_an_unknown_uncached_model_is_refused_with_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert cli_main(["plan", "--pretrained_model_name_or_path", "nobody/not-a-model"]) == 2
    error = capsys.readouterr().err
    assert "not in the local Hugging Face cache" in error and "never downloads" in error
    assert "hf download nobody/not-a-model" in error and "wan2.1-t2v-14b" in error


PLAN_REFUSALS = [
    (["--gpu_memory", "inf"], "--gpu_memory is one GPU's memory in GiB"),
    (["--gpu_memory", "nan"], "--gpu_memory is one GPU's memory in GiB"),
    (["--gpu_memory", "-1"], "--gpu_memory is one GPU's memory in GiB"),
    (["--gpu_memory", "0"], "--gpu_memory is one GPU's memory in GiB"),
    (["--height", "1", "--width", "1"], "--height must be a multiple of 16 for this model"),
    (["--width", "833"], "--width must be a multiple of 16 for this model (one token per 16 pixels: VAE 8x, patch 2); "
     "833 is not: try 832 or 848"),
    (["--num_frames", "2"], "--num_frames must be 4k+1 for Wan's VAE, as preprocess takes it; 2 is not: try 1 or 5"),
    (["--num_frames", "276"], "276 is not: try 273 or 277"),
    (["--expert", "both"], "--expert is for Wan2.2 A14B (two experts); Wan-AI/Wan2.1-T2V-14B-Diffusers has one"),
    (["--mode", "full", "--rank", "64"], "--rank is a LoRA setting and --mode full trains every weight: drop --rank"),
    (["--mode", "full", "--lora_target_modules", "to_q"], "--lora_target_modules is a LoRA setting"),
    (["--pretrained_model_name_or_path", "wan2.2-ti2v-5b", "--height", "496"], "multiple of 32 for this model"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "message"), PLAN_REFUSALS, ids=[" ".join(flags) for flags, _ in PLAN_REFUSALS])
def test_a_setting_that_makes_no_training_run_is_refused_in_one_line(flags, message, capsys):
    """Each of these was a traceback, a plan of "0 tokens" or "Nothing fits in -1 GiB" with exit 0, or a flag
    ignored without a word."""
    assert cli_main(["plan", "--pretrained_model_name_or_path", "wan2.1-t2v-14b", *flags]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("fastvideo-hf plan: error: ")
    assert message in captured.err and captured.err.count("\n") == 1


def test_the_fall_back_suggests_a_frame_count_preprocess_takes():
    """The frames suggested when nothing fits are 4k+1 even when the planned count is not (the Python API does not
    check it; the command refuses it)."""
    plan = make_plan(resolve_model("wan2.1-t2v-14b"), TrainingSetup("lora", 480, 832, 276), 8)
    frames = largest_fitting_frames(plan)
    assert plan.best is None and frames is not None and (frames - 1) % 4 == 0 and frames < 276
