"""``fastvideo-hf plot-loss``: training loss curves from the tensorboard logs of one or more runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_scalar(log_dir: str | Path, tag: str = "loss") -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``tag`` from every tensorboard event file under ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps, values = [], []
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags().get("scalars", []):
            for event in accumulator.Scalars(tag):
                steps.append(event.step)
                values.append(event.value)
    order = np.argsort(steps, kind="stable")
    return np.asarray(steps)[order], np.asarray(values)[order]


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the per-step loss of flow matching is noisy: sigma is random)."""
    if len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, len(values) + 1) - counts]) / counts


def plot_loss_curves(
    runs: dict[str, str | Path], output: str | Path, window: int = 10
) -> dict[str, tuple[float, float]]:
    """Plot each run's loss (raw and smoothed) to ``output``; returns (first, last) smoothed loss per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    summary = {}
    for name, log_dir in runs.items():
        steps, values = read_scalar(log_dir)
        if len(steps) == 0:
            raise ValueError(f"no 'loss' scalars under {log_dir}: was the run made with --report_to tensorboard?")
        smoothed = smooth(values, window)
        (line,) = axis.plot(steps, smoothed, label=f"{name} (mean of {window})")
        axis.plot(steps, values, alpha=0.25, color=line.get_color())
        summary[name] = (float(values[:window].mean()), float(values[-window:].mean()))
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("flow-matching loss")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return summary
