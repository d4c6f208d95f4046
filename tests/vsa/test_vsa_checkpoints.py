"""VSA checkpoints in both gate namings: FastVideo's loads exactly as ours, the export round-trips, generate runs
them at the sparsity of their vsa_config.json."""

import argparse
import json
import re
import shutil

import numpy as np
import pytest
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from safetensors.torch import load_file, save_file

from fastvideo_hf.tools.cli import main as cli_main
from fastvideo_hf.tools.inference import build_parser, build_pipeline, dmd_scheduler, vsa_settings
from fastvideo_hf.video_writer import write_mp4
from fastvideo_hf.vsa import enable_vsa, load_vsa_gates, vsa_context

WEIGHTS = "diffusion_pytorch_model.safetensors"
SPARSITY = 0.75


def fastvideo_key(key):
    """FastVideo's name for one of our keys, written out independently of the code under test."""
    return re.sub(r"^blocks\.(\d+)\.attn1\.to_gate_compress\.", r"blocks.\1.to_gate_compress.", key)


def vsa_transformer(model_dir, gates_seed=None):
    transformer = WanTransformer3DModel.from_pretrained(model_dir, subfolder="transformer").eval()
    enable_vsa(transformer, sparsity=SPARSITY, backend="torch")
    if gates_seed is not None:  # trained-looking gates: a zero gate would hide a load that did nothing
        generator = torch.Generator().manual_seed(gates_seed)
        with torch.no_grad():
            for block in transformer.blocks:
                for param in block.attn1.to_gate_compress.parameters():
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return transformer


def forward(transformer):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 5, 10, 14, generator=generator)  # grid 5 x 5 x 7: 8 tiles, 2 kept at 0.75
    text = torch.randn(1, 8, 32, generator=generator)
    with torch.no_grad():
        return transformer(latents, torch.tensor([500.0]), text).sample


def write_ours(transformer, folder, sparsity=None):
    """A full VSA finetune as train_wan.py saves it: save_pretrained (gates included) + vsa_config.json."""
    transformer.save_pretrained(folder / "transformer")
    if sparsity is not None:
        config = {"attention_backend": "vsa", "sparsity": sparsity, "tile_size": [4, 4, 4]}
        (folder / "transformer" / "vsa_config.json").write_text(json.dumps(config))
    return folder


def write_fastvideo(transformer, folder, sparsity=None, drop=()):
    """A diffusers-format folder as FastVideo publishes its VSA models: the gate on the block, not on attn1."""
    (folder / "transformer").mkdir(parents=True)
    state = {fastvideo_key(key): value.contiguous() for key, value in transformer.state_dict().items()}
    save_file({key: value for key, value in state.items() if key not in drop}, folder / "transformer" / WEIGHTS)
    transformer.save_config(folder / "transformer")
    if sparsity is not None:
        (folder / "transformer" / "vsa_config.json").write_text(json.dumps({"sparsity": sparsity}))
    return folder


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    return vsa_transformer(tiny_model_dir, gates_seed=1)


def test_fastvideo_named_gates_load_to_exactly_the_output_of_ours(tmp_path, tiny_model_dir, trained, caplog):
    ours = write_ours(trained, tmp_path / "ours")
    theirs = write_fastvideo(trained, tmp_path / "fastvideo")
    their_keys = set(load_file(theirs / "transformer" / WEIGHTS))
    assert "blocks.1.to_gate_compress.bias" in their_keys and not any("attn1.to_gate" in k for k in their_keys)

    outputs = {}
    for name, folder in (("fastvideo-hf", ours), ("fastvideo", theirs)):
        transformer = vsa_transformer(folder)
        assert all(torch.all(block.attn1.to_gate_compress.weight == 0) for block in transformer.blocks)
        zero_gate = forward(transformer)
        with caplog.at_level("INFO", logger="fastvideo_hf.vsa.checkpoints"):
            assert load_vsa_gates(transformer, folder / "transformer") == 4
        assert f"with {name} names" in caplog.text
        for key, value in trained.state_dict().items():
            assert torch.equal(transformer.state_dict()[key], value), key
        outputs[name] = forward(transformer)
        assert (outputs[name] - zero_gate).abs().max() > 1e-3  # the loaded gates do change the output
    assert torch.equal(outputs["fastvideo"], outputs["fastvideo-hf"])
    assert torch.equal(outputs["fastvideo-hf"], forward(trained))


