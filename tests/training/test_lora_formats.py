"""Both Wan LoRA files written by ``save_lora`` load back through diffusers with the trained scale (alpha 8 / rank 4).

The adapter's weights are random (lora_B is not zero), so a load that dropped modules or the alpha/rank scale would
change the transformer's output; outputs are compared on one fixed random input.
"""

import logging
import re
import warnings
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
from diffusers import WanPipeline
from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from safetensors import safe_open

from fastvideo_hf.models.wan.family import WAN
from fastvideo_hf.tools.tiny_models import TEXT_DIM
from fastvideo_hf.training.lora_formats import comfy_state_dict, save_lora

COMFY_KEY_PREFIX = WAN.comfy_key_prefix


def diffusers_to_original_wan_key(name: str) -> str:
    return WAN.original_lora_key(name)[0]


RANK, ALPHA = 4, 8
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]
COMFY_NAME = "pytorch_lora_weights_comfy.safetensors"


def _inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(1, 16, 2, 8, 8, generator=generator),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(1, 7, TEXT_DIM, generator=generator),
    }


@torch.no_grad()
def _forward(pipe: WanPipeline) -> torch.Tensor:
    return pipe.transformer(**_inputs(), return_dict=False)[0]


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """A tiny transformer with a random r=4, alpha=8 adapter, saved in both formats, and its reference outputs."""
    pipe = WanPipeline.from_pretrained(tiny_model_dir)
    base = _forward(pipe)
    pipe.transformer.add_adapter(
        LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights=True, target_modules=TARGET_MODULES)
    )
    generator = torch.Generator().manual_seed(1)
    for name, param in pipe.transformer.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            param.data = 0.1 * torch.randn(param.shape, generator=generator)
    output_dir = tmp_path_factory.mktemp("lora") / "out"
    diffusers_path, comfy_path = save_lora(output_dir, pipe.transformer, WAN)
    return SimpleNamespace(
        transformer=pipe.transformer,
        output_dir=output_dir,
        diffusers_path=diffusers_path,
        comfy_path=comfy_path,
        base=base,
        adapted=_forward(pipe),
    )


@pytest.fixture
def fresh_pipe(tiny_model_dir, trained):
    """An unadapted pipeline, checked to give the base output."""
    pipe = WanPipeline.from_pretrained(tiny_model_dir)
    assert torch.equal(_forward(pipe), trained.base)
    return pipe


class _WarningRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _no_warnings():
    """Fail on any warning: diffusers only logs unexpected or missing LoRA keys instead of raising."""
    recorder = _WarningRecorder()
    diffusers_logger = logging.getLogger("diffusers")  # does not propagate to the root logger, so caplog misses it
    diffusers_logger.addHandler(recorder)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        diffusers_logger.removeHandler(recorder)
    assert recorder.messages + [str(warning.message) for warning in caught] == []


def test_files_are_written(trained):
    assert trained.diffusers_path == trained.output_dir / "pytorch_lora_weights.safetensors"
    assert trained.comfy_path == trained.output_dir / COMFY_NAME
    assert trained.diffusers_path.is_file() and trained.comfy_path.is_file()
    assert not torch.allclose(trained.adapted, trained.base, atol=1e-3)


def test_diffusers_file_loads_with_alpha_and_unloads(trained, fresh_pipe):
    with _no_warnings():
        fresh_pipe.load_lora_weights(trained.output_dir)
    (config,) = fresh_pipe.transformer.peft_config.values()
    assert (config.r, config.lora_alpha) == (RANK, ALPHA)
    torch.testing.assert_close(_forward(fresh_pipe), trained.adapted)

    with _no_warnings():
        fresh_pipe.unload_lora_weights()
    assert torch.equal(_forward(fresh_pipe), trained.base)


def test_comfy_keys_map_one_to_one_onto_wan_modules(trained):
    adapted = {name for name, module in trained.transformer.named_modules() if isinstance(module, LoraLayer)}
    assert len(adapted) == 2 * (4 + 4 + 2)  # 2 blocks x (self-attention q/k/v/o, cross-attention q/k/v/o, ffn)
    expected = {COMFY_KEY_PREFIX + diffusers_to_original_wan_key(name) for name in adapted}

    with safe_open(trained.comfy_path, "pt") as f:
        keys = set(f.keys())
        header = f.metadata()
        tensors = {key: f.get_tensor(key) for key in keys}
    assert all(key.startswith(COMFY_KEY_PREFIX + "blocks.") for key in keys)
    modules = {key.rsplit(".", 1)[0].removesuffix(".lora_A").removesuffix(".lora_B") for key in keys}
    assert modules == expected
    assert "diffusion_model.blocks.1.self_attn.o" in modules and "diffusion_model.blocks.0.ffn.2" in modules
    assert keys == {f"{m}.{suffix}" for m in modules for suffix in ("lora_A.weight", "lora_B.weight", "alpha")}
    for module in modules:
        assert tensors[f"{module}.alpha"].dtype == torch.float32 and tensors[f"{module}.alpha"].dim() == 0
        assert tensors[f"{module}.alpha"].item() == ALPHA
        assert tensors[f"{module}.lora_A.weight"].shape[0] == RANK
    assert (header["lora_rank"], header["lora_alpha"]) == (str(RANK), str(ALPHA))


