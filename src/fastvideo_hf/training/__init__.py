"""Parquet -> weights: the latent loader, flow matching, the pieces ``training_scripts/train.py`` calls in run order
(accelerator setup, model and data loading, steps, checkpoints and resume, VSA schedule), LoRA formats, validation,
the model card and the Hub push. Whatever differs between model families is asked of ``models/``."""
