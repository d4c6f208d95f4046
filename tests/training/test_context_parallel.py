"""Context parallelism: Ulysses and ring runs of real `torchrun` processes (gloo) equal the one-process run."""

import argparse
import io

import av
import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from diffusers import WanTransformer3DModel
from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry
from PIL import Image
from safetensors.torch import load_file

from fastvideo_hf.models import load_model_spec
from fastvideo_hf.refusal import SettingRefused
from fastvideo_hf.tools.loss_curve import read_scalar
from fastvideo_hf.training.args import build_training_parser
from fastvideo_hf.training.context_parallel import (
    ContextParallelBatchSampler,
    ParallelLayout,
    check_context_parallel_args,
    check_model_supports,
    check_token_counts,
    parallel_layout,
    use_ring_attention_backend,
)
from fastvideo_hf.training.latent_dataset import SameShapeBatchSampler
from fastvideo_hf.training.validation import ValidationEntry

from ..helpers import run_training

LORA_FLAGS = ["--max_train_steps", "2", "--learning_rate", "1e-3", "--checkpointing_steps", "100"]
LORA_FLAGS += ["--validation_steps", "2", "--caption_dropout", "0.2", "--rank", "4", "--lora_alpha", "8"]
LORA_FLAGS += ["--report_to", "tensorboard"]  # the logged gradient norm shows the gradient's scale
# validation under context parallelism: every process runs the pipeline (the hooks split its sequence too)
LORA_FLAGS += ["--validation_prompt", "a red circle", "--validation_num_inference_steps", "2"]
VSA_FLAGS = ["--attention_backend", "vsa", "--vsa_sparsity", "0.5", "--vsa_decay_rate", "0.25"]
VSA_FLAGS += ["--vsa_decay_interval_steps", "1", "--vsa_backend", "torch"]


