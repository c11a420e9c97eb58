"""Timing helpers of the benchmarks: interleaved rounds, medians, a clock for shared machines."""

from __future__ import annotations

import statistics
import time
from typing import Callable

Clock = Callable[[], float]


def pick_clock(threads: int) -> Clock:
    """The clock for work on ``threads`` torch threads.

    With one thread every side runs on the calling thread, so its CPU time
    (``time.thread_time``), which other jobs sharing the machine cannot inflate, measures it;
    with more threads only wall time (``time.perf_counter``) does.
    """
    return time.thread_time if threads == 1 else time.perf_counter


def clock_name(clock: Clock) -> str:
    """``"thread CPU time"`` or ``"wall time"``."""
    return "thread CPU time" if clock is time.thread_time else "wall time"


def median_seconds(
    fn: Callable[[], object],
    repeats: int = 30,
    number: int = 20,
    warmup: int = 5,
    clock: Clock = time.perf_counter,
) -> float:
    """Median over ``repeats`` of the mean time of ``number`` back-to-back calls of ``fn``.

    ``clock`` is wall time by default; ``time.thread_time`` measures only the calling thread's
    CPU time (valid for single-threaded work only).
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


def compare(
    candidates: dict[str, Callable[[], object]], rounds: int = 5, **kwargs: object
) -> dict[str, float]:
    """Median time of each candidate, measured in interleaved rounds so drift hits all alike.

    ``kwargs`` go to :func:`median_seconds` (``repeats``, ``number``, ``warmup``, ``clock``).
    """
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            results[name].append(median_seconds(fn, **kwargs))
    return {name: statistics.median(times) for name, times in results.items()}
