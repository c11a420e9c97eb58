"""Differentiable projections against ``cvxpylayers`` (a generic differentiable convex layer).

Two layers, forward and backward on the same batch: the simplex projection
(``project_simplex``, closed form with a hand-written backward) and SparseMAP on the
arborescence polytope (``sparsemap``: active-set projection, backward through the exposed face),
each against a ``CvxpyLayer`` built from the same polytope's cvxpy constraints (the
multi-commodity-flow extended formulation for trees). cvxpylayers solves a batch on worker
threads, so both sides are timed in process CPU time (all threads of this process; other jobs
on the machine do not count). No issue sets a goal for this comparison; it is reported for
reference.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import cvxpy as cp
import torch

from spigot.autodiff import sparsemap
from spigot.experiments.benchmarks.settings import BenchSettings, SectionResult
from spigot.experiments.benchmarks.timing import compare
from spigot.polytopes import Arborescence, Polytope, Simplex
from spigot.solvers import certificate_gap, project_simplex

TITLE = "Differentiable projections vs cvxpylayers"


def projection_layer(polytope: Polytope, shape: tuple[int, ...]):
    """A ``CvxpyLayer`` computing the Euclidean projection onto ``polytope`` for instances of ``shape``."""
    from cvxpylayers.torch import CvxpyLayer

    target = cp.Parameter(shape)
    point = cp.Variable(shape)
    objective = cp.Minimize(0.5 * cp.sum_squares(point) - cp.sum(cp.multiply(target, point)))
    problem = cp.Problem(objective, polytope.constraints(point))
    return CvxpyLayer(problem, parameters=[target], variables=[point])


def _case(
    name: str,
    polytope: Polytope,
    ours: Callable[[torch.Tensor], torch.Tensor],
    layer: Any,
    x: torch.Tensor,
    mask: torch.Tensor,
    settings: BenchSettings,
    repeats: int,
) -> dict[str, Any]:
    g = torch.randn_like(x)

    def gradients(fn):
        leaf = x.clone().requires_grad_(True)
        out = fn(leaf)
        out.backward(g)
        return out.detach(), leaf.grad

    def peer(t: torch.Tensor) -> torch.Tensor:
        return layer(t)[0]

    ours_out, ours_grad = gradients(ours)
    peer_out, peer_grad = gradients(peer)
    batch_x = x.reshape(-1, *x.shape[-mask.dim():])

    def worst_gap(point: torch.Tensor) -> float:
        return float(certificate_gap(polytope, batch_x, (point * mask).reshape(batch_x.shape), None).abs().max())

    timing = settings.timing(repeats=repeats, number=2, warmup=1)
    timing["clock"] = time.process_time
    times = compare({"ours": lambda: gradients(ours), "peer": lambda: gradients(peer)}, **timing)
    return {
        "case": name,
        "shape": list(x.shape),
        "ours_ms": 1e3 * times["ours"],
        "peer_ms": 1e3 * times["peer"],
        "ratio": times["ours"] / times["peer"],
        "forward_difference": float(((ours_out - peer_out) * mask).abs().max()),
        "backward_difference": float(((ours_grad - peer_grad) * mask).abs().max()),
        "ours_gap": worst_gap(ours_out),
        "peer_gap": worst_gap(peer_out),
    }


def run(settings: BenchSettings) -> SectionResult:
    """Both comparisons and their section of ``docs/benchmarks.md``."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    k, batch = (20, 8) if settings.quick else (100, 32)
    n, trees = (5, 2) if settings.quick else (10, 4)
    simplex_x = torch.randn(batch, k, dtype=torch.float64)
    tree_x = 2.0 * torch.randn(trees, n + 1, n + 1, dtype=torch.float64)
    arcs = torch.ones(n + 1, n + 1, dtype=torch.float64)
    arcs[:, 0] = 0.0
    arcs.fill_diagonal_(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy/diffcp notes about DPP and solver accuracy
        rows = [
            _case(
                f"simplex, B={batch}, k={k}",
                Simplex(),
                lambda t: project_simplex(t),
                projection_layer(Simplex(), (k,)),
                simplex_x,
                torch.ones(k, dtype=torch.float64),
                settings,
                repeats=10,
            ),
            _case(
                f"arborescence, B={trees}, n={n}",
                Arborescence(),
                lambda t: sparsemap(t, Arborescence()),
                projection_layer(Arborescence(), (n + 1, n + 1)),
                tree_x,
                arcs,
                settings,
                repeats=3,
            ),
        ]
    import cvxpylayers

    table = [
        "| layer (forward+backward) | spigot (ms) | cvxpylayers (ms) | ratio spigot/cvxpylayers "
        "| max abs. difference (forward, backward) | max abs. certificate gap (spigot, cvxpylayers) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['case']} | {r['ours_ms']:.2f} | {r['peer_ms']:.1f} | {r['ratio']:.3f}x | "
            f"{r['forward_difference']:.1e}, {r['backward_difference']:.1e} | {r['ours_gap']:.1e}, {r['peer_gap']:.1e} |"
            for r in rows
        ),
    ]
    markdown = "\n".join(
        [
            f"## {TITLE}",
            "",
            "A generic differentiable convex-optimization layer against the library's structured ones,",
            "forward and backward on the same batch: `project_simplex` (closed form, hand-written",
            "backward) and `sparsemap(scores, Arborescence())` (active-set projection, backward through",
            f"the exposed face) against `CvxpyLayer` (cvxpylayers {cvxpylayers.__version__}) on the same",
            "polytope's cvxpy constraints (for trees, the multi-commodity-flow extended formulation).",
            "cvxpylayers solves the batch on worker threads, so both sides are timed in process CPU",
            "time (every thread of this process, none of the other jobs on the machine), in interleaved",
            "rounds. The differences compare the two layers' outputs and input gradients (valid arcs",
            "only for trees); the certificate gap of each forward output (its absolute value: a",
            "negative gap means a point outside the polytope) says which side is the accurate one.",
            "No issue sets a goal for this comparison.",
            "",
            f"Command: `{settings.command}`",
            "",
            f"Machine: {settings.machine().split(', clock')[0]}; clock: process CPU time.",
            "",
            *table,
        ]
    )
    headline = [f"cvxpylayers {r['case']}: {r['ratio']:.3f}x cvxpylayers" for r in rows]
    return SectionResult("cvxpylayers", markdown, headline, {"cases": rows})


def available() -> bool:
    """Whether cvxpylayers imports (the section is skipped otherwise)."""
    try:
        import cvxpylayers.torch  # noqa: F401
    except ImportError:
        return False
    return True
