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

The affine minimiser comes from a Cholesky factor of the lifted Gram matrix of the active
vertices, updated in :math:`O(m^2)` when a vertex joins or leaves
(:mod:`spigot.solvers._cholesky`), rather than refactored in :math:`O(m^3)` at every minor
iteration; a vertex that is numerically affinely dependent on the active set is refused, which
ends the run as stalled (precision exhausted).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spigot.polytopes.base import Polytope
from spigot._lazy import LazyModule
from spigot.solvers.base import (
    InstanceOutcome,
    InstanceSolver,
    check_max_iter,
    check_tol,
    flat_oracle,
    flat_start,
)
from spigot.solvers.certificate import gap_threshold
from spigot.solvers.registry import register_solver
from spigot.solvers.result import CONVERGED, MAX_ITER, STALLED

#: The numba-compiled Cholesky updates, compiled (or loaded from numba's cache) at first use.
_cholesky = LazyModule("spigot.solvers._cholesky")
#: Weights at or below this are treated as zero when leaving conv(S).
_WEIGHT_EPS = 1e-15
#: A vertex whose lifted point lies this close (relative squared distance) to the span of the
#: active ones is affinely dependent on them, numerically.
_PIVOT_EPS = 1e-12


class ActiveSetState:
    r"""Active vertices ``V`` (rows), their convex weights, and the data of the affine step.

    Keeps :math:`Vx + \mathbf 1` and the Cholesky factor of the lifted Gram matrix
    :math:`VV^\top + \mathbf 1\mathbf 1^\top` (see :mod:`spigot.solvers._cholesky`), updated in
    :math:`O(m^2)` when a vertex joins or leaves. Arrays grow by doubling; the first
    :attr:`size` rows are the active set.
    """

    def __init__(self, x: np.ndarray, capacity: int = 16) -> None:
        self.x = x
        self.size = 0
        self.vertices = np.empty((capacity, x.size))
        self.weights = np.empty(capacity)
        self.rhs = np.empty(capacity)
        self.chol = np.zeros((capacity, capacity))

    @property
    def active(self) -> np.ndarray:
        """The active vertices ``(m, d)`` (a view)."""
        return self.vertices[: self.size]

    @property
    def active_weights(self) -> np.ndarray:
        """Their weights ``(m,)`` (a view)."""
        return self.weights[: self.size]

    @property
    def point(self) -> np.ndarray:
        return self.active_weights @ self.active

    def index(self, v: np.ndarray) -> int:
        """Position of ``v`` in the active set, or -1."""
        hits = np.flatnonzero(np.all(self.active == v, axis=1))
        return int(hits[0]) if hits.size else -1

    def add(self, v: np.ndarray, weight: float = 0.0) -> bool:
        """Append ``v`` with ``weight``; return False (and change nothing) if it is affinely dependent."""
        m = self.size
        if m == len(self.weights):
            self._grow()
        diagonal = v @ v + 1.0
        pivot = _cholesky.append(self.chol, m, self.active @ v + 1.0, diagonal)
        if pivot <= _PIVOT_EPS * diagonal:
            return False
        self.vertices[m] = v
        self.weights[m] = weight
        self.rhs[m] = v @ self.x + 1.0
        self.size = m + 1
        return True

    def remove(self, k: int) -> None:
        """Drop the ``k``-th active vertex (its weight is discarded)."""
        m = self.size
        _cholesky.delete(self.chol, m, k)
        for array in (self.vertices, self.weights, self.rhs):
            array[k : m - 1] = array[k + 1 : m]
        self.size = m - 1

    def affine_minimizer(self) -> np.ndarray:
        r"""Weights :math:`\beta` (summing to 1) of the point of aff(S) nearest to ``x``."""
        if self.size == 1:
            return np.ones(1)
        return _cholesky.affine_weights(self.chol, self.size, self.rhs)

    def _grow(self) -> None:
        capacity = 2 * len(self.weights)
        vertices = np.empty((capacity, self.vertices.shape[1]))
        vertices[: self.size] = self.active
        chol = np.zeros((capacity, capacity))
        chol[: self.size, : self.size] = self.chol[: self.size, : self.size]
        weights, rhs = np.empty(capacity), np.empty(capacity)
        weights[: self.size], rhs[: self.size] = self.active_weights, self.rhs[: self.size]
        self.vertices, self.chol, self.weights, self.rhs = vertices, chol, weights, rhs


@register_solver("active-set")
class ActiveSet(InstanceSolver):
    r"""Wolfe's min-norm-point active-set method: exact, needs only ``map_one``.

    Runs on the CPU (float64 numpy, the polytope's ``map_one`` as oracle): a batch on a GPU is
    copied to host memory once per batch and the results moved back once (see
    :class:`~spigot.solvers.base.InstanceSolver`).

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
        oracle = flat_oracle(polytope, shape)
        state = ActiveSetState(xf)
        if start is None:
            state.add(oracle(xf), 1.0)
        else:
            vertices, weights = flat_start(start)
            for v, w in zip(vertices, weights):  # an affinely dependent vertex is dropped
                state.add(v, w)
            state.active_weights[:] /= state.active_weights.sum()
            self._minor_cycles(state)
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
            if state.index(v) >= 0 or not state.add(v):
                status = STALLED
                message = (
                    f"stalled: the oracle returned a vertex already in (or affinely dependent on) "
                    f"the active set with gap {gap:.3e}; precision is exhausted"
                )
                break
            self._minor_cycles(state)
            p = state.point
        return InstanceOutcome(
            p=p.reshape(shape),
            nit=nit,
            status=status,
            message=message,
            vertices=state.active.reshape(-1, *shape).copy(),
            weights=state.active_weights.copy(),
        )

    @staticmethod
    def _minor_cycles(state: ActiveSetState) -> None:
        """Move the weights to the affine minimiser of S, dropping vertices to stay in conv(S)."""
        for _ in range(state.size + 1):
            beta = state.affine_minimizer()
            w = state.active_weights
            if np.all(beta > _WEIGHT_EPS):
                w[:] = beta
                return
            leaving = (beta <= _WEIGHT_EPS) & (w - beta > 0)
            theta = np.min(w[leaving] / (w[leaving] - beta[leaving])) if leaving.any() else 1.0
            w[:] = np.clip((1.0 - theta) * w + theta * beta, 0.0, None)
            keep = w > _WEIGHT_EPS
            if keep.all():  # guard against a zero step: drop the most negative coordinate
                keep[np.argmin(beta)] = False
            for k in np.flatnonzero(~keep)[::-1]:
                state.remove(int(k))
            state.active_weights[:] /= state.active_weights.sum()
        w = state.active_weights
        w[:] = np.clip(w, 0.0, None) / np.clip(w, 0.0, None).sum()
