"""Timing helpers shared by the benchmark scripts: interleaved repeats, median wall time."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(
    fn: Callable[[], object],
    repeats: int = 30,
    number: int = 20,
    warmup: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median over ``repeats`` of the mean time of ``number`` back-to-back calls of ``fn``.

    ``clock`` is wall time by default; ``time.thread_time`` measures only the calling thread's
    CPU time, which other jobs on a shared machine do not inflate (valid for single-threaded
    work only).
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = clock()
        for _ in range(number):
            fn()
        samples.append((clock() - start) / number)
    return statistics.median(samples)


def compare(candidates: dict[str, Callable[[], object]], rounds: int = 5, **kwargs) -> dict[str, float]:
    """Median time of each candidate, measured in interleaved rounds so drift hits all alike."""
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            results[name].append(median_seconds(fn, **kwargs))
    return {name: statistics.median(times) for name, times in results.items()}
