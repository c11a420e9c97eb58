r"""Compiled simplex projections for CPU tensors (Michelot's algorithm, row by row or, for
head selection, column by column).

For a row :math:`x` restricted to its valid entries, the projection onto the simplex is
:math:`(x - \tau)_+` with :math:`\sum_i (x_i - \tau)_+ = 1`. For any set :math:`S` that contains
the support :math:`S^\star` of the projection, :math:`\tau(S) = (\sum_{i \in S} x_i - 1)/|S|` is
at most :math:`\tau^\star`, so :math:`\{i : x_i > \tau(S)\}` again contains :math:`S^\star`;
Michelot (1986) iterates this until the set stops shrinking, which happens exactly at
:math:`S^\star`. Since :math:`\tau^\star \ge \max_i x_i - 1`, only the entries above
:math:`\max_i x_i - 1` can matter: two sweeps over the row find the maximum and collect them,
and Michelot's iterations then run on those few candidates. No sort, two passes over the data.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _threshold(entries, size, top, candidates):
    """Threshold of ``entries[:size]``, whose maximum is ``top`` (:math:`+\\infty` if ``size`` is 0)."""
    if size == 0:
        return np.inf
    count = 0
    for i in range(size):
        if entries[i] > top - 1.0:
            candidates[count] = entries[i]
            count += 1
    tau = top - 1.0
    support = count + 1
    for _ in range(count + 1):  # the support shrinks at every step; the bound guards rounding
        total = 0.0
        kept = 0
        for i in range(count):
            if candidates[i] > tau:
                total += candidates[i]
                kept += 1
        if kept == support:
            return tau
        support = kept
        tau = (total - 1.0) / kept
    return tau


@numba.njit(cache=True)
def simplex_projections(values, mask, masked, out):
    """``out[r] = (values[r] - tau_r)_+`` on the valid entries of each row, 0 elsewhere."""
    entries = np.empty(values.shape[1])
    candidates = np.empty(values.shape[1])
    for r in range(values.shape[0]):
        size = 0
        top = -np.inf
        for j in range(values.shape[1]):
            if not masked or mask[r, j]:
                entries[size] = values[r, j]
                top = max(top, values[r, j])
                size += 1
        tau = _threshold(entries, size, top, candidates)
        for j in range(values.shape[1]):
            if (masked and not mask[r, j]) or values[r, j] <= tau:
                out[r, j] = 0.0
            else:
                out[r, j] = values[r, j] - tau


@numba.njit(cache=True)
def head_selection_projections(columns, lengths, out):
    """Project each row ``columns[b, m]``, ``1 <= m <= n_b``, onto the simplex over its heads.

    ``columns[b, m, h]`` is the score of the arc ``h -> m`` (the arc-score matrix transposed, so
    that a word's candidate heads are contiguous); the heads of word ``m`` are the nodes
    ``h <= n_b`` with ``h != m`` (node 0 is the root). ``out`` must be zero on entry and keeps 0
    on every other entry.
    """
    entries = np.empty(columns.shape[2])
    candidates = np.empty(columns.shape[2])
    for b in range(columns.shape[0]):
        nodes = lengths[b] + 1
        for m in range(1, nodes):
            size = 0
            top = -np.inf
            for h in range(nodes):
                if h != m:
                    entries[size] = columns[b, m, h]
                    top = max(top, columns[b, m, h])
                    size += 1
            tau = _threshold(entries, size, top, candidates)
            for h in range(nodes):
                if h != m and columns[b, m, h] > tau:
                    out[b, m, h] = columns[b, m, h] - tau
