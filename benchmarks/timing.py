"""Timing helpers shared by the benchmark scripts: interleaved repeats, median wall time."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], repeats: int = 30, number: int = 20, warmup: int = 5) -> float:
    """Median over ``repeats`` of the mean time of ``number`` back-to-back calls of ``fn``."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def compare(candidates: dict[str, Callable[[], object]], rounds: int = 5, **kwargs) -> dict[str, float]:
    """Median time of each candidate, measured in interleaved rounds so drift hits all alike."""
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            results[name].append(median_seconds(fn, **kwargs))
    return {name: statistics.median(times) for name, times in results.items()}
