"""Semantic graphs: the projection-error study of issue 5, summarised for ``docs/benchmarks.md``.

The default grid runs every solver of the ``semantic-graph`` family
(:data:`~spigot.experiments.projection_study.FAMILIES`) on two instances per size; the full
grid (n in 5..40 words, L in 2..20 labels) runs the solvers that finish at 40 words on one
instance per size and is shown as two size-by-solver tables (median distance, time relative
to cvxpy). The findings below the tables are computed from them.
"""

from __future__ import annotations

import time
import warnings

import pandas as pd

from spigot.experiments.benchmarks.settings import BenchSettings, SectionResult
from spigot.experiments.projection_study import FAMILIES, markdown_table, projection_study, summarize_study

TITLE = "Semantic graphs"
FAMILY = "semantic-graph"
#: Solvers of the full grid (the others take minutes per instance at 40 words).
FULL_GRID_SOLVERS = ("relaxed", "closed-form (relaxation)", "cvxpy", "pairwise-frank-wolfe", "ad3", "ad3-frank-wolfe (20 it)")
COLUMNS = ["size", "solver", "distance", "max_gap", "max_feasibility", "time_s", "time_ratio", "success"]


def _study(sizes, labels, instances: int) -> tuple[pd.DataFrame, float]:
    family = FAMILIES[FAMILY]
    solvers = [s for s in family.solvers if labels is None or s.label in labels]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The problem has an expression with dimension greater than 2")
        table = projection_study(family, sizes=sizes, solvers=solvers, n_instances=instances)
    return table, time.perf_counter() - start


def run(settings: BenchSettings) -> SectionResult:
    """Run the default (and, unless quick, the full) grid and write the section."""
    import torch

    torch.set_num_threads(settings.threads)
    family = FAMILIES[FAMILY]
    if settings.quick:
        default, default_s = _study([(3, 2)], ("relaxed", "closed-form (relaxation)", "cvxpy", "active-set"), 1)
        full = full_s = None
    else:
        default, default_s = _study(family.sizes, None, 2)
        full, full_s = _study(family.full_sizes, FULL_GRID_SOLVERS, 1)
    summary = summarize_study(default, baseline="cvxpy")
    parts = [
        f"## {TITLE}",
        "",
        "The projection-error study of issue 5 (`spigot.experiments.projection_study`, family",
        "`semantic-graph`). For each size (n words, L labels) it draws standard normal scores `x` of",
        "shape `(n+1, n+1, L)` and projects them onto a DM-like `SemanticGraph(L, unique_labels=first",
        "ceil(L/2) labels)`. The exact projection `p*` comes from `cvxpy` (Clarabel at its default",
        "tolerance 1e-12), which is exact here because the semantic-graph constraints are totally",
        "unimodular (the local polytope is conv(Z)); `cvxpy` is also a row, so its distance is 0.",
        "Columns:",
        "",
        "- `distance`: median over instances of `||p - p*||`;",
        "- `max_gap`: the largest certificate the solver reported (`relaxed` and `closed-form",
        "  (relaxation)` report it against the per-arc relaxation `LabeledArcs`, every other row",
        "  against the polytope; `distance^2 <= gap` for every feasible point);",
        "- `max_feasibility`: the largest violation at `p` of the polytope's constraints (0 inside);",
        "- `time_s`: median wall time of `solver.run` (certificate included); `time_ratio`: that time",
        "  over cvxpy's median time for the same size, in the same run;",
        "- `success`: fraction of instances where the solver met its tolerance within its budget.",
        "",
        "Rows: `relaxed` is the reference implementation's procedure (clip the arc value to [0, 1],",
        "then project the labels onto the simplex scaled by it); `closed-form (relaxation)` is the",
        "exact Euclidean projection onto the per-arc relaxation; `active-set` and the Frank-Wolfe",
        "family use the combinatorial MAP (Frank-Wolfe rows capped at 500 iterations); `ad3` is the",
        "AD3-QP solver (batched ADMM onto the local polytope, here conv(Z)) at its defaults, one",
        "instance per call as for every row (its batched timing is the \"AD3-QP on semantic graphs\"",
        "section); `ad3-frank-wolfe (k it)` is pairwise Frank-Wolfe whose linear oracle is ad3's",
        "LP-MAP, with a budget of `k` oracle calls. Torch, Clarabel and ad3 run single-threaded.",
        "Distances, gaps and",
        "feasibility errors are deterministic (seed 0); times are wall times on a shared machine",
        "and noisy. The `spigot study` command runs the same study on every family, with iteration",
        "budgets and plots (see the solver guide).",
        "",
        f"Command: `{settings.command}`",
        "",
        f"Machine: {settings.machine().split(', clock')[0]}; clock: wall time.",
        "",
        f"**Default grid** (every solver, {default.instance.nunique()} instance(s) per size; "
        f"{default_s:.0f} s wall):",
        "",
        markdown_table(summary[COLUMNS]),
    ]
    headline = [f"semantic graphs default grid: {len(default)} projections in {default_s:.0f} s"]
    data = {"default_seconds": default_s}
    if full is not None:
        full_summary = summarize_study(full, baseline="cvxpy")
        words = sorted({n for n, _ in family.full_sizes})
        labels = sorted({l for _, l in family.full_sizes})
        parts += [
            "",
            f"**Full grid** (n in {{{', '.join(map(str, words))}}} words, L in {{{', '.join(map(str, labels))}}}"
            f" labels, one instance per size, the solvers that finish at {max(words)} words; {full_s:.0f} s wall):",
        ]
        order = list(dict.fromkeys(full_summary.solver))
        for value, title in (("distance", "median distance to the exact projection"), ("time_ratio", "median time / cvxpy's")):
            grid = full_summary.pivot(index="size", columns="solver", values=value)
            grid = grid.reindex(index=list(dict.fromkeys(full_summary["size"])), columns=order)
            parts += ["", f"{title}:", "", markdown_table(grid.reset_index())]
        parts += ["", "Findings (computed from the tables above):", "", *_findings(summary, full_summary)]
        headline.append(f"semantic graphs full grid: {len(full)} projections in {full_s:.0f} s")
        data["full_seconds"] = full_s
    return SectionResult("semantic-graphs", "\n".join(parts), headline, data)


