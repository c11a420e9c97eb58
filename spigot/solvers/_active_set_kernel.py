r"""Wolfe's active-set loop in compiled code, for polytopes with a compiled MAP oracle.

The same method as :class:`~spigot.solvers.active_set.ActiveSet`'s Python loop (major
iterations: a MAP call on the residual, the certificate, the new vertex joining :math:`S`;
minor iterations: the affine minimiser of :math:`S`, stepping back into
:math:`\mathrm{conv}(S)` and dropping vertices), with the same tolerance rule, the same
refusal of affinely dependent vertices and the same right-hand side shift, run by numba from
one call to the next, the oracle a compiled function value
(:mod:`spigot.polytopes._support_oracle`).

Vertices are 0/1, so each active vertex is stored as its *support*, the flat positions of its
ones (``n`` of the ``(n+1)^2`` entries of a dependency tree): the inner product of two
vertices is the number of positions they share (one pass over the new vertex's support marks
them), the point :math:`p = \sum_k w_k v_k` is a scatter of the weights, and two vertices are
equal iff they share as many positions as each of them has.

The state lives in arrays owned by the caller (:class:`CompiledState`), so that a run can be
resumed: :func:`major_iterations` runs at most ``budget`` major iterations and returns, and
the caller checks its time budget between calls and grows the arrays when they are full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba
import numpy as np
from numba import types
from numba.experimental.function_type import _get_wrapper_address

from spigot.polytopes._support_oracle import SUPPORT_ORACLE, SUPPORT_SIGNATURE
from spigot.solvers._cholesky import affine_weights, append, delete
from spigot.solvers.active_set import _PIVOT_EPS, _WEIGHT_EPS
from spigot.solvers.certificate import MAX_CERTIFIED_GAP
from spigot.solvers.result import CONVERGED, MAX_ITER, STALLED

if TYPE_CHECKING:
    from spigot.polytopes.base import CompiledOracle

#: :func:`major_iterations` exit codes besides the solver statuses of
#: :mod:`spigot.solvers.result` (CONVERGED, MAX_ITER, STALLED): the budget of major iterations
#: is spent, or the arrays are full (the caller grows them and calls again).
RUNNING, FULL = -1, -2
#: Indices into the integer state: active-set size, the first vertex's number of ones (-1
#: before any vertex joined), major iterations done.
SIZE, REFERENCE_COUNT, NIT = 0, 1, 2
_EPS = np.finfo(np.float64).eps
#: Between these, a residual's largest entry squares (times any length) safely in float64.
_UNSCALED_LOW, _UNSCALED_HIGH = 1e-100, 1e100
_i64, _f64 = types.int64, types.float64
#: The explicit signatures of the kernels that take the oracle: with the oracle typed as a
#: function value (not as one particular function), numba's cache serves every later process.
_MAJOR_SIGNATURE = _i64(
    SUPPORT_ORACLE, _i64[::1], _f64[::1], _f64[::1], _f64, _i64[:, ::1], _i64[::1], _f64[::1],
    _f64[::1], _f64[:, ::1], _i64[::1], _f64[::1], types.boolean[::1], _f64[::1], _f64, _i64, _i64,
)
_GAP_SIGNATURE = _f64(SUPPORT_ORACLE, _i64[::1], _f64[::1], _f64[::1])


class OracleAddress:
    """A compiled oracle passed to the kernels by its address, looked up once.

    numba turns a jitted function argument into a function value by looking its address up on
    every call (about 35 microseconds, more than a whole major iteration at n = 20); an object
    with numba's wrapper-address protocol (``__wrapper_address__``) hands the address over as
    it is, and its ``_numba_type_`` spares building the function type at every call.
    """

    _numba_type_ = SUPPORT_ORACLE

    def __init__(self, function: Any) -> None:
        self._address = _get_wrapper_address(function, SUPPORT_SIGNATURE)

    def __wrapper_address__(self) -> int:
        return self._address


#: The address of every compiled oracle seen so far.
_ADDRESSES: dict[Any, OracleAddress] = {}


def oracle_address(function: Any) -> OracleAddress:
    """The :class:`OracleAddress` of the compiled oracle ``function`` (looked up once per process)."""
    address = _ADDRESSES.get(function)
    if address is None:
        address = _ADDRESSES[function] = OracleAddress(function)
    return address


def supports_of(vertices: np.ndarray, support_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The supports ``(m, max(support_size, 1))`` and counts ``(m,)`` of 0/1 vertex rows ``(m, d)``.

    ``None`` when a row is not 0/1 or has more than ``support_size`` ones.
    """
    supports = np.zeros((len(vertices), max(support_size, 1)), dtype=np.int64)
    counts = np.zeros(len(vertices), dtype=np.int64)
    if not dense_supports(vertices, support_size, supports, counts):
        return None
    return supports, counts


