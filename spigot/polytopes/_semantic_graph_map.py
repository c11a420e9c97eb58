r"""Compiled MAP of semantic graphs with unique labels: per arc a fallback label, per head an assignment.

For scores ``s[h, m, l]`` the best graph decomposes by head. Every arc ``h -> m`` falls back to
its best non-unique label when that scores above 0 (value :math:`f_{hm} = \max(0, \max_{l
\notin U} s_{hml})`, 0 when every label is unique); taking unique label :math:`u` instead
gains :math:`g_{mu} = s_{hmu} - f_{hm}`, and each head may use each unique label at most once.
So head ``h`` solves a maximum-weight matching of its modifiers to the unique labels on the
positive gains, a rectangular assignment problem: unique labels are rows (``k`` of them),
modifiers and ``k`` "unused" slots of weight 0 are columns, and the cost of a pair is minus its
gain clipped at 0 (a pair left at gain 0 is dropped). It is solved exactly by the
shortest-augmenting-path Hungarian method with row and column potentials (Kuhn 1955, Munkres
1957; one Dijkstra-like augmentation per row, :math:`O(k^2 (M + k))` for ``M`` modifiers).

The batch loop and the head loop run serially in compiled code (as the tree kernels do, see
:mod:`spigot.polytopes._tree_kernels`): one head of 20 modifiers and 5 unique labels takes a
few microseconds.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _assign(cost, rows, cols, row_of_col, u, v, slack, way, used):
    """Minimum-cost assignment of every row of ``cost[:rows, :cols]`` (rows <= cols) to a distinct column.

    Fills ``row_of_col[1..cols]`` (1-based: 0 is "free"); ``u``, ``v``, ``slack``, ``way`` and
    ``used`` are work arrays of at least ``rows + 1`` / ``cols + 1`` entries.
    """
    for j in range(cols + 1):
        row_of_col[j] = 0
        v[j] = 0.0
    for i in range(rows + 1):
        u[i] = 0.0
    for i in range(1, rows + 1):
        # grow a shortest alternating path from row i to a free column (column 0 is the source)
        row_of_col[0] = i
        current = 0
        for j in range(cols + 1):
            slack[j] = np.inf
            used[j] = False
        while True:
            used[current] = True
            row = row_of_col[current]
            delta = np.inf
            nearest = 0
            for j in range(1, cols + 1):
                if used[j]:
                    continue
                reduced = cost[row - 1, j - 1] - u[row] - v[j]
                if reduced < slack[j]:
                    slack[j] = reduced
                    way[j] = current
                if slack[j] < delta:
                    delta = slack[j]
                    nearest = j
            for j in range(cols + 1):
                if used[j]:
                    u[row_of_col[j]] += delta
                    v[j] -= delta
                else:
                    slack[j] -= delta
            current = nearest
            if row_of_col[current] == 0:
                break
        # flip the path
        while current != 0:
            previous = way[current]
            row_of_col[current] = row_of_col[previous]
            current = previous


@numba.njit(cache=True)
def semantic_graph_map(scores, nodes, unique, free, out):
    """Write the MAP of every instance of ``scores`` ``(B, N, N, L)`` into ``out`` (zeros, same shape).

    ``nodes[b]`` is the number of nodes (words + 1) of instance ``b``; ``unique`` and ``free``
    are the unique and the other labels (int64).
    """
    batch, size = scores.shape[0], scores.shape[1]
    k = unique.shape[0]
    cols = size + k
    cost = np.zeros((k, cols))
    gain = np.zeros((size, k))
    fallback_label = np.empty(size, dtype=np.int64)
    row_of_col = np.zeros(cols + 1, dtype=np.int64)
    u = np.zeros(k + 1)
    v = np.zeros(cols + 1)
    slack = np.zeros(cols + 1)
    way = np.zeros(cols + 1, dtype=np.int64)
    used = np.zeros(cols + 1, dtype=np.bool_)
    modifiers = np.empty(size, dtype=np.int64)
    for b in range(batch):
        n_nodes = nodes[b]
        for h in range(n_nodes):
            count = 0
            for m in range(1, n_nodes):
                if m == h:
                    continue
                best, label = 0.0, -1
                for l in free:
                    if scores[b, h, m, l] > best:
                        best, label = scores[b, h, m, l], l
                fallback_label[count] = label
                for j in range(k):
                    gain[count, j] = scores[b, h, m, unique[j]] - best
                modifiers[count] = m
                count += 1
            if k > 0 and count > 0:
                width = count + k
                for j in range(k):
                    for c in range(count):
                        cost[j, c] = -max(gain[c, j], 0.0)
                    for c in range(count, width):
                        cost[j, c] = 0.0
                _assign(cost, k, width, row_of_col, u, v, slack, way, used)
                for c in range(count):
                    j = row_of_col[c + 1] - 1
                    if j >= 0 and gain[c, j] > 0.0:
                        fallback_label[c] = unique[j]
            for c in range(count):
                if fallback_label[c] >= 0:
                    out[b, h, modifiers[c], fallback_label[c]] = 1.0
