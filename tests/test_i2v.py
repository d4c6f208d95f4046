"""Image-to-video and Wan2.2: conditioning equal to diffusers' I2V pipeline, experts, TI2V, refusals."""

import pytest
import torch
from diffusers import WanImageToVideoPipeline, WanPipeline
from safetensors.torch import load_file

from fastvideo_hf.models import load_model_spec
from fastvideo_hf.preprocess.writer import write_to_folder
from fastvideo_hf.schema import columns_to_tensor
from fastvideo_hf.tools.tiny_models import save_tiny_wan_pipeline
from fastvideo_hf.training.flow_matching import FlowMatchingConfig, sample_generators, sample_sigmas

from .helpers import PREPROCESS_SETTINGS, decoded_first_frame, make_builder, rows_by_id, run_training

FLAGS = ["--max_train_steps", "3", "--learning_rate", "5e-3", "--checkpointing_steps", "100"]
FLAGS += ["--validation_steps", "100", "--caption_dropout", "0.0"]


@pytest.fixture(scope="module")
def i2v(tmp_path_factory, demo_dir):
    """Tiny image-to-video models and their I2V latent datasets (Wan2.1 with CLIP, A14B, TI2V-5B)."""
    root = tmp_path_factory.mktemp("i2v")
    out = {}
    for model in ("wan2.1", "wan2.2-a14b", "wan2.2-ti2v-5b"):
        model_dir = save_tiny_wan_pipeline(root / f"{model}-i2v", task="i2v", model=model)
        latents = root / f"{model}-i2v-latents"
        write_to_folder(make_builder(model_dir, data_dir=demo_dir, task="i2v"), latents)
        out[model] = (model_dir, latents)
    return out


