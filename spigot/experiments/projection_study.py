r"""How far each projection solver lands from the exact projection, on random instances.

For every size ``(n words, L labels)`` of a grid, :func:`projection_study` draws random targets
:math:`x` (scores, or SPIGOT's :math:`\mathrm{map}(s) - \eta g`), computes the exact projection
:math:`p^\star = \Pi_P(x)` with a reference solver, runs every solver and reports, per instance
and solver,

- ``distance``: :math:`\|p - p^\star\|_2`;
- ``gap``: the certificate the solver reports (against ``gap_against``: the polytope, or its
  relaxation for the ``relaxed`` solver and for rows run on the relaxation);
- ``feasibility``: the largest violation at :math:`p` of the polytope's own constraints
  (``polytope.constraints``; exact for :class:`~spigot.polytopes.SemanticGraph`, whose local
  polytope is :math:`\mathrm{conv}(Z)`), 0 when :math:`p \in P`;
- ``time_s``: wall-clock seconds of the solver's ``run`` (certificate included), ``nit`` and
  ``success``.

:func:`summarize_study` reduces the table to one row per size and solver (with times relative
to a baseline solver of the same run) and :func:`markdown_table` formats it for
``docs/benchmarks.md``; ``benchmarks/semantic_graph_study.py`` runs the whole thing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import cvxpy as cp
import numpy as np
import pandas as pd

from spigot.polytopes.base import Polytope
from spigot.polytopes.semantic_graph import SemanticGraph
from spigot.solvers.registry import get_solver

TARGETS = ("scores", "spigot")


@dataclass(frozen=True)
class StudySolver:
    """One solver of the study.

    Attributes
    ----------
    label
        Its name in the table.
    solver
        Registered solver name.
    options
        Solver options.
    on_relaxation
        Project onto ``polytope.relaxation()`` instead of the polytope (e.g. the exact per-arc
        ``closed-form`` projection of a semantic graph).
    """

    label: str
    solver: str
    options: Mapping[str, Any] = field(default_factory=dict)
    on_relaxation: bool = False


DEFAULT_SOLVERS: tuple[StudySolver, ...] = (
    StudySolver("relaxed", "relaxed"),
    StudySolver("closed-form (relaxation)", "closed-form", on_relaxation=True),
    StudySolver("cvxpy", "cvxpy"),
    StudySolver("active-set", "active-set"),
    StudySolver("pairwise-frank-wolfe", "pairwise-frank-wolfe", {"max_iter": 500}),
    StudySolver("away-frank-wolfe", "away-frank-wolfe", {"max_iter": 500}),
    StudySolver("frank-wolfe", "frank-wolfe", {"max_iter": 500}),
    StudySolver("ad3 (20 it)", "ad3", {"max_iter": 20}),
    StudySolver("ad3 (100 it)", "ad3", {"max_iter": 100}),
)

#: The default grid (under 2 minutes on 2 CPU cores).
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((5, 2), (5, 5), (10, 5), (10, 10), (20, 2))

#: The issue's full grid: n in 5..40 words, L in 2..20 labels.
FULL_SIZES: tuple[tuple[int, int], ...] = tuple(
    (n, labels) for n in (5, 10, 20, 40) for labels in (2, 5, 10, 20)
)

#: The reference: cvxpy's interior-point QP onto the polytope's constraints, tight tolerance.
DEFAULT_REFERENCE = StudySolver("reference", "cvxpy", {"tol": 1e-10})


def dm_semantic_graph(n_labels: int) -> SemanticGraph:
    """A DM-like semantic graph: the first half of the labels (rounded up) are unique per head."""
    return SemanticGraph(n_labels, unique_labels=range((n_labels + 1) // 2))


def projection_study(
    sizes: Iterable[tuple[int, int]] = DEFAULT_SIZES,
    solvers: Sequence[StudySolver] = DEFAULT_SOLVERS,
    polytope: Callable[[int], Polytope] = dm_semantic_graph,
    n_instances: int = 2,
    target: str = "scores",
    eta: float = 1.0,
    reference: StudySolver = DEFAULT_REFERENCE,
    seed: int = 0,
) -> pd.DataFrame:
    r"""Run the projection-error study; one row per (size, instance, solver).

    Parameters
    ----------
    sizes
        ``(n_words, n_labels)`` pairs; an instance has shape ``(n+1, n+1, L)``.
    solvers
        The solvers to compare (:class:`StudySolver`).
    polytope
        ``n_labels -> polytope``; :func:`dm_semantic_graph` by default.
    n_instances
        Random instances per size.
    target
        ``"scores"``: project standard normal scores :math:`s`; ``"spigot"``: project
        :math:`\mathrm{map}(s) - \eta g` with :math:`g` standard normal, as SPIGOT's backward
        pass does.
    eta
        The step :math:`\eta` of the ``"spigot"`` target.
    reference
        The exact solver that gives :math:`p^\star`.
    seed
        Seed of the random instances.

    Returns
    -------
    DataFrame with columns ``polytope, n_words, n_labels, instance, solver, distance, gap,
    gap_against, feasibility, time_s, nit, success``.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if isinstance(n_instances, bool) or not isinstance(n_instances, int) or n_instances < 1:
        raise ValueError(f"n_instances must be a positive integer, got {n_instances!r}")
    if not np.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    sizes = [_check_size(size) for size in sizes]
    runs = [(entry, get_solver(entry.solver, **entry.options)) for entry in solvers]
    exact = get_solver(reference.solver, **reference.options)
    rng = np.random.default_rng(seed)
    rows = []
    for n_words, n_labels in sizes:
        poly = polytope(n_labels)
        violation = _ConstraintViolation(poly)
        for instance in range(n_instances):
            x = _draw_target(poly, (n_words + 1, n_words + 1, n_labels), target, eta, rng)
            star = np.asarray(_run(exact, poly, x, reference.on_relaxation)[0].x)
            for entry, solver in runs:
                result, seconds = _run(solver, poly, x, entry.on_relaxation)
                p = np.asarray(result.x)
                rows.append(
                    {
                        "polytope": repr(poly),
                        "n_words": n_words,
                        "n_labels": n_labels,
                        "instance": instance,
                        "solver": entry.label,
                        "distance": float(np.linalg.norm(p - star)),
                        "gap": float(result.gap),
                        "gap_against": _gap_against(entry, poly),
                        "feasibility": violation(p),
                        "time_s": seconds,
                        "nit": int(result.nit),
                        "success": bool(result.success),
                    }
                )
    return pd.DataFrame(rows)


