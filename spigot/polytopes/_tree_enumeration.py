"""Enumeration of every tree of a tiny instance, as 0/1 matrices (for tests and references).

Dependency trees over ``n`` words are head arrays ``heads[m] in {0..n} \\ {m}`` that reach the
root from every word; their counts are :math:`(n+1)^{n-1}` (multi-root) and :math:`n^{n-1}`
(single-root) by Cayley's formula. Projective ones are those without crossing arcs (the root
sits at position 0, left of every word). Spanning trees of ``n`` nodes are decoded from the
:math:`n^{n-2}` Prüfer sequences.
"""

from __future__ import annotations

import itertools

import numpy as np

#: Refuse to enumerate more trees than this (the counts grow super-exponentially).
MAX_TREES = 2_000_000


def _check_count(count: int, what: str) -> None:
    if count > MAX_TREES:
        raise ValueError(
            f"enumerating {what} would list about {count} trees, more than {MAX_TREES}; "
            "vertices() is meant for tiny instances"
        )


def head_arrays(n: int) -> np.ndarray:
    """Every assignment of a head ``!= m`` to each word ``m = 1..n``: ``(n^n, n + 1)``, column 0 = -1."""
    _check_count(n**n, f"head assignments of {n} words")
    choices = [[h for h in range(n + 1) if h != m] for m in range(1, n + 1)]
    rows = np.array(list(itertools.product(*choices)), dtype=np.int64).reshape(-1, n)
    return np.concatenate([np.full((len(rows), 1), -1, dtype=np.int64), rows], axis=1)


def dependency_trees(n: int, single_root: bool, projective: bool) -> np.ndarray:
    """Head arrays ``(T, n + 1)`` of every dependency tree over ``n`` words (``heads[:, 0] = -1``)."""
    heads = head_arrays(n)
    # follow head pointers: after 2^k steps every word of a tree has reached the root 0
    pointer = np.where(heads < 0, 0, heads)
    for _ in range(int(np.ceil(np.log2(n + 1))) + 1):
        pointer = np.take_along_axis(pointer, pointer, axis=1)
    keep = np.all(pointer == 0, axis=1)
    if single_root:
        keep &= np.sum(heads[:, 1:] == 0, axis=1) == 1
    heads = heads[keep]
    if projective:
        words = np.arange(1, n + 1)
        low = np.minimum(heads[:, 1:], words)
        high = np.maximum(heads[:, 1:], words)
        a_low, a_high = low[:, :, None], high[:, :, None]
        b_low, b_high = low[:, None, :], high[:, None, :]
        crossing = (a_low < b_low) & (b_low < a_high) & (a_high < b_high)
        heads = heads[~crossing.any(axis=(1, 2))]
    return heads


def heads_to_matrices(heads: np.ndarray) -> np.ndarray:
    """One-hot arc matrices ``(T, n + 1, n + 1)`` with entry ``[h, m] = 1`` for ``heads[m] = h``."""
    count, size = heads.shape
    out = np.zeros((count, size, size))
    rows = np.repeat(np.arange(count), size - 1)
    out[rows, heads[:, 1:].ravel(), np.tile(np.arange(1, size), count)] = 1.0
    return out


def spanning_trees(n: int) -> np.ndarray:
    """Every spanning tree of the complete graph on ``n`` nodes, upper-triangular ``(n^{n-2}, n, n)``."""
    if n == 1:
        return np.zeros((1, 1, 1))
    _check_count(n ** (n - 2), f"spanning trees of {n} nodes")
    trees = []
    for code in itertools.product(range(n), repeat=n - 2):
        degree = np.ones(n, dtype=np.int64)
        for v in code:
            degree[v] += 1
        tree = np.zeros((n, n))
        for v in code:
            leaf = int(np.flatnonzero(degree == 1)[0])
            tree[min(leaf, v), max(leaf, v)] = 1.0
            degree[leaf] -= 1
            degree[v] -= 1
        u, v = np.flatnonzero(degree == 1)
        tree[u, v] = 1.0
        trees.append(tree)
    return np.array(trees)
