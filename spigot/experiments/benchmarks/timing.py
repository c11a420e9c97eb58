"""Timing helpers of the benchmarks: interleaved rounds, medians, a clock for shared machines.

On the CPU a side is timed with a host clock (:func:`median_seconds`); on a GPU with CUDA events
(:class:`CudaEventTimer`). Both kinds of timer share one interface (:class:`Timer`,
``timer.seconds(fn, repeats, number, warmup)``) so that the GPU section's measurements can run,
and be tested, on any device: :func:`timer_for` picks the timer of a device.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Protocol

import torch

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
    candidates: dict[str, Callable[[], object]],
    rounds: int = 5,
    timer: Timer | None = None,
    **kwargs: object,
) -> dict[str, float]:
    """Median time of each candidate, measured in interleaved rounds so drift hits all alike.

    ``kwargs`` go to :func:`median_seconds` (``repeats``, ``number``, ``warmup``, ``clock``), or,
    when a ``timer`` is given, to its :meth:`Timer.seconds` (``repeats``, ``number``, ``warmup``).
    """
    measure = median_seconds if timer is None else timer.seconds
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            results[name].append(measure(fn, **kwargs))
    return {name: statistics.median(times) for name, times in results.items()}


class Timer(Protocol):
    """Times a callable on one device: ``seconds(fn, repeats, number, warmup)``, and names itself."""

    name: str

    def seconds(self, fn: Callable[[], object], repeats: int = 30, number: int = 20, warmup: int = 5) -> float:
        """Median over ``repeats`` of the mean time of ``number`` back-to-back calls, after ``warmup`` calls."""
        ...


class HostTimer:
    """Wall time on the host (``time.perf_counter`` by default): the timer for CPU tensors."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self.name = clock_name(clock)

    def seconds(self, fn: Callable[[], object], repeats: int = 30, number: int = 20, warmup: int = 5) -> float:
        return median_seconds(fn, repeats=repeats, number=number, warmup=warmup, clock=self.clock)


class CudaEventTimer:
    """CUDA events on the device's current stream, recorded around ``number`` back-to-back calls.

    The device is synchronised after the warm-up and after each sample's end event, so every
    sample spans exactly its calls: the GPU work they queue and any host work between them (a
    host round trip inside ``fn`` shows up as idle time between the events).
    """

    name = "CUDA events (torch.cuda.Event, elapsed_time)"

    def __init__(self, device: torch.device | str = "cuda") -> None:
        self.device = torch.device(device)

    def seconds(self, fn: Callable[[], object], repeats: int = 30, number: int = 20, warmup: int = 5) -> float:
        with torch.cuda.device(self.device):
            for _ in range(warmup):
                fn()
            torch.cuda.synchronize()
            samples = []
            for _ in range(repeats):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(number):
                    fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1e3 / number)  # elapsed_time is in ms
        return statistics.median(samples)


def timer_for(device: torch.device | str) -> Timer:
    """CUDA events for a CUDA device, host wall time for the CPU (and anything else)."""
    device = torch.device(device)
    return CudaEventTimer(device) if device.type == "cuda" else HostTimer()
