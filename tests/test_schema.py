import pyarrow.parquet as pq
import pytest
import torch

from fastvideo_hf.schema import columns_to_tensor, latent_features, tensor_to_columns

# DESIGN.md 3.2, in FastVideo's order.
T2V_COLUMNS = {
    "id": "string",
    "vae_latent_bytes": "binary",
    "vae_latent_shape": "list<element: int64>",
    "vae_latent_dtype": "string",
    "text_embedding_bytes": "binary",
    "text_embedding_shape": "list<element: int64>",
    "text_embedding_dtype": "string",
    "file_name": "string",
    "caption": "string",
    "media_type": "string",
    "width": "int64",
    "height": "int64",
    "num_frames": "int64",
    "duration_sec": "double",
    "fps": "double",
}


def test_features_match_the_fastvideo_column_layout():
    schema = latent_features("t2v").arrow_schema
    assert schema.names == list(T2V_COLUMNS)
    for name, arrow_type in T2V_COLUMNS.items():
        assert str(schema.field(name).type).replace("item", "element") == arrow_type, name


def test_written_shards_have_the_contract_columns_and_types(latents_dir):
    shard = sorted((latents_dir / "data").glob("*.parquet"))[0]
    schema = pq.read_schema(shard)
    assert schema.names == list(T2V_COLUMNS)
    for name, arrow_type in T2V_COLUMNS.items():
        assert str(schema.field(name).type).replace("item", "element") == arrow_type, name


@pytest.mark.parametrize("storage_dtype", ["float32", "bfloat16"])
def test_tensor_columns_round_trip(storage_dtype):
    tensor = torch.randn(16, 3, 4, 6)
    columns = tensor_to_columns("vae_latent", tensor, storage_dtype)
    assert columns["vae_latent_shape"] == [16, 3, 4, 6]
    assert columns["vae_latent_dtype"] == storage_dtype
    assert len(columns["vae_latent_bytes"]) == tensor.numel() * (4 if storage_dtype == "float32" else 2)
    restored = columns_to_tensor(columns, "vae_latent")
    expected = tensor.to(getattr(torch, storage_dtype))
    assert restored.dtype == expected.dtype
    assert torch.equal(restored, expected)


def test_unknown_storage_dtype_is_refused():
    with pytest.raises(ValueError, match="storage_dtype"):
        tensor_to_columns("x", torch.zeros(2), "float16")
