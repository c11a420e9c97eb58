"""AD3-QP on semantic graphs: the batched ``ad3`` solver against lp-sparsemap and cvxpy.

One batch of ``B`` semantic graphs (``n`` words, ``L`` labels, the first ``ceil(L/2)`` unique per
head) with standard normal scores is projected three ways: the ``ad3`` solver on the whole
batch (certificate included), lp-sparsemap's ``FactorGraph.solve`` (AD3-QP in C++, one factor
graph per instance: one variable per valid arc and label, one ``AtMostOne`` per arc and one per
head and unique label; building it is part of each call) and the ``cvxpy`` solver (Clarabel),
one instance at a time. The exact projection is ``cvxpy`` at its default tolerance (1e-12),
solved once. Goals (issue 17), B=32, n=20, L=10, one thread: largest distance to the exact
projection at most 1e-4, total time at most 0.1x lp-sparsemap's and at most 0.1x cvxpy's, and at
most 1 s for the batch; in float32 and in float64.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from spigot.experiments.benchmarks.settings import BenchSettings, SectionResult
from spigot.experiments.benchmarks.timing import compare
from spigot.polytopes import SemanticGraph
from spigot.solvers import get_solver

TITLE = "AD3-QP on semantic graphs"
#: Goals: largest distance to the exact projection, time ratios to each peer, seconds per batch.
DISTANCE_GOAL, RATIO_GOAL, SECONDS_GOAL = 1e-4, 0.1, 1.0


def lpsmap_projection(x: np.ndarray, unique: tuple[int, ...]) -> np.ndarray:
    """lp-sparsemap's AD3-QP projection of one semantic graph ``(n+1, n+1, L)`` (float64 numpy)."""
    import lpsmap

    nodes = x.shape[0]
    heads, mods = np.array([(h, m) for h in range(nodes) for m in range(1, nodes) if h != m]).T
    graph = lpsmap.FactorGraph()
    variables = graph.variable_from(np.ascontiguousarray(x[heads, mods], dtype=np.float64))
    for arc in range(len(heads)):
        graph.add(lpsmap.AtMostOne(variables[arc]))
    for head in range(nodes):
        arcs = np.flatnonzero(heads == head)
        if len(arcs) >= 2:
            for label in unique:
                graph.add(lpsmap.AtMostOne(variables[arcs, label]))
    graph.solve()
    out = np.zeros_like(x, dtype=np.float64)
    out[heads, mods] = variables.value
    return out


