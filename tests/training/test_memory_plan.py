"""The memory estimate of `fastvideo-hf plan` against what a real model holds.

Parameters, gradients and optimizer states must match a real instantiation byte for byte. Activations are measured
with autograd's saved-tensor hooks (every tensor saved for backward, counted once per storage, the weights left out)
on a tiny Wan transformer at two sizes, as a LoRA (bf16 base, float32 LoRA) and as a full finetune (float32 weights,
bf16 autocast), with and without gradient checkpointing, for Wan2.1 T2V, Wan2.1 I2V (CLIP tokens) and Wan2.2 TI2V's
per-token timesteps; the estimate must be within 15%.
"""

import json
from dataclasses import replace

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.training_utils import cast_training_params
from peft import LoraConfig

from fastvideo_hf.models.wan.family import KNOWN_MODELS, WAN
from fastvideo_hf.training.flow_matching import flow_matching_loss
from fastvideo_hf.training.memory_plan import (
    ModelShape,
    Options,
    TrainingSetup,
    count_parameters,
    estimate,
    latent_tokens,
    make_plan,
    resolve_model,
)

DEFAULT_LORA_TARGETS = WAN.default_lora_targets
build_meta_transformer = WAN.meta_transformer

TINY = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 4,
    "attention_head_dim": 16,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 176,
    "num_layers": 2,
    "rope_max_seq_len": 64,
}
TINY_SHAPE = ModelShape(WAN, "tiny", TINY, ("transformer",), vae_scale_spatial=8)
TINY_I2V = {**TINY, "image_dim": 24, "added_kv_proj_dim": 64}  # Wan2.1 I2V: CLIP tokens, image key/value projections
VARIANTS = {  # the model shape, and how the step calls the transformer
    "wan2.1-t2v": (TINY_SHAPE, {}),
    "wan2.1-i2v": (replace(TINY_SHAPE, config=TINY_I2V), {"image": True}),
    "ti2v-timesteps": (replace(TINY_SHAPE, expand_timesteps=True), {"per_token": True}),
}
RANK = 8
# (latent frames, latent height, latent width) -> the pixel size the estimate takes
SIZES = {(3, 16, 16): (128, 128, 9), (5, 16, 32): (128, 256, 17)}


def tiny_lora_model(fp8: bool = False, config: dict = TINY) -> torch.nn.Module:
    """As train_wan_lora.py prepares it: frozen bf16 base, float32 LoRA, optionally fp8 storage."""
    torch.manual_seed(0)
    model = WanTransformer3DModel.from_config(config)
    model.requires_grad_(False)
    model.to(dtype=torch.bfloat16)
    model.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=list(DEFAULT_LORA_TARGETS)))
    cast_training_params(model, dtype=torch.float32)
    if fp8:
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    return model


def tiny_full_model(config: dict = TINY) -> torch.nn.Module:
    """As train_wan.py prepares it: every weight trained, float32 master weights."""
    torch.manual_seed(0)
    return WanTransformer3DModel.from_config(config).to(torch.float32)


def run_step(model: torch.nn.Module, latent=(3, 16, 16), per_token: bool = False, image: bool = False):
    """One training forward as ``compute_loss`` runs it (bf16 inputs under Accelerate's bf16 autocast) and the
    flow-matching loss; ``per_token``: one timestep per token, as Wan2.2 TI2V-5B takes them; ``image``: 257 CLIP
    features, as Wan2.1 I2V takes them."""
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, *latent, generator=generator)
    prompt = torch.randn(1, 512, TINY["text_dim"], generator=generator)
    clip = torch.randn(1, 257, TINY_I2V["image_dim"], generator=generator).to(torch.bfloat16) if image else None
    tokens = latent[0] * latent[1] * latent[2] // 4
    timestep = torch.full((1, tokens), 500.0) if per_token else torch.tensor([500])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prediction = model(
            hidden_states=latents.to(torch.bfloat16),
            timestep=timestep,
            encoder_hidden_states=prompt.to(torch.bfloat16),
            encoder_hidden_states_image=clip,
            return_dict=False,
        )[0]
    return flow_matching_loss(prediction, torch.randn(latents.shape, generator=generator))


