"""Each private internal we use still exists and behaves as we rely on (``fastvideo_hf.library_internals``).

The paths that use them are tested end to end elsewhere; these tests name the internal that moved, so that when
``make check-latest`` fails on a new release the failing test says which function of ``library_internals`` to fix.
"""

import torch
from datasets import Features, List, Value, load_dataset
from diffusers import WanTransformer3DModel
from diffusers.hooks import apply_group_offloading

from fastvideo_hf import library_internals as internals


def tiny_transformer(tiny_model_dir) -> WanTransformer3DModel:
    return WanTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer")


def test_wan_qkv_projections_are_the_attention_linears(tiny_model_dir):
    attn = tiny_transformer(tiny_model_dir).blocks[0].attn1
    hidden = torch.randn(1, 8, attn.to_q.in_features)
    query, key, value = internals.wan_qkv_projections(attn, hidden)
    for got, linear in ((query, attn.to_q), (key, attn.to_k), (value, attn.to_v)):
        torch.testing.assert_close(got, linear(hidden))


def test_layerwise_casting_layer_types_cover_linear_and_conv():
    assert {torch.nn.Linear, torch.nn.Conv3d} <= set(internals.layerwise_casting_layer_types())


def test_offload_groups_list_and_take_their_tensors(tiny_model_dir):
    model = tiny_transformer(tiny_model_dir)
    apply_group_offloading(model, torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1)
    groups = internals.offload_groups(model)
    assert len(groups) == len(model.blocks) + 1  # a group per block and one for what lies outside them
    moved = {id(tensor) for group in groups for tensor in internals.group_tensors(group)}
    assert {id(param) for param in model.parameters()} <= moved
    group = groups[0]
    frozen = internals.group_tensors(group)[:2]
    internals.set_group_tensors(group, frozen, [])
    assert [id(t) for t in internals.group_tensors(group)] == [id(t) for t in frozen]


def test_parallel_config_is_unset_before_enable_parallelism(tiny_model_dir):
    assert internals.parallel_config_of(tiny_transformer(tiny_model_dir)) is None


def test_context_parallel_config_keeps_its_ulysses_mesh():
    from diffusers import ContextParallelConfig
    from diffusers.models.attention_dispatch import SeqAllToAllDim

    assert "_ulysses_mesh" in ContextParallelConfig.__dataclass_fields__
    assert issubclass(SeqAllToAllDim, torch.autograd.Function)


def test_parquet_writer_writes_shards_load_dataset_reads(tmp_path):
    features = Features({"id": Value("string"), "shape": List(Value("int64"))})
    path = tmp_path / "shard.parquet"
    writer = internals.parquet_writer(features, str(path), writer_batch_size=1)
    for index in range(3):
        writer.write({"id": f"row-{index}", "shape": [index, 2]})
    writer.finalize()
    writer.close()
    rows = load_dataset("parquet", data_files=str(path), split="train")
    assert rows.features == features
    assert rows["id"] == ["row-0", "row-1", "row-2"] and rows["shape"][2] == [2, 2]


def test_lora_pattern_key_matches_as_peft_does():
    patterns = ["attn1.to_q", "blocks.1.ffn.net.2"]
    assert internals.lora_pattern_key(patterns, "blocks.0.attn1.to_q") == "attn1.to_q"
    assert internals.lora_pattern_key(patterns, "blocks.1.ffn.net.2") == "blocks.1.ffn.net.2"
    assert internals.lora_pattern_key(patterns, "blocks.0.attn2.to_q") == "blocks.0.attn2.to_q"  # no pattern


def test_dynamo_recompile_limit_is_raised_only_inside():
    before = torch._dynamo.config.recompile_limit
    with internals.dynamo_recompile_limit_at_least(before + 5):
        assert torch._dynamo.config.recompile_limit == before + 5
    with internals.dynamo_recompile_limit_at_least(1):
        assert torch._dynamo.config.recompile_limit == before
    assert torch._dynamo.config.recompile_limit == before


def test_ring_cuda_backend_is_a_context_parallel_diffusers_backend():
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    backend = AttentionBackendName(internals.RING_CUDA_BACKEND)
    assert _AttentionBackendRegistry._is_context_parallel_available(backend)


def test_cpu_attention_ops_replace_the_native_ones_and_return_the_log_sum_exp(monkeypatch):
    from diffusers.models import attention_dispatch

    for name in ("_native_attention_forward_op", "_native_attention_backward_op"):
        monkeypatch.setattr(attention_dispatch, name, getattr(attention_dispatch, name))  # undone after the test
    internals.use_cpu_attention_with_lse()
    assert attention_dispatch._native_attention_forward_op is internals._cpu_attention_forward_op
    query, key, value = (torch.randn(1, 16, 2, 8, requires_grad=True) for _ in range(3))  # [B, S, H, D]

    class Ctx:
        def save_for_backward(self, *tensors):
            self.saved_tensors = tensors

    ctx = Ctx()
    out, lse = attention_dispatch._native_attention_forward_op(ctx, query, key, value, return_lse=True)
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2))
    scores = (q @ k.transpose(-1, -2)) / 8**0.5
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1).transpose(1, 2))
    grad_out = torch.randn_like(out)
    grads = attention_dispatch._native_attention_backward_op(ctx, grad_out)
    expected = torch.autograd.grad(
        torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2), (query, key, value), grad_out
    )
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_ddp_can_be_told_to_ignore_parameters():
    model = torch.nn.Linear(2, 2)
    internals.ddp_ignore_parameters(model, ["weight"])
    assert model._ddp_params_and_buffers_to_ignore == ["weight"]
