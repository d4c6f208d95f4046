"""Settings and builders shared by the tests."""

from fastvideo_hf.builder import WanLatents

# Small enough for a CPU, large enough that the VAE compresses time (17 frames -> 5 latent frames).
PREPROCESS_SETTINGS = {"height": 64, "width": 96, "num_frames": 17, "fps": 16.0}
NUM_DEMO_VIDEOS = 6


def make_builder(model_dir, samples_per_file=3, **overrides) -> WanLatents:
    """A T2V builder over the tiny model with the test settings; ``overrides`` name the input and any changes."""
    settings = {**PREPROCESS_SETTINGS, **overrides}
    if settings.get("data_dir") is not None:
        settings["data_dir"] = str(settings["data_dir"])
    return WanLatents(
        task="t2v", pretrained_model_name_or_path=str(model_dir), samples_per_file=samples_per_file, **settings
    )
