"""The SparseMAP layer on arborescences: its backward pass against its own forward pass.

B = 32 sentences, standard normal scores, n = 50 and n = 100 words, float32 and float64.
Forward: the active-set projection :math:`\\Pi_P(s)` (``sparsemap(scores, Arborescence())``);
backward: the Jacobian of the active face applied to ``g`` (its span completed with MAP calls,
the projector from the ``k x k`` lifted Gram matrix of the active vertices). There is no peer:
the goals (issue 18, at n = 50) are a backward at most 1.0x its own forward and a whole step at
least 20x faster than the 25 s that the SVD-based backward took on this machine.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from spigot.autodiff import sparsemap
from spigot.experiments.benchmarks.settings import BenchSettings, SectionResult
from spigot.polytopes import Arborescence

TITLE = "SparseMAP layer"
BACKWARD_GOAL = 1.0
BEFORE_SECONDS, SPEEDUP_GOAL = 25.0, 20.0
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def time_step(
    settings: BenchSettings, batch: int, n: int, dtype: str, repeats: int
) -> dict[str, Any]:
    """Median forward and backward times (s) of one SparseMAP step on fresh standard normal scores."""
    generator = torch.Generator().manual_seed(settings.seed + n)
    clock, forwards, backwards = settings.clock, [], []
    polytope = Arborescence()
    for _ in range(repeats):
        scores = torch.randn(batch, n + 1, n + 1, generator=generator, dtype=DTYPES[dtype])
        grad = torch.randn(batch, n + 1, n + 1, generator=generator, dtype=DTYPES[dtype])
        leaf = scores.requires_grad_(True)
        start = clock()
        p = sparsemap(leaf, polytope)
        middle = clock()
        p.backward(grad)
        end = clock()
        forwards.append(middle - start)
        backwards.append(end - middle)
    forward, backward = statistics.median(forwards), statistics.median(backwards)
    return {
        "n": n,
        "dtype": dtype,
        "repeats": repeats,
        "forward_s": forward,
        "backward_s": backward,
        "step_s": forward + backward,
        "backward_ratio": backward / forward,
    }


def run(settings: BenchSettings) -> SectionResult:
    """Time the layer at each size and dtype; see the module."""
    torch.set_num_threads(settings.threads)
    if settings.quick:
        sizes, batch = {10: 1}, 4
    else:
        sizes, batch = {50: 3, 100: 1}, 32
    warm = torch.randn(2, 9, 9, dtype=torch.float64, requires_grad=True)
    sparsemap(warm, Arborescence()).sum().backward()  # compile the kernels outside the timers
    rows = [time_step(settings, batch, n, dtype, repeats) for n, repeats in sizes.items() for dtype in DTYPES]
    first = min(sizes)  # the goals are set at n=50 (issue 18); larger sizes are reported
    at_first = [r for r in rows if r["n"] == first]
    goals = {
        "backward": all(r["backward_ratio"] <= BACKWARD_GOAL for r in at_first),
        "step": all(BEFORE_SECONDS / r["step_s"] >= SPEEDUP_GOAL for r in at_first),
    }
    status = {name: "met" if ok else "missed" for name, ok in goals.items()}
    lines = [f"machine: {settings.machine()}", "", f"B={batch}, Arborescence(), standard normal scores (median s)"]
    lines.append("     n  dtype     forward   backward   backward/forward   step")
    for r in rows:
        lines.append(
            f"   {r['n']:3d}  {r['dtype']}  {r['forward_s']:8.3f}   {r['backward_s']:8.3f}"
            f"   {r['backward_ratio']:16.3f}   {r['step_s']:6.3f}   ({r['repeats']} step(s))"
        )
    report = "\n".join(lines)
    speedups = ", ".join(f"{BEFORE_SECONDS / r['step_s']:.0f}x ({r['dtype']})" for r in at_first)
    markdown = "\n".join(
        [
            f"## {TITLE}",
            "",
            "The SparseMAP layer (`spigot.autodiff.sparsemap`, default `exact` solver: the active set)",
            f"on `Arborescence()`, a batch of {batch} sentences with standard normal scores: forward (the",
            "projection) and backward (the Jacobian of the active face, from the `k x k` lifted Gram",
            "matrix of the active vertices) timed separately on fresh scores each step; the clock is",
            "the calling thread's CPU time with one torch thread. The machine's two cores were shared",
            "with other jobs. Before issue 18 the backward took SVDs of `d x k` matrices: 26x its",
            "forward at B=8, and a whole step took 25 s at B=32, n=50.",
            "",
            f"Command: `{settings.command}`",
            "",
            "```",
            report,
            "```",
            "",
            f"Goals (at n={first}): **backward** {status['backward']}, at most {BACKWARD_GOAL}x the forward "
            f"(worst {max(r['backward_ratio'] for r in at_first):.2f}x; at every size "
            f"{max(r['backward_ratio'] for r in rows):.2f}x); **step** {status['step']}, "
            f"{speedups} faster than the {BEFORE_SECONDS:.0f} s before (goal >= {SPEEDUP_GOAL:.0f}x).",
        ]
    )
    headline = [
        *(
            f"sparsemap n={r['n']} {r['dtype']}: forward {r['forward_s']:.3f} s, backward {r['backward_s']:.3f} s "
            f"({r['backward_ratio']:.2f}x)"
            for r in rows
        ),
        f"sparsemap backward goal (<= {BACKWARD_GOAL}x forward at n={first}): {status['backward']}",
        f"sparsemap step goal (>= {SPEEDUP_GOAL:.0f}x faster than {BEFORE_SECONDS:.0f} s at n={first}): {status['step']}",
    ]
    return SectionResult("sparsemap", markdown, headline, {"rows": rows})
