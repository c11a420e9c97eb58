r"""SparseMAP's backward on one instance in compiled code, for polytopes with a compiled oracle.

The same computation as :func:`spigot.autodiff.sparsemap_layer.face_basis` followed by
:meth:`~spigot.autodiff.sparsemap_layer.FaceSpan.project`: the active vertices on the face
:math:`F = \operatorname*{argmax}_{v \in P}\langle x - p, v\rangle` start a spanning set of
:math:`\mathrm{aff}(F)` (the solver's Cholesky factor reused when every one of them is on
:math:`F`), random directions orthogonal to the span probe :math:`F` with the MAP oracle
(:math:`\mathrm{map}(x - p + t d)`, shrinking :math:`t` until the answer lies on :math:`F`),
vertices that leave the span join it, and the gradient is projected onto the directions of
the span. Vertices are kept as supports (the flat positions of their ones, see
:mod:`spigot.solvers._active_set_kernel`), so a product with a vertex reads ``n`` entries of
a tree's ``(n+1)^2``. The random directions are uniform in :math:`[-1, 1]^d` (any distribution
with a density serves the probability-one argument), drawn by SplitMix64 (Steele, Lea and
Flood 2014: a 64-bit counter through two multiply-xorshift rounds, a few nanoseconds a number
where numba's own generator takes about twenty), seeded per instance: the result is
deterministic, and equal to the Python path's (the span of the face) with probability one,
though not bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from spigot.polytopes._support_oracle import SUPPORT_ORACLE
from spigot.solvers._active_set_kernel import append_support, shared_counts, sum_at
from spigot.solvers._cholesky import affine_direction_weights

#: Exit codes of :func:`face_projection`: done, or the oracle found no vertex on the face.
DONE, NO_FACE_VERTEX = 0, 1

#: SplitMix64's constants: the counter's increment, the two multipliers and the shifts.
_INCREMENT = np.uint64(0x9E3779B97F4A7C15)
_MULTIPLIER_1, _MULTIPLIER_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_SHIFT_1, _SHIFT_2, _SHIFT_3, _MANTISSA_SHIFT = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)

_i64, _f64 = types.int64, types.float64
_SIGNATURE = _i64(
    SUPPORT_ORACLE, _i64[::1], _f64[::1], _f64[::1], _i64[:, ::1], _i64[::1], _f64[::1], _f64[:, ::1],
    _f64[::1], _f64, _f64, _f64, _i64, _i64, _i64, _f64[::1],
)


@numba.njit(cache=True)
def _uniform(state):
    """The next SplitMix64 number of the counter ``state[0]`` (uint64), as a float in [0, 1)."""
    z = state[0] + _INCREMENT
    state[0] = z
    z = (z ^ (z >> _SHIFT_1)) * _MULTIPLIER_1
    z = (z ^ (z >> _SHIFT_2)) * _MULTIPLIER_2
    z = z ^ (z >> _SHIFT_3)
    return np.float64(z >> _MANTISSA_SHIFT) * (1.0 / 9007199254740992.0)  # the top 53 bits / 2^53


@numba.njit(cache=True, error_model="numpy")
def _span_add(span, span_counts, chol, size, support, marks):
    """Append a vertex to the span (room is the caller's concern); False if it is affinely
    dependent on the span (the rule of :class:`~spigot.solvers.active_set.ActiveSetState`)."""
    products = shared_counts(span, span_counts, size, support, marks)
    return append_support(span, span_counts, chol, size, support, products)


@numba.njit(cache=True, error_model="numpy")
def _project(span, span_counts, chol, size, g, out):
    """``out`` = the orthogonal projection of ``g`` onto the directions of the span's affine hull."""
    out[:] = 0.0
    if size <= 1:
        return
    products = np.empty(size)
    for k in range(size):
        products[k] = sum_at(g, span[k], span_counts[k])
    gamma = affine_direction_weights(chol, size, products)
    for k in range(size):
        for j in range(span_counts[k]):
            out[span[k, j]] += gamma[k]


@numba.njit(_SIGNATURE, cache=True, error_model="numpy")
def face_projection(
    oracle, params, residual, point, supports, counts, weights, factor, g,
    face_tol, span_tol, rank_tol, max_shrinks, block_max, seed, out,
):
    """Write the Jacobian of the projection applied to ``g`` into ``out``; return an exit code.

    ``supports[k, :counts[k]]`` and ``weights`` are the active set, ``factor`` the lower
    Cholesky factor of its lifted Gram matrix (or an empty ``(0, 0)`` array).
    """
    d = residual.shape[0]
    width = supports.shape[1]
    marks = np.zeros(d, dtype=np.bool_)
    l1 = 0.0
    for j in range(d):
        l1 += abs(residual[j])
    tolerance = face_tol * max(1.0, l1)
    at_point = 0.0
    for j in range(d):
        at_point += point[j] * residual[j]
    m = weights.shape[0]
    keep = np.empty(m, dtype=np.bool_)
    all_kept = True
    for k in range(m):
        keep[k] = weights[k] > 0.0 and sum_at(residual, supports[k], counts[k]) - at_point >= -tolerance
        all_kept = all_kept and keep[k]
    capacity = max(16, 2 * m)
    span = np.empty((capacity, width), dtype=np.int64)
    span_counts = np.empty(capacity, dtype=np.int64)
    chol = np.zeros((capacity, capacity))
    size = 0
    if m > 0 and all_kept and factor.shape[0] == m:  # the solver's factor spans exactly these
        span[:m] = supports[:m]
        span_counts[:m] = counts[:m]
        chol[:m, :m] = factor
        size = m
    else:  # an affinely dependent vertex adds no direction and is left out
        for k in range(m):
            if keep[k] and _span_add(span, span_counts, chol, size, supports[k, : counts[k]], marks):
                size += 1
    scores = np.empty(d)
    if size == 0:
        support = oracle(residual, params)
        if sum_at(residual, support, support.shape[0]) - at_point < -tolerance:
            return NO_FACE_VERTEX
        _span_add(span, span_counts, chol, size, support, marks)
        size += 1
    state = np.array([seed], dtype=np.uint64)
    projected = np.empty(d)
    block = 1  # one probe when the active set already spans the face (the usual case)
    for _ in range(d + 1):
        # a block of random directions orthogonal to the span, normalised
        directions = np.empty((block, d))
        kept = 0
        for b in range(block):
            for j in range(d):
                directions[kept, j] = 2.0 * _uniform(state) - 1.0
            _project(span, span_counts, chol, size, directions[kept], projected)
            norm = 0.0
            for j in range(d):
                directions[kept, j] -= projected[j]
                norm += directions[kept, j] * directions[kept, j]
            norm = np.sqrt(norm)
            if norm > rank_tol:
                for j in range(d):
                    directions[kept, j] /= norm
                kept += 1
        if kept == 0:
            break
        leaving = np.empty((kept, width), dtype=np.int64)
        leaving_counts = np.empty(kept, dtype=np.int64)
        found = 0
        origin_along = 0.0
        for b in range(kept):
            direction = directions[b]
            origin_along = sum_at(direction, span[0], span_counts[0])
            for sign in (1.0, -1.0):
                # the vertex of the face extreme along sign * direction: map(r + t d), t shrinking
                step = sign
                on_face = False
                support = np.empty(0, dtype=np.int64)
                for _shrink in range(max_shrinks):
                    for j in range(d):
                        scores[j] = residual[j] + step * direction[j]
                    support = oracle(scores, params)
                    if sum_at(residual, support, support.shape[0]) - at_point >= -tolerance:
                        on_face = True
                        break
                    step /= 16.0
                if not on_face:
                    return NO_FACE_VERTEX
                if abs(sum_at(direction, support, support.shape[0]) - origin_along) > span_tol:
                    leaving[found, : support.shape[0]] = support
                    leaving_counts[found] = support.shape[0]
                    found += 1
                    break
        # with probability one, no direction orthogonal to aff(F) finds a vertex off the span
        if found == 0:
            break
        joined = False
        for b in range(found):
            if size == span_counts.shape[0]:  # grow the span's arrays
                capacity = 2 * size
                wider = np.empty((capacity, width), dtype=np.int64)
                wider[:size] = span[:size]
                wider_counts = np.empty(capacity, dtype=np.int64)
                wider_counts[:size] = span_counts[:size]
                larger = np.zeros((capacity, capacity))
                larger[:size, :size] = chol[:size, :size]
                span, span_counts, chol = wider, wider_counts, larger
            if _span_add(span, span_counts, chol, size, leaving[b, : leaving_counts[b]], marks):
                size += 1
                joined = True
        if not joined:
            break
        block = min(2 * block, block_max)
    _project(span, span_counts, chol, size, g, out)
    return DONE
