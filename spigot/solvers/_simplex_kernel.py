r"""Compiled simplex thresholds for CPU tensors (Michelot's algorithm, row by row).

For a row :math:`x` restricted to its valid entries, the projection onto the simplex is
:math:`(x - \tau)_+` with :math:`\sum_i (x_i - \tau)_+ = 1`. For any set :math:`S` that contains
the support :math:`S^\star` of the projection, :math:`\tau(S) = (\sum_{i \in S} x_i - 1)/|S|` is
at most :math:`\tau^\star`, so :math:`\{i : x_i > \tau(S)\}` again contains :math:`S^\star`;
Michelot (1986) iterates this until the set stops shrinking, which happens exactly at
:math:`S^\star`. Since :math:`\tau^\star \ge \max_i x_i - 1`, the iteration can start from
:math:`S_0 = \{i : x_i > \max_j x_j - 1\}` instead of every entry, which usually is the support
already: a few sweeps over the row and no sort.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def simplex_thresholds(values, mask, masked, out):
    """``out[r]`` = threshold of row ``values[r]`` over ``mask[r]`` (all entries if not ``masked``).

    Rows without a valid entry get :math:`+\\infty` (their projection is 0).
    """
    rows, width = values.shape
    for r in range(rows):
        top = -np.inf
        for j in range(width):
            if (not masked or mask[r, j]) and values[r, j] > top:
                top = values[r, j]
        if top == -np.inf:
            out[r] = np.inf
            continue
        tau = top - 1.0
        count = width + 1
        while True:
            total = 0.0
            kept = 0
            for j in range(width):
                if (not masked or mask[r, j]) and values[r, j] > tau:
                    total += values[r, j]
                    kept += 1
            if kept == count:
                break
            count = kept
            tau = (total - 1.0) / kept
        out[r] = tau
