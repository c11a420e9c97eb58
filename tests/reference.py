"""Independent references for tests: projections computed without any spigot solver."""

from __future__ import annotations

import cvxpy as cp
import numpy as np


def hull_projection(x: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact projection of ``x`` onto conv(vertices), as a QP over convex weights (cvxpy).

    ``vertices`` is ``(V, *x.shape)``; this model knows nothing of the polytope's structure.
    """
    flat = vertices.reshape(len(vertices), -1)
    weights = cp.Variable(len(vertices), nonneg=True)
    objective = cp.Minimize(cp.sum_squares(flat.T @ weights - x.ravel()))
    problem = cp.Problem(objective, [cp.sum(weights) == 1])
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return (flat.T @ weights.value).reshape(x.shape)


def max_vertex_gap(x: np.ndarray, p: np.ndarray, vertices: np.ndarray) -> float:
    """``max_v <x - p, v - p>`` over the enumerated vertices (the certificate, by brute force)."""
    flat = vertices.reshape(len(vertices), -1)
    residual = (x - p).ravel()
    return float(np.max((flat - p.ravel()) @ residual))


def in_hull_distance(p: np.ndarray, vertices: np.ndarray) -> float:
    """Distance from ``p`` to conv(vertices): 0 (up to solver precision) iff ``p`` is feasible."""
    return float(np.linalg.norm(hull_projection(p, vertices) - p))