def summarize_study(table: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """One row per size and solver: median and worst distance, worst gap and feasibility, median time, success rate.

    With ``baseline`` (a solver label of the table), ``time_ratio`` is each solver's median
    time over the baseline's, per size (same run, same instances).
    """
    grouped = table.groupby(["n_words", "n_labels", "solver"], sort=False)
    summary = grouped.agg(
        distance=("distance", "median"),
        max_distance=("distance", "max"),
        max_gap=("gap", "max"),
        max_feasibility=("feasibility", "max"),
        time_s=("time_s", "median"),
        success=("success", "mean"),
    ).reset_index()
    if baseline is not None:
        if baseline not in set(summary.solver):
            raise ValueError(f"baseline {baseline!r} is not a solver of the table: {sorted(set(summary.solver))}")
        reference = summary[summary.solver == baseline].set_index(["n_words", "n_labels"]).time_s
        keys = pd.MultiIndex.from_frame(summary[["n_words", "n_labels"]])
        summary["time_ratio"] = summary.time_s.to_numpy() / reference.reindex(keys).to_numpy()
    return summary


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table of ``table`` (floats in ``digits`` significant figures)."""

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return f"{value:.{digits}g}"
        return str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    n_words, n_labels = size
    if min(n_words, n_labels) < 1:
        raise ValueError(f"sizes must be (n_words >= 1, n_labels >= 1) pairs, got {size!r}")
    return int(n_words), int(n_labels)


def _draw_target(
    poly: Polytope, shape: tuple[int, ...], target: str, eta: float, rng: np.random.Generator
) -> np.ndarray:
    scores = rng.standard_normal(shape)
    if target == "scores":
        return scores
    return np.asarray(poly.map(scores)) - eta * rng.standard_normal(shape)


def _run(solver, poly: Polytope, x: np.ndarray, on_relaxation: bool):
    where = poly.relaxation() if on_relaxation else poly
    start = time.perf_counter()
    result = solver.run(where, x)
    return result, time.perf_counter() - start


def _gap_against(entry: StudySolver, poly: Polytope) -> str:
    if entry.on_relaxation or entry.solver == "relaxed":
        return "relaxation" if poly.relaxation() is not poly else "polytope"
    return "polytope"


class _ConstraintViolation:
    """Largest violation of ``polytope.constraints`` at a point (NaN without constraints)."""

    def __init__(self, polytope: Polytope) -> None:
        self.polytope = polytope
        self._cache: dict[tuple[int, ...], tuple[cp.Variable, list]] = {}

    def __call__(self, p: np.ndarray) -> float:
        if not self.polytope.supports("constraints"):
            return float("nan")
        if p.shape not in self._cache:
            var = cp.Variable(p.shape)
            self._cache[p.shape] = (var, self.polytope.constraints(var))
        var, constraints = self._cache[p.shape]
        var.value = p
        return max(float(np.max(c.violation(), initial=0.0)) for c in constraints)
