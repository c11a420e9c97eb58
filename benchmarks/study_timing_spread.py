"""How repeatable the projection-error study's time panels are: the same study run several times.

Runs ``projection_study`` on one family ``--runs`` times with the same seed and, for one solver
at every size and iteration budget, takes the median time over instances in each run; reports
the relative interquartile range of those medians across runs (IQR / median: 0 means the time
panel is identical from run to run) and how many times the median time *decreases* from one
budget to the next while the median iterations used grow (a zigzag: more work cannot take less
time; where the solver has already converged the work is equal and the time flat).

    .venv/bin/python benchmarks/study_timing_spread.py --family arborescence --runs 3

Point ``PYTHONPATH`` at another checkout to measure it the same way (``--repeats`` is passed
only where ``projection_study`` takes it).
"""

from __future__ import annotations

import argparse
import inspect
import time
import warnings

import numpy as np
import pandas as pd

import spigot
from spigot.experiments.projection_study import projection_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="arborescence")
    parser.add_argument("--solver", default="active-set")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--budgets", default="1,3,10,30,100")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per instance (new code only)")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    options = {}
    if "repeats" in inspect.signature(projection_study).parameters:
        options["repeats"] = 5 if args.repeats is None else args.repeats
    medians, iterations = [], []
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for run in range(args.runs):
            table = projection_study(args.family, n_instances=args.instances, budgets=budgets, seed=0, **options)
            rows = table[table.solver == args.solver]
            medians.append(rows.groupby(["size", "max_iter"], sort=False)["time_s"].median().rename(run))
            iterations.append(rows.groupby(["size", "max_iter"], sort=False)["nit"].median().rename(run))
    seconds = time.perf_counter() - started
    panel = pd.concat(medians, axis=1)
    q75, q25 = panel.quantile(0.75, axis=1), panel.quantile(0.25, axis=1)
    relative_iqr = (q75 - q25) / panel.median(axis=1)
    typical = panel.median(axis=1).unstack("max_iter")
    work = pd.concat(iterations, axis=1).median(axis=1).unstack("max_iter").to_numpy()
    more_work = np.diff(work, axis=1) > 0
    zigzags = int((np.diff(typical.to_numpy(), axis=1)[more_work] < 0).sum())
    print(f"spigot from {spigot.__file__}; options {options or 'none (single timed run)'}")
    print(f"{args.family}, solver {args.solver}, {args.runs} runs x {args.instances} instances, budgets {budgets}: {seconds:.0f} s")
    print("median time (ms) by size and budget, median over runs:")
    print((typical * 1e3).round(3).to_string())
    print(f"relative IQR across runs: median {relative_iqr.median():.3f}, max {relative_iqr.max():.3f}")
    print("median iterations used:", work.tolist())
    print(f"budget steps where the work grows but the median time decreases: {zigzags} of {int(more_work.sum())}")


if __name__ == "__main__":
    main()