def nbytes(tensors) -> int:
    return sum(tensor.nbytes for tensor in tensors)


def setup_for(mode: str, latent=(3, 16, 16)) -> TrainingSetup:
    height, width, frames = SIZES[latent]
    return TrainingSetup(mode, height, width, frames, rank=RANK)


def parts_for(mode: str, options: Options, latent=(3, 16, 16), shape: ModelShape = TINY_SHAPE):
    rank = RANK if mode == "lora" else 0
    counts = count_parameters(build_meta_transformer(shape.config), rank, DEFAULT_LORA_TARGETS)
    return estimate(shape, counts, setup_for(mode, latent), options)


@pytest.mark.parametrize("fp8", [False, True])
def test_lora_weights_gradients_and_adam_states_are_exact(fp8):
    model = tiny_lora_model(fp8)
    parts = parts_for("lora", Options(layerwise_casting=fp8))
    frozen = [param for param in model.parameters() if not param.requires_grad]
    lora = [param for param in model.parameters() if param.requires_grad]
    assert parts.weights == nbytes(frozen)
    assert parts.lora == nbytes(lora)

    optimizer = torch.optim.AdamW(lora, lr=1e-4)
    run_step(model).backward()
    optimizer.step()
    assert parts.gradients == nbytes(param.grad for param in lora)
    states = [tensor for state in optimizer.state.values() for tensor in state.values()]
    assert all(state["step"].dim() == 0 for state in optimizer.state.values())  # a CPU scalar, never on the GPU
    assert parts.optimizer_states == nbytes(tensor for tensor in states if tensor.dim() > 0)


def test_full_finetune_weights_gradients_and_adam_states_are_exact():
    model = tiny_full_model()
    parts = parts_for("full", Options())
    assert parts.weights == nbytes(model.parameters()) and parts.lora == 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run_step(model).backward()
    optimizer.step()
    assert parts.gradients == nbytes(param.grad for param in model.parameters())
    states = [tensor for state in optimizer.state.values() for tensor in state.values() if tensor.dim() > 0]
    assert parts.optimizer_states == nbytes(states)


def test_meta_counts_match_a_real_model_with_its_lora():
    real = tiny_lora_model()
    counts = count_parameters(build_meta_transformer(TINY), RANK, DEFAULT_LORA_TARGETS)
    assert counts.lora == sum(param.numel() for param in real.parameters() if param.requires_grad)
    assert counts.total == sum(param.numel() for param in real.parameters() if not param.requires_grad)
    fp8 = tiny_lora_model(fp8=True)
    assert counts.fp8 == sum(param.numel() for param in fp8.parameters() if param.dtype == torch.float8_e4m3fn)


