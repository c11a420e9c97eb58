"""Simplex projection against ``entmax.sparsemax``: forward, validated forward, forward+backward.

Goal (issue 2): at most 1.0x entmax's time, B=256, k=100, float32.
"""

from __future__ import annotations

import torch

from spigot.experiments.benchmarks.settings import BenchSettings, SectionResult
from spigot.experiments.benchmarks.timing import compare
from spigot.solvers import project_simplex

TITLE = "Simplex projection"
GOAL = 1.0


def run(settings: BenchSettings) -> SectionResult:
    """Time ``project_simplex`` against ``entmax.sparsemax`` on the same batch; see the module."""
    from entmax import sparsemax

    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    batch, k = (32, 20) if settings.quick else (256, 100)
    x = torch.randn(batch, k, dtype=torch.float32)
    leaf = x.clone().requires_grad_(True)
    g = torch.randn_like(x)
    torch.testing.assert_close(project_simplex(x, validate=False), sparsemax(x, dim=-1))

    def forward_backward(fn):
        def call() -> None:
            leaf.grad = None
            fn(leaf).backward(g)

        return call

    timing = settings.timing(repeats=30, number=20, warmup=5)
    forward = compare(
        {
            "ours": lambda: project_simplex(x, validate=False),
            "ours (validated)": lambda: project_simplex(x),
            "entmax": lambda: sparsemax(x, dim=-1),
        },
        **timing,
    )
    both = compare(
        {
            "ours": forward_backward(lambda t: project_simplex(t, validate=False)),
            "entmax": forward_backward(lambda t: sparsemax(t, dim=-1)),
        },
        **timing,
    )
    rows = [
        ("forward", forward["ours"], forward["entmax"]),
        ("forward (with NaN/inf and lengths checks)", forward["ours (validated)"], forward["entmax"]),
        ("forward+backward", both["ours"], both["entmax"]),
    ]
    ratios = {name: ours / peer for name, ours, peer in rows}
    worst = max(ratios.values())
    met = "met" if worst <= GOAL else "missed"
    table = [
        "| pass | spigot (us) | entmax (us) | ratio spigot/entmax |",
        "|---|---|---|---|",
        *(f"| {name} | {ours * 1e6:.1f} | {peer * 1e6:.1f} | {ours / peer:.2f}x |" for name, ours, peer in rows),
    ]
    markdown = "\n".join(
        [
            f"## {TITLE}",
            "",
            "Batched Euclidean projection onto the probability simplex, `spigot.solvers.project_simplex`",
            "(Michelot's fixed point, no sort) against `entmax.sparsemax` (sort-based), on the same",
            f"float32 batch B={batch}, k={k}; the script first checks that both give the same result.",
            f"Goal: at most {GOAL:.1f}x entmax.",
            "",
            f"Command: `{settings.command}`",
            "",
            f"Machine: {settings.machine()}.",
            "",
            *table,
            "",
            f"Goal **{met}**: the slowest pass is {worst:.2f}x entmax (goal <= {GOAL:.1f}x).",
        ]
    )
    headline = [f"simplex: {name} {ratio:.2f}x entmax" for name, ratio in ratios.items()]
    data = {"batch": batch, "k": k, "seconds": {n: {"ours": o, "entmax": p} for n, o, p in rows}, "ratios": ratios}
    return SectionResult("simplex", markdown, headline + [f"simplex goal (<= {GOAL}x): {met}"], data)
