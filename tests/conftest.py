"""Shared fixtures: a tiny Wan pipeline, demo videos (with bad inputs) and one preprocessed dataset.

Everything is built offline from tiny configs; HF_HUB_OFFLINE is set before ``datasets`` is imported.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from fastvideo_hf.preprocess.writer import write_to_folder  # noqa: E402
from fastvideo_hf.testing import save_tiny_wan_pipeline  # noqa: E402
from fastvideo_hf.tools.demo_data import write_demo_dataset  # noqa: E402

from .helpers import NUM_DEMO_VIDEOS, make_builder  # noqa: E402


@pytest.fixture(autouse=True)
def own_datasets_cache(tmp_path, monkeypatch):
    """Each test (and the processes it starts) reads datasets through its own cache: plain ``load_dataset(FOLDER)``
    keys a folder's cache on its name and card, so two tests' folders named ``out`` of equal size would share rows."""
    import datasets

    cache = tmp_path / "datasets-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_wan_pipeline(tmp_path_factory.mktemp("models") / "tiny-wan-t2v")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """Six good clips plus every kind of bad input, as a merged folder and a videofolder."""
    path = tmp_path_factory.mktemp("demo")
    write_demo_dataset(path, num_videos=NUM_DEMO_VIDEOS, seed=0, with_bad_inputs=True)
    return path


@pytest.fixture(scope="session")
def latents_dir(tmp_path_factory, tiny_model_dir, demo_dir):
    """The demo folder preprocessed once with the Python API (3 inputs per shard)."""
    output = tmp_path_factory.mktemp("latents") / "out"
    summary = write_to_folder(make_builder(tiny_model_dir, data_dir=demo_dir), output)
    assert summary.finalized
    return output


@pytest.fixture
def loopback_hub():
    """A Hub on 127.0.0.1 for the real clients, run in subprocesses with ``loopback_hub.env(home)``."""
    from .loopback_hub import LoopbackHub

    with LoopbackHub() as hub:
        yield hub
    assert hub.unknown_requests == [], f"routes the loopback Hub lacks: {hub.unknown_requests}"
