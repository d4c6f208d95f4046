"""``fastvideo-hf plot-loss``: training loss curves from the tensorboard logs of one or more runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..refusal import SettingRefused


@dataclass(frozen=True)
class LossSummary:
    """The mean loss of a run's first and last ``steps`` logged steps.

    ``steps`` is the window, or half the run when the run is shorter than two windows: a 6-step run compares steps
    1-3 with 4-6, never the same steps twice under two names.
    """

    first: float
    last: float
    steps: int
    logged: int


def summarize_loss(values: np.ndarray, window: int) -> LossSummary:
    """First- and last-window means that never share a step (one step alone is both, and says so by ``steps``)."""
    steps = max(1, min(window, len(values) // 2))
    return LossSummary(float(values[:steps].mean()), float(values[-steps:].mean()), steps, len(values))


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


def plot_loss_curves(runs: dict[str, str | Path], output: str | Path, window: int = 10) -> dict[str, LossSummary]:
    """Plot each run's loss (raw and smoothed) to ``output``; returns each run's first and last mean loss.

    Raises ``SettingRefused`` before drawing for a window under 1, a missing folder or one without loss scalars.
    """
    if window < 1:
        raise SettingRefused(f"--window must be at least 1 step, got {window}")
    missing = [str(log_dir) for log_dir in runs.values() if not Path(log_dir).is_dir()]
    if missing:
        raise SettingRefused(f"no such folder: {', '.join(missing)} (pass the OUT/logs folder of a training run)")
    curves = {name: read_scalar(log_dir) for name, log_dir in runs.items()}
    empty = [str(runs[name]) for name, (steps, _) in curves.items() if len(steps) == 0]
    if empty:
        raise SettingRefused(
            f"no 'loss' scalars under {', '.join(empty)}: was the run made with --report_to tensorboard?"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    summary = {}
    for name, (steps, values) in curves.items():
        (line,) = axis.plot(steps, smooth(values, window), label=f"{name} (mean of {window})")
        axis.plot(steps, values, alpha=0.25, color=line.get_color())
        summary[name] = summarize_loss(values, window)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("flow-matching loss")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return summary
