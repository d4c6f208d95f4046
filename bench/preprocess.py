"""Benchmark of ``fastvideo-hf preprocess``: throughput, where the time goes, and whether memory stays flat.

Preprocessing streams videos one at a time into Parquet shards, so its peak memory should not depend on how many
videos it encodes. This script checks that: it writes N and 4N demo videos and a tiny random Wan pipeline, then
preprocesses each set in a fresh subprocess (so each run's peak RSS is its own). Each count runs ``--repeats``
times, interleaved (N, 4N, N, 4N, ...) so that drift of a shared machine hits both counts alike, and the table
gives per count the medians over the repeats of the wall time, videos/s, encode seconds per video, the split of
time between decode, text encode, VAE encode, write and the rest, and the peak RSS (with its min and max).

Two memory checks:

* spike: median peak RSS(4N) / median peak RSS(N) <= 1.10. A peak is one moment of a run, so a single run is
  noisy (ratios of 0.94 to 1.15 were seen); the median of the repeats is what decides.
* growth: within each 4N run, the RSS after the last video minus the RSS after the 8th video (once the allocator
  has warmed up), median over the repeats. Memory held per video would add up here whatever the spikes do: the
  float32 VAE input of one default clip (33x3x128x192) is 9 MiB, so holding it would add over 200 MiB over the 24
  videos of the default 4N run, while the allocator's own swing between videos is about +-30 MiB. Goal: <= 64 MiB.

The frame size and clip length default to a size where the tiny VAE does visible work while the whole benchmark
takes about 1.5 minutes on two quiet cores (several times longer while other jobs compete for the cores);
``--fps`` defaults to 32 so that 33 frames span 1 s and every demo clip (the shortest is 1.25 s) yields a row. The
encoders are loaded before the clock starts and reported apart (``load``), so the time split is the per-video
work only.

Run it with ``make bench`` or ``.venv/bin/python bench/preprocess.py``; it prints markdown tables and writes JSON
with every run's measurements.

``--listing`` measures the input listing instead (issue 10, section 6): for ``--listing_rows`` synthetic inputs
(default 1,000,000) as an HF dataset in Parquet with a path column and as a merged folder's
``videos2caption.json``, each in a fresh process, the time and peak RSS to do what every preprocessing process
does before encoding: open the source, plan its chunks, count them, digest the whole listing for the manifest and
build the first and last chunk. Goal: under 30 s and under 1 GiB each.

``--overlap`` measures decoding ahead of the encoders (issue 10, section 5): N videos encoded with the encoders
held to one torch thread, once decoding in-process (``--num_workers 0``: decode and encode one after the other)
and once with one decode worker. From the in-process run, ``decode`` (decode, sample, resize) and ``encode`` (text
+ VAE + write) seconds; the worker run's wall time is compared with ``decode + encode`` and with ``encode`` alone.
Goal: wall <= 1.1 x max(decode, encode), i.e. decoding hidden.

``--workers_rss`` measures memory with decode workers (issue 10, section 5): N and 4N videos, each with
``--num_workers 4`` (``--workers``), ``--repeats`` times interleaved. The workers are forkserver processes, i.e.
grandchildren of the run, so ``ru_maxrss`` of the run misses them: the parent polls the whole process tree of the
run (every 20 ms) and records the peak of the summed RSS of all its processes (shared pages count once per
process: an upper bound) and the peak of its largest one. Goal: median tree peak at 4N <= 1.1 x at N.

``--seek`` measures the decode of the clips of one long video (``--seek_seconds``, default 60 s at 30 fps, a
keyframe every ``--seek_keyint`` frames), as ``--frame_extraction chunk`` cuts it into back-to-back clips of
``--num_frames`` at ``--fps``: per backend, the time of each clip with ``decode_clip`` (which starts at the keyframe
before the clip) and with the decode it replaced (from the first frame up to the clip's last frame, inlined
here): the last clip's each way, whether both gave the same bytes, and the sum over all clips each way.

The listed files of ``--listing`` do not exist (a million
files would measure the file system): a merged folder's entry then costs two failed ``stat`` calls instead of one
successful one, so its time is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import harness

RSS_GOAL = 1.10  # median peak RSS of 4N videos may exceed that of N videos by at most 10%
GROWTH_FROM_VIDEO = 8  # the growth check starts after this many videos of the 4N run (allocator warmed up)
GROWTH_GOAL_MIB = 64.0  # RSS after the last video of the 4N run minus after video GROWTH_FROM_VIDEO, median
STAGES = ("decode", "text_encode", "vae_encode", "write")
MIB = 1024 * 1024
LISTING_SECONDS_GOAL = 30.0  # to list and plan --listing_rows inputs, per source kind
LISTING_RSS_GOAL_MIB = 1024.0
LISTING_KINDS = ("hf_parquet", "merged_json")
# passed on to each measured run
RUN_FLAGS = ("height", "width", "num_frames", "fps", "samples_per_file", "num_workers", "torch_threads")
OVERLAP_GOAL = 1.10  # wall with one decode worker <= 1.1 x max(decode, encode): decoding hidden behind encoding
TREE_POLL_SECONDS = 0.02  # how often --workers_rss reads the RSS of every process of a run
SEEK_SOURCE_FPS = 30  # frame rate of the long video of --seek


def model_dir(work_dir: Path) -> Path:
    return work_dir / "tiny-wan-t2v"


def videos_dir(work_dir: Path, num_videos: int) -> Path:
    return work_dir / f"videos_{num_videos}"


def latents_dir(work_dir: Path, num_videos: int) -> Path:
    return work_dir / f"latents_{num_videos}"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def run_child(args: argparse.Namespace) -> None:
    """Preprocess ``args._child`` videos in this process and print the measurements as one JSON line."""
    import psutil

    from fastvideo_hf.preprocess.builder import VideoLatents
    from fastvideo_hf.preprocess.writer import write_to_folder

    num_videos = args._child
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    builder = VideoLatents(
        task="t2v",
        pretrained_model_name_or_path=str(model_dir(args.work_dir)),
        data_dir=str(videos_dir(args.work_dir, num_videos)),
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        fps=args.fps,
        samples_per_file=args.samples_per_file,
        num_workers=args.num_workers,
        cache_dir=str(args.work_dir / "datasets_cache"),  # the builder's lock files stay in the work folder
    )
    started = time.perf_counter()
    builder.encoders  # noqa: B018 -- load the models now, so their load time is not counted as text encoding
    load_seconds = time.perf_counter() - started

    # Per video: its encode time (the median shrugs off stalls of a shared machine) and the current RSS after it
    # (a rising trace shows memory held across videos).
    process, seconds_per_video, rss_after_video = psutil.Process(), [], []
    encode_pixels = builder.encode_pixels  # one clip per demo video at these settings; decoding is timed apart

    def encode_and_record(plan: Any, clip: Any, decoded: Any) -> dict[str, Any]:
        started = time.perf_counter()
        row = encode_pixels(plan, clip, decoded)
        seconds_per_video.append(time.perf_counter() - started)
        rss_after_video.append(process.memory_info().rss / MIB)
        return row

    builder.encode_pixels = encode_and_record
    started = time.perf_counter()
    summary = write_to_folder(builder, latents_dir(args.work_dir, num_videos))
    wall = time.perf_counter() - started
    if not seconds_per_video:
        raise SystemExit("every input was skipped (clips too short?): lower --num_frames or raise --fps")
    result = {
        "num_videos": num_videos,
        "rows": summary.rows_written,
        "skipped": summary.inputs_skipped,
        "load_seconds": load_seconds,
        "wall_seconds": wall,
        "videos_per_second": num_videos / wall,
        "seconds": {stage: summary.seconds.get(stage, 0.0) for stage in STAGES},
        "decode_wait_seconds": summary.seconds.get("decode_wait", 0.0),
        "encode_seconds_per_video": seconds_per_video,
        "median_encode_seconds": statistics.median(seconds_per_video),
        "rss_after_video_mib": rss_after_video,
        "peak_rss_mib": high_water_rss_mib(),
    }
    print(json.dumps(result))


def prepare_inputs(work_dir: Path, counts: list[int]) -> None:
    """Write the tiny model and one demo dataset per count, replacing earlier ones and earlier outputs."""
    from fastvideo_hf.tools.demo_data import write_demo_dataset
    from fastvideo_hf.tools.tiny_models import save_tiny_wan_pipeline

    shutil.rmtree(model_dir(work_dir), ignore_errors=True)
    for num_videos in counts:
        shutil.rmtree(videos_dir(work_dir, num_videos), ignore_errors=True)
        shutil.rmtree(latents_dir(work_dir, num_videos), ignore_errors=True)
    save_tiny_wan_pipeline(model_dir(work_dir))
    for num_videos in counts:
        write_demo_dataset(videos_dir(work_dir, num_videos), num_videos, seed=0)


def write_large_sources(folder: Path, num_videos: int, width: int, height: int, seconds: float = 3.0) -> None:
    """Replace the demo videos of ``folder`` by ``num_videos`` clips of ``width`` x ``height`` at 30 fps (the demo
    data's own mixed-clip writer, one format repeated)."""
    from fastvideo_hf.tools.demo_data import write_demo_dataset

    shutil.rmtree(folder, ignore_errors=True)
    formats = [(30.0, width, height, seconds, 0)] * num_videos
    write_demo_dataset(folder, 0, seed=0, mixed=True, mixed_formats=formats, mixed_images=[])


def measure(args: argparse.Namespace, num_videos: int, repeat: int) -> dict[str, Any]:
    """Run this script with ``--_child num_videos`` in a fresh interpreter and return its measurements, with the
    peak RSS of its whole process tree (decode workers included) as the parent saw it.

    The output folder is removed first: ``write_to_folder`` resumes, so a finished folder would encode nothing.
    """
    shutil.rmtree(latents_dir(args.work_dir, num_videos), ignore_errors=True)
    command = [sys.executable, __file__, "--_child", str(num_videos), "--work_dir", str(args.work_dir)]
    for flag in RUN_FLAGS:
        command += [f"--{flag}", str(getattr(args, flag))]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree = TreeRssPoller(child.pid)
    stdout, stderr = child.communicate()
    tree.stop()
    if child.returncode != 0:
        sys.stderr.write(stderr)
        raise SystemExit(f"preprocessing {num_videos} videos failed with exit code {child.returncode}")
    return {"repeat": repeat, **json.loads(stdout.strip().splitlines()[-1]), **tree.peaks()}


class TreeRssPoller:
    """Polls the RSS of a process and all its descendants in a thread until ``stop()``.

    Decode workers come from a forkserver: grandchildren of the run, which the run's own ``ru_maxrss`` does not
    count, and ``RUSAGE_CHILDREN`` gives only the largest single descendant that was waited for, never the sum of
    processes alive at once; so the tree is walked from outside.
    """

    def __init__(self, pid: int, interval: float = TREE_POLL_SECONDS):
        import psutil

        self.root, self.interval = psutil.Process(pid), interval
        self.peak_sum = self.peak_single = 0.0
        self.max_processes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        while not self._done.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:  # the run has exited
                return
            sizes = []
            for process in processes:
                try:
                    sizes.append(process.memory_info().rss / MIB)
                except psutil.NoSuchProcess:  # a worker that exited between the listing and the read
                    continue
            self.peak_sum = max(self.peak_sum, sum(sizes))
            self.peak_single = max(self.peak_single, max(sizes, default=0.0))
            self.max_processes = max(self.max_processes, len(sizes))
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def peaks(self) -> dict[str, float]:
        return {
            "tree_peak_rss_mib": self.peak_sum,
            "tree_largest_process_peak_rss_mib": self.peak_single,
            "tree_max_processes": self.max_processes,
        }


def rss_growth_mib(run: dict[str, Any]) -> float:
    """RSS after the last video minus RSS after video ``GROWTH_FROM_VIDEO`` of one run."""
    trace = run["rss_after_video_mib"]
    return trace[-1] - trace[GROWTH_FROM_VIDEO - 1]


def count_ratios(
    runs: list[dict[str, Any]], counts: list[int], key: str
) -> tuple[dict[int, float], float, list[float]]:
    """For the runs' ``key``: its median per count, the median at 4N over the median at N (what a goal is read
    against), and the same ratio within each repeat (the runs alternate N, 4N), which shows how much it scatters."""
    medians = {count: statistics.median(run[key] for run in runs if run["num_videos"] == count) for count in counts}
    pairs = zip(runs[::2], runs[1::2], strict=True)
    return medians, medians[counts[1]] / medians[counts[0]], [large[key] / small[key] for small, large in pairs]


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats of one count (and the spread of its peak RSS)."""
    peaks = [run["peak_rss_mib"] for run in runs]
    wall = statistics.median(run["wall_seconds"] for run in runs)
    seconds = {stage: statistics.median(run["seconds"][stage] for run in runs) for stage in STAGES}
    other = statistics.median(run["wall_seconds"] - sum(run["seconds"].values()) for run in runs)
    return {
        "num_videos": runs[0]["num_videos"],
        "repeats": len(runs),
        "rows": runs[0]["rows"],
        "wall_seconds": wall,
        "videos_per_second": statistics.median(run["videos_per_second"] for run in runs),
        "median_encode_seconds": statistics.median(run["median_encode_seconds"] for run in runs),
        "seconds": {**seconds, "other": other},
        "load_seconds": statistics.median(run["load_seconds"] for run in runs),
        "peak_rss_mib": statistics.median(peaks),
        "peak_rss_min_mib": min(peaks),
        "peak_rss_max_mib": max(peaks),
    }


def format_summary_table(summaries: list[dict[str, Any]]) -> str:
    columns = ["videos", "runs", "rows", "wall s", "videos/s", "s/video", "decode", "text encode", "VAE encode"]
    columns += ["write", "other", "load s", "peak RSS MiB (min–max)"]
    rows = []
    for summary in summaries:
        wall = summary["wall_seconds"]
        low, high = summary["peak_rss_min_mib"], summary["peak_rss_max_mib"]
        rows.append(
            [
                summary["num_videos"],
                summary["repeats"],
                summary["rows"],
                f"{wall:.2f}",
                f"{summary['videos_per_second']:.2f}",
                f"{summary['median_encode_seconds']:.3f}",
                *(f"{seconds:.2f} s ({100 * seconds / wall:.0f}%)" for seconds in summary["seconds"].values()),
                f"{summary['load_seconds']:.2f}",
                f"{summary['peak_rss_mib']:.0f} ({low:.0f}–{high:.0f})",
            ]
        )
    return harness.markdown_table(columns, rows, "r" * len(columns))


def format_runs_table(runs: list[dict[str, Any]], large: int) -> str:
    columns = ["order", "repeat", "videos", "wall s", "videos/s", "peak RSS MiB", "RSS after 1st → last video MiB"]
    columns.append(f"growth after video {GROWTH_FROM_VIDEO} MiB")
    rows = [
        [
            order,
            run["repeat"] + 1,
            run["num_videos"],
            f"{run['wall_seconds']:.2f}",
            f"{run['videos_per_second']:.2f}",
            f"{run['peak_rss_mib']:.0f}",
            f"{run['rss_after_video_mib'][0]:.0f} → {run['rss_after_video_mib'][-1]:.0f}",
            f"{rss_growth_mib(run):+.0f}" if run["num_videos"] == large else "-",
        ]
        for order, run in enumerate(runs, start=1)
    ]
    return harness.markdown_table(columns, rows, "r" * len(columns))


def listing_dir(work_dir: Path, num_rows: int) -> Path:
    return work_dir / f"listing_{num_rows}"


def synthetic_caption(index: int) -> str:
    return f"A person walks a dog through a park on a sunny afternoon, clip {index}"


def prepare_listing_inputs(work_dir: Path, num_rows: int) -> None:
    """A Parquet dataset with a path column and a videos2caption.json of ``num_rows`` entries (made once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = listing_dir(work_dir, num_rows)
    if (folder / "done").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "hf").mkdir(parents=True)
    (folder / "merged").mkdir()
    names = [f"clip_{index:08d}.mp4" for index in range(num_rows)]
    captions = [synthetic_caption(index) for index in range(num_rows)]
    table = pa.table({"video": [f"videos/{name}" for name in names], "caption": captions})
    pq.write_table(table, folder / "hf" / "train.parquet")
    entries = [{"path": name, "cap": caption} for name, caption in zip(names, captions, strict=True)]
    (folder / "merged" / "videos2caption.json").write_text(json.dumps(entries))
    (folder / "done").write_text("")


def high_water_rss_mib() -> float:
    """This process's peak RSS from ``/proc/self/status`` (VmHWM): unlike ``ru_maxrss``, which Linux carries
    across ``exec`` from the parent that forked it, it starts afresh in each process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def run_listing_child(args: argparse.Namespace) -> None:
    """One source kind in this fresh process: open, plan, count, digest, build the first and last chunk."""
    from fastvideo_hf.preprocess.shard_progress import listing_digest
    from fastvideo_hf.preprocess.sources import HFDatasetSource, MergedFolderSource

    folder = listing_dir(args.work_dir, args.listing_rows)
    rss_before = high_water_rss_mib()  # the interpreter and the imports: not the listing's
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if args._listing_child == "hf_parquet":
        source = HFDatasetSource(str(folder / "hf"))
    else:
        source = MergedFolderSource(folder / "merged")
    plan = source.plan(args.samples_per_file)
    seconds["open_and_plan"] = time.perf_counter() - started
    mark = time.perf_counter()
    num_inputs = sum(plan.chunk_size(index) for index in range(len(plan)))
    digest = listing_digest(plan.listing())
    seconds["count_and_digest"] = time.perf_counter() - mark
    mark = time.perf_counter()
    first, last = plan[0], plan[len(plan) - 1]
    seconds["first_and_last_chunk"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    assert num_inputs == args.listing_rows and first[0].captions == [synthetic_caption(0)]
    assert last[-1].captions == [synthetic_caption(args.listing_rows - 1)]
    result = {
        "kind": args._listing_child,
        "num_inputs": num_inputs,
        "num_chunks": len(plan),
        "digest": digest,
        "seconds": seconds,
        "rss_before_mib": rss_before,
        "peak_rss_mib": high_water_rss_mib(),
    }
    print(json.dumps(result))


def listing_main(args: argparse.Namespace) -> int:
    """``--listing``: each source kind in a fresh process (its own peak RSS), a table, and JSON."""
    started = time.perf_counter()
    prepare_listing_inputs(args.work_dir, args.listing_rows)
    prepare_seconds = time.perf_counter() - started
    runs = []
    for kind in LISTING_KINDS:
        command = [sys.executable, __file__, "--_listing_child", kind, "--work_dir", str(args.work_dir)]
        command += ["--listing_rows", str(args.listing_rows), "--samples_per_file", str(args.samples_per_file)]
        completed = subprocess.run(command, check=True, capture_output=True, text=True)
        run = json.loads(completed.stdout.strip().splitlines()[-1])
        run["verdict"] = harness.verdict(
            run["seconds"]["total"] < LISTING_SECONDS_GOAL and run["peak_rss_mib"] < LISTING_RSS_GOAL_MIB
        )
        runs.append(run)
    print(
        f"## listing benchmark ({args.listing_rows:,} inputs, {args.samples_per_file} per chunk, "
        f"{os.cpu_count()} CPUs; goal < {LISTING_SECONDS_GOAL:.0f} s and < {LISTING_RSS_GOAL_MIB:.0f} MiB)\n"
    )
    columns = ["source", "open + plan s", "count + digest s", "first + last chunk s", "total s", "peak RSS MiB"]
    columns += ["RSS before MiB", "verdict"]
    rows = [
        [
            run["kind"],
            f"{run['seconds']['open_and_plan']:.2f}",
            f"{run['seconds']['count_and_digest']:.2f}",
            f"{run['seconds']['first_and_last_chunk']:.3f}",
            f"{run['seconds']['total']:.2f}",
            f"{run['peak_rss_mib']:.0f}",
            f"{run['rss_before_mib']:.0f}",
            run["verdict"],
        ]
        for run in runs
    ]
    print(harness.markdown_table(columns, rows, "lrrrrrrl"))
    print(f"\n(synthetic inputs made in {prepare_seconds:.1f} s; reused on later runs)")
    report = {
        "machine": harness.machine_record(),
        "settings": {"listing_rows": args.listing_rows, "samples_per_file": args.samples_per_file},
        "goals": {"seconds": LISTING_SECONDS_GOAL, "peak_rss_mib": LISTING_RSS_GOAL_MIB},
        "runs": runs,
    }
    harness.write_json(args.output_json.with_name("preprocess_listing.json"), report)
    return 0 if all(run["verdict"] == "PASS" for run in runs) else 1


def overlap_main(args: argparse.Namespace) -> int:
    """Decode ahead of the encoders: one decode worker against in-process decoding, encoders on one thread."""
    prepare_inputs(args.work_dir, [args.num_videos])
    if args.overlap_source:  # large sources: decoding then costs about what the tiny encoders do
        width, height = (int(value) for value in args.overlap_source.split("x"))
        write_large_sources(videos_dir(args.work_dir, args.num_videos), args.num_videos, width, height)
    args.torch_threads = 1
    args.num_workers = 0
    in_process = measure(args, args.num_videos, 0)
    args.num_workers = 1
    workers = measure(args, args.num_videos, 0)
    seconds = in_process["seconds"]
    decode = seconds["decode"]
    encode = seconds["text_encode"] + seconds["vae_encode"] + seconds["write"]
    wall = workers["wall_seconds"]
    ratio = wall / max(decode, encode)
    outcome = harness.verdict(ratio <= OVERLAP_GOAL)
    size = f"{args.num_frames}x{args.height}x{args.width} at {args.fps:g} fps"
    source = f"{args.overlap_source} sources" if args.overlap_source else "demo sources"
    print(f"## decode ahead of the encoders ({args.num_videos} {source} -> {size}, tiny Wan, encoders on 1 thread)\n")
    rows = []
    for name, run in (("--num_workers 0 (in-process)", in_process), ("--num_workers 1", workers)):
        run_seconds = run["seconds"]
        run_encode = run_seconds["text_encode"] + run_seconds["vae_encode"] + run_seconds["write"]
        waited = run["decode_wait_seconds"] if run is workers else run_seconds["decode"]
        seconds_cells = (run["wall_seconds"], run_seconds["decode"], run_encode, waited)
        rows.append([name, *(f"{value:.2f}" for value in seconds_cells)])
    columns = ["run", "wall s", "decode s", "encode s", "main waited on decode s"]
    print(harness.markdown_table(columns, rows, "lrrrr"))
    print(
        f"\nwall with 1 worker {wall:.2f} s; in-process decode + encode {decode + encode:.2f} s "
        f"(wall / that = {wall / (decode + encode):.3f}); encode alone {encode:.2f} s (wall / that = "
        f"{wall / encode:.3f}); wall / max(decode, encode) = {ratio:.3f} -> {outcome} (goal <= {OVERLAP_GOAL:.2f})"
    )
    report = {
        "source": args.overlap_source or "demo",
        "in_process": in_process,
        "workers": workers,
        "ratio": ratio,
        "verdict": outcome,
    }
    harness.write_json(args.output_json.with_name("preprocess_overlap.json"), report)
    return 0


def workers_rss_main(args: argparse.Namespace) -> int:
    """``--workers_rss``: peak RSS of the whole process tree with ``--workers`` decode workers, N against 4N."""
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    counts = [args.num_videos, 4 * args.num_videos]
    prepare_inputs(args.work_dir, counts)
    args.num_workers = args.workers
    runs = [measure(args, num_videos, repeat) for repeat in range(args.repeats) for num_videos in counts]
    medians, ratio, repeat_ratios = count_ratios(runs, counts, "tree_peak_rss_mib")
    outcome = harness.verdict(ratio <= RSS_GOAL)
    size = f"{args.num_frames}x{args.height}x{args.width} at {args.fps:g} fps"
    print(f"## peak RSS with {args.workers} decode workers ({size}, tiny Wan, {os.cpu_count()} CPUs)\n")
    columns = ["order", "repeat", "videos", "wall s", "processes", "tree peak RSS MiB", "largest MiB"]
    columns.append("main VmHWM MiB")
    rows = [
        [
            order,
            run["repeat"] + 1,
            run["num_videos"],
            f"{run['wall_seconds']:.2f}",
            run["tree_max_processes"],
            f"{run['tree_peak_rss_mib']:.0f}",
            f"{run['tree_largest_process_peak_rss_mib']:.0f}",
            f"{run['peak_rss_mib']:.0f}",
        ]
        for order, run in enumerate(runs, start=1)
    ]
    print(harness.markdown_table(columns, rows, "r" * len(columns)))
    print(
        f"\nmedian tree peak RSS: {counts[0]} videos {medians[counts[0]]:.0f} MiB, {counts[1]} videos "
        f"{medians[counts[1]]:.0f} MiB; {counts[1]} / {counts[0]} = {ratio:.3f} -> {outcome} (goal <= {RSS_GOAL:.2f}; "
        "per-repeat ratios " + ", ".join(f"{value:.3f}" for value in repeat_ratios) + ")"
    )
    report = {
        "settings": {"workers": args.workers, "repeats": args.repeats, "num_videos": args.num_videos, "size": size},
        "runs": runs,
        "median_tree_peak_rss_mib": {str(count): value for count, value in medians.items()},
        "ratio": ratio,
        "ratio_per_repeat": repeat_ratios,
        "goal": RSS_GOAL,
        "verdict": outcome,
    }
    harness.write_json(args.output_json.with_name("preprocess_workers_rss.json"), report)
    return 0 if outcome == "PASS" else 1


def write_long_video(path: Path, seconds: float, fps: int, keyint: int, height: int, width: int) -> Path:
    """An H.264 mp4 of a bright square crossing a gradient, a keyframe every ``keyint`` frames, written frame by
    frame (a minute of pictures never sits in memory)."""
    import av
    import numpy as np

    gradient = np.zeros((height, width, 3), dtype=np.uint8)
    gradient[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)[None, :]
    gradient[..., 1] = np.linspace(0, 200, height, dtype=np.uint8)[:, None]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        params = f"keyint={keyint}:min-keyint={keyint}:scenecut=0"
        stream.options = {"crf": "23", "preset": "veryfast", "threads": "1", "x264-params": params}
        for index in range(round(seconds * fps)):
            image = gradient.copy()
            x, y = (7 * index) % (width - 32), (3 * index) % (height - 32)
            image[y : y + 32, x : x + 32] = 255
            image[..., 2] = index % 256  # every frame differs
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def decode_from_first_frame(path: Path, backend: str, fps: float, num_frames: int, start: float):
    """The sampled frames of one clip the way ``decode_clip`` read them before it seeked: decoding from the first
    frame up to the clip's last one (after the same timestamp read), as uint8 ``[T, H, W, 3]``."""
    import numpy as np
    import torch

    from fastvideo_hf.preprocess.frame_sampling import sample_frame_indices
    from fastvideo_hf.preprocess.video_decode import read_frame_times

    indices = sample_frame_indices(read_frame_times(str(path), backend), fps, num_frames, start)
    wanted, last = set(indices), max(indices)
    kept: dict[int, np.ndarray] = {}
    if backend == "pyav":
        import av

        with av.open(str(path)) as container:
            for position, frame in enumerate(container.decode(video=0)):
                if position in wanted:
                    kept[position] = frame.to_ndarray(format="rgb24")
                if position >= last:
                    break
    else:
        import decord

        reader = decord.VideoReader(str(path), num_threads=1)
        for run in range(0, last + 1, 16):
            batch = reader.get_batch(list(range(run, min(run + 16, last + 1)))).asnumpy()
            kept.update({run + offset: frame for offset, frame in enumerate(batch) if run + offset in wanted})
    return torch.from_numpy(np.stack([kept[index] for index in indices]))


def seek_main(args: argparse.Namespace) -> int:
    """``--seek``: decode time of the clips of one long video, seeking against decoding from the first frame."""
    import torch

    from fastvideo_hf.preprocess.buckets import plan_clips
    from fastvideo_hf.preprocess.video_decode import available_backends, decode_clip, read_frame_times

    height, width = (int(value) for value in args.seek_size.split("x"))
    args.work_dir.mkdir(parents=True, exist_ok=True)
    path = args.work_dir / f"long_{args.seek_seconds:g}s_{height}x{width}_keyint{args.seek_keyint}.mp4"
    if not path.exists():
        write_long_video(path, args.seek_seconds, SEEK_SOURCE_FPS, args.seek_keyint, height, width)
    starts = plan_clips(read_frame_times(str(path)), args.fps, [args.num_frames], "chunk").starts
    results = []
    for backend in available_backends():
        seconds_per_clip = []
        for start in starts:
            started = time.perf_counter()
            clip = decode_clip(str(path), args.fps, args.num_frames, backend=backend, start=start)
            seconds_per_clip.append(time.perf_counter() - started)
        seconds_before = []
        for start in starts:
            started = time.perf_counter()
            before = decode_from_first_frame(path, backend, args.fps, args.num_frames, start)
            seconds_before.append(time.perf_counter() - started)
        results.append(
            {
                "backend": backend,
                "last_clip_start": starts[-1],
                "last_clip_seconds_before": seconds_before[-1],
                "last_clip_seconds_after": seconds_per_clip[-1],
                "same_bytes": bool(torch.equal(before, clip.frames)),  # the last clip
                "all_clips_seconds_before": sum(seconds_before),
                "all_clips_seconds_after": sum(seconds_per_clip),
            }
        )
    print(
        f"## clips of one {args.seek_seconds:g} s video ({width}x{height} H.264 at {SEEK_SOURCE_FPS} fps, a keyframe "
        f"every {args.seek_keyint} frames; chunk clips of {args.num_frames} frames at {args.fps:g} fps: "
        f"{len(starts)} clips, the last from {starts[-1]:.2f} s)\n"
    )
    rows = []
    for result in results:
        before, after = result["last_clip_seconds_before"], result["last_clip_seconds_after"]
        all_before, all_after = result["all_clips_seconds_before"], result["all_clips_seconds_after"]
        rows.append(
            [result["backend"], f"{before:.3f}", f"{after:.3f}", f"{before / after:.1f}x", result["same_bytes"]]
            + [f"{all_before:.2f}", f"{all_after:.2f}", f"{all_before / all_after:.1f}x"]
        )
    columns = ["backend", "last clip: from frame 0 s", "from its keyframe s", "speed-up", "same bytes"]
    columns += ["all clips: from frame 0 s", "from their keyframes s", "speed-up"]
    print(harness.markdown_table(columns, rows, "lrrrlrrr"))
    settings = {"seconds": args.seek_seconds, "keyint": args.seek_keyint, "size": args.seek_size, "clips": len(starts)}
    harness.write_json(args.output_json.with_name("preprocess_seek.json"), {"settings": settings, "results": results})
    return 0 if all(result["same_bytes"] for result in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = harness.make_parser(__doc__)
    parser.add_argument(
        "--num_videos",
        type=int,
        default=8,
        help=f"N: the runs encode N and 4N demo videos (4N must exceed {GROWTH_FROM_VIDEO} for the growth check).",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="Runs per count, interleaved N, 4N, N, 4N, ...; medians are reported."
    )
    harness.add_work_dir(
        parser,
        "preprocess_work",
        "Folder for the tiny model, the demo videos and the latents (its subfolders are rewritten).",
    )
    harness.add_output_json(
        parser,
        "preprocess.json",
        "Where to write the machine, the settings, every run's measurements and the summaries.",
    )
    parser.add_argument("--height", type=int, default=128, help="Frame height after resize (multiple of 16).")
    parser.add_argument("--width", type=int, default=192, help="Frame width after resize (multiple of 16).")
    parser.add_argument("--num_frames", type=int, default=33, help="Frames per clip (4k+1).")
    parser.add_argument(
        "--fps", type=float, default=32.0, help="Sampling fps; with 33 frames, 32 keeps every demo clip long enough."
    )
    parser.add_argument("--samples_per_file", type=int, default=4, help="Inputs per Parquet shard.")
    parser.add_argument(
        "--num_workers", type=int, default=0, help="Decode workers of each run (0: in-process, as before)."
    )
    parser.add_argument("--torch_threads", type=int, default=0, help="torch threads of each run (0: torch's default).")
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="Measure decoding in one worker against in-process decoding instead.",
    )
    parser.add_argument(
        "--overlap_source",
        default=None,
        help="WIDTHxHEIGHT of the --overlap sources (e.g. 1920x1080: 3 s clips at 30 fps) instead of the small demo "
        "videos, so that decoding costs about as much as the tiny encoders.",
    )
    parser.add_argument(
        "--workers_rss",
        action="store_true",
        help="Measure the peak RSS of the process tree with --workers decode workers, N against 4N videos, instead.",
    )
    parser.add_argument("--workers", type=int, default=4, help="Decode workers of each --workers_rss run.")
    parser.add_argument(
        "--seek", action="store_true", help="Measure the decode of the clips of one long video (seek vs from 0)."
    )
    parser.add_argument("--seek_seconds", type=float, default=60.0, help="Length of the --seek video.")
    parser.add_argument("--seek_keyint", type=int, default=60, help="Frames between keyframes of the --seek video.")
    parser.add_argument("--seek_size", default="360x640", help="HEIGHTxWIDTH of the --seek video.")
    parser.add_argument("--_child", type=int, default=None, help=argparse.SUPPRESS)  # internal: one measured run
    parser.add_argument(
        "--listing", action="store_true", help="Measure listing and planning --listing_rows inputs instead."
    )
    parser.add_argument("--listing_rows", type=int, default=1_000_000, help="Synthetic inputs for --listing.")
    parser.add_argument("--_listing_child", choices=LISTING_KINDS, default=None, help=argparse.SUPPRESS)
    return parser


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait on the network
    if args._child is not None:
        run_child(args)
        return 0
    if args._listing_child is not None:
        run_listing_child(args)
        return 0
    if args.listing:
        return listing_main(args)
    if args.overlap:
        return overlap_main(args)
    if args.workers_rss:
        return workers_rss_main(args)
    if args.seek:
        return seek_main(args)
    if 4 * args.num_videos <= GROWTH_FROM_VIDEO:
        parser.error(f"--num_videos must be above {GROWTH_FROM_VIDEO // 4} so that 4N exceeds {GROWTH_FROM_VIDEO}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    import torch

    started = time.perf_counter()
    counts = [args.num_videos, 4 * args.num_videos]
    prepare_inputs(args.work_dir, counts)
    runs = [measure(args, num_videos, repeat) for repeat in range(args.repeats) for num_videos in counts]
    small, large = (summarize([run for run in runs if run["num_videos"] == count]) for count in counts)
    _, rss_ratio, repeat_ratios = count_ratios(runs, counts, "peak_rss_mib")
    rss_verdict = harness.verdict(rss_ratio <= RSS_GOAL)
    growths = [rss_growth_mib(run) for run in runs if run["num_videos"] == counts[1]]
    growth = statistics.median(growths)
    growth_verdict = harness.verdict(growth <= GROWTH_GOAL_MIB)
    speed_ratio = large["videos_per_second"] / small["videos_per_second"]
    median_ratio = small["median_encode_seconds"] / large["median_encode_seconds"]
    total_seconds = time.perf_counter() - started

    size = f"{args.num_frames}x{args.height}x{args.width} at {args.fps:g} fps"
    print(f"## preprocess benchmark ({size}, tiny Wan, {os.cpu_count()} CPUs, torch {torch.__version__})\n")
    print(f"medians over {args.repeats} runs per count, run interleaved in fresh processes:\n")
    print(format_summary_table([small, large]))
    print("\nevery run, in the order run:\n")
    print(format_runs_table(runs, counts[1]))
    print(
        f"\nspike: median peak RSS {counts[1]} / {counts[0]} videos: {rss_ratio:.3f} -> {rss_verdict} "
        f"(goal <= {RSS_GOAL:.2f}; per-repeat ratios " + ", ".join(f"{ratio:.3f}" for ratio in repeat_ratios) + ")"
    )
    print(
        f"growth: RSS after video {counts[1]} - after video {GROWTH_FROM_VIDEO} of the {counts[1]}-video runs: "
        f"median {growth:+.1f} MiB -> {growth_verdict} (goal <= {GROWTH_GOAL_MIB:.0f} MiB; runs "
        + ", ".join(f"{mib:+.1f}" for mib in growths)
        + ")"
    )
    print(f"videos/s {counts[1]} / {counts[0]} videos: {speed_ratio:.3f} (from median s/video: {median_ratio:.3f})")
    print(f"total benchmark time: {total_seconds:.0f} s")

    report = {
        "machine": harness.machine_record(**harness.torch_record()),
        "settings": {
            "num_videos": args.num_videos,
            "repeats": args.repeats,
            **{flag: getattr(args, flag) for flag in RUN_FLAGS},
        },
        "runs": runs,
        "summaries": [small, large],
        "peak_rss_ratio": rss_ratio,
        "peak_rss_ratio_per_repeat": repeat_ratios,
        "peak_rss_goal": RSS_GOAL,
        "peak_rss_verdict": rss_verdict,
        "rss_growth_mib": growths,
        "median_rss_growth_mib": growth,
        "rss_growth_goal_mib": GROWTH_GOAL_MIB,
        "rss_growth_verdict": growth_verdict,
        "videos_per_second_ratio": speed_ratio,
        "median_videos_per_second_ratio": median_ratio,
        "total_seconds": total_seconds,
    }
    harness.write_json(args.output_json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
