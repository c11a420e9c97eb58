"""What every benchmark section takes (:class:`BenchSettings`) and gives back (:class:`SectionResult`)."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import torch

from spigot.experiments.benchmarks.timing import Clock, clock_name, pick_clock


@dataclass(frozen=True)
class BenchSettings:
    """Options shared by the benchmark sections.

    Attributes
    ----------
    quick
        Smoke-test mode: tiny sizes and repeat counts, for the test suite; the numbers are
        measured but too noisy to publish.
    rounds
        Interleaved rounds of each head-to-head comparison.
    threads
        torch intra-op threads (both sides of every comparison).
    seed
        Seed of the random inputs.
    command
        The command line that ran, quoted in every section.
    device
        ``"cpu"`` (the CPU sections) or ``"cuda"`` (the GPU section), from ``--device``.
    """

    quick: bool = False
    rounds: int = 5
    threads: int = 1
    seed: int = 0
    command: str = "spigot bench"
    device: str = "cpu"

    @property
    def clock(self) -> Clock:
        """Thread CPU time on one thread, wall time otherwise (see :func:`~spigot.experiments.benchmarks.timing.pick_clock`)."""
        return pick_clock(self.threads)

    def timing(self, repeats: int, number: int, warmup: int = 3) -> dict[str, object]:
        """Keyword arguments of :func:`~spigot.experiments.benchmarks.timing.compare`, shrunk in quick mode."""
        if self.quick:
            repeats, number, warmup = 2, 2, 1
        return {"rounds": self.rounds, "repeats": repeats, "number": number, "warmup": warmup, "clock": self.clock}

    def machine(self) -> str:
        """One line: processor architecture, cores, threads, torch and the clock."""
        import os

        return (
            f"{platform.machine()}, {os.cpu_count()} CPU cores, {self.threads} torch thread(s), "
            f"torch {torch.__version__}, clock: {clock_name(self.clock)}"
        )


@dataclass
class SectionResult:
    """One measured section of ``docs/benchmarks.md``.

    Attributes
    ----------
    name
        Its key (``simplex``, ``trees``, ...), used in the file's section markers.
    markdown
        The whole section, from its ``##`` heading on.
    headline
        Short lines for the terminal: the ratios and whether each goal was met.
    data
        The raw measurements (JSON-serialisable), for ``spigot bench --json``.
    """

    name: str
    markdown: str
    headline: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