@numba.njit(cache=True)
def dense_supports(vertices, support_size, supports, counts):
    """Fill ``supports`` and ``counts`` from the rows of ``vertices``; False if one is not 0/1
    or has more than ``support_size`` ones."""
    for k in range(vertices.shape[0]):
        count = 0
        for j in range(vertices.shape[1]):
            value = vertices[k, j]
            if value != 0.0:
                if value != 1.0 or count == support_size:
                    return False
                supports[k, count] = j
                count += 1
        counts[k] = count
    return True


class CompiledState:
    """The arrays of a resumable compiled active set for one instance ``x`` (flat float64).

    ``supports[k, :counts[k]]`` are the ones of the ``k``-th active vertex, ``weights``,
    ``rhs`` and ``chol`` are as in :class:`~spigot.solvers.active_set.ActiveSetState`,
    ``point`` is the current convex combination, ``ints`` holds :data:`SIZE`,
    :data:`REFERENCE_COUNT`, :data:`NIT` and ``gap`` the last certificate.
    """

    def __init__(self, x: np.ndarray, support_size: int, capacity: int = 16) -> None:
        self.x = x
        # the shift trick of ActiveSetState: x - mean(x) in the right-hand side
        self.shift = float(x.sum()) / x.size if x.size else 0.0  # np.mean(x), without its overhead
        self.centered = x - self.shift
        self.supports = np.empty((capacity, max(support_size, 1)), dtype=np.int64)
        self.counts = np.empty(capacity, dtype=np.int64)
        self.weights = np.empty(capacity)
        self.rhs = np.empty(capacity)
        self.chol = np.zeros((capacity, capacity))
        self.ints = np.array([0, -1, 0], dtype=np.int64)
        self.gap = np.zeros(1)
        self.marks = np.zeros(x.size, dtype=np.bool_)
        self.point = np.zeros(x.size)

    @property
    def size(self) -> int:
        """How many vertices are active."""
        return int(self.ints[SIZE])

    @property
    def nit(self) -> int:
        """Major iterations done."""
        return int(self.ints[NIT])

    def grow(self) -> None:
        """Double the capacity, keeping the active set and its factor."""
        m, capacity = self.size, 2 * len(self.weights)
        supports = np.empty((capacity, self.supports.shape[1]), dtype=np.int64)
        supports[:m] = self.supports[:m]
        chol = np.zeros((capacity, capacity))
        chol[:m, :m] = self.chol[:m, :m]
        counts, weights, rhs = np.empty(capacity, dtype=np.int64), np.empty(capacity), np.empty(capacity)
        counts[:m], weights[:m], rhs[:m] = self.counts[:m], self.weights[:m], self.rhs[:m]
        self.supports, self.chol, self.counts, self.weights, self.rhs = supports, chol, counts, weights, rhs

    def insert(self, support: np.ndarray, weight: float) -> bool:
        """Append the vertex with ones at ``support`` (weight ``weight``); False if affinely dependent."""
        if self.size == len(self.weights):
            self.grow()
        return bool(
            insert(
                self.supports, self.counts, self.weights, self.rhs, self.chol, self.ints,
                self.centered, self.shift, self.marks, support, weight,
            )
        )

    def minor_cycles(self) -> None:
        """Move the weights to the affine minimiser of S, dropping vertices; update the point."""
        minor_cycles(self.supports, self.counts, self.weights, self.rhs, self.chol, self.ints)
        self.update_point()

    def update_point(self) -> None:
        """Recompute :attr:`point` from the active set and its weights."""
        scatter_point(self.supports, self.counts, self.weights, self.ints[SIZE], self.point)

    def major_iterations(self, oracle: CompiledOracle, tol: float, max_iter: int, budget: int) -> int:
        """:func:`major_iterations` on this state; its exit code."""
        return int(
            major_iterations(
                oracle_address(oracle.function), oracle.params, self.x, self.centered, self.shift, self.supports,
                self.counts, self.weights, self.rhs, self.chol, self.ints, self.gap, self.marks,
                self.point, tol, max_iter, budget,
            )
        )

    def final_gap(self, oracle: CompiledOracle) -> float:
        """The certificate of :attr:`point` (one MAP call)."""
        return float(final_gap(oracle_address(oracle.function), oracle.params, self.x, self.point))

    def vertices(self) -> np.ndarray:
        """The active vertices as dense rows ``(m, d)``."""
        dense = np.zeros((self.size, self.x.size))
        dense_vertices(self.supports, self.counts, dense)
        return dense


