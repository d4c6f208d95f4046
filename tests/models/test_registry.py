"""The registry of model families: which model a folder holds, and one line for a model no family reads."""

import json
import shutil

import pytest
import torch

from fastvideo_hf.models import FAMILIES, family_of_transformer, load_model_spec
from fastvideo_hf.models.wan.family import WAN
from fastvideo_hf.testing import tiny_wan_transformer


def test_a_wan_folder_reads_as_wan_with_its_facts(tiny_model_dir):
    spec = load_model_spec(str(tiny_model_dir))
    assert spec.family is WAN and spec.pipeline_class == "WanPipeline" and spec.tasks == ("t2v",)
    assert spec.latent_shape(17, 64, 96) == [16, 5, 8, 12]  # 4x temporal, 8x spatial VAE
    assert spec.spatial_multiple == (16, 16) and spec.takes_frames(17) and not spec.takes_frames(16)
    assert spec.max_sequence_length == 512 and spec.text_dim == spec.prompt_embedding_dim == 32


def test_a_fastvideo_folder_under_its_own_pipeline_class_reads_as_wan(tmp_path, tiny_model_dir):
    """FastVideo publishes Wan models as ``WanDMDPipeline`` (its own class) over diffusers' Wan transformer."""
    folder = shutil.copytree(tiny_model_dir, tmp_path / "FastWan")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "WanDMDPipeline"}))
    assert load_model_spec(str(folder)).family is WAN


def test_a_pipeline_of_no_known_family_is_one_line_naming_the_families(tmp_path, tiny_model_dir):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "other")
    index = {"_class_name": "SomeOtherPipeline", "transformer": ["diffusers", "SomeTransformer3DModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError) as refused:
        load_model_spec(str(folder))
    message = str(refused.value)
    assert "\n" not in message and "SomeOtherPipeline" in message
    assert all(family.title in message and family.pipeline_classes[0] in message for family in FAMILIES)


def test_a_loaded_transformer_names_its_family_and_a_foreign_one_is_refused():
    assert family_of_transformer(tiny_wan_transformer()) is WAN
    with pytest.raises(ValueError, match="Linear is not the transformer of a family"):
        family_of_transformer(torch.nn.Linear(2, 2))
