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

For a polytope that declares a compiled MAP oracle
(:meth:`~spigot.polytopes.base.Polytope.compiled_oracle`: the dependency trees), the whole
major/minor loop runs in compiled code (:mod:`spigot.solvers._active_set_kernel`), on vertices
stored as the positions of their ones, with the same tolerance rule, statuses, warm starts and
results; it returns to Python only to check ``max_time`` (about every 10 ms of work) and to
grow its arrays. Every other polytope runs the Python loop below.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from spigot.polytopes.base import CompiledOracle, Polytope
from spigot._lazy import LazyModule
from spigot.solvers.base import (
    InstanceOutcome,
    InstanceSolver,
    check_max_iter,
    check_max_time,
    check_tol,
    deadline,
    flat_oracle,
    flat_start,
)
from spigot.solvers.certificate import gap_threshold
from spigot.solvers.registry import register_solver
from spigot.solvers.result import CONVERGED, MAX_ITER, STALLED, TIME_LIMIT

#: The numba-compiled Cholesky updates, compiled (or loaded from numba's cache) at first use.
_cholesky = LazyModule("spigot.solvers._cholesky")
#: The compiled loop for polytopes with a compiled oracle, compiled (or loaded) at first use.
_kernel = LazyModule("spigot.solvers._active_set_kernel")
#: The compiled loop returns to check the time budget after about this much work (seconds).
_CHECK_EVERY = 0.01
#: Weights at or below this are treated as zero when leaving conv(S).
_WEIGHT_EPS = 1e-15
#: A vertex whose lifted point lies this close (relative squared distance) to the span of the
#: active ones is affinely dependent on them, numerically.
_PIVOT_EPS = 1e-12


class ActiveSetState:
    r"""Active vertices ``V`` (rows), their convex weights, and the data of the affine step.

    Keeps :math:`Vx + \mathbf 1` (up to a common constant) and the Cholesky factor of the lifted Gram matrix
    :math:`VV^\top + \mathbf 1\mathbf 1^\top` (see :mod:`spigot.solvers._cholesky`), updated in
    :math:`O(m^2)` when a vertex joins or leaves. Arrays grow by doubling; the first
    :attr:`size` rows are the active set.
    """

    def __init__(self, x: np.ndarray, capacity: int = 16) -> None:
        self.x = x
        # The affine weights ignore a constant added to every entry of Vx + 1, so the right-hand
        # side is formed from x - c (c the mean of x) plus c times each vertex's sum relative to
        # the first one's, exactly 0 when every vertex has the same sum: the large common part
        # c <v, 1> of x + 1e6 never enters the solve, whose accuracy it would otherwise ruin.
        self.shift = float(np.mean(x)) if x.size else 0.0
        self.centered = x - self.shift
        self.reference_sum: float | None = None
        self.size = 0
        self.vertices = np.empty((capacity, x.size))
        self.weights = np.empty(capacity)
        self.rhs = np.empty(capacity)
        self.norms = np.empty(capacity)
        self.chol = np.zeros((capacity, capacity))
        #: Entries where some vertex that was ever active is nonzero (a superset of the point's support).
        self.touched = np.zeros(x.size, dtype=np.bool_)

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
        """The convex combination of the active vertices; on sparse vertices (trees), only the
        columns of :attr:`touched` enter the product."""
        columns = np.flatnonzero(self.touched)
        if 8 * columns.size >= self.touched.size:
            return self.active_weights @ self.active
        point = np.zeros(self.touched.size)
        point[columns] = self.active_weights @ self.active[:, columns]
        return point

    def products(self, v: np.ndarray) -> np.ndarray:
        """Inner products of ``v`` with the active vertices (one matrix-vector product).

        A sparse ``v`` (a vertex: ``n`` ones among the ``(n+1)^2`` entries of a tree) takes only
        the columns of its nonzero entries.
        """
        support = np.flatnonzero(v)
        if 2 * support.size < v.size:
            return self.active[:, support] @ v[support]
        return self.active @ v

    def products_rows(self, rows: np.ndarray) -> np.ndarray:
        """Inner products ``(r, m)`` of the rows of ``rows`` with the active vertices (one matrix product)."""
        return rows @ self.active.T

    def index(self, v: np.ndarray, products: np.ndarray | None = None) -> int:
        r"""Position of ``v`` in the active set, or -1.

        Only vertices ``u`` with :math:`\langle u, v\rangle = \|u\|^2 = \|v\|^2` (``products``,
        from :meth:`products`, when already computed) are compared entry by entry.
        """
        products = self.products(v) if products is None else products
        norm = v @ v
        norms = self.norms[: self.size]
        for k in np.flatnonzero((products == norm) & (norms == norm)):
            if np.array_equal(self.vertices[k], v):
                return int(k)
        return -1

    def add(self, v: np.ndarray, weight: float = 0.0, products: np.ndarray | None = None) -> bool:
        """Append ``v`` with ``weight``; return False (and change nothing) if it is affinely dependent.

        ``products`` are ``v``'s inner products with the active vertices, when already computed.
        """
        m = self.size
        products = self.products(v) if products is None else products
        if m == len(self.weights):
            self._grow()
        norm = v @ v
        diagonal = norm + 1.0
        pivot = _cholesky.append(self.chol, m, products + 1.0, diagonal)
        if pivot <= _PIVOT_EPS * diagonal:
            return False
        self.vertices[m] = v
        self.weights[m] = weight
        self.norms[m] = norm
        self.touched |= v != 0
        if self.reference_sum is None:
            self.reference_sum = float(v.sum())
        self.rhs[m] = v @ self.centered + self.shift * (float(v.sum()) - self.reference_sum) + 1.0
        self.size = m + 1
        return True

    def remove(self, k: int) -> None:
        """Drop the ``k``-th active vertex (its weight is discarded)."""
        m = self.size
        _cholesky.delete(self.chol, m, k)
        for array in (self.vertices, self.weights, self.rhs, self.norms):
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
        weights, rhs, norms = np.empty(capacity), np.empty(capacity), np.empty(capacity)
        weights[: self.size], rhs[: self.size] = self.active_weights, self.rhs[: self.size]
        norms[: self.size] = self.norms[: self.size]
        self.vertices, self.chol, self.weights, self.rhs, self.norms = vertices, chol, weights, rhs, norms


