"""Tree polytopes against their peers, every ratio measured in one run.

Three comparisons (issue 4):

1. MAP of non-projective trees, batch of 32 sentences of 50 words: ``Arborescence().map`` (the
   public call: validation, compiled Tarjan over the batch, one-hot output) against a Python
   loop of ``ufal.chu_liu_edmonds`` over the same batch (its input layout prepared beforehand,
   outside the timer; both must return the same trees); then the log-log slope of our time over
   n in {20, 40, 80, 160}.
2. Exact projection onto the arborescence polytope, n = 20, to a certificate gap below 1e-6:
   ``active-set`` against the ``cvxpy`` solver on the multi-commodity-flow extended
   formulation (its parametrized problem is built and compiled once before the timer, as in a
   training loop). lp-sparsemap's DepTree is compared when the package imports.
3. A full SPIGOT step, B = 32, n = 50: MAP forward plus the ``relaxed`` projection backward,
   against torch-struct's ``NonProjectiveDependencyCRF`` marginals forward and backward, in
   both root modes.

Head-to-head timings use :func:`timing.compare` (interleaved rounds, medians of back-to-back
calls), so that drift in the machine's load hits both sides alike; ratios are ours / peer (lower
is better), except the projection speed-up, peer / ours. torch runs on ``--threads`` intra-op
threads (1 by default, for both sides). With one thread every side runs on the calling thread,
and times are that thread's CPU time, which other jobs sharing the machine cannot inflate; with
more threads they are wall times.

Usage::

    python benchmarks/bench_trees.py [--rounds 5] [--threads 1] [--json out.json]
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
from timing import compare, median_seconds


#: Set by ``main``: the calling thread's CPU time when everything runs on one thread (other jobs
#: on a shared machine then cannot inflate the figures), wall time otherwise.
CLOCK: Callable[[], float] = time.perf_counter


def head_to_head(ours: Callable[[], Any], peer: Callable[[], Any], rounds: int) -> dict[str, float]:
    """Median times (ms) of both sides in interleaved rounds, and their ratio ours / peer."""
    times = compare({"ours": ours, "peer": peer}, rounds=rounds, repeats=10, number=10, warmup=3, clock=CLOCK)
    return {
        "ours_ms": 1e3 * times["ours"],
        "peer_ms": 1e3 * times["peer"],
        "ratio": times["ours"] / times["peer"],
    }


def bench_map(rounds: int, rng: np.random.Generator) -> dict[str, Any]:
    from ufal.chu_liu_edmonds import chu_liu_edmonds

    polytope = Arborescence()
    batch, n = 32, 50
    scores = torch.from_numpy(rng.normal(size=(batch, n + 1, n + 1)))
    peer_inputs = [np.ascontiguousarray(s.T) for s in scores.numpy()]  # ufal wants [dependent, head]
    for z, peer in zip(polytope.map(scores).numpy(), peer_inputs):
        heads, _ = chu_liu_edmonds(peer)
        assert np.array_equal(z.argmax(axis=0)[1:], heads[1:]), "ufal and spigot disagree"
    row = head_to_head(lambda: polytope.map(scores), lambda: [chu_liu_edmonds(p) for p in peer_inputs], rounds)
    sizes, medians = [20, 40, 80, 160], []
    for size in sizes:
        x = torch.from_numpy(rng.normal(size=(batch, size + 1, size + 1)))
        medians.append(median_seconds(lambda: polytope.map(x), repeats=5 * rounds, number=5, clock=CLOCK))
    row["sizes"] = sizes
    row["ours_ms_by_n"] = [1e3 * t for t in medians]
    row["loglog_slope"] = float(np.polyfit(np.log(sizes), np.log(medians), 1)[0])
    return row


def bench_projection(instances: int, rng: np.random.Generator) -> dict[str, Any]:
    """Each of ``instances`` random points projected once by each side (cvxpy takes ~1 s)."""
    polytope = Arborescence()
    n = 20
    points = [rng.normal(size=(n + 1, n + 1)) * 2.0 for _ in range(instances)]
    active = get_solver("active-set", tol=1e-9)  # accepts gap <= 1e-9 * |x - p|_1, below 1e-6 here
    cvx = get_solver("cvxpy")
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Clarabel may flag "inaccurate"; the certificate tells
        cvx.run(polytope, points[0])  # build and compile the parametrized problem once
        active.run(polytope, points[0])
        for x in points:
            start = CLOCK()
            ours = active.run(polytope, x)
            middle = CLOCK()
            peer = cvx.run(polytope, x)
            end = CLOCK()
            rows.append((middle - start, end - middle, float(ours.gap), float(peer.gap), float(np.abs(ours.x - peer.x).max())))
    result = {
        "n": n,
        "instances": instances,
        "ours_ms": 1e3 * statistics.median(r[0] for r in rows),
        "peer_ms": 1e3 * statistics.median(r[1] for r in rows),
        "ours_max_gap": max(r[2] for r in rows),
        "peer_max_gap": max(r[3] for r in rows),
        "max_abs_difference": max(r[4] for r in rows),
    }
    result["speedup"] = result["peer_ms"] / result["ours_ms"]
    try:
        import lpsmap  # noqa: F401
    except ImportError as error:
        result["lp_sparsemap"] = f"not available ({error})"
    return result


def bench_spigot_step(rounds: int, rng: np.random.Generator, single_root: bool) -> dict[str, Any]:
    from torch_struct import NonProjectiveDependencyCRF

    batch, n = 32, 50
    scores = torch.from_numpy(rng.normal(size=(batch, n + 1, n + 1)))
    grad = torch.from_numpy(rng.normal(size=(batch, n + 1, n + 1)))
    polytope = Arborescence(single_root=single_root)
    # torch-struct: (B, n, n) [head, child] over the words, the root's arcs on the diagonal
    words = torch.arange(n)
    potentials = scores[:, 1:, 1:].clone()
    potentials[:, words, words] = scores[:, 0, 1:]
    peer_grad = grad[:, 1:, 1:].clone()

    def ours() -> None:
        leaf = scores.clone().requires_grad_(True)
        spigot(leaf, polytope, solver="relaxed").backward(grad)

    def peer() -> None:
        leaf = potentials.clone().requires_grad_(True)
        NonProjectiveDependencyCRF(leaf, multiroot=not single_root).marginals.backward(peer_grad)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch-struct's distribution warns about arg_constraints
        row = head_to_head(ours, peer, rounds)
    row["single_root"] = single_root
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison")
    parser.add_argument("--instances", type=int, default=10, help="points projected in comparison 2")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.rounds < 1 or args.instances < 1 or args.threads < 1:
        parser.error("--rounds, --instances and --threads must be positive")
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.thread_time if args.threads == 1 else time.perf_counter
    rng = np.random.default_rng(args.seed)
    results = {
        "machine": (
            f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, "
            f"clock: {'thread CPU time' if args.threads == 1 else 'wall time'}"
        ),
        "map": bench_map(args.rounds, rng),
        "projection": bench_projection(args.instances, rng),
        "spigot_step": [bench_spigot_step(args.rounds, rng, single) for single in (False, True)],
    }
    m, p = results["map"], results["projection"]
    print(f"machine: {results['machine']}")
    print("\n1. MAP of non-projective trees, B=32, n=50 (median ms)")
    print(f"   spigot Arborescence.map          {m['ours_ms']:9.3f}")
    print(f"   ufal.chu_liu_edmonds loop        {m['peer_ms']:9.3f}")
    print(f"   ratio ours/peer                  {m['ratio']:9.3f}   (goal <= 1.0)")
    print("   n:          " + "".join(f"{s:>9d}" for s in m["sizes"]))
    print("   ours ms:    " + "".join(f"{t:9.3f}" for t in m["ours_ms_by_n"]))
    print(f"   log-log slope {m['loglog_slope']:.3f}   (goal <= 2.2)")
    print(f"\n2. Exact projection, n={p['n']}, {p['instances']} instances (median ms)")
    print(f"   active-set                       {p['ours_ms']:9.3f}   max gap {p['ours_max_gap']:.2e}")
    print(f"   cvxpy extended formulation       {p['peer_ms']:9.3f}   max gap {p['peer_max_gap']:.2e}")
    print(f"   speed-up peer/ours               {p['speedup']:9.1f}   (goal >= 100)")
    print(f"   max |difference| of the results  {p['max_abs_difference']:.2e}")
    if "lp_sparsemap" in p:
        print(f"   lp-sparsemap DepTree: {p['lp_sparsemap']}")
    print("\n3. SPIGOT step (MAP + relaxed backward) vs torch-struct marginals fwd+bwd, B=32, n=50 (median ms)")
    for row in results["spigot_step"]:
        mode = "single-root" if row["single_root"] else "multi-root "
        print(
            f"   {mode}  ours {row['ours_ms']:7.3f}   torch-struct {row['peer_ms']:7.3f}"
            f"   ratio {row['ratio']:.3f}   (goal <= 0.5)"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
