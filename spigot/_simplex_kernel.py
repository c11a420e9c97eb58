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

Every threshold is computed on the entries shifted by their maximum (``x_i - max x``), and the
output is formed from the shifted entries too: the projection is invariant to adding a
constant to every entry, and only in shifted form does ``max x - 1`` stay distinct from
``max x`` once ``|x| >= 2^53`` (so ``[1e17, 0]`` projects to ``[1, 0]``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _threshold(entries, size, top, candidates):
    """Threshold of ``entries[:size] - top`` (the entries shifted by their maximum ``top``).

    :math:`+\\infty` if ``size`` is 0. The caller subtracts it from ``entry - top``.
    """
    if size == 0:
        return np.inf
    count = 0
    for i in range(size):
        shifted = entries[i] - top
        if shifted > -1.0:
            candidates[count] = shifted
            count += 1
    tau = -1.0
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
            shifted = values[r, j] - top
            if (masked and not mask[r, j]) or shifted <= tau:
                out[r, j] = 0.0
            else:
                out[r, j] = shifted - tau


@numba.njit(cache=True)
def head_selection_projections(scores, lengths, out):
    """Project each column ``scores[b, :, m]``, ``1 <= m <= n_b``, onto the simplex over its heads.

    ``scores[b, h, m]`` is the score of the arc ``h -> m``; the heads of word ``m`` are the nodes
    ``h <= n_b`` with ``h != m`` (node 0 is the root). One gathering pass per column finds its
    threshold, then one pass in memory order writes ``out``, which must be zero on entry and
    keeps 0 on every entry that is not an arc.
    """
    size = scores.shape[1]
    entries = np.empty(size)
    candidates = np.empty(size)
    tau = np.empty(size)
    tops = np.empty(size)
    for b in range(scores.shape[0]):
        nodes = lengths[b] + 1
        for m in range(1, nodes):
            count = 0
            top = -np.inf
            for h in range(nodes):
                if h != m:
                    entries[count] = scores[b, h, m]
                    top = max(top, scores[b, h, m])
                    count += 1
            tau[m] = _threshold(entries, count, top, candidates)
            tops[m] = top
        for h in range(nodes):
            for m in range(1, nodes):
                shifted = scores[b, h, m] - tops[m]
                if h != m and shifted > tau[m]:
                    out[b, h, m] = shifted - tau[m]