@numba.njit(cache=True)
def dense_vertices(supports, counts, dense):
    """Write the ones of the first ``len(dense)`` vertices into the zero rows of ``dense``."""
    for k in range(dense.shape[0]):
        for j in range(counts[k]):
            dense[k, supports[k, j]] = 1.0


@numba.njit(cache=True, error_model="numpy")
def gap_threshold(residual, tol):
    """:func:`spigot.solvers.certificate.gap_threshold`, compiled (same formula, same cap)."""
    l1, peak, squares = 0.0, 0.0, 0.0
    for j in range(residual.shape[0]):
        a = abs(residual[j])
        l1 += a
        squares += a * a
        if a > peak:
            peak = a
    return _threshold(residual, l1, peak, squares, tol)


@numba.njit(cache=True, error_model="numpy")
def _threshold(residual, l1, peak, squares, tol):
    """:func:`gap_threshold` from the residual's 1-norm, largest entry and sum of squares."""
    floor = 0.0
    if peak > 0.0:
        if _UNSCALED_LOW < peak < _UNSCALED_HIGH:
            rounding = 16.0 * _EPS * squares
            floor = MAX_CERTIFIED_GAP if rounding > MAX_CERTIFIED_GAP else rounding
        else:  # scaled by the largest entry, so that the squares neither overflow nor underflow
            scaled_squares = 0.0
            for j in range(residual.shape[0]):
                scaled = residual[j] / peak
                scaled_squares += scaled * scaled
            scaled = 16.0 * _EPS * scaled_squares * peak
            floor = MAX_CERTIFIED_GAP if scaled > MAX_CERTIFIED_GAP / peak else scaled * peak
    relative = tol * max(1.0, l1)
    return min(relative + floor, MAX_CERTIFIED_GAP)


@numba.njit(cache=True)
def scatter_point(supports, counts, weights, size, point):
    """``point = sum_k weights[k] v_k`` over the ``size`` active vertices."""
    point[:] = 0.0
    for k in range(size):
        w = weights[k]
        for j in range(counts[k]):
            point[supports[k, j]] += w


@numba.njit(cache=True)
def shared_counts(supports, counts, size, support, marks):
    """Inner products of the vertex with ones at ``support`` with the ``size`` active ones."""
    for j in range(support.shape[0]):
        marks[support[j]] = True
    out = np.empty(size)
    for k in range(size):
        shared = 0
        for j in range(counts[k]):
            if marks[supports[k, j]]:
                shared += 1
        out[k] = shared
    for j in range(support.shape[0]):
        marks[support[j]] = False
    return out


