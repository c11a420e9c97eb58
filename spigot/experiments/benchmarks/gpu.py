"""The GPU section, ``spigot bench --device cuda``: every side timed on one GPU in one run.

1. Batched simplex projection, forward, B = 4096, k = 1000, float32: ``project_simplex``
   (``validate=False``; with validation too) against ``entmax.sparsemax``, a plain sort-based
   projection written here (:func:`sort_projection`), and reading and writing the data once
   (``x.clone()``); then forward and backward, ours against entmax. Goal: at most 100 us.
2. A SPIGOT step on arborescences, B = 32, n = 50, float32 (forward MAP, relaxed projection
   backward; the trees section's comparison, :func:`~spigot.experiments.benchmarks.trees.spigot_step_candidates`)
   against torch-struct's ``NonProjectiveDependencyCRF`` marginals forward and backward, in both
   root modes. Goal: at most 0.5x torch-struct.

Times are CUDA events around back-to-back calls (:class:`~spigot.experiments.benchmarks.timing.CudaEventTimer`),
medians over repeats, the sides interleaved in rounds. The measurement functions
(:func:`bench_simplex`, :func:`bench_spigot_step`) take a device and a timer, so the test suite
runs them on the CPU with a host timer; :func:`run`, which produces the page's section, refuses
anything but a CUDA device, so the page only ever holds figures measured on a GPU.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from spigot.experiments.benchmarks.settings import BenchSettings, SectionResult
from spigot.experiments.benchmarks.timing import CudaEventTimer, Timer, compare
from spigot.experiments.benchmarks.trees import STEP_GOAL, spigot_step_candidates
from spigot.solvers import project_simplex

TITLE = "GPU"
#: Goal of the simplex projection's forward pass, B=4096, k=1000, float32, in microseconds.
SIMPLEX_GOAL_US = 100.0


def sort_projection(x: torch.Tensor) -> torch.Tensor:
    """The plain sort-based simplex projection along the last axis (the textbook peer)."""
    u = torch.sort(x, dim=-1, descending=True).values
    prefix = u.cumsum(dim=-1) - 1.0
    ranks = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    support = (u * ranks > prefix).sum(dim=-1, keepdim=True)
    tau = prefix.gather(-1, support - 1) / support.to(x.dtype)
    return (x - tau).clamp(min=0.0)


def simplex_sizes(quick: bool) -> tuple[int, int]:
    """(B, k) of the simplex comparison."""
    return (64, 50) if quick else (4096, 1000)


def step_sizes(quick: bool) -> tuple[int, int]:
    """(B, n) of the SPIGOT step comparison."""
    return (4, 8) if quick else (32, 50)


def _timing(quick: bool, rounds: int, repeats: int, number: int, warmup: int) -> dict[str, int]:
    if quick:
        return {"rounds": 1, "repeats": 2, "number": 2, "warmup": 1}
    return {"rounds": rounds, "repeats": repeats, "number": number, "warmup": warmup}


def bench_simplex(device: torch.device | str, timer: Timer, quick: bool = False, seed: int = 0, rounds: int = 5) -> dict[str, Any]:
    """Comparison 1 on ``device`` timed by ``timer``: median seconds per call and the ratios."""
    from entmax import sparsemax

    batch, k = simplex_sizes(quick)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, k, generator=generator).to(device)
    g = torch.randn(batch, k, generator=generator).to(device)
    leaf = x.clone().requires_grad_(True)
    ours = project_simplex(x, validate=False)
    torch.testing.assert_close(ours, sparsemax(x, dim=-1))
    torch.testing.assert_close(ours, sort_projection(x))

    def forward_backward(fn):
        def call() -> None:
            leaf.grad = None
            fn(leaf).backward(g)

        return call

    timing = _timing(quick, rounds, repeats=30, number=20, warmup=5)
    forward = compare(
        {
            "spigot": lambda: project_simplex(x, validate=False),
            "spigot (validated)": lambda: project_simplex(x),
            "entmax sparsemax": lambda: sparsemax(x, dim=-1),
            "sort-based": lambda: sort_projection(x),
            "copy": lambda: x.clone(),
        },
        timer=timer,
        **timing,
    )
    both = compare(
        {
            "spigot": forward_backward(lambda t: project_simplex(t, validate=False)),
            "entmax sparsemax": forward_backward(lambda t: sparsemax(t, dim=-1)),
        },
        timer=timer,
        **timing,
    )
    ours_us = 1e6 * forward["spigot"]
    return {
        "batch": batch,
        "k": k,
        "dtype": "float32",
        "forward_us": {name: 1e6 * t for name, t in forward.items()},
        "forward_backward_us": {name: 1e6 * t for name, t in both.items()},
        "ratios": {name: forward["spigot"] / t for name, t in forward.items() if name != "spigot"},
        "goal_us": SIMPLEX_GOAL_US,
        "met": ours_us <= SIMPLEX_GOAL_US,
    }


def bench_spigot_step(
    device: torch.device | str,
    timer: Timer,
    single_root: bool,
    quick: bool = False,
    seed: int = 0,
    rounds: int = 5,
) -> dict[str, Any]:
    """Comparison 2 on ``device`` timed by ``timer``: median ms of both sides and their ratio."""
    batch, n = step_sizes(quick)
    rng = np.random.default_rng(seed)
    sides = spigot_step_candidates(rng, single_root, batch, n, device=device, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch-struct's distribution warns about arg_constraints
        times = compare(sides, timer=timer, **_timing(quick, rounds, repeats=10, number=10, warmup=3))
    ratio = times["ours"] / times["peer"]
    return {
        "batch": batch,
        "n": n,
        "dtype": "float32",
        "single_root": single_root,
        "ours_ms": 1e3 * times["ours"],
        "peer_ms": 1e3 * times["peer"],
        "ratio": ratio,
        "goal": STEP_GOAL,
        "met": ratio <= STEP_GOAL,
    }


def cuda_device(settings: BenchSettings) -> torch.device:
    """The CUDA device to measure on; raises ValueError unless ``--device cuda`` and CUDA is there."""
    if settings.device != "cuda":
        raise ValueError(
            f"the gpu section measures on a CUDA device only (spigot bench --device cuda), not {settings.device!r}"
        )
    if not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    return torch.device("cuda", torch.cuda.current_device())


def describe_device(device: torch.device) -> str:
    """One line naming the GPU, CUDA and torch."""
    props = torch.cuda.get_device_properties(device)
    return (
        f"{torch.cuda.get_device_name(device)} ({props.total_memory / 2**30:.0f} GiB), "
        f"CUDA {torch.version.cuda}, torch {torch.__version__}"
    )


def run(settings: BenchSettings) -> SectionResult:
    """Both comparisons on the GPU and their section of ``docs/benchmarks.md``."""
    device = cuda_device(settings)
    torch.set_num_threads(settings.threads)
    timer = CudaEventTimer(device)
    simplex = bench_simplex(device, timer, settings.quick, settings.seed, settings.rounds)
    steps = [
        bench_spigot_step(device, timer, single, settings.quick, settings.seed, settings.rounds)
        for single in (False, True)
    ]
    machine = describe_device(device)
    markdown = render(settings.command, machine, timer.name, simplex, steps)
    data = {
        "device_type": device.type,
        "device_name": torch.cuda.get_device_name(device),
        "machine": machine,
        "simplex": simplex,
        "spigot_step": steps,
    }
    return SectionResult("gpu", markdown, headline(simplex, steps), data)


def headline(simplex: dict[str, Any], steps: list[dict[str, Any]]) -> list[str]:
    """Terminal lines: the times, the ratios and whether each goal is met."""
    us = simplex["forward_us"]
    worst = max(steps, key=lambda s: s["ratio"])
    return [
        f"gpu simplex forward: {us['spigot']:.1f} us (goal <= {simplex['goal_us']:.0f} us: "
        f"{'met' if simplex['met'] else 'missed'}); entmax {us['entmax sparsemax']:.1f} us, "
        f"sort-based {us['sort-based']:.1f} us, copy {us['copy']:.1f} us",
        *(
            f"gpu SPIGOT step ({'single' if s['single_root'] else 'multi'}-root): {s['ours_ms']:.3f} ms, "
            f"{s['ratio']:.3f}x torch-struct"
            for s in steps
        ),
        f"gpu SPIGOT step goal (<= {STEP_GOAL}x): {'met' if worst['met'] else 'missed'}",
    ]


def render(command: str, machine: str, timer_name: str, simplex: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    """The section's markdown from the measured rows."""
    fwd, both, ratios = simplex["forward_us"], simplex["forward_backward_us"], simplex["ratios"]
    labels = {
        "spigot": "`project_simplex(x, validate=False)`",
        "spigot (validated)": "`project_simplex(x)` (validated: one host synchronisation)",
        "entmax sparsemax": "entmax `sparsemax(x, dim=-1)`",
        "sort-based": "plain sort-based projection (sort, cumsum, count, gather)",
        "copy": "read and write the data once (`x.clone()`)",
    }
    forward_rows = [
        f"| {labels[name]} | {fwd[name]:.1f} | " + ("1.00x" if name == "spigot" else f"{ratios[name]:.2f}x") + " |"
        for name in labels
    ]
    worst = max(steps, key=lambda s: s["ratio"])
    step_rows = [
        f"| {'single' if s['single_root'] else 'multi'}-root | {s['ours_ms']:.3f} | {s['peer_ms']:.3f} | {s['ratio']:.2f}x |"
        for s in steps
    ]
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            f"Measured on **{machine}**, every side on that GPU in the same run, timed with",
            f"{timer_name} around back-to-back calls (median over repeats, sides interleaved in",
            "rounds; the inputs stay in the GPU's cache between calls, alike for every side).",
            "",
            f"Command: `{command}`",
            "",
            f"### Simplex projection, forward, B={simplex['batch']}, k={simplex['k']}, {simplex['dtype']}",
            "",
            "All three projections are first checked to agree on the batch.",
            "",
            "| forward pass | time (us) | spigot / this |",
            "|---|---|---|",
            *forward_rows,
            "",
            f"Forward and backward: spigot {both['spigot']:.1f} us, entmax {both['entmax sparsemax']:.1f} us "
            f"({both['spigot'] / both['entmax sparsemax']:.2f}x).",
            "",
            f"Goal **{'met' if simplex['met'] else 'missed'}**: {fwd['spigot']:.1f} us for the forward pass "
            f"(goal <= {simplex['goal_us']:.0f} us).",
            "",
            f"### SPIGOT step on arborescences, B={steps[0]['batch']}, n={steps[0]['n']}, {steps[0]['dtype']}",
            "",
            "`spigot(scores, Arborescence(...), solver=\"relaxed\")` forward (the compiled MAP on the host:",
            "one copy of the batch down, one up) and `.backward(g)` (the head-selection projection on",
            "the GPU) against torch-struct's `NonProjectiveDependencyCRF(...).marginals` forward and",
            "`.backward(g)`, on the same scores, in both root modes.",
            "",
            "| root mode | spigot (ms) | torch-struct (ms) | ratio |",
            "|---|---|---|---|",
            *step_rows,
            "",
            f"Goal **{'met' if worst['met'] else 'missed'}**: the slower mode is {worst['ratio']:.2f}x torch-struct "
            f"(goal <= {STEP_GOAL}x).",
        ]
    )
