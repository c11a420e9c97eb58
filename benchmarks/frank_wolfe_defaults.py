"""The measurement behind the Frank-Wolfe solvers' default ``tol`` and ``max_iter``.

For each variant (``frank-wolfe``, ``away-frank-wolfe``, ``pairwise-frank-wolfe``) and each
candidate tolerance, project random instances of four structures, with a cap of 2,000 MAP calls
(a vertex-based iterate makes each step cost grow with the vertices kept, so a larger cap is
measured in hours, not minutes), and record per instance the iterations used, whether the tolerance was met, the wall
time and the distance to the exact projection (active set at tol 1e-12). Two kinds of target:

- ``scores``: standard normal scores, projected from a cold start;
- ``spigot``: SPIGOT's backward target :math:`z - \\eta g` (``z = map(s)``, ``g`` standard normal,
  ``eta`` = 1 / ||g||, the default threshold-1 step), warm-started at ``z`` as the layer does.

Prints, per variant and tolerance over all instances: the median and 95th-percentile
iterations, the fraction that met the tolerance within 1,000 and within 2,000 iterations, the
median time, and the median and worst distance to the exact projection.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/frank_wolfe_defaults.py [--instances 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from spigot.polytopes import Arborescence, Budget, ProductOfSimplices, Simplex
from spigot.solvers import get_solver

VARIANTS = ("frank-wolfe", "away-frank-wolfe", "pairwise-frank-wolfe")
TOLS = (1e-6, 1e-8, 1e-10, 1e-12)
CAP = 2_000

#: (name, polytope, event shape)
STRUCTURES = (
    ("simplex k=100", Simplex(), (100,)),
    ("budget d=100 k=10", Budget(10), (100,)),
    ("product of simplices 10x10", ProductOfSimplices(), (10, 10)),
    ("arborescence n=10", Arborescence(), (11, 11)),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=8, help="instances per structure and target (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    exact = get_solver("active-set", tol=1e-12, max_iter=5000)
    rows = []
    started = time.perf_counter()
    for name, polytope, shape in STRUCTURES:
        for target in ("scores", "spigot"):
            for _ in range(args.instances):
                scores = rng.standard_normal(shape)
                init = None
                x = scores
                if target == "spigot":
                    z = np.asarray(polytope.map(scores))
                    g = rng.standard_normal(shape)
                    x, init = z - g / np.linalg.norm(g), z
                star = np.asarray(exact.run(polytope, x).x)
                for variant in VARIANTS:
                    capped = None
                    for tol in sorted(TOLS, reverse=True):
                        if capped is not None:  # a looser tol already used the whole cap: so would this one
                            rows.append({**capped, "tol": tol})
                            continue
                        solver = get_solver(variant, tol=tol, max_iter=CAP)
                        clock = time.perf_counter()
                        result = solver.run(polytope, x, init=init)
                        seconds = time.perf_counter() - clock
                        rows.append(
                            {
                                "structure": name, "target": target, "variant": variant, "tol": tol,
                                "nit": int(result.nit), "success": bool(result.success),
                                "seconds": seconds,
                                "distance": float(np.linalg.norm(np.asarray(result.x) - star)),
                            }
                        )
                        if not result.success and int(result.nit) >= CAP:
                            capped = rows[-1]
        print(f"  {name}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    table = pd.DataFrame(rows)
    summary = pd.DataFrame({key: _describe(group) for key, group in table.groupby(["variant", "tol"])}).T
    summary.index.names = ["variant", "tol"]
    print(f"{len(table)} projections, {args.instances} instances per structure and target, cap {CAP} MAP calls, "
          f"{time.perf_counter() - started:.0f} s")
    print(summary.to_string(float_format=lambda v: f"{v:.3g}"))
    per_structure = table[table.tol == 1e-8].groupby(["structure", "variant"]).agg(
        nit_p95=("nit", lambda n: np.percentile(n, 95)), met=("success", "mean"),
        distance_max=("distance", "max"))
    print("\nat tol 1e-8, per structure:")
    print(per_structure.to_string(float_format=lambda v: f"{v:.3g}"))


def _describe(rows: pd.DataFrame) -> dict[str, float]:
    return {
        "nit_median": rows.nit.median(),
        "nit_p95": np.percentile(rows.nit, 95),
        "met_within_1000": float((rows.success & (rows.nit <= 1000)).mean()),
        "met_within_cap": rows.success.mean(),
        "time_median_ms": 1e3 * rows.seconds.median(),
        "distance_median": rows.distance.median(),
        "distance_max": rows.distance.max(),
    }


if __name__ == "__main__":
    main()