@numba.njit(cache=True)
def sum_at(values, support, count):
    """``sum(values[support[:count]])``: the inner product of ``values`` with a 0/1 vertex."""
    total = 0.0
    for j in range(count):
        total += values[support[j]]
    return total


@numba.njit(cache=True, error_model="numpy")
def append_support(supports, counts, chol, size, support, products):
    """Store the vertex with ones at ``support`` as row ``size`` of ``supports`` and extend the
    Cholesky factor with it, given its inner ``products`` with the ``size`` stored ones; False
    (and nothing stored) if it is affinely dependent on them (the rule of
    :class:`~spigot.solvers.active_set.ActiveSetState`). Room for it is the caller's concern."""
    count = support.shape[0]
    diagonal = count + 1.0
    pivot = append(chol, size, products + 1.0, diagonal)
    if pivot <= _PIVOT_EPS * diagonal:
        return False
    for j in range(count):
        supports[size, j] = support[j]
    counts[size] = count
    return True


@numba.njit(cache=True, error_model="numpy")
def _append(supports, counts, weights, rhs, chol, ints, centered, shift, support, weight, products):
    """Append a vertex whose inner products with the active ones are ``products``; False if
    it is affinely dependent on them (nothing changes then)."""
    m = ints[SIZE]
    if not append_support(supports, counts, chol, m, support, products):
        return False
    count = support.shape[0]
    weights[m] = weight
    if ints[REFERENCE_COUNT] < 0:
        ints[REFERENCE_COUNT] = count
    rhs[m] = sum_at(centered, support, count) + shift * (count - ints[REFERENCE_COUNT]) + 1.0
    ints[SIZE] = m + 1
    return True


@numba.njit(cache=True, error_model="numpy")
def insert(supports, counts, weights, rhs, chol, ints, centered, shift, marks, support, weight):
    """Append a vertex (room for it is the caller's concern); False if affinely dependent."""
    products = shared_counts(supports, counts, ints[SIZE], support, marks)
    return _append(supports, counts, weights, rhs, chol, ints, centered, shift, support, weight, products)


@numba.njit(cache=True)
def _remove(supports, counts, weights, rhs, chol, ints, k):
    """Drop the ``k``-th active vertex (its weight is discarded)."""
    m = ints[SIZE]
    delete(chol, m, k)
    for i in range(k, m - 1):
        for j in range(counts[i + 1]):
            supports[i, j] = supports[i + 1, j]
        counts[i] = counts[i + 1]
        weights[i] = weights[i + 1]
        rhs[i] = rhs[i + 1]
    ints[SIZE] = m - 1


@numba.njit(cache=True, error_model="numpy")
def _normalise(weights, size):
    total = 0.0
    for i in range(size):
        total += weights[i]
    for i in range(size):
        weights[i] /= total


@numba.njit(cache=True, error_model="numpy")
def minor_cycles(supports, counts, weights, rhs, chol, ints):
    """Move the weights to the affine minimiser of S, dropping vertices to stay in conv(S)."""
    for _ in range(ints[SIZE] + 1):
        m = ints[SIZE]
        beta = np.ones(1) if m == 1 else affine_weights(chol, m, rhs)
        inside = True
        for i in range(m):
            if not beta[i] > _WEIGHT_EPS:
                inside = False
                break
        if inside:
            total = beta.sum()  # rounding leaves sum(beta) off 1, p off the polytope
            for i in range(m):
                weights[i] = beta[i] / total
            return
        theta = 1.0
        leaving = False
        for i in range(m):
            if beta[i] <= _WEIGHT_EPS and weights[i] - beta[i] > 0.0:
                ratio = weights[i] / (weights[i] - beta[i])
                if not leaving or ratio < theta:
                    theta = ratio
                leaving = True
        keep = np.empty(m, dtype=np.bool_)
        all_kept = True
        for i in range(m):
            w = (1.0 - theta) * weights[i] + theta * beta[i]
            weights[i] = w if w > 0.0 else 0.0
            keep[i] = weights[i] > _WEIGHT_EPS
            all_kept = all_kept and keep[i]
        if all_kept:  # guard against a zero step: drop the most negative coordinate
            keep[np.argmin(beta)] = False
        for k in range(m - 1, -1, -1):
            if not keep[k]:
                _remove(supports, counts, weights, rhs, chol, ints, k)
        _normalise(weights, ints[SIZE])
    m = ints[SIZE]
    for i in range(m):
        if not weights[i] > 0.0:
            weights[i] = 0.0
    _normalise(weights, m)