@register_solver("active-set")
class ActiveSet(InstanceSolver):
    r"""Wolfe's min-norm-point active-set method: exact, needs only ``map_one``.

    Runs on the CPU (float64 numpy, the polytope's ``map_one`` as oracle, or the whole loop
    compiled where the polytope declares a compiled oracle): a batch on a GPU is copied to host
    memory once per batch and the results moved back once (see
    :class:`~spigot.solvers.base.InstanceSolver`).

    Parameters
    ----------
    tol
        Stop when the certificate :math:`\langle x - p, v - p\rangle \le \mathrm{tol}\cdot
        \max(1, \|x - p\|_1)`.
    max_iter
        Maximum number of major iterations (MAP calls).
    max_time
        Time budget in seconds for each instance (default 30); a run that exceeds it stops with
        ``success=False`` and status 4 (``math.inf``: no budget).
    init
        Warm start: a previous :class:`ProjectionResult` or points near which to start (see
        :class:`~spigot.solvers.base.InstanceSolver`); the default starts at :math:`\mathrm{map}(x)`.
    """

    name = "active-set"
    exact = True

    def __init__(
        self, tol: float = 1e-12, max_iter: int = 1000, max_time: float = 30.0, init: Any = None
    ) -> None:
        super().__init__(init)
        self.tol = check_tol(tol)
        self.max_iter = check_max_iter(max_iter)
        self.max_time = check_max_time(max_time)

    def solve_one(
        self,
        polytope: Polytope,
        x: np.ndarray,
        start: tuple[np.ndarray, np.ndarray] | None,
    ) -> InstanceOutcome:
        compiled = polytope.compiled_oracle(x.shape)
        if compiled is not None:
            if start is None:
                return self._solve_compiled(compiled, x, None)
            vertices, weights = flat_start(start)
            supports = _kernel.supports_of(vertices, compiled.support_size)
            if supports is not None:  # 0/1 vertices, as the compiled loop stores them
                return self._solve_compiled(compiled, x, (*supports, weights))
        shape = x.shape
        xf = x.ravel()
        oracle = flat_oracle(polytope, shape)
        stop_at = deadline(self.max_time)
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
        nit, gap = 0, None
        for nit in range(1, self.max_iter + 1):
            residual = xf - p
            v = oracle(residual)
            gap = residual @ (v - p)
            if gap <= gap_threshold(residual, self.tol):
                status = CONVERGED
                break
            if time.perf_counter() > stop_at:
                status = TIME_LIMIT
                message = self._time_limit_message(nit, gap)
                break
            products = state.products(v)
            if state.index(v, products) >= 0 or not state.add(v, products=products):
                status = STALLED
                message = _stalled_message(gap)
                break
            self._minor_cycles(state)
            p = state.point
            gap = None  # p moved: the last gap no longer certifies it
        if gap is None:
            residual = xf - p
            gap = residual @ (oracle(residual) - p)
        return InstanceOutcome(
            p=p.reshape(shape),
            nit=nit,
            status=status,
            message=message,
            vertices=state.active.reshape(-1, *shape).copy(),
            weights=state.active_weights.copy(),
            gap=float(gap),
            factor=state.chol[: state.size, : state.size].copy(),
        )

    def _solve_compiled(
        self,
        oracle: CompiledOracle,
        x: np.ndarray,
        start: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> InstanceOutcome:
        """The same method with the whole loop compiled (:mod:`spigot.solvers._active_set_kernel`).

        ``start`` is a warm start as supports, their counts and weights (see
        :func:`~spigot.solvers._active_set_kernel.supports_of`).

        The loop returns to Python only to check the time budget, after a number of major
        iterations estimated to take about :data:`_CHECK_EVERY` seconds (one at first), and to
        grow its arrays.
        """
        shape = x.shape
        stop_at = deadline(self.max_time)
        state = _kernel.CompiledState(np.ascontiguousarray(x, dtype=np.float64).ravel(), oracle.support_size)
        if start is not None:  # (a cold start is the kernel's first step)
            supports, counts, weights = start
            for support, count, weight in zip(supports, counts, weights):  # an affinely dependent vertex is dropped
                state.insert(support[:count], float(weight))
            state.weights[: state.size] /= state.weights[: state.size].sum()
            state.minor_cycles()
        budget, status = 1, None
        while status is None:
            began, done = time.perf_counter(), state.nit
            code = state.major_iterations(oracle, self.tol, self.max_iter, budget)
            if code == _kernel.FULL:
                state.grow()
            elif code != _kernel.RUNNING:
                status = code
                break
            now = time.perf_counter()
            if now > stop_at:
                status = TIME_LIMIT
                break
            per_iteration = max((now - began) / max(state.nit - done, 1), 1e-7)
            budget = max(1, int(min(stop_at - now, _CHECK_EVERY) / per_iteration))
        message, gap = "", float(state.gap[0])
        if status == STALLED:
            message = _stalled_message(gap)
        elif status != CONVERGED:  # the point moved after the last certificate
            gap = state.final_gap(oracle)
            if status == TIME_LIMIT:
                message = self._time_limit_message(state.nit, gap)
        m = state.size
        return InstanceOutcome(
            p=state.point.reshape(shape).copy(),
            nit=state.nit,
            status=status,
            message=message,
            vertices=state.vertices().reshape(-1, *shape),
            weights=state.weights[:m].copy(),
            gap=gap,
            factor=state.chol[:m, :m].copy(),
        )

    def _time_limit_message(self, nit: int, gap: float) -> str:
        return f"stopped at max_time={self.max_time:g} s after {nit} iterations with gap {gap:.3e}"

    @staticmethod
    def _minor_cycles(state: ActiveSetState) -> None:
        """Move the weights to the affine minimiser of S, dropping vertices to stay in conv(S)."""
        for _ in range(state.size + 1):
            beta = state.affine_minimizer()
            w = state.active_weights
            if np.all(beta > _WEIGHT_EPS):
                w[:] = beta / beta.sum()  # rounding leaves sum(beta) off 1, p off the polytope
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


def _stalled_message(gap: float) -> str:
    return (
        f"stalled: the oracle returned a vertex already in (or affinely dependent on) "
        f"the active set with gap {gap:.3e}; precision is exhausted"
    )
