"""Videos -> Parquet: sources, decoding, frame sampling, buckets, the ``datasets`` builder and the resumable writer.

The encoders are the model family's (``models``). ``python -m fastvideo_hf.preprocess`` (also under ``torchrun`` /
``accelerate launch``) and ``fastvideo-hf preprocess`` run ``cli``.
"""
