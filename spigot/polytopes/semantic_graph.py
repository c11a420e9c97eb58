r"""Labeled semantic dependency graphs (DM style): :class:`SemanticGraph` and its per-arc relaxation :class:`LabeledArcs`.

Over ``n`` words (nodes ``0..n``, node 0 the root) an instance has shape ``(n+1, n+1, L)``:
entry ``[h, m, l]`` is the arc ``h -> m`` with label ``l``. Column 0 and the diagonal are not
arcs (their scores are ignored, vertices are 0 there); ``lengths`` counts words, so the valid
region of an instance of length ``n`` is ``[:n+1, :n+1, :]``. Absent arcs score 0.

- :class:`LabeledArcs`: every arc independently carries at most one label,
  :math:`P = \{y \ge 0 : \sum_l y_{hml} \le 1\ \forall (h, m)\}`;
- :class:`SemanticGraph`: the same, and each head has at most one outgoing arc of every label
  in ``unique_labels`` (the DM core-role constraint),
  :math:`\sum_m y_{hml} \le 1\ \forall h, l \in U`.

Both are factor graphs of at-most-one factors (:class:`~spigot.polytopes.FactorGraphPolytope`),
so ad3 solves their MAP, ``cvxpy`` projects onto their constraints and the ``ad3`` solver
works on them. Their constraint matrix is that of a bipartite graph (modifiers against unique
labels, per head), hence totally unimodular: the local polytope *is* :math:`\mathrm{conv}(Z)`
and the ``cvxpy`` projection is exact. The default MAP is combinatorial: per arc the best
non-unique label if its score is positive, and per head a maximum-weight assignment of unique
labels to modifiers on the gains over that fallback (compiled,
:mod:`spigot.polytopes._semantic_graph_map`).

Devices: :class:`LabeledArcs` (MAP, marginals, closed-form projection) and a
:class:`SemanticGraph` without unique labels run in torch on the input's device. The MAP of a
:class:`SemanticGraph` with unique labels (the assignment) and everything ad3 or cvxpy solves
run on the CPU: a batch on a GPU is copied to host memory once per batch (never once per
instance) and the result moved back once.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from spigot._lazy import LazyModule
from spigot._word_graphs import arc_mask, host_lengths, host_scores
from spigot.polytopes.factor_graph import FactorGraphPolytope
from spigot.polytopes.factors import FactorGraph
from spigot.projections import labeled_arcs_projection, reference_projection

map_kernel = LazyModule("spigot.polytopes._semantic_graph_map")

#: Largest ``vertices x entries`` array :meth:`LabeledArcs.vertices` builds.
MAX_VERTEX_ENTRIES = 2**24


def _arc_list(n_nodes: int) -> list[tuple[int, int]]:
    return [(h, m) for h in range(n_nodes) for m in range(1, n_nodes) if h != m]


def _best_labels(scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Per arc, the one-hot of the best label when its score is positive (batched, torch)."""
    mask = arc_mask(lengths, scores.shape[1], scores.shape[0], scores.device)
    best, index = scores.max(dim=-1, keepdim=True)
    on = ((best > 0) & mask[..., None]).to(scores.dtype)
    return torch.zeros_like(scores).scatter_(-1, index, on)


