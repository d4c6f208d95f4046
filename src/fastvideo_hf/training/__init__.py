"""Parquet -> weights: the latent loader, flow matching, the stages the training scripts call, checkpoints, LoRA
formats, validation, the model card and the Hub push."""
