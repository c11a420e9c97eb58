r"""Tree polytopes: dependency trees (non-projective and projective), their head-selection
relaxation, and undirected spanning trees.

Dependency structures over ``n`` words use nodes ``0..n``, node 0 the root; scores and vertices
have shape ``(..., n+1, n+1)`` and entry ``[h, m]`` is the arc ``h -> m``. Column 0 (arcs into
the root) and the diagonal are not arcs: they are ignored in scores and 0 in vertices.
``lengths`` counts words, so instance ``b`` occupies ``[:n_b + 1, :n_b + 1]``.

The MAP oracles are compiled (:mod:`spigot.polytopes._tree_kernels`) and run over the whole
batch in one call; the marginals are batched torch (:mod:`spigot.polytopes._tree_marginals`).

Devices: the compiled MAP oracles of :class:`Arborescence`, :class:`ProjectiveTree` and
:class:`SpanningTree` run on the CPU: a batch on a GPU is copied to host memory once per batch
(never once per instance) and the vertices are moved back to its device once. The marginals
and :class:`HeadSelection`'s MAP (torch off the CPU, a compiled sweep on it) run on the
input's device. On a GPU, :class:`HeadSelection`'s closed-form projection is the sort-based
simplex projection of :mod:`spigot.projections`, with no host synchronisation.
Exact projections onto these polytopes come from the MAP-only solvers (``active-set``, the
Frank-Wolfe family) and, for :class:`Arborescence` and :class:`SpanningTree`, from ``cvxpy``
through an exact extended formulation; :class:`HeadSelection`, the relaxation of the SPIGOT
paper, has a closed-form projection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spigot._batch import host_buffer
from spigot._lazy import LazyModule
from spigot.polytopes import _tree_enumeration as enumeration
from spigot.polytopes._distributions import dependency_samples, one_hot_samples
from spigot.polytopes._tree_marginals import (
    _gth_log_partition,
    eisner_log_partition,
    eisner_marginals,
    matrix_tree_marginals,
    spanning_tree_marginals,
)
from spigot._word_graphs import arc_mask, host_lengths, host_scores, word_mask
from spigot.checks import check_flag
from spigot.polytopes.base import CompiledOracle, Polytope
from spigot.projections import head_selection_residual, project_head_selection

cp = LazyModule("cvxpy")
#: The numba-compiled MAP kernels, compiled (or loaded from numba's cache) at first use.
kernels = LazyModule("spigot.polytopes._tree_kernels")


def _dependency_oracle(event_shape: tuple[int, ...], single_root: bool, function: Any) -> CompiledOracle:
    """A compiled MAP of one dependency instance (``kernels.arborescence_support`` or
    ``kernels.projective_support``): ``n`` arcs, parameters ``(n + 1, single_root)``."""
    size = event_shape[0]
    return CompiledOracle(function, np.array([size, int(single_root)], dtype=np.int64), size - 1)


def _heads_to_vertex(heads: np.ndarray) -> np.ndarray:
    size = heads.shape[0]
    vertex = np.zeros((size, size))
    vertex[heads[1:], np.arange(1, size)] = 1.0
    return vertex


class _DependencyPolytope(Polytope):
    """Shape rules of dependency structures: square ``(n+1, n+1)`` events, ``lengths`` in words."""

    event_ndim = 2

    def check_event_shape(self, event_shape: tuple[int, ...], name: str = "scores") -> None:
        rows, cols = event_shape
        if rows != cols or rows < 2:
            raise ValueError(
                f"{name} must end in a square (n+1, n+1) arc matrix with n >= 1 words for "
                f"{self!r} (entry [h, m] is the arc h -> m, node 0 the root), got {event_shape}"
            )

    def min_length(self, event_shape: tuple[int, ...]) -> int:
        return 1

    def max_length(self, event_shape: tuple[int, ...]) -> int:
        return event_shape[0] - 1

    def valid_slices(self, event_shape: tuple[int, ...], length: int | None) -> tuple[slice, ...]:
        size = event_shape[0] if length is None else length + 1
        return (slice(0, size), slice(0, size))

    def variable_mask(self, event_shape: tuple[int, ...]) -> np.ndarray:
        """The arcs: every entry but the diagonal and column 0."""
        arcs = ~np.eye(event_shape[0], dtype=np.bool_)
        arcs[:, 0] = False
        return arcs

    def has_constant_vertex_sum(self) -> bool:
        return True  # one head per word


class HeadSelection(_DependencyPolytope):
    r"""Every word picks exactly one head: the SPIGOT paper's relaxation of dependency trees.

    .. math::
        P = \Big\{ p \ge 0 : \textstyle\sum_{h \ne m} p_{hm} = 1 \ (m = 1..n),\
            p_{hh} = 0,\ p_{h0} = 0 \Big\},

    a product of ``n`` simplices, one per modifier ``m`` over its heads ``h in {0..n} \ {m}``
    (column ``m`` of the arc matrix). Its vertices are all head assignments, cycles included;
    it contains every dependency tree polytope. MAP takes each column's best head; the
    marginals are a softmax over each column's heads (the words choose independently, so the
    log-partition is a sum of log-sum-exps and :meth:`sample` draws each head exactly); the exact projection is the sort-based
    simplex projection of every column (the ``closed-form`` solver, :math:`O(n^2 \log n)`).
    All three run on the input's device (the MAP by a compiled sweep on CPU tensors, by torch
    elsewhere).
    """

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        size = scores.shape[0]
        masked = scores.copy()
        masked[np.arange(size), np.arange(size)] = -np.inf
        vertex = np.zeros_like(scores)
        vertex[np.argmax(masked[:, 1:], axis=0), np.arange(1, size)] = 1.0
        return vertex

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Each column's best head: a compiled sweep on CPU, batched torch on the device elsewhere."""
        batch, size, _ = scores.shape
        if scores.device.type == "cpu":  # one compiled sweep; torch ops elsewhere
            values = host_scores(scores)
            out = host_buffer(values)
            kernels.head_selection_vertices(values, host_lengths(lengths, batch, size - 1), out.numpy())
            return out.to(scores.dtype)
        valid = arc_mask(lengths, size, batch, scores.device)
        best = scores.masked_fill(~valid, float("-inf")).argmax(dim=1, keepdim=True)
        out = torch.zeros_like(scores).scatter_(1, best, 1.0)
        return out * valid

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        size = var.shape[0]
        return [var >= 0, var[:, 0] == 0, cp.diag(var) == 0, cp.sum(var[:, 1:], axis=0) == np.ones(size - 1)]

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        return enumeration.heads_to_matrices(enumeration.head_arrays(event_shape[0] - 1))

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        batch, size, _ = scores.shape
        valid = arc_mask(lengths, size, batch, scores.device)
        probs = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=1)
        return torch.where(valid, probs, torch.zeros_like(probs))

    def closed_form_projection(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """:func:`spigot.projections.project_head_selection`."""
        return project_head_selection(x, lengths)

    def closed_form_residual(
        self, point: torch.Tensor, direction: torch.Tensor, sizes: torch.Tensor, lengths: torch.Tensor | None
    ) -> torch.Tensor:
        """:func:`spigot.projections.head_selection_residual`."""
        return head_selection_residual(point, direction, sizes, lengths)

    def log_partition_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        batch, size, _ = scores.shape
        valid = arc_mask(lengths, size, batch, scores.device)
        words = word_mask(lengths, size, batch, scores.device)
        # columns that are not words get finite stand-ins (0), so no NaN reaches the gradient
        outside = torch.where(words[:, None, :], float("-inf"), 0.0).to(scores.dtype)
        per_word = torch.logsumexp(torch.where(valid, scores, outside), dim=1)
        return torch.where(words, per_word, torch.zeros_like(per_word)).sum(dim=1)

    def sample_batch(
        self, scores: torch.Tensor, lengths: torch.Tensor | None, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        by_word = self.marginals_batch(scores, lengths).transpose(1, 2)  # [m, h]: word m's heads
        return one_hot_samples(by_word, n, generator).transpose(2, 3)


class Arborescence(_DependencyPolytope):
    r"""Non-projective dependency trees: spanning arborescences of nodes ``0..n`` rooted at 0.

    Parameters
    ----------
    single_root
        If True, the root has exactly one child (one word heads the sentence).

    Notes
    -----
    - **MAP**: dense Tarjan/Chu-Liu-Edmonds in :math:`O(n^2)` per tree; the single-root
      optimum is exact, from one contraction of the words and an :math:`O(n)` expansion per
      candidate root child (see :mod:`spigot.polytopes._tree_kernels`). Compiled CPU code: a
      batch on a GPU is copied to host memory once per batch and the trees moved back once.
    - **Marginals**: the matrix-tree theorem (Koo et al. 2007), differentiable; every instance
      is checked (one head per word, entries in [0, 1]) and one whose Laplacian is too
      ill-conditioned is recomputed by subtraction-free GTH elimination (see
      :mod:`spigot.polytopes._tree_marginals`); :class:`~spigot.NumericalError` only where
      float64 cannot hold the result.
    - **Constraints**: an exact extended formulation. With :math:`z \ge 0`, one unit of
      in-degree per word and none into the root, the arborescence polytope is cut out by
      :math:`z(\delta^{in}(S)) \ge 1` for every set of words :math:`S` (Edmonds 1967); those
      cuts hold iff, for every word :math:`k`, one unit of flow :math:`f^k \le z` can go from
      0 to :math:`k` (max-flow/min-cut), which is the multi-commodity flow model used here.
      For ``single_root`` the constraint :math:`\sum_m z_{0m} = 1` is added; the result is
      still integral: single-root trees are the common bases of the in-degree partition
      matroid and the direct sum of the words' graphic matroid with a rank-1 uniform matroid
      on the root's arcs, and a matroid intersection polytope is integral.
    - **Relaxation**: :class:`HeadSelection`.
    - **Distribution**: :meth:`log_partition` by the subtraction-free GTH elimination (float64,
      differentiable); :meth:`entropy` from it and the marginals; :meth:`sample` is exact, by
      sequential conditioning on the marginals (each word's head drawn from the marginals of
      the scores restricted to the heads drawn so far; ``n`` marginal computations per batch
      of samples, see :mod:`spigot.polytopes._distributions`).
    """

    def __init__(self, single_root: bool = False) -> None:
        self.single_root = check_flag(single_root, "single_root")

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        heads = np.empty(scores.shape[0], dtype=np.int64)
        kernels.arborescence_heads(np.ascontiguousarray(scores, dtype=np.float64), self.single_root, heads)
        return _heads_to_vertex(heads)

    def compiled_map(self, event_shape: tuple[int, ...]) -> CompiledOracle:
        """:meth:`map_one` as a compiled oracle (the ``active-set`` solver's whole loop is compiled)."""
        return _dependency_oracle(event_shape, self.single_root, kernels.arborescence_support)

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Compiled Tarjan over the whole batch; off the CPU, one copy to the host and one back."""
        values = host_scores(scores)
        out = host_buffer(values)
        lens = host_lengths(lengths, values.shape[0], values.shape[1] - 1)
        kernels.dependency_vertices(values, lens, self.single_root, False, out.numpy())
        return out.to(device=scores.device, dtype=scores.dtype)

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        return _arborescence_flow(var, self.single_root)

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        heads = enumeration.dependency_trees(event_shape[0] - 1, self.single_root, projective=False)
        return enumeration.heads_to_matrices(heads)

    def relaxation(self) -> Polytope:
        return HeadSelection()

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return matrix_tree_marginals(scores, lengths, self.single_root)

    def log_partition_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """``log Z`` by the subtraction-free GTH elimination of the marginals' fallback (float64)."""
        return _gth_log_partition(scores.to(torch.float64), lengths, self.single_root).to(scores.dtype)

    def sample_batch(
        self, scores: torch.Tensor, lengths: torch.Tensor | None, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        def marginals(values: torch.Tensor, lens: torch.Tensor | None) -> torch.Tensor:
            return matrix_tree_marginals(values, lens, self.single_root)

        return dependency_samples(marginals, scores, lengths, n, generator)


class ProjectiveTree(_DependencyPolytope):
    r"""Projective dependency trees: arborescences rooted at 0 whose arcs do not cross.

    Parameters
    ----------
    single_root
        If True, the root has exactly one child.

    Notes
    -----
    MAP is Eisner's :math:`O(n^3)` algorithm, compiled and batched (on the CPU: a batch on a
    GPU is copied to host memory once per batch and the trees moved back once); the marginals
    come from the inside-outside algorithm in log space (autograd through the inside pass), on
    the input's device; :meth:`log_partition` is the inside pass, and :meth:`sample` is exact,
    by sequential conditioning on the inside-outside marginals (as for :class:`Arborescence`).
    The relaxation is :class:`HeadSelection`. There are no cvxpy constraints; exact projections
    use the MAP-only solvers.
    """

    def __init__(self, single_root: bool = False) -> None:
        self.single_root = check_flag(single_root, "single_root")

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        heads = np.empty(scores.shape[0], dtype=np.int64)
        kernels.projective_heads(np.ascontiguousarray(scores, dtype=np.float64), self.single_root, heads)
        return _heads_to_vertex(heads)

    def compiled_map(self, event_shape: tuple[int, ...]) -> CompiledOracle:
        """:meth:`map_one` as a compiled oracle (the ``active-set`` solver's whole loop is compiled)."""
        return _dependency_oracle(event_shape, self.single_root, kernels.projective_support)

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        values = host_scores(scores)
        out = host_buffer(values)
        lens = host_lengths(lengths, values.shape[0], values.shape[1] - 1)
        kernels.dependency_vertices(values, lens, self.single_root, True, out.numpy())
        return out.to(device=scores.device, dtype=scores.dtype)

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        heads = enumeration.dependency_trees(event_shape[0] - 1, self.single_root, projective=True)
        return enumeration.heads_to_matrices(heads)

    def relaxation(self) -> Polytope:
        return HeadSelection()

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return eisner_marginals(scores, lengths, self.single_root)

    def log_partition_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return eisner_log_partition(scores, lengths, self.single_root).to(scores.dtype)

    def sample_batch(
        self, scores: torch.Tensor, lengths: torch.Tensor | None, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        def marginals(values: torch.Tensor, lens: torch.Tensor | None) -> torch.Tensor:
            return eisner_marginals(values, lens, self.single_root)

        return dependency_samples(marginals, scores, lengths, n, generator)


class SpanningTree(Polytope):
    r"""Undirected spanning trees of the complete graph on ``n`` nodes.

    Convention: one instance is an ``(n, n)`` matrix whose strict upper triangle holds the
    edges, entry ``[i, j]`` (``i < j``) for the edge :math:`\{i, j\}`; the diagonal and the lower
    triangle are not edges (ignored in scores, 0 in vertices). ``lengths`` counts nodes, so
    instance ``b`` occupies ``[:n_b, :n_b]``; a single node has the empty tree.

    MAP is Prim's algorithm (:math:`O(n^2)`, compiled, batched, on the CPU: a batch on a GPU is
    copied to host memory once per batch and the trees moved back once); the marginals come from
    Kirchhoff's matrix-tree theorem, on the input's device (orienting every tree away from node 0
    is a weight-preserving bijection with arborescences, which also gives :meth:`log_partition`
    and the exact :meth:`sample` of :class:`Arborescence`); the cvxpy constraints orient the
    tree away from node 0 (:math:`x_{ij} = y_{ij} + y_{ji}`, :math:`y` in the multi-root
    arborescence formulation of :class:`Arborescence`), an exact extended formulation because
    orienting is a bijection between spanning trees and arborescences rooted at 0.
    """

    event_ndim = 2

    def check_event_shape(self, event_shape: tuple[int, ...], name: str = "scores") -> None:
        rows, cols = event_shape
        if rows != cols or rows < 1:
            raise ValueError(
                f"{name} must end in a square (n, n) edge matrix (entry [i, j], i < j, is the "
                f"edge {{i, j}}) for {self!r}, got {event_shape}"
            )

    def valid_slices(self, event_shape: tuple[int, ...], length: int | None) -> tuple[slice, ...]:
        size = event_shape[0] if length is None else length
        return (slice(0, size), slice(0, size))

    def variable_mask(self, event_shape: tuple[int, ...]) -> np.ndarray:
        """The edges: the strict upper triangle."""
        return np.triu(np.ones(event_shape, dtype=np.bool_), k=1)

    def has_constant_vertex_sum(self) -> bool:
        return True  # n - 1 edges

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        size = scores.shape[0]
        parents = np.empty(size, dtype=np.int64)
        kernels.spanning_tree_parents(np.ascontiguousarray(scores, dtype=np.float64), parents)
        vertex = np.zeros((size, size))
        children = np.arange(1, size)
        vertex[np.minimum(parents[1:], children), np.maximum(parents[1:], children)] = 1.0
        return vertex

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        values = host_scores(scores)
        out = host_buffer(values)
        kernels.spanning_tree_vertices(values, host_lengths(lengths, values.shape[0], values.shape[1]), out.numpy())
        return out.to(device=scores.device, dtype=scores.dtype)

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        size = var.shape[0]
        if size == 1:
            return [var == 0]
        oriented = cp.Variable((size, size))
        upper = np.triu(np.ones((size, size)), k=1)
        return _arborescence_flow(oriented, single_root=False) + [
            cp.multiply(upper, oriented + oriented.T) == var,
            cp.multiply(1.0 - upper, var) == 0,
        ]

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        return enumeration.spanning_trees(event_shape[0])

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return spanning_tree_marginals(scores, lengths)

    def log_partition_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Kirchhoff's ``log det`` as arborescences from node 0 on symmetric weights (GTH, float64)."""
        symmetric, words = _oriented(scores, lengths)
        return _gth_log_partition(symmetric.to(torch.float64), words, single_root=False).to(scores.dtype)

    def sample_batch(
        self, scores: torch.Tensor, lengths: torch.Tensor | None, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Arborescences from node 0 on symmetric weights, sampled exactly, then un-oriented."""
        symmetric, words = _oriented(scores, lengths)

        def marginals(values: torch.Tensor, lens: torch.Tensor | None) -> torch.Tensor:
            return matrix_tree_marginals(values, lens, single_root=False)

        directed = dependency_samples(marginals, symmetric, words, n, generator)
        return torch.triu(directed + directed.transpose(-1, -2), diagonal=1)


def _oriented(scores: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Symmetric arc scores of the edges and the word counts (nodes - 1) of the orientation from node 0."""
    upper = torch.triu(scores, diagonal=1)
    return upper + upper.transpose(-1, -2), None if lengths is None else lengths - 1


def _arborescence_flow(var: cp.Variable, single_root: bool) -> list[cp.Constraint]:
    """Multi-commodity flow formulation of the arborescences of nodes ``0..n`` rooted at 0."""
    size = var.shape[0]
    constraints = [
        var >= 0,
        var[:, 0] == 0,
        cp.diag(var) == 0,
        cp.sum(var[:, 1:], axis=0) == np.ones(size - 1),
    ]
    if single_root:
        constraints.append(cp.sum(var[0, 1:]) == 1)
    for sink in range(1, size):
        flow = cp.Variable((size, size), nonneg=True)
        supply = np.zeros(size)
        supply[0], supply[sink] = -1.0, 1.0
        constraints += [flow <= var, cp.sum(flow, axis=0) - cp.sum(flow, axis=1) == supply]
    return constraints
