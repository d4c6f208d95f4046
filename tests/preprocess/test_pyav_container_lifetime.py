"""No PyAV object is read after its container closed.

av 18.1.1 raises ``AssertionError: Container is not open`` when a stream attribute is read after the container's
``with`` block (18.1.0 allowed it), and that one late read of ``stream.time_base`` broke every PyAV path on fresh
machines. Every decode path runs here twice: under the installed av, and under a guard that makes every stream and
packet refuse use once its container closed, whatever av version is installed, so the next late read fails here
before a release makes it fail for users.
"""

import numpy as np
import pytest

from fastvideo_hf.preprocess import video_decode
from fastvideo_hf.preprocess.video_decode import available_backends, decode_clip, read_frame_times
from fastvideo_hf.video_writer import write_mp4

from .test_clip_seek import write_long_h264


class ContainerClosedError(AssertionError):
    """What av 18.1.1 raises, as a subclass so the test can tell the guard's refusal from av's own."""


class _Guarded:
    """A stream or packet that works while its container is open and refuses every attribute after."""

    def __init__(self, wrapped, container: "GuardedContainer"):
        object.__setattr__(self, "_wrapped", wrapped)
        object.__setattr__(self, "_container", container)

    def __getattr__(self, name):
        if self._container.closed:
            raise ContainerClosedError(f"{type(self._wrapped).__name__}.{name} read after its container closed")
        return getattr(self._wrapped, name)


class _GuardedStreams:
    def __init__(self, streams, container: "GuardedContainer"):
        self._streams, self._container = streams, container

    @property
    def video(self):
        return tuple(_Guarded(stream, self._container) for stream in self._streams.video)


class GuardedContainer:
    """A PyAV input container whose streams and packets die with it; decoding and seeking pass through."""

    def __init__(self, container):
        self._container, self.closed = container, False

    def __enter__(self):
        self._container.__enter__()
        return self

    def __exit__(self, *exc_info):
        self.closed = True
        return self._container.__exit__(*exc_info)

    @property
    def streams(self):
        return _GuardedStreams(self._container.streams, self)

    def demux(self, *streams, **kwargs):
        for packet in self._container.demux(*map(_unwrap, streams), **kwargs):
            yield _Guarded(packet, self)

    def decode(self, *streams, **kwargs):
        return self._container.decode(*map(_unwrap, streams), **kwargs)

    def seek(self, *args, stream=None, **kwargs):
        return self._container.seek(*args, stream=_unwrap(stream), **kwargs)


def _unwrap(value):
    return value._wrapped if isinstance(value, _Guarded) else value


@pytest.fixture(params=["installed av", "guard"])
def container_guard(request, monkeypatch):
    if request.param == "guard":
        real_open = video_decode._open_pyav
        monkeypatch.setattr(video_decode, "_open_pyav", lambda *args: GuardedContainer(real_open(*args)))
    return request.param


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lifetime")
    frames = np.random.default_rng(0).integers(0, 256, (24, 64, 96, 3), dtype=np.uint8)
    return {
        "short": write_mp4(frames, folder / "short.mp4", 24),
        "turned": write_mp4(frames, folder / "turned.mp4", 24, rotation=90),
        "long": write_long_h264(folder / "long.mp4"),
    }


@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
def test_every_pyav_path_reads_only_while_the_container_is_open(container_guard, videos, as_bytes):
    def source(name):
        return videos[name].read_bytes() if as_bytes else str(videos[name])

    times = read_frame_times(source("short"), backend="pyav")
    assert len(times) == 24 and np.all(np.diff(times) > 0)
    from_start = decode_clip(source("short"), fps=12, num_frames=9, backend="pyav")
    assert from_start.frames.shape == (9, 64, 96, 3)
    turned = decode_clip(source("turned"), fps=12, num_frames=9, backend="pyav")  # the display matrix read
    assert turned.frames.shape == (9, 64, 96, 3), "stored turned, shown upright"
    later = decode_clip(source("long"), fps=16, num_frames=17, backend="pyav", start=4.3)  # the keyframe seek
    assert later.indices[0] > 0 and later.frames.shape[0] == 17


@pytest.mark.skipif("decord" not in available_backends(), reason="decord is x86_64 only")
def test_decord_path_reads_the_display_matrix_while_the_container_is_open(container_guard, videos):
    turned = decode_clip(str(videos["turned"]), fps=12, num_frames=9, backend="decord")
    assert turned.frames.shape == (9, 64, 96, 3), "stored turned, shown upright"


def test_the_guard_catches_a_late_read(videos, monkeypatch):
    """The guard is what makes the tests above version-proof: a read after close must fail under it."""
    real_open = video_decode._open_pyav
    import av

    with GuardedContainer(real_open(av, str(videos["short"]))) as container:
        stream = container.streams.video[0]
    with pytest.raises(ContainerClosedError, match="time_base read after its container closed"):
        float(stream.time_base)
