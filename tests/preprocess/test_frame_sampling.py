import numpy as np
import pytest
import torch

from fastvideo_hf.preprocess.frame_sampling import (
    ClipTooShortError,
    orient_frames,
    resize_and_center_crop,
    sample_frame_indices,
)
from fastvideo_hf.preprocess.video_decode import VideoDecodeError, available_backends, decode_clip
from fastvideo_hf.video_writer import write_mp4


def numbered_video(path, fps, num_frames, width=64, height=48):
    """A clip whose frame k is a flat grey of level 4k: the decoded level tells which frame was picked."""
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    for index in range(num_frames):
        frames[index] = 4 * index
    return write_mp4(frames, path, fps)


def test_30fps_sampled_at_16fps_takes_the_frame_on_screen():
    times = np.arange(60) / 30
    # frame k covers [k/30, (k+1)/30): at t = j/16 the frame on screen is floor(j * 30 / 16)
    assert sample_frame_indices(times, 16, 9) == [0, 1, 3, 5, 7, 9, 11, 13, 15]


def test_24fps_sampled_at_16fps_takes_the_frame_on_screen():
    times = np.arange(48) / 24
    assert sample_frame_indices(times, 16, 9) == [0, 1, 3, 4, 6, 7, 9, 10, 12]


def test_equal_rates_take_every_frame_and_timestamps_need_not_start_at_zero():
    times = 10.0 + np.arange(20) / 16
    assert sample_frame_indices(times, 16, 17) == list(range(17))


def test_too_short_clip_is_refused_with_the_numbers():
    with pytest.raises(ClipTooShortError, match="too short: 10 frames"):
        sample_frame_indices(np.arange(10) / 30, 16, 17)


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize(
    "source_fps, expected", [(30, [0, 1, 3, 5, 7, 9, 11, 13, 15]), (24, [0, 1, 3, 4, 6, 7, 9, 10, 12])]
)
def test_decoders_return_the_sampled_source_frames(tmp_path, backend, source_fps, expected):
    path = numbered_video(tmp_path / f"v{source_fps}.mp4", source_fps, 2 * source_fps)
    clip = decode_clip(str(path), fps=16, num_frames=9, backend=backend)
    assert clip.indices == expected
    assert clip.frames.shape == (9, 48, 64, 3)
    assert clip.source_fps == pytest.approx(source_fps, rel=1e-3)
    levels = clip.frames.float().mean(dim=(1, 2, 3)) / 4
    assert torch.allclose(levels, torch.tensor(expected, dtype=torch.float32), atol=0.5)
    from_bytes = decode_clip(path.read_bytes(), fps=16, num_frames=9, backend=backend)
    assert torch.equal(from_bytes.frames, clip.frames)


@pytest.mark.parametrize("backend", available_backends())
def test_decoders_reject_unusable_files_with_a_reason(tmp_path, backend):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(VideoDecodeError, match="empty file"):
        decode_clip(str(tmp_path / "empty.mp4"), 16, 5, backend=backend)
    with pytest.raises(VideoDecodeError, match="file not found"):
        decode_clip(str(tmp_path / "missing.mp4"), 16, 5, backend=backend)
    with pytest.raises(VideoDecodeError, match="decode"):
        decode_clip(str(tmp_path / "text.mp4"), 16, 5, backend=backend)
    data = numbered_video(tmp_path / "whole.mp4", 16, 32).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoDecodeError, match="cannot decode video|truncated video"):
        decode_clip(str(tmp_path / "truncated.mp4"), 16, 17, backend=backend)


@pytest.mark.parametrize(
    "orientation, expected",
    [
        (((0, -1), (1, 0)), lambda x: torch.rot90(x, 1, dims=(1, 2))),  # the matrix of a 90 degree turn to the left
        (((-1, 0), (0, -1)), lambda x: torch.rot90(x, 2, dims=(1, 2))),
        (((0, 1), (-1, 0)), lambda x: torch.rot90(x, -1, dims=(1, 2))),  # what a phone held upright writes
        (((-1, 0), (0, 1)), lambda x: x.flip(2)),  # mirrored left to right
        (((0, -1), (-1, 0)), lambda x: torch.rot90(x, 1, dims=(1, 2)).flip(2)),  # turned left, then mirrored
    ],
)
def test_orientation_turns_and_mirrors_the_stored_pictures_as_a_player_does(orientation, expected):
    stored = torch.arange(2 * 2 * 3 * 3, dtype=torch.uint8).view(2, 2, 3, 3)  # [T, H, W, 3], all pixels distinct
    shown = orient_frames(stored, orientation)
    assert torch.equal(shown, expected(stored)) and shown.is_contiguous()


def test_resize_covers_the_target_and_crops_the_centre():
    frames = torch.zeros(2, 60, 200, 3, dtype=torch.uint8)
    frames[:, :, 90:110] = 255  # a white bar in the middle of a wide frame
    pixels = resize_and_center_crop(frames, 32, 32)
    assert pixels.shape == (3, 2, 32, 32)
    assert pixels.min() >= -1 and pixels.max() <= 1
    # short side 60 -> 32: the 20-pixel bar becomes ~10.7 pixels wide, centred
    row = pixels[0, 0, 16]
    assert row[16] > 0.9 and row[0] < -0.9 and row[-1] < -0.9


def test_portrait_source_is_cropped_not_stretched():
    frames = torch.arange(100, dtype=torch.uint8).view(1, 100, 1, 1).expand(1, 100, 50, 3).contiguous()
    pixels = resize_and_center_crop(frames, 16, 16)
    # scale 16/50: the crop keeps the middle rows (levels ~25..75), not the full 0..99 ramp
    levels = (pixels[0, 0, :, 8] + 1) * 127.5
    assert 20 < levels[0] < 35 and 65 < levels[-1] < 80