def test_comfy_file_loads_like_the_diffusers_file(trained, fresh_pipe):
    with _no_warnings():
        fresh_pipe.load_lora_weights(trained.output_dir, weight_name=COMFY_NAME)
    torch.testing.assert_close(_forward(fresh_pipe), trained.adapted)


def test_key_prefix_is_honoured(trained, tmp_path, fresh_pipe):
    diffusers_path, _ = save_lora(tmp_path, trained.transformer, WAN, lora_key_prefix="transformer_2")
    with safe_open(diffusers_path, "pt") as f:
        assert all(key.startswith("transformer_2.blocks.") for key in f.keys())
    # The model-level loader only looks for a .bin file unless told the weight name.
    with _no_warnings():
        fresh_pipe.transformer.load_lora_adapter(tmp_path, weight_name=diffusers_path.name, prefix="transformer_2")
    torch.testing.assert_close(_forward(fresh_pipe), trained.adapted)


def test_mapping_is_the_inverse_of_diffusers_converter():
    """Every mapped module, with rank/alpha patterns, survives diffusers' own original-Wan -> diffusers conversion."""
    names = [f"blocks.3.{suffix}" for suffix in ("attn1.to_q", "attn1.to_out.0", "attn2.to_k", "attn2.to_out.0")]
    names += [f"blocks.{i}.attn2.{proj}" for i in (3, 4) for proj in ("add_k_proj", "add_v_proj")]
    names += ["blocks.4.ffn.net.0.proj", "blocks.4.ffn.net.2", "proj_out", "condition_embedder.time_proj"]
    names += [f"condition_embedder.{part}_embedder.linear_{i}" for part in ("text", "time") for i in (1, 2)]
    names += [f"condition_embedder.image_embedder.ff.net.{i}" for i in ("0.proj", "2")]
    config = LoraConfig(r=4, lora_alpha=8, rank_pattern={"ffn.net.2": 2}, alpha_pattern={"to_out.0": 3, "proj_out": 1})
    generator = torch.Generator().manual_seed(0)
    peft_state_dict = {}
    for name in names:
        rank = 2 if name.endswith("ffn.net.2") else 4
        peft_state_dict[f"{name}.lora_A.weight"] = torch.randn(rank, 6, generator=generator, dtype=torch.float64)
        peft_state_dict[f"{name}.lora_B.weight"] = torch.randn(5, rank, generator=generator, dtype=torch.float64)

    converted = _convert_non_diffusers_wan_lora_to_diffusers(comfy_state_dict(peft_state_dict, config, WAN))

    assert set(converted) == {f"transformer.{key}" for key in peft_state_dict}
    for name in names:
        rank = peft_state_dict[f"{name}.lora_A.weight"].shape[0]
        alpha = 3 if name.endswith("to_out.0") else 1 if name == "proj_out" else 8
        delta = peft_state_dict[f"{name}.lora_B.weight"] @ peft_state_dict[f"{name}.lora_A.weight"]
        loaded = converted[f"transformer.{name}.lora_B.weight"] @ converted[f"transformer.{name}.lora_A.weight"]
        torch.testing.assert_close(loaded, alpha / rank * delta, msg=name)


@pytest.mark.parametrize("name", ["patch_embedding", "blocks.0.norm2", "blocks.0.attn1.norm_q", "blocks.0.ffn.act"])
def test_unknown_module_raises_naming_it(name):
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        diffusers_to_original_wan_key(name)
    state_dict = {f"{name}.lora_A.weight": torch.zeros(4, 2), f"{name}.lora_B.weight": torch.zeros(2, 4)}
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        comfy_state_dict(state_dict, LoraConfig(r=4, lora_alpha=8), WAN)


def test_non_lora_weights_are_refused_not_dropped():
    state_dict = {
        "blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 2),
        "blocks.0.attn1.to_q.lora_B.weight": torch.zeros(2, 4),
        "blocks.0.attn1.to_q.lora_B.bias": torch.zeros(2),
    }
    with pytest.raises(ValueError, match=r"blocks\.0\.attn1\.to_q\.lora_B\.bias"):
        comfy_state_dict(state_dict, LoraConfig(r=4, lora_alpha=8), WAN)