class _LabeledGraph(FactorGraphPolytope):
    """Shape rules and per-arc at-most-one factors shared by the labeled-graph polytopes."""

    event_ndim = 3
    #: Totally unimodular constraints (see the module): the local polytope is conv(Z).
    local_polytope_is_integral = True
    #: At-most-one factors only: a padded instance is the full graph with padded arcs at 0.
    pads_by_fixing = True

    def __init__(self, n_labels: int) -> None:
        if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)) or n_labels < 1:
            raise ValueError(f"n_labels must be a positive integer, got {n_labels!r}")
        self.n_labels = int(n_labels)

    # ------------------------------------------------------------------ shape rules
    def check_event_shape(self, event_shape: tuple[int, ...], name: str = "scores") -> None:
        rows, cols, labels = event_shape
        if rows != cols or rows < 2:
            raise ValueError(
                f"{name} must have shape (..., n+1, n+1, L) with n >= 1 words for {self!r}, "
                f"got event shape {event_shape}"
            )
        if labels != self.n_labels:
            raise ValueError(
                f"{name} has {labels} labels on its last axis, but {self!r} has n_labels={self.n_labels}"
            )

    def min_length(self, event_shape: tuple[int, ...]) -> int:
        return 1

    def max_length(self, event_shape: tuple[int, ...]) -> int:
        return event_shape[0] - 1

    def valid_slices(self, event_shape: tuple[int, ...], length: int | None) -> tuple[slice, ...]:
        nodes = event_shape[0] if length is None else length + 1
        return (slice(0, nodes), slice(0, nodes), slice(0, event_shape[2]))

    def variable_mask(self, event_shape: tuple[int, ...]) -> np.ndarray:
        """The labels of the arcs: every entry but those of the diagonal and column 0."""
        arcs = arc_mask(None, event_shape[0], 1, "cpu")[0].numpy()
        return np.repeat(arcs[:, :, None], event_shape[2], axis=2)

    # ------------------------------------------------------------------ factor graph
    def build(self, graph: FactorGraph) -> None:
        """One at-most-one factor over the labels of every arc."""
        labels = range(graph.event_shape[2])
        for h, m in _arc_list(graph.event_shape[0]):
            graph.at_most_one([(h, m, l) for l in labels])

    # ------------------------------------------------------------------ enumeration
    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        """Every vertex: each arc absent or with one label, filtered by :meth:`_allowed`."""
        n_nodes, _, labels = event_shape
        arcs = _arc_list(n_nodes)
        count = (labels + 1) ** len(arcs)
        if count * n_nodes * n_nodes * labels > MAX_VERTEX_ENTRIES:
            raise ValueError(
                f"{count} candidate graphs of shape {event_shape} are too many to enumerate"
            )
        # choice[k, a] = 0 (arc a absent) or 1 + its label, in mixed radix over the arcs
        choice = (np.arange(count)[:, None] // (labels + 1) ** np.arange(len(arcs))) % (labels + 1)
        choice = choice[self._allowed(choice, arcs, labels)]
        out = np.zeros((len(choice), n_nodes, n_nodes, labels))
        heads = np.array([h for h, _ in arcs])
        mods = np.array([m for _, m in arcs])
        rows, cols = np.nonzero(choice)
        out[rows, heads[cols], mods[cols], choice[rows, cols] - 1] = 1.0
        return out

    def _allowed(self, choice: np.ndarray, arcs: list[tuple[int, int]], labels: int) -> np.ndarray:
        """Which label choices (rows of ``choice``) are vertices; every one by default."""
        return np.ones(len(choice), dtype=bool)


class LabeledArcs(_LabeledGraph):
    r"""Labeled graphs whose arcs each carry at most one label, with no other constraint.

    :math:`P = \{y \in \mathbb{R}^{(n+1) \times (n+1) \times L} : y \ge 0,\
    \sum_l y_{hml} \le 1,\ y = 0 \text{ off the arcs}\}`, the per-arc relaxation of
    :class:`SemanticGraph`. MAP takes, per arc, the best label if its score is positive; the
    marginals are a softmax over "no arc" (score 0) and the labels; the exact projection is
    the ``closed-form`` solver.

    Parameters
    ----------
    n_labels
        ``L``, the size of the label axis.
    """

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        return _best_labels(torch.from_numpy(scores)[None], None)[0].numpy()

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return _best_labels(scores, lengths)

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        r""":math:`\mu_{hml} = e^{s_{hml}} / (1 + \sum_k e^{s_{hmk}})` on every arc, 0 elsewhere."""
        logits = torch.cat([torch.zeros_like(scores[..., :1]), scores], dim=-1)
        probs = torch.softmax(logits, dim=-1)[..., 1:]
        return probs * arc_mask(lengths, scores.shape[1], scores.shape[0], scores.device)[..., None]

    def relaxation(self) -> LabeledArcs:
        """Itself: its constraints are already per arc."""
        return self

    def closed_form_projection(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The per-arc projection :func:`spigot.projections.project_labeled_arcs`."""
        return labeled_arcs_projection(x, lengths)


class SemanticGraph(_LabeledGraph):
    r"""Semantic dependency graphs: at most one label per arc, unique labels at most once per head.

    Vertices are the 0/1 arrays :math:`y` of shape ``(n+1, n+1, L)`` (see the module) with
    :math:`\sum_l y_{hml} \le 1` for every arc and :math:`\sum_m y_{hml} \le 1` for every head
    :math:`h` and unique label :math:`l \in U`. MAP is combinatorial (exact; with unique labels
    it runs on the CPU, one host transfer per batch each way); :meth:`map_ad3` solves it with
    ad3 instead. :meth:`relaxation` is :class:`LabeledArcs`.

    Parameters
    ----------
    n_labels
        ``L``, the size of the label axis.
    unique_labels
        Labels (indices in ``[0, L)``) that each head may use at most once, e.g. the DM core
        roles ``ARG1``, ``ARG2``, ...; empty by default, which makes the polytope equal to
        :class:`LabeledArcs`.
    """

    def __init__(self, n_labels: int, unique_labels: Iterable[int] = ()) -> None:
        super().__init__(n_labels)
        if isinstance(unique_labels, (str, bytes)) or not isinstance(unique_labels, Iterable):
            raise TypeError(
                f"unique_labels must be an iterable of label indices (e.g. [0, 1] or (), for "
                f"none), got {unique_labels!r}"
            )
        labels = list(unique_labels)
        if any(isinstance(l, bool) or not isinstance(l, (int, np.integer)) for l in labels):
            raise ValueError(f"unique_labels must hold integer label indices, got {labels!r}")
        if any(not 0 <= l < self.n_labels for l in labels) or len(set(labels)) != len(labels):
            raise ValueError(
                f"unique_labels must be distinct indices in [0, {self.n_labels}), got {labels!r}"
            )
        self.unique_labels = tuple(sorted(int(l) for l in labels))

    # ------------------------------------------------------------------ factor graph
    def build(self, graph: FactorGraph) -> None:
        """Per-arc at-most-one factors, plus one at-most-one per head and unique label."""
        super().build(graph)
        n_nodes = graph.event_shape[0]
        for h in range(n_nodes):
            mods = [m for m in range(1, n_nodes) if m != h]
            if len(mods) < 2:
                continue
            for label in self.unique_labels:
                graph.at_most_one([(h, m, label) for m in mods])

    def _allowed(self, choice: np.ndarray, arcs: list[tuple[int, int]], labels: int) -> np.ndarray:
        keep = np.ones(len(choice), dtype=bool)
        heads = np.array([h for h, _ in arcs])
        for h in np.unique(heads):
            for label in self.unique_labels:
                keep &= (choice[:, heads == h] == label + 1).sum(axis=1) <= 1
        return keep

    # ------------------------------------------------------------------ MAP
    def map_one(self, scores: np.ndarray) -> np.ndarray:
        """Exact combinatorial MAP: best fallback label per arc, then an assignment per head."""
        return self.map_batch(torch.from_numpy(scores)[None], None)[0].numpy()

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Per arc the best positive label without unique labels (torch, on the input's device);
        with them the compiled per-head assignment (:mod:`spigot.polytopes._semantic_graph_map`,
        on the CPU, one host transfer each way)."""
        if not self.unique_labels:
            return _best_labels(scores, lengths)
        values = host_scores(scores)
        nodes = host_lengths(lengths, values.shape[0], values.shape[1] - 1) + 1
        unique = np.array(self.unique_labels, dtype=np.int64)
        free = np.setdiff1d(np.arange(self.n_labels), unique).astype(np.int64)
        out = np.zeros_like(values)
        map_kernel.semantic_graph_map(values, nodes, unique, free, out)
        return torch.from_numpy(out).to(device=scores.device, dtype=scores.dtype)

    def relaxation(self) -> LabeledArcs:
        """The per-arc polytope :class:`LabeledArcs` (drops the unique-label constraints)."""
        if "_relaxation" not in self.__dict__:
            self._relaxation = LabeledArcs(self.n_labels)
        return self._relaxation

    #: The constraints are totally unimodular, so the local polytope is conv(Z) and AD3-QP
    #: (batched ADMM onto it, at a tight tolerance) gives the projection onto conv(Z), far faster
    #: than cvxpy and the active-set method (see the "AD3-QP" section of ``docs/benchmarks.md``).
    preferred_exact_solver = ("ad3", {"tol": 1e-9})

    def relaxed_projection(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The reference implementation's procedure :func:`spigot.projections.clip_project_labeled_arcs`."""
        return reference_projection(x, lengths)

