"""Settings and builders shared by the tests."""

from fastvideo_hf.builder import WanLatents

# Small enough for a CPU, large enough that the VAE compresses time (17 frames -> 5 latent frames).
PREPROCESS_SETTINGS = {"height": 64, "width": 96, "num_frames": 17, "fps": 16.0}
NUM_DEMO_VIDEOS = 6


def make_builder(model_dir, samples_per_file=3, **overrides) -> WanLatents:
    """A T2V builder over the tiny model with the test settings; ``overrides`` name the input and any changes."""
    settings = {"task": "t2v", **PREPROCESS_SETTINGS, **overrides}
    if settings.get("data_dir") is not None:
        settings["data_dir"] = str(settings["data_dir"])
    return WanLatents(pretrained_model_name_or_path=str(model_dir), samples_per_file=samples_per_file, **settings)


def decoded_first_frame(path, height, width, num_frames, fps):
    """The conditioning image preprocessing takes from a clip: its first sampled frame after resize and crop."""
    from fastvideo_hf.frame_sampling import first_frame_image, resize_and_center_crop
    from fastvideo_hf.video_decode import decode_clip

    clip = decode_clip(str(path), fps=fps, num_frames=num_frames)
    return first_frame_image(resize_and_center_crop(clip.frames, height, width))
