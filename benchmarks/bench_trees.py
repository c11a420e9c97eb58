"""Tree polytopes against their peers, every ratio measured in one run.

Three comparisons (issue 4):

1. MAP of non-projective trees, batch of 32 sentences of 50 words: ``Arborescence().map`` (the
   public call: validation, compiled Tarjan over the batch, one-hot output) against a Python
   loop of ``ufal.chu_liu_edmonds`` over the same batch (its input layout prepared beforehand,
   outside the timer); then the log-log slope of our time over n in {20, 40, 80, 160}.
2. Exact projection onto the arborescence polytope, n = 20, to a certificate gap of 1e-6:
   ``active-set`` against the ``cvxpy`` solver on the multi-commodity-flow extended
   formulation (its problem is built and compiled once before the timer, as in a training
   loop). lp-sparsemap's DepTree is compared when the package imports.
3. A full SPIGOT step, B = 32, n = 50: MAP forward plus the ``relaxed`` projection backward,
   against torch-struct's ``NonProjectiveDependencyCRF`` marginals forward and backward, for
   both root modes.

Times are medians over repeats of the whole call; ratios are ours / peer (lower is better),
except the projection speed-up, which is peer / ours. The machine's cores may be shared with
other jobs, so torch runs on ``--threads`` threads (1 by default) for both sides.

Usage::

    python benchmarks/bench_trees.py [--repeats 20] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch

from spigot import Arborescence, spigot
from spigot.solvers import get_solver


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_map(repeats: int, rng: np.random.Generator) -> dict[str, Any]:
    from ufal.chu_liu_edmonds import chu_liu_edmonds

    polytope = Arborescence()
    batch, n = 32, 50
    scores = torch.from_numpy(rng.normal(size=(batch, n + 1, n + 1)))
    peer_inputs = [np.ascontiguousarray(s.T) for s in scores.numpy()]  # ufal wants [dependent, head]
    ours = polytope.map(scores)
    for s, z, peer in zip(scores.numpy(), ours.numpy(), peer_inputs):  # same trees
        heads, _ = chu_liu_edmonds(peer)
        assert np.array_equal(z.argmax(axis=0)[1:], heads[1:]), "peer and ours disagree"
    t_ours = median_time(lambda: polytope.map(scores), repeats)
    t_peer = median_time(lambda: [chu_liu_edmonds(p) for p in peer_inputs], repeats)
    sizes, times = [20, 40, 80, 160], []
    for size in sizes:
        x = torch.from_numpy(rng.normal(size=(batch, size + 1, size + 1)))
        times.append(median_time(lambda: polytope.map(x), repeats))
    slope = float(np.polyfit(np.log(sizes), np.log(times), 1)[0])
    return {
        "ours_ms": 1e3 * t_ours,
        "ufal_loop_ms": 1e3 * t_peer,
        "ratio": t_ours / t_peer,
        "sizes": sizes,
        "ours_ms_by_n": [1e3 * t for t in times],
        "loglog_slope": slope,
    }


def bench_projection(repeats: int, rng: np.random.Generator) -> dict[str, Any]:
    polytope = Arborescence()
    n, instances = 20, max(3, repeats // 4)
    points = [rng.normal(size=(n + 1, n + 1)) * 2.0 for _ in range(instances)]
    active = get_solver("active-set", tol=1e-9)
    cvx = get_solver("cvxpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Clarabel may flag "inaccurate"; the certificate tells
        cvx.run(polytope, points[0])  # build and compile the parametrized problem once
        active.run(polytope, points[0])
        rows = []
        for x in points:
            start = time.perf_counter()
            ours = active.run(polytope, x)
            t_ours = time.perf_counter() - start
            start = time.perf_counter()
            peer = cvx.run(polytope, x)
            t_peer = time.perf_counter() - start
            rows.append((t_ours, t_peer, float(ours.gap), float(peer.gap), float(np.abs(ours.x - peer.x).max())))
    t_ours = statistics.median(r[0] for r in rows)
    t_peer = statistics.median(r[1] for r in rows)
    result = {
        "n": n,
        "instances": instances,
        "active_set_ms": 1e3 * t_ours,
        "cvxpy_ms": 1e3 * t_peer,
        "speedup": t_peer / t_ours,
        "active_set_max_gap": max(r[2] for r in rows),
        "cvxpy_max_gap": max(r[3] for r in rows),
        "max_abs_difference": max(r[4] for r in rows),
    }
    try:
        import lpsmap  # noqa: F401
    except ImportError as error:
        result["lp_sparsemap"] = f"not available: {error}"
    return result


def bench_spigot_step(repeats: int, rng: np.random.Generator, single_root: bool) -> dict[str, Any]:
    from torch_struct import NonProjectiveDependencyCRF

    batch, n = 32, 50
    scores = torch.from_numpy(rng.normal(size=(batch, n + 1, n + 1)))
    grad = torch.from_numpy(rng.normal(size=(batch, n + 1, n + 1)))
    polytope = Arborescence(single_root=single_root)
    # torch-struct: (B, n, n) [head, child] over words, the root's arcs on the diagonal
    words = torch.arange(n)
    potentials = scores[:, 1:, 1:].clone()
    potentials[:, words, words] = scores[:, 0, 1:]
    peer_grad = grad[:, 1:, 1:].clone()

    def ours() -> None:
        leaf = scores.clone().requires_grad_(True)
        z = spigot(leaf, polytope, solver="relaxed")
        z.backward(grad)

    def peer() -> None:
        leaf = potentials.clone().requires_grad_(True)
        marginals = NonProjectiveDependencyCRF(leaf, multiroot=not single_root).marginals
        marginals.backward(peer_grad)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch-struct's distribution warns about arg_constraints
        t_ours = median_time(ours, repeats)
        t_peer = median_time(peer, repeats)
    return {
        "single_root": single_root,
        "ours_ms": 1e3 * t_ours,
        "torch_struct_ms": 1e3 * t_peer,
        "ratio": t_ours / t_peer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}",
        "map": bench_map(args.repeats, rng),
        "projection": bench_projection(args.repeats, rng),
        "spigot_step": [bench_spigot_step(args.repeats, rng, single) for single in (False, True)],
    }
    m, p = results["map"], results["projection"]
    print(f"machine: {results['machine']}")
    print("\n1. MAP, B=32, n=50 (median ms)")
    print(f"   spigot Arborescence.map   {m['ours_ms']:9.3f}")
    print(f"   ufal.chu_liu_edmonds loop {m['ufal_loop_ms']:9.3f}")
    print(f"   ratio ours/peer           {m['ratio']:9.3f}   (goal <= 1.0)")
    print("   n:        " + "".join(f"{s:>9d}" for s in m["sizes"]))
    print("   ours ms:  " + "".join(f"{t:9.3f}" for t in m["ours_ms_by_n"]))
    print(f"   log-log slope {m['loglog_slope']:.3f}   (goal <= 2.2)")
    print(f"\n2. Exact projection, n={p['n']}, {p['instances']} instances (median ms)")
    print(f"   active-set                {p['active_set_ms']:9.3f}   max gap {p['active_set_max_gap']:.2e}")
    print(f"   cvxpy extended formulation{p['cvxpy_ms']:9.3f}   max gap {p['cvxpy_max_gap']:.2e}")
    print(f"   speed-up peer/ours        {p['speedup']:9.1f}   (goal >= 100)")
    print(f"   max |difference|          {p['max_abs_difference']:.2e}")
    if "lp_sparsemap" in p:
        print(f"   lp-sparsemap DepTree: {p['lp_sparsemap']}")
    print("\n3. SPIGOT step (MAP + relaxed backward) vs torch-struct marginals fwd+bwd, B=32, n=50 (median ms)")
    for row in results["spigot_step"]:
        mode = "single-root" if row["single_root"] else "multi-root "
        print(
            f"   {mode} ours {row['ours_ms']:8.3f}  torch-struct {row['torch_struct_ms']:8.3f}"
            f"  ratio {row['ratio']:.3f}   (goal <= 0.5)"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