def test_a_folder_without_gates_names_the_keys_it_expected(tiny_model_dir):
    transformer = vsa_transformer(tiny_model_dir)
    with pytest.raises(ValueError) as error:
        load_vsa_gates(transformer, tiny_model_dir / "transformer")  # the stock tiny model: no gate at all
    message = str(error.value)
    assert "holds no VSA gate weights" in message
    assert "blocks.{i}.attn1.to_gate_compress.weight" in message and "blocks.{i}.to_gate_compress.weight" in message
    assert "i = 0..1" in message


def test_an_incomplete_or_mixed_gate_set_is_refused_naming_the_keys(tmp_path, trained):
    partial = write_fastvideo(trained, tmp_path / "partial", drop={"blocks.1.to_gate_compress.weight"})
    with pytest.raises(
        ValueError, match=r"3 VSA gate tensors \(fastvideo names\).*missing blocks\.1\.to_gate_compress"
    ):
        load_vsa_gates(vsa_transformer(partial), partial / "transformer")
    mixed = write_ours(trained, tmp_path / "mixed")
    extra = {"blocks.0.to_gate_compress.weight": trained.blocks[0].attn1.to_gate_compress.weight.detach().clone()}
    save_file(extra, mixed / "transformer" / "extra.safetensors")
    with pytest.raises(ValueError, match="both namings"):
        load_vsa_gates(vsa_transformer(mixed), mixed / "transformer")


def test_export_writes_fastvideo_names_and_round_trips(tmp_path, tiny_model_dir, trained):
    ours = write_ours(trained, tmp_path / "ours", sparsity=0.9)
    exported, back = tmp_path / "for-fastvideo", tmp_path / "back"
    command = ["export-vsa", "--input", str(ours), "--output", str(exported), "--base_model", str(tiny_model_dir)]
    assert cli_main(command) == 0
    original = load_file(ours / "transformer" / WEIGHTS)
    written = load_file(exported / "transformer" / WEIGHTS)
    assert set(written) == {fastvideo_key(key) for key in original} and len(written) == len(original)
    assert sum("attn1.to_gate_compress" in key for key in original) == 4
    assert all(torch.equal(written[fastvideo_key(key)], value) for key, value in original.items())
    assert json.loads((exported / "transformer" / "vsa_config.json").read_text())["sparsity"] == 0.9
    # with --base_model the export is a whole pipeline folder, as FastVideo opens one
    pipe = WanPipeline.from_pretrained(exported)
    enable_vsa(pipe.transformer, sparsity=SPARSITY, backend="torch")
    load_vsa_gates(pipe.transformer, exported / "transformer")
    assert torch.equal(forward(pipe.transformer), forward(trained))

    command = ["export-vsa", "--input", str(exported), "--output", str(back), "--gate_names", "fastvideo-hf"]
    assert cli_main(command) == 0
    returned = load_file(back / "transformer" / WEIGHTS)
    assert set(returned) == set(original) and all(torch.equal(returned[k], v) for k, v in original.items())
    assert not (back / "model_index.json").exists()


def test_export_refuses_a_finetune_without_gates(tmp_path, tiny_model_dir, capsys):
    assert cli_main(["export-vsa", "--input", str(tiny_model_dir), "--output", str(tmp_path / "out")]) == 2
    assert "holds no VSA gate weights" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "refused before writing"