@numba.njit(_MAJOR_SIGNATURE, cache=True, error_model="numpy")
def major_iterations(
    oracle, params, x, centered, shift, supports, counts, weights, rhs, chol, ints, gap, marks, point,
    tol, max_iter, budget,
):
    r"""Run at most ``budget`` major iterations from the state; return an exit code.

    An empty state starts at :math:`\mathrm{map}(x)` with weight 1 (no major iteration);
    otherwise ``point`` must hold the current convex combination on entry. It does on exit. Codes:
    ``CONVERGED`` (``point`` is certified by ``gap[0]``), ``MAX_ITER`` (``max_iter`` MAP calls
    were made), ``STALLED`` (the oracle's vertex is already active or affinely dependent on the
    active set; ``gap[0]`` is its certificate), :data:`RUNNING` (the budget is spent) and
    :data:`FULL` (no room for another vertex).
    """
    residual = np.empty(x.shape[0])
    width = supports.shape[1]
    if ints[SIZE] == 0:  # a cold start: the active set {map(x)}, weight 1
        support = oracle(x, params)
        if support.shape[0] > width:
            raise ValueError("the compiled oracle returned a vertex with more ones than its support_size")
        _append(supports, counts, weights, rhs, chol, ints, centered, shift, support, 1.0, np.empty(0))
        scatter_point(supports, counts, weights, ints[SIZE], point)
    for _ in range(budget):
        if ints[NIT] >= max_iter:
            return MAX_ITER
        if ints[SIZE] == weights.shape[0]:
            return FULL
        ints[NIT] += 1
        # one pass: the residual, <r, p> and the statistics of the tolerance rule
        at_point, l1, peak, squares = 0.0, 0.0, 0.0, 0.0
        for j in range(x.shape[0]):
            r = x[j] - point[j]
            residual[j] = r
            at_point += r * point[j]
            a = abs(r)
            l1 += a
            squares += a * a
            if a > peak:
                peak = a
        support = oracle(residual, params)
        if support.shape[0] > width:
            raise ValueError("the compiled oracle returned a vertex with more ones than its support_size")
        gap[0] = sum_at(residual, support, support.shape[0]) - at_point  # <r, v - p>
        if gap[0] <= _threshold(residual, l1, peak, squares, tol):
            return CONVERGED
        products = shared_counts(supports, counts, ints[SIZE], support, marks)
        count = support.shape[0]
        for k in range(ints[SIZE]):
            if products[k] == count and counts[k] == count:  # 0/1 vectors: v is the k-th vertex
                return STALLED
        if not _append(supports, counts, weights, rhs, chol, ints, centered, shift, support, 0.0, products):
            return STALLED
        minor_cycles(supports, counts, weights, rhs, chol, ints)
        scatter_point(supports, counts, weights, ints[SIZE], point)
    return RUNNING


@numba.njit(_GAP_SIGNATURE, cache=True)
def final_gap(oracle, params, x, point):
    r"""The certificate :math:`\langle r, v - p\rangle` of ``point`` (one MAP call on :math:`r = x - p`)."""
    residual = x - point
    support = oracle(residual, params)
    gap = sum_at(residual, support, support.shape[0])
    for j in range(x.shape[0]):
        gap -= residual[j] * point[j]
    return gap
