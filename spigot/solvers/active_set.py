r"""Exact projection with only a MAP oracle: Wolfe's minimum-norm-point active-set method.

The projection :math:`\min_{p \in \mathrm{conv}(Z)} \tfrac12 \|p - x\|^2` is solved over convex
weights on a small active set :math:`S \subset Z` (Wolfe 1976; the SparseMAP active set of
Niculae et al. 2018). Each *major* iteration asks the oracle for
:math:`v = \mathrm{map}(x - p)`; if the certificate :math:`\langle x - p, v - p\rangle` is within
tolerance, :math:`p` is the projection and the method stops, otherwise :math:`v` joins
:math:`S`. *Minor* iterations then move :math:`p` to the minimiser of the distance over the
affine hull of :math:`S`, stepping back to the boundary of :math:`\mathrm{conv}(S)` and dropping
vertices whenever that minimiser leaves it. The method terminates after finitely many steps
and returns :math:`p` as a certified convex combination of vertices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spigot.polytopes.base import Polytope
from spigot.solvers.base import InstanceOutcome, InstanceSolver, check_max_iter, check_tol
from spigot.solvers.certificate import gap_threshold
from spigot.solvers.registry import register_solver
from spigot.solvers.result import CONVERGED, MAX_ITER, STALLED

#: Weights at or below this are treated as zero when leaving conv(S).
_WEIGHT_EPS = 1e-15


class ActiveSetState:
    """Vertices ``V`` (rows), their Gram matrix and inner products with ``x``, and weights."""

    def __init__(self, x: np.ndarray, vertices: np.ndarray, weights: np.ndarray) -> None:
        self.x = x
        self.vertices = np.array(vertices, dtype=np.float64)
        self.weights = np.array(weights, dtype=np.float64)
        self.gram = self.vertices @ self.vertices.T
        self.vx = self.vertices @ x

    @property
    def point(self) -> np.ndarray:
        return self.weights @ self.vertices

    def index(self, v: np.ndarray) -> int:
        """Position of ``v`` in the active set, or -1."""
        hits = np.flatnonzero(np.all(self.vertices == v, axis=1))
        return int(hits[0]) if hits.size else -1

    def add(self, v: np.ndarray) -> None:
        column = self.vertices @ v
        self.gram = np.block([[self.gram, column[:, None]], [column[None, :], np.array([[v @ v]])]])
        self.vertices = np.vstack([self.vertices, v])
        self.vx = np.append(self.vx, v @ self.x)
        self.weights = np.append(self.weights, 0.0)

    def keep(self, mask: np.ndarray) -> None:
        self.vertices = self.vertices[mask]
        self.gram = self.gram[np.ix_(mask, mask)]
        self.vx = self.vx[mask]
        self.weights = self.weights[mask]

    def affine_minimizer(self) -> np.ndarray:
        r"""Weights :math:`\beta` (summing to 1) of the point of aff(S) nearest to ``x``.

        With :math:`D_i = v_i - v_0`, solves the normal equations
        :math:`(D D^\top) c = D (x - v_0)` built from the Gram matrix (least squares, so an
        affinely dependent set is handled), then :math:`\beta = (1 - \sum c, c)`.
        """
        g, vx = self.gram, self.vx
        if len(vx) == 1:
            return np.ones(1)
        shifted = g[1:, 1:] - g[1:, :1] - g[:1, 1:] + g[0, 0]
        rhs = vx[1:] - vx[0] - g[1:, 0] + g[0, 0]
        c = np.linalg.lstsq(shifted, rhs, rcond=None)[0]
        return np.concatenate([[1.0 - c.sum()], c])


@register_solver("active-set")
class ActiveSet(InstanceSolver):
    r"""Wolfe's min-norm-point active-set method: exact, needs only ``map_one``.

    Parameters
    ----------
    tol
        Stop when the certificate :math:`\langle x - p, v - p\rangle \le \mathrm{tol}\cdot
        \max(1, \|x - p\|_1)`.
    max_iter
        Maximum number of major iterations (MAP calls).
    init
        Warm start: a previous :class:`ProjectionResult` or points near which to start (see
        :class:`~spigot.solvers.base.InstanceSolver`); the default starts at :math:`\mathrm{map}(x)`.
    """

    name = "active-set"
    exact = True

    def __init__(self, tol: float = 1e-12, max_iter: int = 1000, init: Any = None) -> None:
        super().__init__(init)
        self.tol = check_tol(tol)
        self.max_iter = check_max_iter(max_iter)

    def solve_one(
        self,
        polytope: Polytope,
        x: np.ndarray,
        start: tuple[np.ndarray, np.ndarray] | None,
    ) -> InstanceOutcome:
        shape = x.shape
        xf = x.ravel()

        def oracle(scores: np.ndarray) -> np.ndarray:
            return np.asarray(polytope.map_one(scores.reshape(shape)), dtype=np.float64).ravel()

        if start is None:
            state = ActiveSetState(xf, oracle(xf)[None], np.ones(1))
        else:
            vertices, weights = start
            state = ActiveSetState(xf, vertices.reshape(len(weights), -1), weights / weights.sum())
            state.keep(state.weights > 0)
        p = state.point
        status, message = MAX_ITER, ""
        nit = 0
        for nit in range(1, self.max_iter + 1):
            residual = xf - p
            v = oracle(residual)
            gap = residual @ (v - p)
            if gap <= gap_threshold(residual, self.tol):
                status = CONVERGED
                break
            if state.index(v) >= 0:
                status = STALLED
                message = (
                    f"stalled: the oracle returned a vertex already in the active set with gap "
                    f"{gap:.3e}; precision is exhausted"
                )
                break
            state.add(v)
            self._minor_cycles(state)
            p = state.point
        return InstanceOutcome(
            p=p.reshape(shape),
            nit=nit,
            status=status,
            message=message,
            vertices=state.vertices.reshape(-1, *shape),
            weights=state.weights.copy(),
        )

    @staticmethod
    def _minor_cycles(state: ActiveSetState) -> None:
        """Move the weights to the affine minimiser of S, dropping vertices to stay in conv(S)."""
        for _ in range(len(state.weights) + 1):
            beta = state.affine_minimizer()
            if np.all(beta > _WEIGHT_EPS):
                state.weights = beta
                return
            w = state.weights
            leaving = (beta <= _WEIGHT_EPS) & (w - beta > 0)
            theta = np.min(w[leaving] / (w[leaving] - beta[leaving])) if leaving.any() else 1.0
            w = np.clip((1.0 - theta) * w + theta * beta, 0.0, None)
            keep = w > _WEIGHT_EPS
            if keep.all():  # guard against a zero step: drop the most negative coordinate
                keep[np.argmin(beta)] = False
            state.weights = w
            state.keep(keep)
            state.weights = state.weights / state.weights.sum()
        state.weights = np.clip(state.weights, 0.0, None)
        state.weights /= state.weights.sum()