@pytest.fixture
def written_frames(monkeypatch):
    """The exact frames each generate run encodes: H.264 is lossy and its threads make the bytes vary."""
    from fastvideo_hf.tools import inference

    frames = []

    def write_and_keep(array, path, fps):
        frames.append(array)
        return write_mp4(array, path, fps=fps)

    monkeypatch.setattr(inference, "write_mp4", write_and_keep)
    return frames


def run_generate(tiny_model_dir, frames, output, *flags):
    command = ["generate", "--pretrained_model_name_or_path", str(tiny_model_dir), "--prompt", "A red circle"]
    command += ["--output", str(output), "--height", "64", "--width", "96", "--num_frames", "9"]
    command += ["--num_inference_steps", "1", "--vsa_backend", "torch", *flags]
    assert cli_main(command) == 0 and output.stat().st_size > 0
    return frames[-1]


def test_generate_takes_the_sparsity_from_vsa_config_and_loads_fastvideo_gates(
    tmp_path, tiny_model_dir, trained, capsys, written_frames
):
    theirs = write_fastvideo(trained, tmp_path / "fastvideo", sparsity=SPARSITY)
    ours = write_ours(trained, tmp_path / "ours")  # no vsa_config.json: dense unless the flag is given

    from_config = run_generate(tiny_model_dir, written_frames, tmp_path / "a.mp4", "--transformer", str(theirs))
    out = capsys.readouterr().out
    assert f"VSA sparsity {SPARSITY} (from {theirs / 'transformer' / 'vsa_config.json'})" in out
    assert "VSA gates: 4 tensors with fastvideo names" in out
    from_flag = run_generate(
        tiny_model_dir, written_frames, tmp_path / "b.mp4", "--transformer", str(ours), "--vsa_sparsity", str(SPARSITY)
    )
    assert "VSA gates: 4 tensors with fastvideo-hf names" in capsys.readouterr().out
    assert np.array_equal(from_config, from_flag)

    dense = run_generate(tiny_model_dir, written_frames, tmp_path / "c.mp4", "--transformer", str(ours))
    assert "dense attention (no --vsa_sparsity and no vsa_config.json)" in capsys.readouterr().out
    zero_gate = run_generate(tiny_model_dir, written_frames, tmp_path / "d.mp4", "--vsa_sparsity", str(SPARSITY))
    assert "VSA gates" not in capsys.readouterr().out  # the stock base has none to load
    for other in (dense, zero_gate):
        assert np.abs(from_config.astype(int) - other.astype(int)).max() > 10


def test_generate_runs_a_fastvideo_model_folder_as_the_stock_wanpipeline_recipe_does(
    tmp_path, tiny_model_dir, trained, capsys, written_frames
):
    """A published FastWan folder given as the base: its own gates, its vsa_config.json sparsity, DMD sampling."""
    base = tmp_path / "FastWan-tiny"
    shutil.copytree(tiny_model_dir, base, ignore=shutil.ignore_patterns("transformer"))
    write_fastvideo(trained, base, sparsity=SPARSITY)
    index = json.loads((base / "model_index.json").read_text())
    (base / "model_index.json").write_text(json.dumps({**index, "_class_name": "WanDMDPipeline"}))  # as FastWan's
    args = build_parser(argparse.ArgumentParser()).parse_args(
        ["--pretrained_model_name_or_path", str(base), "--prompt", "p", "--output", str(tmp_path / "x.mp4")]
    )
    assert vsa_settings(args) == (SPARSITY, str(base / "transformer" / "vsa_config.json"), base / "transformer")

    frames = run_generate(base, written_frames, tmp_path / "fastwan.mp4", "--dmd_timesteps", "1000,757,522")
    out = capsys.readouterr().out
    assert f"VSA sparsity {SPARSITY} (from {base / 'transformer' / 'vsa_config.json'})" in out
    assert "VSA gates: 4 tensors with fastvideo names" in out
    # the recipe of the README, in plain diffusers: the same frames
    pipe = WanPipeline.from_pretrained(tiny_model_dir, transformer=trained)
    pipe.scheduler = dmd_scheduler([1000, 757, 522])
    torch.manual_seed(0)
    video = pipe(
        prompt="A red circle",
        height=64,
        width=96,
        num_frames=9,
        num_inference_steps=3,
        guidance_scale=1.0,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).frames[0]
    assert np.array_equal(frames, (np.clip(video, 0, 1) * 255).round().astype(np.uint8))


