"""Phone clips store landscape pictures plus a display matrix: every decoder must return what a player shows."""

import json

import av
import numpy as np
import pytest
import torch
from datasets import load_dataset
from diffusers import AutoencoderKLWan

from fastvideo_hf.preprocess import video_decode
from fastvideo_hf.preprocess.frame_sampling import resize_and_center_crop
from fastvideo_hf.preprocess.video_decode import VideoDecodeError, available_backends, decode_clip
from fastvideo_hf.preprocess.writer import write_to_folder
from fastvideo_hf.schema import columns_to_tensor
from fastvideo_hf.video_writer import write_mp4

from ..helpers import PREPROCESS_SETTINGS, make_builder

FPS, NUM_FRAMES = 16, 17
# (rotation counter-clockwise, mirrored): phones write 90 and 270 (-90); 180 is a phone held upside down.
ORIENTATIONS = [(90, False), (180, False), (270, False), (0, True), (90, True)]


def upright_frames(height=80, width=64, num_frames=24):
    """A portrait clip whose red ramps left to right, green top to bottom and blue counts frames: any turn or
    mirror changes every frame."""
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    frames[..., 0] = np.linspace(20, 235, width, dtype=np.uint8)[None, None, :]
    frames[..., 1] = np.linspace(20, 235, height, dtype=np.uint8)[None, :, None]
    frames[..., 2] = (8 * np.arange(num_frames, dtype=np.uint8))[:, None, None]
    return frames


def stored_frame(path):
    """The first picture as the file stores it, read with PyAV and no display matrix applied."""
    with av.open(str(path)) as container:
        return torch.from_numpy(next(container.decode(video=0)).to_ndarray(format="rgb24"))


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


@pytest.fixture(scope="module")
def upright_clip(tmp_path_factory):
    return write_mp4(upright_frames(), tmp_path_factory.mktemp("upright") / "upright.mp4", FPS)


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("rotation, hflip", ORIENTATIONS)
def test_a_clip_stored_turned_decodes_as_the_upright_clip(tmp_path, upright_clip, backend, rotation, hflip):
    turned = write_mp4(upright_frames(), tmp_path / "turned.mp4", FPS, rotation=rotation, hflip=hflip)
    expected = decode_clip(str(upright_clip), FPS, NUM_FRAMES, backend=backend)
    clip = decode_clip(str(turned), FPS, NUM_FRAMES, backend=backend)
    assert clip.frames.shape == expected.frames.shape == (NUM_FRAMES, 80, 64, 3)
    assert (clip.source_width, clip.source_height) == (64, 80)
    assert clip.indices == expected.indices
    for index in range(NUM_FRAMES):  # H.264 is lossy: a few levels apart, frame by frame
        assert mean_abs_diff(clip.frames[index], expected.frames[index]) < 3.0, index
    # the test means something: the picture as stored is not what a player shows
    raw = stored_frame(turned)
    assert raw.shape != expected.frames[0].shape or mean_abs_diff(raw, expected.frames[0]) > 20
    assert torch.equal(decode_clip(turned.read_bytes(), FPS, NUM_FRAMES, backend=backend).frames, clip.frames)


@pytest.mark.parametrize("backend", available_backends())
def test_a_display_matrix_that_is_not_a_quarter_turn_is_a_skip_reason(tmp_path, backend):
    path = tmp_path / "tilted.mp4"
    frames = upright_frames()
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 80, "yuv420p"
        stream.set_display_rotation(30)
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodeError, match="display matrix turns the picture by 30 degrees"):
        decode_clip(str(path), FPS, NUM_FRAMES, backend=backend)


def vae_latent(vae, path):
    """The VAE posterior mean of a clip decoded and fitted to the test size, as preprocessing computes it."""
    clip = decode_clip(str(path), FPS, NUM_FRAMES, backend="pyav")
    pixels = resize_and_center_crop(clip.frames, PREPROCESS_SETTINGS["height"], PREPROCESS_SETTINGS["width"])
    with torch.no_grad():
        return vae.encode(pixels[None]).latent_dist.mean[0]


def test_a_portrait_phone_clip_is_preprocessed_upright_with_either_decoder(tmp_path, tiny_model_dir):
    portrait = upright_frames(height=160, width=96)
    write_mp4(portrait, tmp_path / "videos" / "phone.mp4", FPS, rotation=270)  # what an upright phone writes
    (tmp_path / "videos2caption.json").write_text(json.dumps([{"path": "phone.mp4", "cap": ["a phone clip"]}]))
    vae = AutoencoderKLWan.from_pretrained(tiny_model_dir, subfolder="vae")
    upright = vae_latent(vae, write_mp4(portrait, tmp_path / "upright.mp4", FPS))
    sideways_frames = np.ascontiguousarray(np.rot90(portrait, k=-1, axes=(1, 2)))  # what the old PyAV path read
    sideways = vae_latent(vae, write_mp4(sideways_frames, tmp_path / "sideways.mp4", FPS))
    far = (sideways - upright).abs().mean()
    stored = {}
    for backend in available_backends():
        write_to_folder(make_builder(tiny_model_dir, data_dir=tmp_path, video_backend=backend), tmp_path / backend)
        # a cache of our own: `datasets` keys a local folder's cache by its name and card, not its path or files
        (row,) = load_dataset(str(tmp_path / backend), split="train", cache_dir=str(tmp_path / "cache"))
        assert (row["width"], row["height"]) == (PREPROCESS_SETTINGS["width"], PREPROCESS_SETTINGS["height"])
        stored[backend] = columns_to_tensor(row, "vae_latent")
        # H.264 encodes the turned pictures a little differently: close to upright, five times closer than sideways
        assert (stored[backend] - upright).abs().mean() < 0.2 * far, backend
    for backend in stored:  # both decoders store the same latents
        torch.testing.assert_close(stored[backend], stored["pyav"], rtol=0, atol=1e-3)


@pytest.mark.parametrize("backend", [*available_backends(), None])
@pytest.mark.parametrize("error", [TypeError("a bug"), MemoryError()])
def test_a_programming_error_while_decoding_is_raised_not_recorded_as_bad_data(
    monkeypatch, upright_clip, backend, error
):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(video_decode, "sample_frame_indices", broken)
    with pytest.raises(type(error)):
        decode_clip(str(upright_clip), FPS, NUM_FRAMES, backend=backend)
