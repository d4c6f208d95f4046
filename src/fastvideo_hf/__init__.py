"""fastvideo-hf: finetune Wan video diffusion models on your own videos with diffusers, datasets and Accelerate."""

__version__ = "0.1.0"
