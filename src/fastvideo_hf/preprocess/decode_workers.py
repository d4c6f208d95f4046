"""Decoding ahead of the encoders: clips decoded, sampled and resized in worker processes.

``decode_pixels(job)`` is the CPU half of making a row of a clip: it decodes one clip (``video_decode`` /
``image_decode``), picks its resolution bucket and resizes and crops it, from a ``PixelJob`` that holds plain
values only, so a worker process can run it without any model. ``DecodeWorkers(n).imap(entries)`` runs the jobs
in ``n`` worker processes while the encoders work on the main process: at most ``n + 1`` jobs are submitted ahead
(memory stays flat), and results come back in submission order, so the shards are the bytes of an in-process
run. The pixels come back through shared memory (torch's file-descriptor passing, as a ``DataLoader``'s do).

A worker that dies (a decoder's segfault, a kill) breaks the pool: the pool is restarted, the oldest unfinished
job runs again alone in a fresh process, and if that one dies too its file is skipped with the exit code as the
reason; the other unfinished jobs go to the new pool. Workers come from a ``forkserver`` (never a fork of a
process whose torch threads have started), run one torch thread each, and exit when the main process is gone
(a kill -9 leaves no worker behind).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import torch

from .buckets import Bucket, TooSmallForBucketsError, choose_resolution_bucket
from .frame_sampling import ClipTooShortError, resize_and_center_crop
from .image_decode import ImageDecodeError, decode_image
from .input_plan import Skipped
from .video_decode import VideoDecodeError, decode_clip

MAX_DEFAULT_WORKERS = 8
_PARENT_POLL_SECONDS = 0.5


def default_num_workers() -> int:
    """One fewer than the CPUs this process may use (the main process encodes), at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(MAX_DEFAULT_WORKERS, cpus - 1))


@dataclass
class PixelJob:
    """What decoding one clip needs, as plain values: the file (path or bytes), the clip, the buckets."""

    source: str | bytes
    is_image: bool
    fps: float
    num_frames: int
    start: float
    video_backend: str | None
    resolution_buckets: list[Bucket]
    bucket_no_upscale: bool


@dataclass
class ClipPixels:
    """A decoded clip fitted to its bucket: float pixels ``[3, T, height, width]`` in [-1, 1]."""

    pixels: torch.Tensor
    height: int
    width: int
    seconds: float  # spent decoding, sampling and resizing


def decode_pixels(job: PixelJob) -> ClipPixels | Skipped:
    """Decode, sample and resize one clip (the CPU half of ``VideoLatents.rows``), or why it cannot be used."""
    started = time.perf_counter()
    try:
        if job.is_image:
            decoded = decode_image(job.source)
        else:
            decoded = decode_clip(job.source, job.fps, job.num_frames, job.video_backend, job.start)
        height, width = choose_resolution_bucket(
            job.resolution_buckets, decoded.source_height, decoded.source_width, job.bucket_no_upscale
        )
    except TooSmallForBucketsError as error:
        return Skipped(str(error), whole_input=True)
    except (VideoDecodeError, ClipTooShortError, ImageDecodeError) as error:
        return Skipped(str(error))
    pixels = resize_and_center_crop(decoded.frames, height, width)
    return ClipPixels(pixels, height, width, time.perf_counter() - started)


def crash_reason(exit_code: int | None) -> str:
    return f"the decoder crashed on this file (worker exit code {exit_code})"


class DecodeWorkers:
    """``num_workers`` decode processes (started on the first job) feeding the caller in submission order."""

    def __init__(self, num_workers: int, in_flight: int | None = None):
        if num_workers < 1:
            raise ValueError(f"DecodeWorkers needs at least one worker, got {num_workers}")
        self.num_workers = num_workers
        self.in_flight = in_flight or num_workers + 1
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([__name__])  # workers fork with torch and the decoders imported
        self._pool: ProcessPoolExecutor | None = None
        self.crashes = 0
        self.wait_seconds = 0.0  # the caller blocked on a result: decoding not hidden behind encoding

    def __enter__(self) -> DecodeWorkers:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def start(self) -> None:
        """Start the worker processes now (say, while the encoders load); else they start with the first job."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.num_workers, mp_context=self._context, initializer=_start_worker, initargs=(os.getpid(),)
            )
            for _ in range(self.num_workers):  # it starts a process per job while none is idle: all start now
                self._pool.submit(os.getpid)

    def _submit(self, job: PixelJob) -> Future:
        self.start()
        # looked up at call time, so a test can swap in a decoder that crashes
        return self._pool.submit(decode_pixels, job)

    def imap(self, entries: Iterable[tuple[Any, PixelJob | None]]) -> Iterator[tuple[Any, ClipPixels | Skipped]]:
        """``(key, job)`` -> ``(key, result)`` in the order given; a ``None`` job passes through with ``None``.
        ``entries`` is read lazily, at most ``in_flight`` jobs ahead of the one last yielded."""
        entries = iter(entries)
        pending: deque[list] = deque()  # [key, job, future or None]
        jobs_pending = 0
        exhausted = False
        while True:
            while not exhausted and jobs_pending < self.in_flight:
                entry = next(entries, None)
                if entry is None:
                    exhausted = True
                    break
                key, job = entry
                pending.append([key, job, None if job is None else self._submit(job)])
                jobs_pending += job is not None
            if not pending:
                return
            key, job, future = pending.popleft()
            if future is None:
                yield key, None
                continue
            jobs_pending -= 1
            started = time.perf_counter()
            try:
                result = future.result()
            except BrokenProcessPool:
                result = self._recover(job, pending)
            self.wait_seconds += time.perf_counter() - started
            yield key, result

    def _recover(self, job: PixelJob, pending: deque[list]) -> ClipPixels | Skipped:
        """A worker died: run ``job`` alone to learn whether it was the one, and resubmit the other lost jobs."""
        self.crashes += 1
        self._pool.shutdown(wait=True)  # every future of the broken pool is resolved once it returns
        self._pool = None
        result = self._run_alone(job)
        for entry in pending:
            future = entry[2]
            if future is not None and isinstance(future.exception(), BrokenProcessPool):
                entry[2] = self._submit(entry[1])
        return result

    def _run_alone(self, job: PixelJob) -> ClipPixels | Skipped:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_decode_alone, args=(decode_pixels, job, theirs, os.getpid()), daemon=True
        )
        process.start()
        theirs.close()
        try:
            result = ours.recv()
            ours.send(True)  # the pixels' shared memory is ours now: the process may exit
        except (EOFError, ConnectionError):
            result = None
        finally:
            ours.close()
        process.join()
        return Skipped(crash_reason(process.exitcode), whole_input=True) if result is None else result


def _start_worker(parent_pid: int) -> None:
    """Each worker: one torch thread (the workers share the CPUs with the encoders), and gone with its parent."""
    torch.set_num_threads(1)

    def exit_with_parent() -> None:
        while True:
            time.sleep(_PARENT_POLL_SECONDS)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()


def _decode_alone(decode, job: PixelJob, connection, parent_pid: int) -> None:
    _start_worker(parent_pid)
    connection.send(decode(job))
    connection.recv()
