r"""Partial bipartite matchings: each row and each column matched at most once.

The MAP oracle is the assignment problem on the positive scores
(``scipy.optimize.linear_sum_assignment``, on the CPU; scipy is imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from spigot.polytopes.base import Polytope
from spigot.polytopes.permutations import _assignments, assignment_vertex

if TYPE_CHECKING:
    import cvxpy as cp


class BipartiteMatchings(Polytope):
    r"""The bipartite matching polytope of the complete bipartite graph on ``r`` rows and ``c`` columns.

    .. math::
        P = \Big\{ p \in \mathbb{R}^{r \times c} : p \ge 0,\ \textstyle\sum_j p_{ij} \le 1,\
            \sum_i p_{ij} \le 1 \Big\},

    the convex hull of the 0/1 matrices with at most one 1 per row and per column (the
    constraint matrix of a bipartite graph is totally unimodular, so ``P`` is integral).
    One instance has shape ``(r, c)``. ``lengths`` is one length per instance (for square
    instances: rows and columns cut alike) or one per axis, shape ``(*batch, 2)``: an instance
    with lengths ``(r_b, c_b)`` occupies ``[:r_b, :c_b]`` and its other entries are 0.

    Notes
    -----
    - **MAP**: a maximum-weight matching uses only positive scores, and any matching on the
      scores clipped at 0 extends to a full assignment of the same clipped weight; so the
      oracle solves the assignment problem on :math:`\max(s, 0)` (rectangular,
      ``scipy.optimize.linear_sum_assignment``, :math:`O(rc\min(r, c))`) and drops the pairs
      whose score is not positive. On the CPU; :meth:`map_batch` copies a batch once.
    - **Constraints**: the inequalities above (exact), for the ``cvxpy`` solver.
    - **Marginals**: none (counting weighted matchings is #P-hard); the marginal-based
      estimators use the SparseMAP point instead.
    """

    event_ndim = 2
    per_axis_lengths = True

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        return assignment_vertex(scores, positive_only=True)

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Matchings of every instance: one host copy, scipy per instance, one copy back."""
        return _assignments(scores, lengths, positive_only=True)

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        import cvxpy as cp

        return [var >= 0, cp.sum(var, axis=0) <= 1, cp.sum(var, axis=1) <= 1]

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        rows, cols = event_shape
        found: list[np.ndarray] = []

        def extend(row: int, used: frozenset[int], vertex: np.ndarray) -> None:
            if row == rows:
                found.append(vertex.copy())
                return
            extend(row + 1, used, vertex)  # row unmatched
            for col in range(cols):
                if col not in used:
                    vertex[row, col] = 1.0
                    extend(row + 1, used | {col}, vertex)
                    vertex[row, col] = 0.0

        extend(0, frozenset(), np.zeros((rows, cols)))
        return np.array(found)
