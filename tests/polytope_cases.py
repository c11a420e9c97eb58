"""Small instances of the simplex-family polytopes and user-defined ones, shared by tests."""

from __future__ import annotations

import itertools

import numpy as np

from spigot.polytopes import Budget, FactorGraph, FactorGraphPolytope, Polytope, ProductOfSimplices, Simplex, UnitCube


class ExactlyTwo(Polytope):
    """A user's structure defined only by its MAP oracle: exactly 2 of d items.

    Nothing else is implemented: no batched oracle, no constraints, no closed form.
    """

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        out = np.zeros_like(scores)
        out[np.argsort(-scores, kind="stable")[:2]] = 1.0
        return out


class AgreeingSequence(FactorGraphPolytope):
    """T one-of-K choices; entry (t, K + j) rewards choices t and t + 1 both being j."""

    event_ndim = 2

    def build(self, graph: FactorGraph) -> None:
        steps, k = graph.event_shape[0], graph.event_shape[1] // 2
        for t in range(steps):
            graph.one_of([(t, j) for j in range(k)])
        for t in range(steps - 1):
            for j in range(k):
                graph.pair((t, j), (t + 1, j), output=(t, k + j))


def exactly_two_vertices(d: int) -> np.ndarray:
    rows = []
    for pair in itertools.combinations(range(d), 2):
        row = np.zeros(d)
        row[list(pair)] = 1.0
        rows.append(row)
    return np.array(rows)


#: (id, polytope, event shape, vertex enumeration)
CASES = [
    ("simplex", Simplex(), (5,), lambda: Simplex().vertices((5,))),
    ("product", ProductOfSimplices(), (3, 3), lambda: ProductOfSimplices().vertices((3, 3))),
    ("cube", UnitCube(), (4,), lambda: UnitCube().vertices((4,))),
    ("budget", Budget(2), (5,), lambda: Budget(2).vertices((5,))),
    ("budget-at-most", Budget(2, at_most=True), (5,), lambda: Budget(2, at_most=True).vertices((5,))),
    ("user-exactly-two", ExactlyTwo(), (5,), lambda: exactly_two_vertices(5)),
]

CASE_IDS = [c[0] for c in CASES]
