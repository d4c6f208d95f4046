"""What tests of fastvideo-hf, and of code built on it, need: tiny offline models and a fixed-noise loss.

Nothing here is part of a training or preprocessing run. The tiny pipelines are real diffusers pipelines with random
weights, small enough for a CPU, saved and loaded through the normal ``save_pretrained`` / ``from_pretrained`` path
(``fastvideo-hf tiny-model`` writes one for the demo).
"""

from .tools.tiny_models import TEXT_DIM, build_tiny_wan_pipeline, save_tiny_wan_pipeline, tiny_wan_transformer

__all__ = ["TEXT_DIM", "build_tiny_wan_pipeline", "save_tiny_wan_pipeline", "tiny_wan_transformer"]
