"""A LoRA trains over a dataset of several (frames, height, width) buckets, and validates at its usual size."""

import av
import pytest

from fastvideo_hf.preprocess.__main__ import main as preprocess_main
from fastvideo_hf.training.validation import most_common_video_bucket

from ..helpers import run_training
from ..preprocess.test_buckets import bucket_args, card, mixed_dir  # noqa: F401 (the fixture)


@pytest.fixture(scope="module")
def mixed_latents(tmp_path_factory, tiny_model_dir, mixed_dir):  # noqa: F811
    output = tmp_path_factory.mktemp("mixed_latents") / "out"
    assert preprocess_main(bucket_args(tiny_model_dir, mixed_dir, output)) == 0
    return output


def test_lora_trains_over_mixed_buckets_one_shape_per_batch_and_validates_at_the_usual_bucket(
    tmp_path, tiny_model_dir, mixed_latents
):
    # rows: 17x64x96 (landscape, tiny), 17x96x64 (two portraits), 9x80x80 (the short square); batches of 2
    # only work if each batch holds one shape (a mixed batch cannot be stacked)
    assert most_common_video_bucket(card(mixed_latents)) == (64, 96, 17)
    output = tmp_path / "lora"
    flags = ["--train_batch_size", "2", "--num_train_epochs", "1", "--rank", "4", "--learning_rate", "1e-3"]
    flags += ["--validation_prompt", "a red square", "--validation_num_inference_steps", "2"]
    flags += ["--validation_steps", "1000", "--checkpointing_steps", "1000"]
    run_training("train_wan_lora.py", tiny_model_dir, mixed_latents, output, *flags)
    assert (output / "pytorch_lora_weights.safetensors").exists()
    videos = sorted((output / "validation").glob("step-*/video_0.mp4"))
    assert videos, "no validation video"
    with av.open(str(videos[-1])) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.height, stream.width, frames) == (64, 96, 17)
