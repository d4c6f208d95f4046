"""VSA finetuning: the sparsity ramp is applied and logged, outputs save, reload with VSA and generate."""

import json

import torch
from diffusers import WanPipeline, WanTransformer3DModel
from safetensors.torch import load_file

from fastvideo_hf.tools.cli import main as cli_main
from fastvideo_hf.tools.loss_curve import read_scalar
from fastvideo_hf.vsa import enable_vsa, load_vsa_gates

from ..helpers import run_training

VSA_FLAGS = ["--attention_backend", "vsa", "--vsa_sparsity", "0.5", "--vsa_decay_rate", "0.25"]
VSA_FLAGS += ["--vsa_decay_interval_steps", "2", "--vsa_backend", "torch", "--report_to", "tensorboard"]
RUN_FLAGS = ["--max_train_steps", "4", "--learning_rate", "5e-3", "--checkpointing_steps", "100"]
RUN_FLAGS += ["--validation_steps", "100", "--caption_dropout", "0.0"]
GENERATE = {"prompt": "A red circle", "height": 64, "width": 96, "num_frames": 17, "num_inference_steps": 2}


def generate(pipe):
    return pipe(**GENERATE, output_type="pt", generator=torch.Generator().manual_seed(0)).frames


def test_vsa_lora_finetune_ramps_sparsity_saves_the_gate_and_reloads(tmp_path, latents_dir, tiny_model_dir):
    output = tmp_path / "vsa-lora"
    run_training(
        "train_wan_lora.py",
        tiny_model_dir,
        latents_dir,
        output,
        *RUN_FLAGS,
        *VSA_FLAGS,
        "--rank",
        "4",
        "--lora_alpha",
        "4",
    )
    steps, sparsity = read_scalar(output / "logs", "vsa_sparsity")
    assert steps.tolist() == [1, 2, 3, 4] and sparsity.tolist() == [0.0, 0.25, 0.25, 0.5]
    lora = load_file(output / "pytorch_lora_weights.safetensors")
    gate_b = [key for key in lora if "attn1.to_gate_compress.lora_B" in key]
    assert len(gate_b) == 2 and all(lora[key].abs().max() > 0 for key in gate_b), "the gate was not trained"
    comfy = load_file(output / "pytorch_lora_weights_comfy.safetensors")
    assert not any("gate" in key for key in comfy)
    assert json.loads((output / "vsa_config.json").read_text())["sparsity"] == 0.5

    pipe = WanPipeline.from_pretrained(tiny_model_dir)
    enable_vsa(pipe.transformer, sparsity=0.5, backend="torch")
    base = generate(pipe)
    pipe.load_lora_weights(output)
    adapted = generate(pipe)
    assert torch.isfinite(adapted).all() and (adapted - base).abs().max() > 1e-4


def test_vsa_full_finetune_saves_gates_that_reload_into_a_vsa_transformer(tmp_path, latents_dir, tiny_model_dir):
    output = tmp_path / "vsa-full"
    run_training("train_wan.py", tiny_model_dir, latents_dir, output, *RUN_FLAGS, *VSA_FLAGS)
    saved = load_file(output / "transformer" / "diffusion_pytorch_model.safetensors")
    gates = {key: value for key, value in saved.items() if "to_gate_compress" in key}
    assert len(gates) == 4 and any(value.abs().max() > 0 for value in gates.values())

    transformer = WanTransformer3DModel.from_pretrained(output, subfolder="transformer")
    enable_vsa(transformer, sparsity=0.5, backend="torch")
    assert all(torch.all(block.attn1.to_gate_compress.weight == 0) for block in transformer.blocks)
    assert load_vsa_gates(transformer, output / "transformer") == 4
    for name, param in transformer.named_parameters():
        torch.testing.assert_close(param, saved[name], rtol=0, atol=0)
    pipe = WanPipeline.from_pretrained(tiny_model_dir, transformer=transformer)
    assert torch.isfinite(generate(pipe)).all()

    video = tmp_path / "vsa.mp4"
    command = ["generate", "--pretrained_model_name_or_path", str(tiny_model_dir), "--transformer", str(output)]
    command += ["--vsa_sparsity", "0.5", "--vsa_backend", "torch", "--prompt", "A red circle", "--output", str(video)]
    command += ["--height", "64", "--width", "96", "--num_frames", "17", "--num_inference_steps", "2"]
    assert cli_main(command) == 0 and video.stat().st_size > 0
