"""A clip that starts late in a long video is decoded from the keyframe before it, with the pictures of a decode
from the start (``--frame_extraction chunk|uniform`` would otherwise decode a long video once per clip)."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from fastvideo_hf.preprocess import video_decode
from fastvideo_hf.preprocess.video_decode import available_backends, decode_clip

SOURCE_FPS, NUM_SOURCE_FRAMES, KEYFRAME_INTERVAL = 30, 300, 24  # 10 s, a keyframe every 0.8 s
FPS, NUM_FRAMES = 16, 17
# mid-GOP, on a keyframe (frame 48 at 1.6 s), mid-video, and the last clip that fits
STARTS = [17 / 16, 1.6, 4.3, (NUM_SOURCE_FRAMES - 1) / SOURCE_FPS - (NUM_FRAMES - 1) / FPS]


def write_long_h264(path, rotation: int = 0):
    """A real H.264 mp4 with a keyframe every ``KEYFRAME_INTERVAL`` frames and B-frames (decode order differs
    from display order); every frame differs from its neighbours, so a frame off by one shows."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(SOURCE_FPS))
        stream.width, stream.height, stream.pix_fmt = 80, 64, "yuv420p"
        params = f"keyint={KEYFRAME_INTERVAL}:min-keyint={KEYFRAME_INTERVAL}:scenecut=0:bframes=2:b-adapt=0"
        stream.options = {"crf": "23", "preset": "veryfast", "threads": "1", "x264-params": params}
        if rotation:
            stream.set_display_rotation(rotation)
        for index in range(NUM_SOURCE_FRAMES):
            image = np.roll(base, 3 * index, axis=1)
            image[:8, :8] = (7 * index) % 256
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        packets = [packet for packet in container.demux(video=0) if packet.size]
    keyframes = [index for index, packet in enumerate(sorted(packets, key=lambda p: p.pts)) if packet.is_keyframe]
    assert keyframes == list(range(0, NUM_SOURCE_FRAMES, KEYFRAME_INTERVAL))
    assert any(packet.dts != packet.pts for packet in packets[1:]), "no B-frames: decode order = display order"
    return path


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    return {rotation: write_long_h264(folder / f"long_{rotation}.mp4", rotation) for rotation in (0, 90)}


@pytest.mark.parametrize("rotation", [0, 90], ids=["upright", "turned"])
@pytest.mark.parametrize("backend", available_backends())
def test_clips_at_later_starts_equal_the_frames_decoded_from_the_start(long_videos, backend, rotation, monkeypatch):
    long_video = long_videos[rotation]
    every_frame = decode_clip(str(long_video), SOURCE_FPS, NUM_SOURCE_FRAMES, backend=backend)
    assert every_frame.indices == list(range(NUM_SOURCE_FRAMES))
    if backend == "pyav":  # a later clip must come from the seek, not from a decode from the start
        monkeypatch.setattr(video_decode, "_pyav_frames_from_start", None)
    for start in STARTS:
        clip = decode_clip(str(long_video), FPS, NUM_FRAMES, backend=backend, start=start)
        assert clip.indices[0] == int(start * SOURCE_FPS + 1e-4) and clip.indices[-1] <= NUM_SOURCE_FRAMES - 1
        assert torch.equal(clip.frames, every_frame.frames[clip.indices]), start
    from_bytes = decode_clip(long_video.read_bytes(), FPS, NUM_FRAMES, backend=backend, start=STARTS[-1])
    assert torch.equal(from_bytes.frames, clip.frames)


class OvershootingContainer:
    """A container whose backward seek lands two keyframes too late, as some demuxers' seeks by decode time do."""

    def __init__(self, container):
        self.container = container

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.container.close()

    def __getattr__(self, name):
        return getattr(self.container, name)

    def seek(self, offset: int, **kwargs) -> None:
        stream = kwargs["stream"]
        self.container.seek(offset + int(2 * KEYFRAME_INTERVAL / SOURCE_FPS / stream.time_base), **kwargs)


def test_a_seek_that_lands_after_the_first_sampled_frame_falls_back_to_a_decode_from_the_start(
    long_videos, monkeypatch
):
    long_video = long_videos[0]
    every_frame = decode_clip(str(long_video), SOURCE_FPS, NUM_SOURCE_FRAMES, backend="pyav")
    real_open, real_from_start = video_decode._open_pyav, video_decode._pyav_frames_from_start
    from_start_calls = []

    def from_start(*args):
        from_start_calls.append(args)
        return real_from_start(*args)

    monkeypatch.setattr(video_decode, "_open_pyav", lambda *args: OvershootingContainer(real_open(*args)))
    monkeypatch.setattr(video_decode, "_pyav_frames_from_start", from_start)
    clip = decode_clip(str(long_video), FPS, NUM_FRAMES, backend="pyav", start=STARTS[2])
    assert len(from_start_calls) == 1
    assert torch.equal(clip.frames, every_frame.frames[clip.indices])
