r"""Compiled simplex projections for CPU tensors (Michelot's algorithm, row by row or, for
head selection, column by column).

For a row :math:`x` restricted to its valid entries, the projection onto the simplex is
:math:`(x - \tau)_+` with :math:`\sum_i (x_i - \tau)_+ = 1`. For any nonempty set :math:`S` of
entries, :math:`\tau(S) = (\sum_{i \in S} x_i - 1)/|S|` is at most :math:`\tau^\star` (since
:math:`\sum_{i \in S} (x_i - \tau^\star) \le \sum_i (x_i - \tau^\star)_+ = 1`), so
:math:`\{i : x_i > \tau(S)\}` contains the support :math:`S^\star` of the projection; Michelot
(1986) iterates :math:`\tau \leftarrow \tau(\{i : x_i > \tau\})` until the set stops shrinking,
which happens exactly at :math:`S^\star`. It starts from :math:`\tau = \max_i x_i - 1`, a lower
bound (the set of the maximum alone). Each iteration is one branch-free sweep over the row
(a masked sum and count, which the compiler vectorizes); no sort.

Every threshold is computed on the entries shifted by their maximum (``x_i - max x``), and the
output is formed from the shifted entries too: the projection is invariant to adding a
constant to every entry, and only in shifted form does ``max x - 1`` stay distinct from
``max x`` once ``|x| >= 2^53`` (so ``[1e17, 0]`` projects to ``[1, 0]``).

The kernels read float32 or float64 input and write output of the same dtype; they compute in
float64.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, fastmath={"reassoc"})
def _shifted_threshold(shifted, size):
    """Threshold of ``shifted[:size]``, entries minus their maximum (so at most 0, one of them 0).

    Entries equal to :math:`-\\infty` are ignored. :math:`+\\infty` if ``size`` is 0. The masked
    sums may be reassociated (vectorized); the count decides when the support stops shrinking.
    """
    if size == 0:
        return np.inf
    tau = -1.0
    support = size + 1  # no set has this size: the first sweep never stops the loop
    for _ in range(size + 1):  # the support shrinks at every step; the bound guards rounding
        total = 0.0
        kept = 0
        for i in range(size):
            above = shifted[i] > tau
            total += shifted[i] if above else 0.0
            kept += 1 if above else 0
        if kept == support:
            return tau
        support = kept
        tau = (total - 1.0) / kept  # kept >= 1: the maximum (0) exceeds every tau < 0
    return tau


@numba.njit(cache=True)
def simplex_projections(values, mask, masked, out):
    """``out[r] = (values[r] - tau_r)_+`` on the valid entries of each row, 0 elsewhere."""
    shifted = np.empty(values.shape[1])
    for r in range(values.shape[0]):
        top = -np.inf
        for j in range(values.shape[1]):
            if not masked or mask[r, j]:
                top = max(top, values[r, j])
        size = 0
        for j in range(values.shape[1]):
            if not masked or mask[r, j]:
                shifted[size] = values[r, j] - top
                size += 1
        tau = _shifted_threshold(shifted, size)
        for j in range(values.shape[1]):
            excess = values[r, j] - top - tau
            out[r, j] = excess if excess > 0.0 and (not masked or mask[r, j]) else 0.0


@numba.njit(cache=True)
def _column_thresholds(block, nodes, columns, tops, taus):
    """Each column's maximum ``tops[m]`` and threshold ``taus[m]`` over its heads, ``1 <= m < nodes``.

    ``block[h, m]`` is the arc ``h -> m`` of one instance; the heads of ``m`` are ``h < nodes``,
    ``h != m``. One sweep in memory order finds the maxima, one copies the shifted columns into
    contiguous rows of the work buffer ``columns`` (the diagonal as :math:`-\\infty`), and the
    thresholds are computed on those rows: column ``m`` projects to
    ``max(block[h, m] - tops[m] - taus[m], 0)``.
    """
    for m in range(nodes):
        tops[m] = -np.inf
    for h in range(nodes):
        row = block[h]
        for m in range(1, h):
            tops[m] = max(tops[m], row[m])
        for m in range(h + 1, nodes):
            tops[m] = max(tops[m], row[m])
    for h in range(nodes):
        row = block[h]
        for m in range(1, nodes):
            columns[m, h] = row[m] - tops[m]
    for m in range(1, nodes):
        columns[m, m] = -np.inf
        taus[m] = _shifted_threshold(columns[m], nodes)


@numba.njit(cache=True)
def head_selection_projections(scores, lengths, out):
    """Project each column ``scores[b, :, m]``, ``1 <= m <= n_b``, onto the simplex over its heads.

    ``scores[b, h, m]`` is the score of the arc ``h -> m``; the heads of word ``m`` are the nodes
    ``h <= n_b`` with ``h != m`` (node 0 is the root). Per instance the thresholds come from
    :func:`_column_thresholds` and one sweep in memory order writes ``out``, which must be zero
    on entry and keeps 0 on every entry that is not an arc.
    """
    size = scores.shape[1]
    columns = np.empty((size, size))
    tops = np.empty(size)
    taus = np.empty(size)
    for b in range(scores.shape[0]):
        nodes = lengths[b] + 1
        block = scores[b]
        _column_thresholds(block, nodes, columns, tops, taus)
        for h in range(nodes):
            row = block[h]
            written = out[b, h]
            for m in range(1, nodes):
                excess = row[m] - tops[m] - taus[m]
                written[m] = excess if excess > 0.0 else 0.0
            if h > 0:
                written[h] = 0.0


@numba.njit(cache=True)
def head_selection_residuals(point, direction, sizes, lengths, out):
    """``out[b] = point[b] - p_b``, ``p_b`` the projection of ``point[b] - sizes[b] * direction[b]``.

    The projection is :func:`head_selection_projections`'s (0 off the arcs, so ``out`` holds the
    point there, padding included); the stepped point is formed one instance at a time in a
    float64 work block, so neither it nor ``p`` is ever written to memory as a batch. Each output
    entry is rounded once, to ``out``'s dtype.
    """
    size = point.shape[1]
    target = np.empty((size, size))
    columns = np.empty((size, size))
    tops = np.empty(size)
    taus = np.empty(size)
    for b in range(point.shape[0]):
        nodes = lengths[b] + 1
        start = point[b]
        moved = direction[b]
        step = sizes[b]
        for h in range(nodes):
            for m in range(nodes):
                target[h, m] = np.float64(start[h, m]) - np.float64(moved[h, m]) * step
        _column_thresholds(target, nodes, columns, tops, taus)
        for h in range(size):
            written = out[b, h]
            origin = start[h]
            for m in range(size):
                written[m] = origin[m]
            if h >= nodes:
                continue
            row = target[h]
            for m in range(1, nodes):
                excess = row[m] - tops[m] - taus[m]
                if m != h and excess > 0.0:
                    written[m] = np.float64(origin[m]) - excess