def assert_same_run(reference, other):
    """Same LoRA weights (only the float order of the reductions differs) and the same pre-clip gradient norms:
    Adam and clipping hide a wrong gradient scale from the weights, the norm does not."""
    expected = load_file(reference / "pytorch_lora_weights.safetensors")
    got = load_file(other / "pytorch_lora_weights.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-5, msg=key)
    steps, norms = read_scalar(reference / "logs", "grad_norm")
    other_steps, other_norms = read_scalar(other / "logs", "grad_norm")
    assert list(steps) == list(other_steps) == [1, 2]
    torch.testing.assert_close(torch.tensor(other_norms), torch.tensor(norms), rtol=1e-5, atol=0)
    videos = [run / "validation" / "step-2" / "video_0.mp4" for run in (reference, other)]
    assert [frame_count(video) for video in videos] == [17, 17]
    # the frames before x264 (which turns float-order noise into whole blocks coded differently): the tensorboard
    # strip of 4 frames, stored as PNG
    strip, other_strip = (validation_strip(run / "logs") for run in (reference, other))
    assert strip.shape == other_strip.shape == (64, 4 * 96, 3)
    assert np.abs(strip.astype(int) - other_strip).max() <= 2


def frame_count(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def validation_strip(log_dir) -> np.ndarray:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = []
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["images"]:
            images += accumulator.Images(tag) if tag.startswith("validation/") else []
    (image,) = images
    return np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, latents_dir, tiny_model_dir):
    """The reference: one process, global batch 2 (dense, or VSA), run once for the tests of this module."""
    runs = {}

    def run(vsa: bool):
        if vsa not in runs:
            runs[vsa] = tmp_path_factory.mktemp("one-process") / "out"
            flags = [*LORA_FLAGS, "--train_batch_size", "2", *(VSA_FLAGS if vsa else [])]
            run_training("train_wan_lora.py", tiny_model_dir, latents_dir, runs[vsa], *flags)
        return runs[vsa]

    return run


@pytest.mark.parametrize("vsa", [False, True], ids=["dense", "vsa"])
def test_ulysses_over_two_processes_equals_one_process(tmp_path, latents_dir, tiny_model_dir, one_process_run, vsa):
    # Both ranks of the one Ulysses group take the same 2 rows; each holds half of every sequence outside
    # attention (VSA: the whole sequence for one of the two heads inside it).
    flags = [*LORA_FLAGS, "--train_batch_size", "2", *(VSA_FLAGS if vsa else [])]
    result = run_training(
        "train_wan_lora.py",
        tiny_model_dir,
        latents_dir,
        tmp_path / "ulysses",
        *flags,
        "--context_parallel_ulysses",
        "2",
        nproc=2,
    )
    assert "1 data-parallel rank(s) x (ring 1 x ulysses 2)" in result.stderr
    assert_same_run(one_process_run(vsa), tmp_path / "ulysses")


def test_ring_over_two_processes_equals_one_process(tmp_path, latents_dir, tiny_model_dir, one_process_run):
    # Ring attention merges each process's partial attention with its log-sum-exp: diffusers' default native
    # backend refused to return it at the first step ("Native attention does not support return_lse=True").
    result = run_training(
        "train_wan_lora.py",
        tiny_model_dir,
        latents_dir,
        tmp_path / "ring",
        *LORA_FLAGS,
        "--train_batch_size",
        "2",
        "--context_parallel_ring",
        "2",
        nproc=2,
    )
    assert "1 data-parallel rank(s) x (ring 2 x ulysses 1)" in result.stderr
    assert_same_run(one_process_run(False), tmp_path / "ring")


def test_two_data_parallel_ranks_of_two_ulysses_processes_equal_one_process(
    tmp_path, latents_dir, tiny_model_dir, one_process_run
):
    # 4 processes on one 2-D mesh: data-parallel ranks {0, 1} and {2, 3} each take one of the batch's 2 rows.
    result = run_training(
        "train_wan_lora.py",
        tiny_model_dir,
        latents_dir,
        tmp_path / "mesh",
        *LORA_FLAGS,
        "--train_batch_size",
        "1",
        "--context_parallel_ulysses",
        "2",
        nproc=4,
    )
    assert "2 data-parallel rank(s) x (ring 1 x ulysses 2)" in result.stderr
    assert_same_run(one_process_run(False), tmp_path / "mesh")


def test_a_group_shares_its_rows_and_every_row_is_seen_once_per_epoch():
    # 7 rows in two shapes, 3 data-parallel ranks x 2 context-parallel ranks, 1 row per process: what each of the
    # 6 processes receives from Accelerate's own split of the global batches.
    shapes = [(16, 5, 8, 12)] * 4 + [(16, 1, 8, 12)] * 3
    layout = ParallelLayout(ulysses=2, world_size=6)
    inner = SameShapeBatchSampler(shapes, 1 * layout.data_parallel_size, seed=3)
    sampler = ContextParallelBatchSampler(inner, train_batch_size=1, degree=layout.degree)
    sampler.set_epoch(1)
    shards = [list(BatchSamplerShard(sampler, 6, rank, split_batches=True)) for rank in range(6)]
    assert len(sampler) == len(inner) == 3
    seen = []
    for step in range(len(sampler)):
        per_rank = [shards[rank][step] for rank in range(6)]
        assert per_rank[0] == per_rank[1] and per_rank[2] == per_rank[3] and per_rank[4] == per_rank[5]
        rows = per_rank[0] + per_rank[2] + per_rank[4]
        assert len({shapes[row] for row in rows}) == 1  # one shape per step
        seen += rows
    assert set(seen) == set(range(7))  # every row; the smaller bucket's batch is completed with one repeat
    assert len(seen) == 9


def parsed(*flags):
    return build_training_parser("test", lora=True).parse_args(
        ["--pretrained_model_name_or_path", "m", "--dataset_name", "d", "--output_dir", "o", *flags]
    )


def test_impossible_layouts_are_refused_with_what_to_do(tiny_model_dir):
    with pytest.raises(ValueError, match="ring attention splits the keys"):
        check_context_parallel_args(parsed("--context_parallel_ring", "2", "--attention_backend", "vsa"))
    with pytest.raises(ValueError, match="not supported together"):
        check_context_parallel_args(parsed("--context_parallel_ulysses", "2", "--group_offload", "block_level"))
    with pytest.raises(ValueError, match="does not divide the 6 processes"):
        parallel_layout(argparse.Namespace(context_parallel_ulysses=4, context_parallel_ring=1), 6, 0)

    transformer = WanTransformer3DModel.from_pretrained(tiny_model_dir, subfolder="transformer")
    with pytest.raises(ValueError, match="must divide the 2 attention heads"):
        check_model_supports(transformer, ParallelLayout(ulysses=4, world_size=4))

    # a GPU's ring attention runs diffusers' cuDNN backend: bf16 / fp16 only, refused (not crashed) otherwise
    with pytest.raises(SettingRefused, match="add --mixed_precision bf16"):
        use_ring_attention_backend(transformer, torch.device("cuda"), torch.float32)
    with pytest.raises(SettingRefused, match="use --context_parallel_ulysses"):
        use_ring_attention_backend(transformer, torch.device("mps"), torch.bfloat16)
    active = _AttentionBackendRegistry._active_backend  # set_attention_backend also sets the process's default
    try:
        use_ring_attention_backend(transformer, torch.device("cuda"), torch.bfloat16)
    finally:
        _AttentionBackendRegistry.set_active_backend(active)
    backends = {
        module.processor._attention_backend for module in transformer.modules() if hasattr(module, "processor")
    }
    assert backends == {AttentionBackendName._NATIVE_CUDNN}  # returns the log-sum-exp, supports context parallelism

    spec = load_model_spec(str(tiny_model_dir))
    layout = ParallelLayout(ulysses=2, ring=2, world_size=4)
    # latents of 17 frames at 64x96: 5 x 4 x 6 = 120 tokens; 7 x 4 x 6 = 168; 1 frame: 24; all divide by 4
    check_token_counts([(16, 5, 8, 12), (16, 1, 8, 12)], [], spec, layout)
    with pytest.raises(ValueError, match=r"dataset latents 5x8x10 -> 100 tokens.*validation 64x80x17"):
        odd = ValidationEntry("a cat", height=64, width=80, num_frames=17, num_inference_steps=2)
        check_token_counts([(16, 5, 8, 10)], [odd], spec, ParallelLayout(ulysses=8, world_size=8))
