r"""Permutation matrices and the Birkhoff polytope: assignments of ``n`` items to ``n`` slots.

The MAP oracle solves the assignment problem (``scipy.optimize.linear_sum_assignment``, the
shortest augmenting path method, :math:`O(n^3)`) on the CPU; scipy is imported on first use.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import torch

from spigot.polytopes.base import Polytope

if TYPE_CHECKING:
    import cvxpy as cp


def assignment_vertex(scores: np.ndarray, positive_only: bool = False) -> np.ndarray:
    """0/1 matrix of a maximum-weight assignment of ``scores`` (rows to columns, at most one each).

    With ``positive_only`` the pairs are restricted to positive scores (a maximum-weight
    partial matching): the assignment on the scores clipped at 0, minus its non-positive pairs.
    """
    from scipy.optimize import linear_sum_assignment

    weights = np.maximum(scores, 0.0) if positive_only else scores
    rows, cols = linear_sum_assignment(weights, maximize=True)
    if positive_only:
        keep = scores[rows, cols] > 0
        rows, cols = rows[keep], cols[keep]
    vertex = np.zeros_like(scores, dtype=np.float64)
    vertex[rows, cols] = 1.0
    return vertex


class Permutations(Polytope):
    r"""The Birkhoff polytope: the convex hull of the :math:`n \times n` permutation matrices.

    .. math::
        P = \Big\{ p \in \mathbb{R}^{n \times n} : p \ge 0,\ \textstyle\sum_j p_{ij} = 1,\
            \sum_i p_{ij} = 1 \Big\}

    (the doubly stochastic matrices, by the Birkhoff-von Neumann theorem). Entry ``[i, j]`` is 1
    when item ``i`` goes to slot ``j``. One instance has shape ``(n, n)``; ``lengths`` counts
    items, so an instance of length ``n_b`` occupies ``[:n_b, :n_b]`` and its padded rows and
    columns are 0.

    Notes
    -----
    - **MAP**: the assignment problem, ``scipy.optimize.linear_sum_assignment`` on the CPU,
      :math:`O(n^3)` per instance; :meth:`map_batch` copies a batch to host memory once.
    - **Constraints**: the doubly stochastic matrices above (exact), for the ``cvxpy`` solver.
    - **Marginals**: none. Their log-partition is the log-permanent of :math:`e^{s}`, #P-hard
      to compute; the marginal-based estimators (SPIGOT-CE/EG) use the SparseMAP point instead.
    - **Projection**: no closed form; the MAP-only solvers (``active-set``, the Frank-Wolfe
      family) and ``cvxpy`` are exact.
    """

    event_ndim = 2

    def check_event_shape(self, event_shape: tuple[int, ...], name: str = "scores") -> None:
        super().check_event_shape(event_shape, name)
        if event_shape[0] != event_shape[1]:
            raise ValueError(
                f"{name} must end in a square (n, n) matrix for {self!r} (entry [i, j]: item i "
                f"goes to slot j), got {event_shape}"
            )

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        return assignment_vertex(scores)

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The assignment of every instance: one host copy, scipy per instance, one copy back."""
        return _assignments(scores, lengths, positive_only=False)

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        import cvxpy as cp

        return [var >= 0, cp.sum(var, axis=0) == 1, cp.sum(var, axis=1) == 1]

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        n = event_shape[0]
        eye = np.eye(n)
        return np.array([eye[list(order)] for order in itertools.permutations(range(n))])


def _assignments(scores: torch.Tensor, lengths: torch.Tensor | None, positive_only: bool) -> torch.Tensor:
    """Batched assignments ``(B, R, C)``; ``lengths`` ``(B,)`` (both axes) or ``(B, 2)`` (rows, columns)."""
    values = scores.detach().cpu().numpy().astype(np.float64, copy=False)
    out = np.zeros(values.shape, dtype=np.float64)
    rows, cols = values.shape[1:]
    for b in range(values.shape[0]):
        if lengths is not None:
            rows, cols = (int(lengths[b]),) * 2 if lengths.ndim == 1 else lengths[b].tolist()
        out[b, :rows, :cols] = assignment_vertex(values[b, :rows, :cols], positive_only)
    return torch.from_numpy(out).to(device=scores.device, dtype=scores.dtype)