def run(settings: BenchSettings) -> SectionResult:
    """Time and check the three projections on one batch per dtype; see the module."""
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    batch, words, labels = (4, 6, 4) if settings.quick else (32, 20, 10)
    unique = tuple(range(math.ceil(labels / 2)))
    graph = SemanticGraph(labels, unique)
    x64 = torch.from_numpy(rng.standard_normal((batch, words + 1, words + 1, labels)))
    x32 = x64.float()
    solver, cvxpy = get_solver("ad3"), get_solver("cvxpy")
    instances = x64.numpy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The problem has an expression with dimension greater than 2")
        exact = cvxpy.run(graph, x64).x
        ours = {"float64": solver.run(graph, x64), "float32": solver.run(graph, x32)}
        peer = np.stack([lpsmap_projection(xi, unique) for xi in instances])
        rounds = 1 if settings.quick else min(settings.rounds, 3)
        seconds = compare(
            {
                "ad3 float64": lambda: solver.run(graph, x64),
                "ad3 float32": lambda: solver.run(graph, x32),
                "lp-sparsemap": lambda: [lpsmap_projection(xi, unique) for xi in instances],
                "cvxpy": lambda: [cvxpy.run(graph, xi) for xi in instances],
            },
            rounds=rounds,
            repeats=1,
            number=1,
            warmup=0,
            clock=settings.clock,
        )

    def distance(p: torch.Tensor | np.ndarray) -> float:
        diff = torch.as_tensor(p).double() - exact
        return float(diff.flatten(start_dim=1).norm(dim=1).max())

    rows = []
    for dtype, result in ours.items():
        rows.append(
            {
                "dtype": dtype,
                "distance": distance(result.x),
                "gap": float(result.gap.max()),
                "nit": int(result.nit.max()),
                "success": bool(result.success.all()),
                "seconds": seconds[f"ad3 {dtype}"],
            }
        )
    peer_distance = distance(peer)
    lines, met_all = [], True
    table = [
        "| dtype | solver | largest distance to exact | time for the batch (s) | ad3 / lp-sparsemap | ad3 / cvxpy |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        to_lpsmap = row["seconds"] / seconds["lp-sparsemap"]
        to_cvxpy = row["seconds"] / seconds["cvxpy"]
        goals = {
            f"distance <= {DISTANCE_GOAL:g}": row["distance"] <= DISTANCE_GOAL,
            f"time <= {RATIO_GOAL:g}x lp-sparsemap": to_lpsmap <= RATIO_GOAL,
            f"time <= {RATIO_GOAL:g}x cvxpy": to_cvxpy <= RATIO_GOAL,
            f"time <= {SECONDS_GOAL:g} s": row["seconds"] <= SECONDS_GOAL,
        }
        met_all &= all(goals.values())
        row.update(to_lpsmap=to_lpsmap, to_cvxpy=to_cvxpy, goals=goals)
        table.append(
            f"| {row['dtype']} | `ad3` (batched; max {row['nit']} iterations, all converged: "
            f"{row['success']}) | {row['distance']:.2e} | {row['seconds']:.3f} | {to_lpsmap:.3f}x | {to_cvxpy:.3f}x |"
        )
        verdict = ", ".join(f"{name} **{'met' if ok else 'missed'}**" for name, ok in goals.items())
        lines.append(f"- {row['dtype']}: {verdict}.")
    table.append(
        f"| float64 | lp-sparsemap (one call per instance) | {peer_distance:.2e} | {seconds['lp-sparsemap']:.3f} | | |"
    )
    table.append(f"| float64 | cvxpy (one call per instance) | exact (reference) | {seconds['cvxpy']:.3f} | | |")
    markdown = "\n".join(
        [
            f"## {TITLE}",
            "",
            f"Euclidean projection of a batch of B={batch} semantic graphs (n={words} words, L={labels}",
            f"labels, the first {len(unique)} unique per head; `SemanticGraph`, whose local polytope is",
            "conv(Z)) with standard normal scores. `ad3` is this library's AD3-QP solver on the whole",
            "batch at its defaults (compiled CPU kernel, certificate included; a float32 input is",
            "solved in float64 and returned in float32); lp-sparsemap (`lpsmap.FactorGraph.solve`,",
            "AD3-QP in C++) and `cvxpy` (Clarabel, tolerance 1e-12) get one call per instance, on",
            "float64 scores (they compute in float64 whatever the input). The distance is the largest",
            "over the batch of `||p - p*||`, with `p*` from `cvxpy`. Times are for the whole batch,",
            f"median of {rounds} interleaved round(s), all three single-threaded (so thread CPU time",
            "measures them on one torch thread); the machine was shared with other work, so they",
            f"are noisy. Goals: distance <= {DISTANCE_GOAL:g}, time <= {RATIO_GOAL:g}x each",
            f"peer's, <= {SECONDS_GOAL:g} s.",
            "",
            f"Command: `{settings.command}`",
            "",
            f"Machine: {settings.machine()}.",
            "",
            *table,
            "",
            *lines,
        ]
    )
    headline = [
        f"ad3-qp {row['dtype']}: distance {row['distance']:.1e}, {row['seconds']:.3f} s, "
        f"{row['to_lpsmap']:.3f}x lp-sparsemap, {row['to_cvxpy']:.3f}x cvxpy" for row in rows
    ]
    headline.append(f"ad3-qp goals: {'met' if met_all else 'missed'}")
    data = {
        "batch": batch,
        "words": words,
        "labels": labels,
        "seconds": seconds,
        "lpsmap_distance": peer_distance,
        "rows": [{k: v for k, v in row.items() if k != "goals"} | {"goals": dict(row["goals"])} for row in rows],
    }
    return SectionResult("ad3-qp", markdown, headline, data)
