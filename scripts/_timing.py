"""Interleaved timing shared by the benchmarks: the contenders take turns, so load from other work
on a shared machine falls on all of them alike rather than on whichever ran during it."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)


def load_header() -> str:
    """The machine's load average (1, 5, 15 min) and CPU count, for the first line of a benchmark's output.

    The figures of a shared machine depend on what else runs: readers compare runs by this line.
    """
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} CPUs"


class Timing(NamedTuple):
    """Seconds per call of one function: the fastest sample and the median one."""

    best: float
    median: float


SPIN_PAUSE = 0.3
"""Seconds to sleep before each sample when the contenders run more than one thread. Idle worker
threads spin before they sleep: onnxruntime's (its default), and OpenBLAS's for about 2**28 cycles
(its ``THREAD_TIMEOUT``, ~0.1 s here) after every threaded call. With 0.05 s, OpenBLAS's threads,
still spinning after hubkit's GEMMs, took a core from onnxruntime's next timing: its two-thread
image CNN measured 49.3 ms against 27.2 ms with 0.3 s, the MLP at batch 64 584 against 384 us
(2026-12-04, ``scripts/bench_vs_ort.py --threads 2 --pause 0.05`` and ``--pause 0.3``)."""


def pause_for(threads: int, pause: float | None = None) -> float:
    """``pause`` when given, else :data:`SPIN_PAUSE` for more than one thread and 0.05 s for one."""
    if pause is not None:
        return pause
    return SPIN_PAUSE if threads > 1 else 0.05


def interleaved(
    fns: Mapping[K, Callable[[], object]],
    repeats: int,
    inner: int,
    warmup: int = 1,
    pause: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
    rewarm: int = 0,
) -> dict[K, Timing]:
    """Times each function ``repeats`` times in turn; a sample is the mean of ``inner`` back-to-back calls.

    Args:
        fns: the contenders by name.
        repeats: samples per function.
        inner: calls per sample (many for fast calls, so the clock's resolution does not matter).
        warmup: untimed calls of each function first (plans compiled, caches and pages warm).
        pause: seconds of sleep before each sample, so a contender's spinning worker threads
            (onnxruntime's, by default) have stopped before the next one is timed.
        clock: the clock samples are read from: wall time by default; ``time.process_time`` (CPU
            time of the whole process) is steadier on a loaded machine for single-threaded work.
        rewarm: untimed calls of the contender after the pause, right before its sample: its own
            worker threads, asleep after the pause, are woken and spinning again when timing starts
            (each engine is timed warm, and none while another's threads spin).

    Returns:
        The :class:`Timing` of each function, under its name.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[K, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if pause:
                time.sleep(pause)
            for _ in range(rewarm):
                fn()
            t0 = clock()
            for _ in range(inner):
                fn()
            samples[name].append((clock() - t0) / inner)
    return {k: Timing(min(v), statistics.median(v)) for k, v in samples.items()}
