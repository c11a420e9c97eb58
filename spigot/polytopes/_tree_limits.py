r"""The zero-temperature limit of tree marginals, certified: the one-hot of a unique, far-ahead MAP tree.

When arc scores are huge (``1e30``) the Gibbs distribution over trees puts all its mass on the
best tree, and the matrix-tree computation cannot run in float64 (weights underflow, pivots
vanish), although the answer, that tree's 0/1 vertex, is representable. The limit is returned
only when it is exact to float64 rounding: with :math:`z^\star` the best of the at most
:math:`(n+1)^{n-1}` trees and :math:`\delta` the smallest loss of score from forbidding any one
of its arcs (one MAP call per arc; every other tree lacks some arc of :math:`z^\star`), the mass
outside :math:`z^\star` is at most :math:`(n+1)^{n-1} e^{-\delta}`, below :math:`e^{-40}` (half
of float64's epsilon) when :math:`\delta \ge (n-1)\log(n+1) + 40`. Each :math:`\delta` is
reduced by a bound on the rounding of the two tree scores before the test.
"""

from __future__ import annotations

import math

import numpy as np

from spigot._lazy import LazyModule

#: The numba-compiled tree kernels, compiled (or loaded from numba's cache) at first use.
kernels = LazyModule("spigot.polytopes._tree_kernels")

#: Margin (in nats) beyond the log-count of trees: e^-40 is below half of float64's epsilon.
MARGIN = 40.0


def _best_heads(scores: np.ndarray, single_root: bool) -> np.ndarray:
    heads = np.empty(scores.shape[0], dtype=np.int64)
    kernels.arborescence_heads(np.ascontiguousarray(scores), single_root, heads)
    return heads


def _tree_score(scores: np.ndarray, heads: np.ndarray) -> tuple[float, float]:
    """The tree's score and the sum of its arcs' magnitudes (for the rounding bound)."""
    arcs = scores[heads[1:], np.arange(1, scores.shape[0])]
    return float(arcs.sum()), float(np.abs(arcs).sum())


def one_hot_limit(scores: np.ndarray, single_root: bool) -> np.ndarray | None:
    """The MAP tree's vertex ``(n+1, n+1)`` if it carries all the mass to float64 rounding, else ``None``.

    ``scores`` is one unpadded instance (float64, arcs ``[h, m]``, node 0 the root).
    """
    size = scores.shape[0]
    words = size - 1
    heads = _best_heads(scores, single_root)
    best, best_magnitude = _tree_score(scores, heads)
    needed = (words - 1) * math.log(size) + MARGIN
    valid = scores[np.isfinite(scores)]
    # a forbidden arc scores below every tree that avoids it, without overflowing sums
    forbidden = float(valid.min()) - size * (float(valid.max()) - float(valid.min()) + needed + 1.0)
    if not math.isfinite(forbidden):
        return None
    for m in range(1, size):
        banned = scores.copy()
        banned[heads[m], m] = forbidden
        other = _best_heads(banned, single_root)
        if other[m] == heads[m]:
            continue  # every tree has this arc
        score, magnitude = _tree_score(scores, other)
        rounding = 4.0 * size * np.finfo(np.float64).eps * (best_magnitude + magnitude)
        if not best - score - rounding >= needed:
            return None
    vertex = np.zeros((size, size))
    vertex[heads[1:], np.arange(1, size)] = 1.0
    return vertex