def test_a_vsa_lora_brings_its_sparsity_in_the_vsa_config_json_beside_it(tmp_path, tiny_model_dir):
    lora = tmp_path / "vsa-lora"  # train_wan_lora.py writes vsa_config.json beside pytorch_lora_weights.safetensors
    lora.mkdir()
    (lora / "vsa_config.json").write_text(json.dumps({"attention_backend": "vsa", "sparsity": 0.5}))
    flags = ["--pretrained_model_name_or_path", str(tiny_model_dir), "--prompt", "p", "--output", "x.mp4"]
    parser = build_parser(argparse.ArgumentParser())
    assert vsa_settings(parser.parse_args([*flags, "--lora", str(lora)])) == (0.5, str(lora / "vsa_config.json"), None)
    assert vsa_settings(parser.parse_args(flags))[0] is None  # the stock base: dense
    (lora / "vsa_config.json").write_text(json.dumps({"sparsity": 1.5}))
    with pytest.raises(ValueError, match=r"'sparsity' must be a number in \[0, 1\), got 1.5"):
        vsa_settings(parser.parse_args([*flags, "--lora", str(lora)]))


def test_generate_flow_shift_replaces_the_shift_of_the_folders_scheduler(tiny_model_dir):
    flags = ["--pretrained_model_name_or_path", str(tiny_model_dir), "--prompt", "p", "--output", "x.mp4"]
    parser = build_parser(argparse.ArgumentParser())
    folders, _ = build_pipeline(parser.parse_args(flags))
    shifted, call = build_pipeline(parser.parse_args([*flags, "--flow_shift", "5"]))
    assert folders.scheduler.config.flow_shift == 3.0 and shifted.scheduler.config.flow_shift == 5.0
    assert type(shifted.scheduler) is type(folders.scheduler)
    assert {**shifted.scheduler.config, "flow_shift": 3.0} == dict(folders.scheduler.config)  # only the shift
    assert (call["num_inference_steps"], call["guidance_scale"]) == (50, 5.0)
    dmd, call = build_pipeline(parser.parse_args([*flags, "--dmd_timesteps", "1000,757,522"]))
    assert (call["num_inference_steps"], call["guidance_scale"]) == (3, 1.0)
    assert dmd.scheduler.config.stochastic_sampling and dmd.scheduler.config.shift == 1.0


def test_dmd_scheduler_runs_fastvideos_timesteps_predicting_x0_and_renoising(tiny_model_dir):
    scheduler = dmd_scheduler([1000, 757, 522])
    scheduler.set_timesteps(3)
    assert scheduler.timesteps.tolist() == [1000.0, 757.0, 522.0]
    torch.testing.assert_close(scheduler.sigmas, torch.tensor([1.0, 0.757, 0.522, 0.0]))
    sample, velocity = torch.randn(2, 3), torch.randn(2, 3)
    step = scheduler.step(velocity, scheduler.timesteps[1], sample, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(step.prev_sample, (1 - 0.522) * (sample - 0.757 * velocity) + 0.522 * noise)
    with pytest.raises(ValueError, match="same length as num_inference_steps"):
        scheduler.set_timesteps(4)

    pipe = WanPipeline.from_pretrained(tiny_model_dir)
    pipe.scheduler = dmd_scheduler([1000, 757, 522])
    seen = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["timestep"].item()), with_kwargs=True
    )
    pipe("a red circle", height=32, width=32, num_frames=5, num_inference_steps=3, guidance_scale=1.0)
    assert seen == [1000.0, 757.0, 522.0]  # one forward per step: no guidance, as FastVideo's DMD stage
    assert vsa_context(pipe.transformer) is None
