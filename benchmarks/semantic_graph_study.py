"""Projection-error study on semantic graphs: every solver against the exact projection.

For random scores over a grid of sizes, prints (markdown) per size and solver: the distance to
the exact projection (cvxpy, tight tolerance), the certificate gap, the feasibility error, the
median time and its ratio to cvxpy's time measured in the same run, and the success rate.

    .venv/bin/python benchmarks/semantic_graph_study.py                 # default grid, every solver
    .venv/bin/python benchmarks/semantic_graph_study.py --full --instances 1 --compact \\
        --solvers relaxed "closed-form (relaxation)" cvxpy pairwise-frank-wolfe "ad3 (20 it)"

Torch runs single-threaded by default (``--threads``), like Clarabel and ad3: the per-arc
projections work on small tensors, where intra-op threads only add contention.
``--compact`` prints two size-by-solver tables instead (median distance, time ratio to cvxpy);
``--csv`` saves the raw table and ``--from-csv`` summarises a saved one without running again.
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd
import torch

from spigot.experiments.projection_study import (
    DEFAULT_SIZES,
    DEFAULT_SOLVERS,
    FULL_SIZES,
    TARGETS,
    markdown_table,
    projection_study,
    summarize_study,
)

COLUMNS = ["n_words", "n_labels", "solver", "distance", "max_gap", "max_feasibility", "time_s", "time_ratio", "success"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the full grid: n in 5..40 words, L in 2..20 labels")
    parser.add_argument("--solvers", nargs="+", help="solver labels to keep (default: all)")
    parser.add_argument("--instances", type=int, default=2, help="random instances per size")
    parser.add_argument("--target", choices=TARGETS, default="scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", help="also write the raw per-instance table here")
    parser.add_argument("--from-csv", help="summarise this saved table instead of running the study")
    parser.add_argument("--compact", action="store_true", help="size-by-solver tables of distance and time ratio")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.from_csv:
        report(pd.read_csv(args.from_csv), args.compact)
        return
    solvers = DEFAULT_SOLVERS
    if args.solvers:
        known = {s.label: s for s in DEFAULT_SOLVERS}
        unknown = sorted(set(args.solvers) - set(known))
        if unknown:
            parser.error(f"unknown solver labels {unknown}; known: {sorted(known)}")
        solvers = tuple(known[label] for label in args.solvers)
    if "cvxpy" not in {s.label for s in solvers}:
        parser.error("keep cvxpy among the solvers: times are reported as ratios to it")
    warnings.filterwarnings("ignore", message="The problem has an expression with dimension greater than 2")
    start = time.perf_counter()
    table = projection_study(
        sizes=FULL_SIZES if args.full else DEFAULT_SIZES,
        solvers=solvers,
        n_instances=args.instances,
        target=args.target,
        seed=args.seed,
    )
    elapsed = time.perf_counter() - start
    if args.csv:
        table.to_csv(args.csv, index=False)
    report(table, args.compact)
    print(f"\n{len(table)} projections in {elapsed:.1f} s")


def report(table: pd.DataFrame, compact: bool) -> None:
    """Print the summary, or (``compact``) size-by-solver tables of median distance and time ratio."""
    summary = summarize_study(table, baseline="cvxpy")
    if not compact:
        print(markdown_table(summary[COLUMNS]))
        return
    order = list(dict.fromkeys(summary.solver))
    for value, title in (("distance", "median distance to the exact projection"), ("time_ratio", "median time / cvxpy's")):
        grid = summary.pivot(index=["n_words", "n_labels"], columns="solver", values=value)[order]
        print(f"\n{title}:\n")
        print(markdown_table(grid.reset_index()))


if __name__ == "__main__":
    main()