def _span(values: pd.Series, fmt: str = ".3g") -> str:
    return f"{values.min():{fmt}} to {values.max():{fmt}}"


def _findings(default: pd.DataFrame, full: pd.DataFrame) -> list[str]:
    """Bullet points read off the default-grid summary and the full-grid summary."""
    relaxed = full[full.solver == "relaxed"]
    per_arc = full[full.solver == "closed-form (relaxation)"]
    pfw = full[full.solver == "pairwise-frank-wolfe"]
    ad3 = full[full.solver == "ad3-frank-wolfe (20 it)"]
    qp = full[full.solver == "ad3"]
    lines = [
        f"- The paper's `relaxed` procedure lands {_span(relaxed.distance)} from the exact projection"
        f" (first size {relaxed.distance.iloc[0]:.3g}, last {relaxed.distance.iloc[-1]:.3g}); its points"
        f" violate the unique-label rows by up to {relaxed.max_feasibility.max():.3g}, and it takes"
        f" {_span(relaxed.time_ratio, '.2g')} times cvxpy's time.",
        f"- The exact per-arc projection (`closed-form (relaxation)`) has gap"
        f" {per_arc.max_gap.abs().max():.1g} against the relaxation yet lies {_span(per_arc.distance)}"
        " from `p*`: the relaxation's projection is not the polytope's wherever the unique-label"
        " constraint binds.",
        f"- Pairwise Frank-Wolfe (500 iterations) ends {_span(pfw.distance)} from `p*`"
        f" (success on {int(pfw.success.sum())} of {len(pfw)} sizes) at {_span(pfw.time_ratio, '.2g')}"
        f" times cvxpy's time; `ad3-frank-wolfe` with 20 oracle calls ends {_span(ad3.distance)} away at"
        f" {_span(ad3.time_ratio, '.2g')} times cvxpy's time.",
        f"- AD3-QP (`ad3`, one instance per call) ends {_span(qp.distance)} from `p*` (success on"
        f" {int(qp.success.sum())} of {len(qp)} sizes) at {_span(qp.time_ratio, '.2g')} times cvxpy's time.",
    ]
    budget = default[default.solver.isin(["ad3-frank-wolfe (20 it)", "ad3-frank-wolfe (100 it)"])]
    for size, rows in budget.groupby("size", sort=False):
        if len(rows) == 2:
            few, many = rows.iloc[0], rows.iloc[1]
            lines.append(
                f"- `ad3-frank-wolfe`'s error falls with its budget: at {size}, {few.distance:.2g} after 20 oracle"
                f" calls and {many.distance:.2g} after 100 ({few.time_ratio:.2g}x and"
                f" {many.time_ratio:.2g}x cvxpy's time)."
            )
            break
    exact = default[default.solver.isin(["cvxpy", "active-set", "ad3"])]
    fastest = exact.loc[exact.groupby("size", sort=False).time_s.idxmin()]
    wins = {name: int((fastest.solver == name).sum()) for name in ("ad3", "cvxpy", "active-set")}
    active = default[default.solver == "active-set"]
    lines.append(
        f"- Among the exact solvers (default grid, one instance per call) `ad3` is the fastest on"
        f" {wins['ad3']} of {len(fastest)} sizes, cvxpy on {wins['cvxpy']}, active-set on"
        f" {wins['active-set']}; active-set takes {_span(active.time_ratio, '.2g')} times cvxpy's time."
        " `solver=\"exact\"` on a `SemanticGraph` uses `ad3` at tol 1e-9 (`SemanticGraph.preferred_exact_solver`)."
    )
    return lines
