"""The ``fastvideo-hf`` command and what it runs beside the two halves: generate, loss plots, tiny models, demo
data, dataset summaries."""