def saved_activation_bytes(model: torch.nn.Module, latent, **step) -> int:
    """Bytes of every tensor the forward and loss keep for backward, counted once per storage, weights excluded.

    Saved-tensor hooks see what autograd saves; under non-reentrant checkpointing a block saves nothing there (its
    own hooks drop it), and what it holds instead are its inputs, taken from a forward pre-hook."""
    weights = {tensor.untyped_storage().data_ptr() for tensor in [*model.parameters(), *model.buffers()]}
    kept, storages = [], {}

    def keep(tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
            kept.append(tensor)  # alive until counted: no storage address is reused meanwhile

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        keep(tensor)
        return tensor

    def block_inputs(module, args):
        for arg in args:
            for tensor in arg if isinstance(arg, tuple) else (arg,):
                keep(tensor)

    checkpointing = model.is_gradient_checkpointing
    handles = [block.register_forward_pre_hook(block_inputs) for block in model.blocks] if checkpointing else []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run_step(model, latent, **step)
    for handle in handles:
        handle.remove()
    return sum(storages.values())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
@pytest.mark.parametrize("mode", ["lora", "full"])
def test_activation_estimate_is_within_15_percent_of_the_saved_tensors(mode, checkpointing, variant):
    shape, step = VARIANTS[variant]
    for latent in SIZES:
        model = tiny_lora_model(config=shape.config) if mode == "lora" else tiny_full_model(shape.config)
        if checkpointing:
            model.enable_gradient_checkpointing()
        measured = saved_activation_bytes(model, latent, **step)
        parts = parts_for(mode, Options(gradient_checkpointing=checkpointing), latent, shape)
        estimated = parts.activations
        if mode == "full":  # the saved tensors include autocast's bf16 copies of the weights: the weight_copies part
            counts = count_parameters(build_meta_transformer(shape.config))
            recomputed = 2 * counts.linear_per_block * checkpointing  # the recomputed block's: only during backward
            estimated += parts.weight_copies - recomputed
        assert abs(estimated - measured) <= 0.15 * measured, (latent, estimated, measured)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_fp8_casting_keeps_the_upcast_weights_for_backward(checkpointing):
    """fp8 storage turns peft's input cast off (fewer saved copies) and, without checkpointing, autograd keeps the
    bf16 upcast of every cast weight until backward: the estimate's weight_copies, seen here as saved tensors."""
    for latent in SIZES:
        model = tiny_lora_model(fp8=True)
        if checkpointing:
            model.enable_gradient_checkpointing()
        measured = saved_activation_bytes(model, latent)
        parts = parts_for("lora", Options(gradient_checkpointing=checkpointing, layerwise_casting=True), latent)
        # with checkpointing the upcasts of the recomputed block exist only during backward
        estimated = parts.activations + (0 if checkpointing else parts.weight_copies)
        assert abs(estimated - measured) <= 0.15 * measured, (latent, estimated, measured)


def test_latent_tokens_follow_the_vae_and_patch():
    wan21 = resolve_model("Wan-AI/Wan2.1-T2V-14B-Diffusers")
    assert latent_tokens(wan21, 480, 832, 81) == 21 * 30 * 52 == 32_760
    assert latent_tokens(wan21, 720, 1280, 81) == 75_600
    ti2v = resolve_model("wan2.2-ti2v-5b")  # its VAE is 16x spatial
    assert latent_tokens(ti2v, 704, 1280, 121) == 31 * 22 * 40


def test_known_configs_have_the_published_sizes():
    distinct = ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-720p", "wan2.2-ti2v-5b")
    sizes = {name: count_parameters(build_meta_transformer(KNOWN_MODELS[name].config)).total for name in distinct}
    assert [round(sizes[name] / 1e9, 2) for name in distinct] == [1.42, 14.29, 16.39, 5.0]
    assert KNOWN_MODELS["wan2.2-t2v-a14b"].config == KNOWN_MODELS["wan2.1-t2v-14b"].config  # each expert is a 14B
    assert KNOWN_MODELS["wan2.2-t2v-a14b"].experts == ("transformer", "transformer_2")
    assert KNOWN_MODELS["wan2.1-i2v-14b-480p"].config == KNOWN_MODELS["wan2.1-i2v-14b-720p"].config


def test_both_experts_double_what_is_trained_but_not_the_activations():
    model = resolve_model("wan2.2-t2v-a14b")
    one, both = (
        make_plan(model, TrainingSetup("lora", 480, 832, 81, expert=expert), 80).rows[0].parts
        for expert in ("high", "both")
    )
    assert both.weights == 2 * one.weights and both.optimizer_states == 2 * one.optimizer_states
    assert both.activations == one.activations


def test_local_pipeline_folder_is_read_without_weights(tmp_path):
    """Only the configs of a pipeline folder are read: here a Wan2.2 TI2V-like folder with no weight file."""
    index = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}
    index["transformer_2"] = [None, None]  # as Wan2.2 TI2V-5B's model_index.json lists the absent second expert
    files = {
        "model_index.json": index,
        "transformer/config.json": {"_class_name": "WanTransformer3DModel", **TINY},
        "vae/config.json": {"scale_factor_spatial": 16, "scale_factor_temporal": 4},
    }
    for file, content in files.items():
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text(json.dumps(content))
    shape = resolve_model(str(tmp_path))
    assert shape.experts == ("transformer",) and shape.vae_scale_spatial == 16
    assert shape.config["ffn_dim"] == TINY["ffn_dim"]
    assert latent_tokens(shape, 256, 256, 9) == 3 * 8 * 8
