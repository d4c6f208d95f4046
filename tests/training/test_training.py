"""Training: the step, the loss, multi-process equality, exact resume, outputs and the dataset check."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel
from peft import LoraConfig
from safetensors.torch import load_file

from fastvideo_hf.dataset_card import read_card_metadata
from fastvideo_hf.models import load_model_spec
from fastvideo_hf.models.wan.family import MAX_SEQUENCE_LENGTH
from fastvideo_hf.preprocess.writer import write_to_folder
from fastvideo_hf.testing import held_out_loss
from fastvideo_hf.training.dataset_checks import DatasetModelMismatchError, check_dataset_matches_model
from fastvideo_hf.training.flow_matching import FlowMatchingConfig, shift_sigmas
from fastvideo_hf.training.latent_dataset import (
    LatentDataset,
    SameShapeBatchSampler,
    collate_latents,
    load_latent_dataset,
)
from fastvideo_hf.training.steps import StepInputs, compute_loss

from ..helpers import run_training


def tiny_dataset(latents_dir, model_dir):
    vae_config = AutoencoderKLWan.load_config(model_dir, subfolder="vae")
    return LatentDataset(
        load_latent_dataset(str(latents_dir)),
        vae_config["latents_mean"],
        vae_config["latents_std"],
        MAX_SEQUENCE_LENGTH,
    )


def test_loader_normalizes_latents_and_pads_embeddings_like_the_pipeline(latents_dir, tiny_model_dir):
    dataset = tiny_dataset(latents_dir, tiny_model_dir)
    raw = load_latent_dataset(str(latents_dir))[0]
    item = dataset[0]
    stored = torch.frombuffer(bytearray(raw["vae_latent_bytes"]), dtype=torch.float32).view(raw["vae_latent_shape"])
    mean, std = dataset.latents_mean, dataset.latents_std
    torch.testing.assert_close(item["latents"], (stored - mean) / std)
    length = raw["text_embedding_shape"][0]
    pipe = WanPipeline.from_pretrained(tiny_model_dir)
    expected, _ = pipe.encode_prompt(raw["caption"], do_classifier_free_guidance=False, max_sequence_length=512)
    assert item["prompt_embeds"].shape == (512, 32)
    torch.testing.assert_close(item["prompt_embeds"], expected[0], rtol=1e-5, atol=1e-5)
    assert torch.all(item["prompt_embeds"][length:] == 0)


def test_batches_group_equal_shapes_and_see_every_row_each_epoch():
    shapes = [(16, 5, 8, 12)] * 5 + [(16, 5, 12, 8)] * 3
    sampler = SameShapeBatchSampler(shapes, batch_size=2, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 5
        assert all(len(batch) == 2 and len({shapes[i] for i in batch}) == 1 for batch in batches)
        assert {i for batch in batches for i in batch} == set(range(8))
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_sigma_shift_matches_wan_scheduler_formula():
    sigmas = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(shift_sigmas(sigmas, 3.0), 3 * sigmas / (1 + 2 * sigmas))
    assert torch.equal(shift_sigmas(sigmas, 1.0), sigmas)


def test_loss_equals_a_hand_computation(latents_dir, tiny_model_dir):
    transformer = WanTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    dataset = tiny_dataset(latents_dir, tiny_model_dir)
    batch = collate_latents([dataset[0], dataset[1]])
    config = FlowMatchingConfig(weighting_scheme="logit_normal", logit_mean=0.2, logit_std=1.1, flow_shift=3.0)
    config.caption_dropout = 0.5
    spec = load_model_spec(str(tiny_model_dir))
    loss = compute_loss(transformer, batch, config, StepInputs(5, 3, 1), 4, torch.float32, spec)

    expected_losses = []
    for offset in range(2):
        generator = torch.Generator().manual_seed(hash((5, 3, 1, 4 + offset)) & 0x7FFF_FFFF_FFFF_FFFF)
        u = torch.sigmoid(torch.normal(0.2, 1.1, size=(1,), generator=generator))
        sigma = 3 * u / (1 + 2 * u)
        x0 = batch["latents"][offset : offset + 1]
        noise = torch.randn(x0.shape[1:], generator=generator).unsqueeze(0)
        keep = float(torch.rand(1, generator=generator).item() >= 0.5)
        x_t = (1 - sigma) * x0 + sigma * noise
        with torch.no_grad():
            pred = transformer(x_t, sigma * 1000, batch["prompt_embeds"][offset : offset + 1] * keep).sample
        expected_losses.append(((pred - (noise - x0)) ** 2).mean())
    torch.testing.assert_close(loss.detach(), torch.stack(expected_losses).mean(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("lora", [True, False])
def test_one_step_changes_exactly_the_trained_parameters(latents_dir, tiny_model_dir, lora):
    transformer = WanTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    if lora:
        transformer.requires_grad_(False)
        transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    before = {name: param.detach().clone() for name, param in transformer.named_parameters()}
    trained = [param for param in transformer.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-3, weight_decay=0.0)
    batch = collate_latents([tiny_dataset(latents_dir, tiny_model_dir)[0]])
    spec = load_model_spec(str(tiny_model_dir))
    loss = compute_loss(transformer, batch, FlowMatchingConfig(), StepInputs(0, 0, 0), 0, torch.float32, spec)
    loss.backward()
    optimizer.step()
    changed = {name for name, param in transformer.named_parameters() if not torch.equal(param, before[name])}
    if lora:
        # B starts at zero, so the first step moves every lora_B and nothing outside the adapter.
        assert changed == {name for name in before if "lora_B" in name}
        assert len(changed) == 2 * 2 * 4  # blocks x (attn1, attn2) x (to_q, to_k, to_v, to_out.0)
    else:
        with_grad = {name for name, param in transformer.named_parameters() if param.grad is not None}
        assert changed == with_grad and len(changed) > 0.9 * len(before)


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path, latents_dir, tiny_model_dir):
    common = ["--max_train_steps", "3", "--learning_rate", "1e-3", "--checkpointing_steps", "100"]
    common += ["--validation_steps", "100", "--caption_dropout", "0.2", "--lr_scheduler", "cosine"]
    common += ["--lr_warmup_steps", "2"]  # the schedule must advance once per step whatever the process count
    run_training("train_wan.py", tiny_model_dir, latents_dir, tmp_path / "one", "--train_batch_size", "2", *common)
    run_training(
        "train_wan.py", tiny_model_dir, latents_dir, tmp_path / "two", "--train_batch_size", "1", *common, nproc=2
    )
    one = load_file(tmp_path / "one" / "transformer" / "diffusion_pytorch_model.safetensors")
    two = load_file(tmp_path / "two" / "transformer" / "diffusion_pytorch_model.safetensors")
    base = load_file(Path(tiny_model_dir) / "transformer" / "diffusion_pytorch_model.safetensors")
    assert one.keys() == two.keys()
    assert any(not torch.equal(one[key], base[key]) for key in one), "training changed nothing"
    for key in one:
        # Same samples, noise and sigmas; only the float order of the gradient all-reduce differs. Adam divides
        # by sqrt(v), which magnifies that noise for parameters with near-zero gradients (cross-attention q/k),
        # so the bound is 1% of how far training moved the parameter.
        moved = (one[key] - base[key]).abs().max().item()
        assert (two[key] - one[key]).abs().max().item() <= 1e-6 + 0.01 * moved, key


@pytest.mark.parametrize(
    "script, vsa", [("train_wan_lora.py", False), ("train_wan.py", False), ("train_wan.py", True)]
)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, latents_dir, tiny_model_dir, script, vsa):
    # 6 rows, batch 1, accumulation 2: 3 steps per epoch; the checkpoint at step 2 sits mid-epoch.
    flags = ["--max_train_steps", "6", "--gradient_accumulation_steps", "2", "--checkpointing_steps", "2"]
    flags += [
        "--learning_rate",
        "1e-3",
        "--lr_scheduler",
        "cosine",
        "--lr_warmup_steps",
        "2",
        "--validation_steps",
        "100",
    ]
    flags += ["--rank", "4", "--lora_alpha", "8"] if "lora" in script else []
    if vsa:  # the gates must come back too, and the sparsity ramp must continue where it was
        flags += ["--attention_backend", "vsa", "--vsa_sparsity", "0.5", "--vsa_decay_rate", "0.25"]
        flags += ["--vsa_decay_interval_steps", "2", "--vsa_backend", "torch"]
    full = tmp_path / "uninterrupted"
    run_training(script, tiny_model_dir, latents_dir, full, *flags)
    state = json.loads((full / "checkpoint-2" / "training_state.json").read_text())
    assert {key: state[key] for key in ("global_step", "epoch", "batches_in_epoch")} == {
        "global_step": 2,
        "epoch": 0,
        "batches_in_epoch": 4,
    }

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-2", resumed / "checkpoint-2")  # the state a crash after step 2 leaves
    run_training(script, tiny_model_dir, latents_dir, resumed, *flags, "--resume_from_checkpoint", "latest")

    name = (
        "pytorch_lora_weights.safetensors" if "lora" in script else "transformer/diffusion_pytorch_model.safetensors"
    )
    expected, got = load_file(full / name), load_file(resumed / name)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_lora_output_loads_in_the_pipeline_and_unloads_cleanly(tmp_path, latents_dir, tiny_model_dir):
    output = tmp_path / "lora"
    run_training(
        "train_wan_lora.py",
        tiny_model_dir,
        latents_dir,
        output,
        "--max_train_steps",
        "4",
        "--learning_rate",
        "5e-3",
        "--rank",
        "4",
        "--lora_alpha",
        "8",
        "--validation_steps",
        "100",
        "--checkpointing_steps",
        "100",
    )
    pipe = WanPipeline.from_pretrained(tiny_model_dir)
    inputs = {"prompt": "A red circle", "height": 32, "width": 32, "num_frames": 5, "num_inference_steps": 2}

    def generate():
        return pipe(**inputs, output_type="pt", generator=torch.Generator().manual_seed(0)).frames

    base = generate()
    pipe.load_lora_weights(output)
    adapted = generate()
    assert (adapted - base).abs().max() > 1e-4
    config = pipe.transformer.peft_config["default_0"]
    assert (config.r, config.lora_alpha) == (4, 8)
    pipe.unload_lora_weights()
    torch.testing.assert_close(generate(), base, rtol=0, atol=0)


def test_a_dataset_made_for_another_model_is_refused(tmp_path, latents_dir, tiny_model_dir):
    card = read_card_metadata(latents_dir)
    spec = load_model_spec(str(tiny_model_dir))
    assert check_dataset_matches_model(card, str(tiny_model_dir), spec) == []
    with pytest.raises(DatasetModelMismatchError, match="text embedding size: dataset 32, model text_dim 4096"):
        check_dataset_matches_model(card, str(tiny_model_dir), replace(spec, text_dim=4096))
    with pytest.raises(DatasetModelMismatchError, match="encoded with"):
        check_dataset_matches_model(card, "Wan-AI/Wan2.1-T2V-14B-Diffusers", spec)

    other_model = tmp_path / "other-wan"
    shutil.copytree(tiny_model_dir, other_model)
    config_path = other_model / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config["latents_std"] = [value * 2 for value in config["latents_std"]]
    config_path.write_text(json.dumps(config))
    result = run_training(
        "train_wan.py", other_model, latents_dir, tmp_path / "out", "--max_train_steps", "1", check=False
    )
    assert result.returncode != 0
    assert "latents_std of the dataset's VAE differs" in result.stderr and "--allow_model_mismatch" in result.stderr
    allowed = run_training(
        "train_wan.py",
        other_model,
        latents_dir,
        tmp_path / "out2",
        "--max_train_steps",
        "1",
        "--allow_model_mismatch",
        "--validation_steps",
        "100",
    )
    assert "mismatch allowed" in allowed.stderr


def test_training_lowers_the_held_out_loss(tmp_path, latents_dir, tiny_model_dir, demo_dir):
    from fastvideo_hf.tools.demo_data import write_demo_dataset

    from ..helpers import make_builder

    held_out_raw = tmp_path / "held_out_raw"
    write_demo_dataset(held_out_raw, num_videos=2, seed=11)
    write_to_folder(make_builder(tiny_model_dir, data_dir=held_out_raw), tmp_path / "held_out")
    held_out = tiny_dataset(tmp_path / "held_out", tiny_model_dir)
    sigmas = [0.2, 0.5, 0.8]

    spec = load_model_spec(str(tiny_model_dir))
    base = WanTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    before = held_out_loss(base, held_out, spec, sigmas)
    output = tmp_path / "full"
    run_training(
        "train_wan.py",
        tiny_model_dir,
        latents_dir,
        output,
        "--max_train_steps",
        "60",
        "--learning_rate",
        "2e-3",
        "--train_batch_size",
        "2",
        "--validation_steps",
        "1000",
        "--checkpointing_steps",
        "1000",
    )
    after = held_out_loss(
        WanTransformer3DModel.from_pretrained(output, subfolder="transformer"), held_out, spec, sigmas
    )
    assert after < 0.8 * before, (before, after)
