"""`fastvideo-hf generate`: each Wan2.2 A14B LoRA file goes into the expert it was trained as, and a setting that
cannot make a video is refused in one line (exit 2) before any weight is read, instead of a traceback or a black
video."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastvideo_hf.preprocess.writer import write_to_folder
from fastvideo_hf.testing import save_tiny_wan_pipeline
from fastvideo_hf.tools.cli import build_parser as build_cli_parser
from fastvideo_hf.tools.cli import main as cli_main
from fastvideo_hf.tools.demo_data import write_demo_dataset
from fastvideo_hf.tools.inference import build_pipeline

from ..helpers import make_builder, run_training

RANK, ALPHA = 4, 8
TRAIN = ["--max_train_steps", "1", "--learning_rate", "5e-3", "--checkpointing_steps", "100"]
TRAIN += ["--validation_steps", "100", "--rank", str(RANK), "--lora_alpha", str(ALPHA), "--train_batch_size", "4"]
SMALL = ["--height", "32", "--width", "48", "--num_frames", "5", "--num_inference_steps", "2"]


@pytest.fixture(scope="module")
def a14b(tmp_path_factory):
    """A tiny Wan2.2 A14B T2V pipeline and the LoRAs train_wan_lora.py trains on it with --expert low and both."""
    root = tmp_path_factory.mktemp("a14b")
    model_dir = save_tiny_wan_pipeline(root / "model", model="wan2.2-a14b")
    write_demo_dataset(root / "videos", num_videos=4)  # one batch of 4: both experts get samples at step 1
    latents = root / "latents"
    write_to_folder(make_builder(model_dir, data_dir=root / "videos", height=32, width=48, num_frames=9), latents)
    loras = {}
    for expert in ("low", "both"):
        loras[expert] = root / f"lora-{expert}"
        run_training("train_wan_lora.py", model_dir, latents, loras[expert], *TRAIN, "--expert", expert)
    return model_dir, loras


def generate_argv(model_dir, *flags, output="x.mp4"):
    """A small `fastvideo-hf generate` command line."""
    argv = ["generate", "--pretrained_model_name_or_path", str(model_dir), "--prompt", "a red circle"]
    return [*argv, "--output", str(output), *SMALL, *map(str, flags)]


def generate_args(model_dir, *flags):
    """The namespace `fastvideo-hf generate` runs with (the CLI's own parser)."""
    return build_cli_parser().parse_args(generate_argv(model_dir, *flags))


def refusal(capsys) -> str:
    """The one line a refusal printed (libraries may have logged warnings before it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("fastvideo-hf generate: error: "), lines
    return lines[-1]


def assert_expert_runs_the_lora(expert, lora_file: Path):
    """Every layer the file adapts computes base(x) + alpha / rank * B(A(x)) with the file's A and B."""
    tensors = load_file(lora_file)
    layers = {key.removeprefix("transformer.").rsplit(".lora_A", 1)[0] for key in tensors if ".lora_A." in key}
    assert len(layers) > 0
    modules = dict(expert.named_modules())
    for layer in sorted(layers):
        a, b = tensors[f"transformer.{layer}.lora_A.weight"], tensors[f"transformer.{layer}.lora_B.weight"]
        assert b.abs().max() > 0, "the trained LoRA changes the layer"
        module = modules[layer]
        x = torch.randn(3, a.shape[1], generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            delta = module(x) - module.base_layer(x)
        torch.testing.assert_close(delta, ALPHA / RANK * (x @ a.T @ b.T), rtol=1e-4, atol=1e-6)


def test_a_low_noise_expert_lora_goes_into_transformer_2(a14b, capsys):
    model_dir, loras = a14b
    pipe, _ = build_pipeline(generate_args(model_dir, "--lora", loras["low"]))  # the run's record says low
    assert_expert_runs_the_lora(pipe.transformer_2, loras["low"] / "pytorch_lora_weights.safetensors")
    assert not getattr(pipe.transformer, "peft_config", None), "the high-noise expert must stay the base"

    # a copy of the file alone (as from the Hub) carries no record: --expert says it, and without it generate asks
    alone = loras["low"].parent / "low-file-only"
    alone.mkdir()
    shutil.copy(loras["low"] / "pytorch_lora_weights.safetensors", alone)
    capsys.readouterr()
    assert cli_main(generate_argv(model_dir, "--lora", alone)) == 2
    assert "pass the training run's --expert (high: transformer, low: transformer_2)" in refusal(capsys)
    pipe, _ = build_pipeline(generate_args(model_dir, "--lora", alone, "--expert", "low"))
    assert_expert_runs_the_lora(pipe.transformer_2, alone / "pytorch_lora_weights.safetensors")
    # a flag that contradicts the run's record is refused, not obeyed into the wrong expert
    assert cli_main(generate_argv(model_dir, "--lora", loras["low"], "--expert", "high")) == 2
    assert "was trained with --expert low" in refusal(capsys)


def test_both_experts_loras_each_go_into_their_expert(a14b, tmp_path, capsys):
    model_dir, loras = a14b
    both = loras["both"]
    pipe, _ = build_pipeline(generate_args(model_dir, "--lora", both))
    assert_expert_runs_the_lora(pipe.transformer, both / "pytorch_lora_weights.safetensors")
    assert_expert_runs_the_lora(pipe.transformer_2, both / "pytorch_lora_weights_transformer_2.safetensors")
    # the whole command samples with both and writes the video
    video = tmp_path / "both.mp4"
    assert cli_main(generate_argv(model_dir, "--lora", both, output=video)) == 0
    printed = capsys.readouterr().out
    assert "pytorch_lora_weights.safetensors -> transformer\n" in printed
    assert "pytorch_lora_weights_transformer_2.safetensors -> transformer_2" in printed
    assert video.stat().st_size > 0


REFUSALS = [
    (["--flow_shift", "0"], "--flow_shift must be a number above 0"),
    (["--flow_shift", "-1"], "--flow_shift must be a number above 0"),
    (["--flow_shift", "nan"], "--flow_shift must be a number above 0"),
    (["--dmd_timesteps", "abc"], "--dmd_timesteps takes comma-separated whole timesteps"),
    (["--dmd_timesteps", "522,757,1000"], "--dmd_timesteps must decrease"),
    (["--dmd_timesteps", "1000,757,0"], "--dmd_timesteps must each be in 1..1000"),
    (["--dmd_timesteps", "2000,757"], "--dmd_timesteps must each be in 1..1000"),
    (["--vsa_sparsity", "1"], "--vsa_sparsity must be in [0, 1)"),
    (["--vsa_sparsity", "-0.1"], "--vsa_sparsity must be in [0, 1)"),
    (["--height", "30"], "--height must be a positive multiple of 16"),
    (["--num_frames", "6"], "--num_frames must be 4k+1"),
    (["--guidance_scale", "inf"], "--guidance_scale must be a finite number"),
    (["--output", "video.avi"], "--output video.avi: name a .mp4 file (got .avi)"),
    (["--expert", "low"], "--expert says which expert a --lora was trained as"),
]


@pytest.mark.parametrize(("flags", "message"), REFUSALS, ids=[" ".join(flags) for flags, _ in REFUSALS])
def test_a_flag_that_cannot_make_a_video_is_refused_before_loading(tiny_model_dir, tmp_path, flags, message, capsys):
    output = tmp_path / "x.mp4"
    assert cli_main(generate_argv(tiny_model_dir, *flags, output=output)) == 2
    assert message in refusal(capsys)
    assert not output.exists()


def test_lora_and_transformer_folders_must_hold_what_the_flag_needs(tiny_model_dir, tmp_path, capsys):
    """A full finetune given to --lora, a LoRA to --transformer, and paths that do not exist (which would be looked
    up on the Hub) are each refused naming the flag to use."""
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "pytorch_lora_weights.safetensors").write_bytes(b"")  # only its name is looked at before loading
    cases = {
        ("--lora", tiny_model_dir): f"not a LoRA: a full finetune goes to --transformer {tiny_model_dir}",
        ("--transformer", lora): f"not a full finetune: pass it as --lora {lora}",
        ("--lora", tmp_path / "missing"): "no such folder",
        ("--transformer", tmp_path / "missing"): "no such folder",
        ("--lora", tmp_path): "holds no pytorch_lora_weights.safetensors",
        (
            "--transformer",
            tiny_model_dir / "transformer",
        ): f"the folder above transformer/: --transformer {tiny_model_dir}",
    }
    for (flag, path), message in cases.items():
        assert cli_main(generate_argv(tiny_model_dir, flag, path, output=tmp_path / "x.mp4")) == 2, (flag, path)
        assert message in refusal(capsys), (flag, path)
    assert cli_main(generate_argv(tmp_path / "no-base", output=tmp_path / "x.mp4")) == 2
    assert "no such folder, and no Hub model to load" in refusal(capsys)


def test_the_installed_command_refuses_a_zero_shift_in_one_line(tiny_model_dir, tmp_path):
    """What a user sees: exit 2 and one line, no traceback and no black video (the shift of 0 gave NaN latents)."""
    output = tmp_path / "x.mp4"
    command = [str(Path(sys.executable).with_name("fastvideo-hf")), "generate", "--pretrained_model_name_or_path"]
    command += [str(tiny_model_dir), "--prompt", "p", "--output", str(output), *SMALL, "--flow_shift", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr and not output.exists()
    assert result.stderr.strip().splitlines()[-1].startswith("fastvideo-hf generate: error: --flow_shift")


def test_nan_weights_give_a_refusal_not_a_black_video(tiny_model_dir, tmp_path, capsys):
    # a diverged full finetune: every weight NaN; the uint8 cast used to turn the NaN frames into a black mp4, exit 0
    from diffusers import WanTransformer3DModel

    transformer = WanTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    for param in transformer.parameters():
        param.data.fill_(float("nan"))
    transformer.save_pretrained(tmp_path / "diverged" / "transformer")
    video = tmp_path / "nan.mp4"
    assert cli_main(generate_argv(tiny_model_dir, "--transformer", tmp_path / "diverged", output=video)) == 2
    assert "the pipeline produced NaN frames, so no video was written" in refusal(capsys)
    assert not video.exists()
