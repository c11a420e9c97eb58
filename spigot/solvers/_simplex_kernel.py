r"""Compiled simplex projections for CPU tensors (Michelot's algorithm, row by row).

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
def _row_threshold(values, mask, masked, r, candidates):
    """Threshold of row ``r`` over its valid entries (:math:`+\\infty` if there are none)."""
    top = -np.inf
    for j in range(values.shape[1]):
        if not masked or mask[r, j]:
            top = max(top, values[r, j])
    size = 0
    for j in range(values.shape[1]):
        if values[r, j] > top - 1.0 and (not masked or mask[r, j]):
            candidates[size] = values[r, j]
            size += 1
    if size == 0:
        return np.inf
    tau = top - 1.0
    count = size + 1
    for _ in range(size + 1):  # the support shrinks at every step; the bound guards rounding
        total = 0.0
        kept = 0
        for i in range(size):
            if candidates[i] > tau:
                total += candidates[i]
                kept += 1
        if kept == count:
            return tau
        count = kept
        tau = (total - 1.0) / kept
    return tau


@numba.njit(cache=True)
def simplex_projections(values, mask, masked, out):
    """``out[r] = (values[r] - tau_r)_+`` on the valid entries of each row, 0 elsewhere."""
    candidates = np.empty(values.shape[1])
    for r in range(values.shape[0]):
        tau = _row_threshold(values, mask, masked, r, candidates)
        for j in range(values.shape[1]):
            if (masked and not mask[r, j]) or values[r, j] <= tau:
                out[r, j] = 0.0
            else:
                out[r, j] = values[r, j] - tau