def test_stored_first_frame_latent_and_clip_features_equal_the_i2v_pipelines(i2v, demo_dir):
    model_dir, latents = i2v["wan2.1"]
    row = rows_by_id(latents)["clip_0003.mp4"]
    image = decoded_first_frame(demo_dir / "videos" / "clip_0003.mp4", **PREPROCESS_SETTINGS)
    pipe = WanImageToVideoPipeline.from_pretrained(model_dir)
    pixels = pipe.video_processor.preprocess(image, height=64, width=96)
    _, condition = pipe.prepare_latents(pixels, 1, 16, 64, 96, 17, torch.float32, "cpu")
    torch.testing.assert_close(columns_to_tensor(row, "first_frame_latent"), condition[0, 4:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(columns_to_tensor(row, "clip_feature"), pipe.encode_image(image, "cpu")[0])
    assert row["clip_feature_shape"] == [65, 4]

    a14b_row = rows_by_id(i2v["wan2.2-a14b"][1])["clip_0003.mp4"]
    assert a14b_row["clip_feature_bytes"] == b"" and a14b_row["clip_feature_shape"] == []  # no image encoder


def build_transformer_call(spec, latents, timesteps, prompt_embeds, first_frame_latent):
    """The family's training call of a batch whose image-to-video conditioning is ``first_frame_latent``."""
    return spec.family.transformer_call(
        spec, latents, timesteps, prompt_embeds, {"first_frame_latent": first_frame_latent}
    )


@pytest.mark.parametrize("model", ["wan2.1", "wan2.2-ti2v-5b"])
def test_training_input_equals_the_pipelines_denoising_input(i2v, demo_dir, model):
    model_dir, _ = i2v[model]
    pipe = WanImageToVideoPipeline.from_pretrained(model_dir)
    spec = load_model_spec(str(model_dir))
    image = decoded_first_frame(demo_dir / "videos" / "clip_0001.mp4", **PREPROCESS_SETTINGS)
    pixels = pipe.video_processor.preprocess(image, height=64, width=96)
    channels = pipe.vae.config.z_dim
    generator = torch.Generator().manual_seed(0)
    outputs = pipe.prepare_latents(pixels, 1, channels, 64, 96, 17, torch.float32, "cpu", generator)
    t = torch.tensor([700.0])
    text = torch.randn(1, 512, 32)
    if spec.expand_timesteps:  # WanImageToVideoPipeline.__call__, Wan2.2 TI2V branch
        latents, condition, mask = outputs
        expected_input = (1 - mask) * condition + mask * latents
        expected_timestep = (mask[0][0][:, ::2, ::2] * t).flatten().unsqueeze(0)
        first_frame_latent = condition
    else:  # the Wan2.1 branch
        latents, condition = outputs
        expected_input = torch.cat([latents, condition], dim=1)
        expected_timestep = t.expand(1)
        first_frame_latent = condition[:, 4:]
    call = build_transformer_call(spec, latents, t, text, first_frame_latent)
    torch.testing.assert_close(call.hidden_states, expected_input, rtol=0, atol=0)
    torch.testing.assert_close(call.timestep, expected_timestep, rtol=0, atol=0)


def test_i2v_lora_loads_in_the_i2v_pipeline_and_changes_its_output(tmp_path, i2v, demo_dir):
    model_dir, latents = i2v["wan2.1"]
    output = tmp_path / "lora"
    run_training("train_wan_lora.py", model_dir, latents, output, *FLAGS, "--rank", "4", "--lora_alpha", "4")
    pipe = WanImageToVideoPipeline.from_pretrained(model_dir)
    image = decoded_first_frame(demo_dir / "videos" / "clip_0002.mp4", **PREPROCESS_SETTINGS)

    def generate():
        return pipe(
            image=image,
            prompt="a circle",
            height=64,
            width=96,
            num_frames=17,
            num_inference_steps=2,
            output_type="pt",
            generator=torch.Generator().manual_seed(0),
        ).frames

    base = generate()
    pipe.load_lora_weights(output)
    assert (generate() - base).abs().max() > 1e-4


def test_high_noise_expert_sees_only_timesteps_above_the_boundary_and_trains_only_transformer(tmp_path, i2v):
    model_dir, latents = i2v["wan2.2-a14b"]
    spec = load_model_spec(str(model_dir))
    assert spec.boundary_ratio == 0.9
    for expert, (low, high) in (("high", (0.9, 1.0)), ("low", (0.0, 0.9))):
        min_sigma, max_sigma = spec.sigma_range(expert)
        config = FlowMatchingConfig(
            weighting_scheme="logit_normal", flow_shift=5.0, min_sigma=min_sigma, max_sigma=max_sigma
        )
        sigmas = sample_sigmas(config, sample_generators(0, 0, 0, list(range(2000))))
        assert sigmas.min() >= low and sigmas.max() <= high, expert
        assert sigmas.max() - sigmas.min() > 0.5 * (high - low)  # the whole side is covered, not one point

    output = tmp_path / "high"
    run_training("train_wan.py", model_dir, latents, output, *FLAGS, "--expert", "high")
    assert (output / "transformer").is_dir() and not (output / "transformer_2").exists()
    base = load_file(model_dir / "transformer" / "diffusion_pytorch_model.safetensors")
    trained = load_file(output / "transformer" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(trained[key], base[key]) for key in base)

    refused = run_training("train_wan.py", model_dir, latents, tmp_path / "none", *FLAGS, check=False)
    assert refused.returncode != 0 and "--expert high" in refused.stderr


def test_low_noise_expert_lora_loads_into_transformer_2(tmp_path, i2v):
    model_dir, latents = i2v["wan2.2-a14b"]
    output = tmp_path / "low"
    run_training("train_wan_lora.py", model_dir, latents, output, *FLAGS, "--expert", "low", "--rank", "4")
    pipe = WanImageToVideoPipeline.from_pretrained(model_dir)
    pipe.load_lora_weights(output, load_into_transformer_2=True)
    assert pipe.transformer_2.peft_config and not getattr(pipe.transformer, "peft_config", None)


def test_ti2v_trains_text_to_video_and_its_lora_loads(tmp_path, demo_dir):
    model_dir = save_tiny_wan_pipeline(tmp_path / "ti2v", task="t2v", model="wan2.2-ti2v-5b")
    latents = tmp_path / "ti2v-t2v-latents"
    write_to_folder(make_builder(model_dir, data_dir=demo_dir), latents)
    output = tmp_path / "lora"
    run_training("train_wan_lora.py", model_dir, latents, output, *FLAGS, "--rank", "4")
    pipe = WanPipeline.from_pretrained(model_dir)
    inputs = {"prompt": "a square", "height": 64, "width": 96, "num_frames": 17, "num_inference_steps": 2}
    base = pipe(**inputs, output_type="pt", generator=torch.Generator().manual_seed(0)).frames
    pipe.load_lora_weights(output)
    adapted = pipe(**inputs, output_type="pt", generator=torch.Generator().manual_seed(0)).frames
    assert (adapted - base).abs().max() > 1e-4


def test_ti2v_image_to_video_training_ignores_the_given_first_frame_in_the_loss(i2v):
    model_dir, _ = i2v["wan2.2-ti2v-5b"]
    spec = load_model_spec(str(model_dir))
    latents, first = torch.randn(2, 48, 5, 4, 6), torch.randn(2, 48, 1, 4, 6)
    call = build_transformer_call(spec, latents, torch.tensor([300.0, 800.0]), torch.zeros(2, 512, 32), first)
    assert call.loss_mask[:, :, 0].sum() == 0 and call.loss_mask[:, :, 1:].min() == 1
    assert torch.equal(call.hidden_states[:, :, 0], first[:, :, 0])
    assert call.timestep.shape == (2, 5 * 2 * 3) and torch.all(call.timestep[:, :6] == 0)
    assert torch.all(call.timestep[1, 6:] == 800)


def test_a_t2v_dataset_is_refused_by_i2v_training(tmp_path, i2v, latents_dir):
    model_dir, _ = i2v["wan2.1"]
    result = run_training("train_wan_lora.py", model_dir, latents_dir, tmp_path / "out", *FLAGS, check=False)
    assert result.returncode != 0
    assert "trains image-to-video but the dataset holds text-to-video latents" in result.stderr
    assert "--task i2v" in result.stderr


@pytest.mark.parametrize("script", ["train_wan.py", "train_wan_lora.py"])
def test_both_experts_train_in_one_run_each_on_its_timesteps(tmp_path, i2v, script):
    model_dir, latents = i2v["wan2.2-a14b"]
    output = tmp_path / "both"
    extra = ["--rank", "4"] if "lora" in script else []
    run_training(script, model_dir, latents, output, *FLAGS, "--expert", "both", "--train_batch_size", "4", *extra)
    pipe = WanImageToVideoPipeline.from_pretrained(model_dir)
    if "lora" in script:
        pipe.load_lora_weights(output)
        pipe.load_lora_weights(
            output, weight_name="pytorch_lora_weights_transformer_2.safetensors", load_into_transformer_2=True
        )
        assert pipe.transformer.peft_config and pipe.transformer_2.peft_config
        return
    for slot in ("transformer", "transformer_2"):
        base = load_file(model_dir / slot / "diffusion_pytorch_model.safetensors")
        trained = load_file(output / slot / "diffusion_pytorch_model.safetensors")
        assert any(not torch.equal(trained[key], base[key]) for key in base), f"{slot} did not train"


def test_experts_route_each_sample_by_its_timestep(i2v):
    from fastvideo_hf.models.wan.experts import WanExperts

    calls = []

    class Recorder(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image, return_dict):
            calls.append((self.name, timestep.tolist()))
            return (hidden_states * (1 if self.name == "high" else -1),)

    experts = WanExperts(Recorder("high"), Recorder("low"), boundary_ratio=0.9)
    x = torch.arange(4.0).view(4, 1, 1, 1, 1) + 1
    (out,) = experts(x, torch.tensor([950.0, 100.0, 900.0, 899.0]), torch.zeros(4, 2, 3))
    assert calls == [("high", [950.0, 900.0]), ("low", [100.0, 899.0])]
    assert out.flatten().tolist() == [1.0, -2.0, 3.0, -4.0]


def test_ti2v_trains_image_to_video_with_a_clean_first_frame(tmp_path, i2v):
    model_dir, latents = i2v["wan2.2-ti2v-5b"]
    output = tmp_path / "ti2v-i2v"
    run_training("train_wan_lora.py", model_dir, latents, output, *FLAGS, "--rank", "4", "--report_to", "tensorboard")
    from fastvideo_hf.tools.loss_curve import read_scalar

    steps, losses = read_scalar(output / "logs")
    assert steps.tolist() == [1, 2, 3] and torch.isfinite(torch.tensor(losses)).all()
    pipe = WanImageToVideoPipeline.from_pretrained(model_dir)
    pipe.load_lora_weights(output)
    assert pipe.transformer.peft_config
