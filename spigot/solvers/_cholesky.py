r"""Compiled kernels for an active set's affine least squares, with an updated Cholesky factor.

For active vertices :math:`v_1, \dots, v_m` (rows of ``V``) the point of their affine hull
nearest to ``x`` has weights :math:`\beta` minimising :math:`\|V^\top\beta - x\|^2` subject to
:math:`\mathbf 1^\top \beta = 1`. On that constraint the objective equals
:math:`\beta^\top H \beta - 2\beta^\top (Vx + \mathbf 1) + \mathrm{const}` with the *lifted*
Gram matrix :math:`H = V V^\top + \mathbf 1 \mathbf 1^\top` (the Gram matrix of the points
:math:`(v_i, 1)`), which is positive definite exactly when the vertices are affinely
independent. With :math:`a = H^{-1}(Vx + \mathbf 1)` and :math:`b = H^{-1}\mathbf 1`,

.. math:: \beta = a - \mu b, \qquad \mu = \frac{\mathbf 1^\top a - 1}{\mathbf 1^\top b}.

The lower Cholesky factor :math:`H = L L^\top` is kept up to date: appending a vertex is one
forward substitution (:math:`O(m^2)`), and deleting one is a row/column removal followed by a
rank-one update of the trailing block (:math:`O(m^2)`), instead of an :math:`O(m^3)`
factorisation at every step.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")
def append(chol, m, column, diagonal):
    """Grow the factor of ``H`` (size ``m``) by the row ``column`` (= ``H[m, :m]``) and ``H[m, m]``.

    Returns the squared pivot ``H[m, m] - |l|^2`` (the squared distance of the new lifted point
    from the span of the others); the factor is extended only if it is positive.
    """
    row = np.empty(m)
    for i in range(m):
        total = column[i]
        for j in range(i):
            total -= chol[i, j] * row[j]
        row[i] = total / chol[i, i]
    pivot = diagonal
    for i in range(m):
        pivot -= row[i] * row[i]
    if pivot > 0.0:
        for i in range(m):
            chol[m, i] = row[i]
        chol[m, m] = np.sqrt(pivot)
    return pivot


@numba.njit(cache=True, error_model="numpy")
def delete(chol, m, k):
    """Remove row and column ``k`` of ``H`` (size ``m``) from its factor, in place."""
    tail = m - k - 1
    spill = np.empty(tail)
    for i in range(tail):
        spill[i] = chol[k + 1 + i, k]
    for i in range(k + 1, m):
        for j in range(k):
            chol[i - 1, j] = chol[i, j]
        for j in range(k + 1, i + 1):
            chol[i - 1, j - 1] = chol[i, j]
    # the trailing block T (rows/cols k..m-2) becomes the factor of T T^T + spill spill^T
    for j in range(tail):
        d = chol[k + j, k + j]
        r = np.sqrt(d * d + spill[j] * spill[j])
        c = r / d
        s = spill[j] / d
        chol[k + j, k + j] = r
        for i in range(j + 1, tail):
            chol[k + i, k + j] = (chol[k + i, k + j] + s * spill[i]) / c
            spill[i] = c * spill[i] - s * chol[k + i, k + j]


@numba.njit(cache=True, error_model="numpy")
def _solve(chol, m, rhs):
    """``H^{-1} rhs`` from the factor (forward then backward substitution)."""
    y = np.empty(m)
    for i in range(m):
        total = rhs[i]
        for j in range(i):
            total -= chol[i, j] * y[j]
        y[i] = total / chol[i, i]
    for i in range(m - 1, -1, -1):  # L^T y = z by rows of L (contiguous), not its columns
        y[i] /= chol[i, i]
        for j in range(i):
            y[j] -= chol[i, j] * y[i]
    return y


@numba.njit(cache=True, error_model="numpy")
def affine_weights(chol, m, rhs):
    """Weights (summing to 1) of the point of the affine hull nearest to ``x``; ``rhs = Vx + 1``."""
    a = _solve(chol, m, rhs[:m])
    b = _solve(chol, m, np.ones(m))
    mu = (a.sum() - 1.0) / b.sum()
    return a - mu * b


@numba.njit(cache=True, error_model="numpy")
def affine_direction_weights(chol, m, projected):
    r"""Weights :math:`\gamma` with :math:`V^\top\gamma` the projection of ``g`` onto the directions of aff(V).

    ``projected = V g``. With :math:`Z = H^{-1}` (``H`` the lifted Gram matrix of the factor),
    :math:`\gamma = Z V g - Z\mathbf 1\, \mathbf 1^\top Z V g / \mathbf 1^\top Z \mathbf 1`, so
    that :math:`V^\top\gamma = J g` with Niculae et al.'s (2018) active-face Jacobian
    :math:`J = V^\top (Z - Z \mathbf 1 \mathbf 1^\top Z / \mathbf 1^\top Z \mathbf 1) V`; the
    weights sum to 0.
    """
    a = _solve(chol, m, projected[:m])
    b = _solve(chol, m, np.ones(m))
    return a - (a.sum() / b.sum()) * b


@numba.njit(cache=True, error_model="numpy")
def affine_direction_weights_rows(chol, m, projected):
    """:func:`affine_direction_weights` for every column of ``projected`` ``(m, r)``; returns ``(m, r)``."""
    out = np.empty((m, projected.shape[1]))
    b = _solve(chol, m, np.ones(m))
    total = b.sum()
    for j in range(projected.shape[1]):
        a = _solve(chol, m, np.ascontiguousarray(projected[:m, j]))
        out[:, j] = a - (a.sum() / total) * b
    return out
