"""Videos -> Parquet: sources, decoding, frame sampling, encoders, the ``datasets`` builder and the resumable writer.

``python -m fastvideo_hf.preprocess`` (also under ``torchrun`` / ``accelerate launch``) runs ``__main__``.
"""
