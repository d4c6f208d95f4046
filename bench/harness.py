"""What the bench scripts share: where they write, their parser, CUDA-aware timing, markdown tables, the JSON report
and the record of the machine it was measured on.

The scripts run as ``python bench/NAME.py``, which puts ``bench/`` first on ``sys.path``, so they import this module
as ``harness``. It imports only the standard library at module level (torch inside the functions that use it):
``vsa_kernel_interpreter.py`` imports it too, in a throwaway venv of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"  # git-ignored; `make clean` removes it


def make_parser(doc: str, *, summary_only: bool = False) -> argparse.ArgumentParser:
    """A parser whose ``--help`` is the script's docstring: all of it as written (it holds lists and tables that
    argparse would reflow), or only its first paragraph for the checks whose docstring is a long explanation."""
    if summary_only:
        return argparse.ArgumentParser(description=doc.split("\n\n")[0])
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_work_dir(parser: argparse.ArgumentParser, folder: str, help: str) -> None:
    """``--work_dir``, by default ``bench/results/FOLDER``: scratch files stay out of the tree git tracks."""
    parser.add_argument("--work_dir", type=Path, default=RESULTS / folder, help=help)


def add_output_json(parser: argparse.ArgumentParser, file: str, help: str, flag: str = "--output_json") -> None:
    """The flag naming the JSON report, by default ``bench/results/FILE``, beside the other scripts' reports."""
    parser.add_argument(flag, type=Path, default=RESULTS / file, help=help)


def synchronize(device: torch.device | None) -> None:
    """Wait for the work queued on a CUDA ``device``, so that a clock read next counts it; nothing elsewhere."""
    if device is not None and device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def seconds_per_call(
    step: Callable[[], object], device: torch.device | None = None, min_seconds: float = 0.0
) -> float:
    """Seconds per call of ``step``, averaged over as many back-to-back calls as fill ``min_seconds`` (at least one),
    so that short calls are not at the mercy of one scheduling hiccup; CUDA work is waited for on both ends."""
    calls = 0
    synchronize(device)
    start = time.perf_counter()
    while True:
        step()
        calls += 1
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def verdict(passed: bool) -> str:
    """The word every table and report uses for a goal met or missed."""
    return "PASS" if passed else "FAIL"


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]], align: str) -> str:
    """A markdown table; ``align`` has a letter per column: ``l`` for text, ``r`` for numbers (right-aligned). A row
    with too few or too many cells is refused rather than printed shifted under the wrong headers."""
    if len(align) != len(columns) or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r} must be one l or r per column ({len(columns)} columns)")
    lines = ["| " + " | ".join(columns) + " |", "|" + "".join("---:|" if side == "r" else "---|" for side in align)]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a row of {len(row)} cells in a table of {len(columns)} columns: {row}")
        lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)


def machine_record(**extra: object) -> dict[str, object]:
    """The ``machine`` record of a report: platform, Python and CPU count, then what the script adds (``extra``)."""
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(), **extra}


def torch_record() -> dict[str, object]:
    """torch's version and its CPU threads: with a shared machine's cores, the thread count moves CPU timings."""
    import torch

    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def write_json(path: Path, report: object, *, announce: bool = True) -> None:
    """Write ``report`` as indented JSON (making its folder) and, with ``announce``, say where. A value JSON has no
    type for (a Path, a dtype) is written as its text: a finished run's measurements are not lost to a TypeError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if announce:
        print(f"\nwritten to {path}")
