"""The probability simplex and products of simplices: one choice among k, or one per group.

MAP and marginals are batched torch and run on the input's device (no host transfer).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from spigot._lazy import LazyModule
from spigot.polytopes._distributions import one_hot_samples
from spigot.polytopes.base import Polytope
from spigot.projections import project_product_of_simplices, project_simplex

cp = LazyModule("cvxpy")


def _one_hot_argmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One-hot of the argmax along the last axis, restricted to ``mask`` (padded rows -> 0)."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    index = scores.argmax(dim=-1, keepdim=True)
    out = torch.zeros_like(scores).scatter_(-1, index, 1.0)
    return out if mask is None else out * mask


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.softmax(scores, dim=-1)
    probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return torch.nan_to_num(probs, nan=0.0) * mask


def _prefix_mask(lengths: torch.Tensor | None, size: int, device: torch.device) -> torch.Tensor | None:
    """``(B, size)`` boolean mask, True on the first ``lengths[b]`` positions."""
    if lengths is None:
        return None
    return torch.arange(size, device=device) < lengths.to(device)[:, None]


class Simplex(Polytope):
    r"""The probability simplex :math:`\Delta^k = \mathrm{conv}\{e_1, \dots, e_k\}`.

    One instance has shape ``(k,)``; ``lengths`` counts the valid choices. MAP is the one-hot
    argmax (ties go to the lowest index); the marginals are :math:`\mathrm{softmax}(s)`, the
    log-partition :math:`\log\sum_i e^{s_i}`, and :meth:`sample` draws from the categorical
    distribution :math:`\mathrm{softmax}(s)` (exact).
    """

    event_ndim = 1

    def has_constant_vertex_sum(self) -> bool:
        return True

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        out = np.zeros_like(scores)
        out[np.argmax(scores)] = 1.0
        return out

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return _one_hot_argmax(scores, _prefix_mask(lengths, scores.shape[-1], scores.device))

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        return [var >= 0, cp.sum(var) == 1]

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        return np.eye(event_shape[0])

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return _masked_softmax(scores, _prefix_mask(lengths, scores.shape[-1], scores.device))

    def closed_form_projection(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """:func:`spigot.projections.project_simplex`."""
        return project_simplex(x, lengths, validate=False)

    def log_partition_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        mask = _prefix_mask(lengths, scores.shape[-1], scores.device)
        masked = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
        return torch.logsumexp(masked, dim=-1)

    def sample_batch(
        self, scores: torch.Tensor, lengths: torch.Tensor | None, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        return one_hot_samples(self.marginals_batch(scores, lengths), n, generator)


class ProductOfSimplices(Polytope):
    r"""A product of simplices :math:`\Delta^k \times \dots \times \Delta^k`: one choice per group.

    One instance has shape ``(G, k)`` (row ``g`` is group ``g``'s choice among ``k``);
    ``lengths`` counts the valid groups. Vertices are 0/1 matrices with one 1 per row. The
    groups are independent under :math:`p_s`: the log-partition is the sum of the rows'
    :math:`\log\sum_j e^{s_{gj}}` and :meth:`sample` draws each row from its softmax (exact).
    """

    event_ndim = 2
    sized_axes = (0,)

    def has_constant_vertex_sum(self) -> bool:
        return True

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        out = np.zeros_like(scores)
        out[np.arange(scores.shape[0]), np.argmax(scores, axis=1)] = 1.0
        return out

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        out = _one_hot_argmax(scores, None)
        rows = _prefix_mask(lengths, scores.shape[1], scores.device)
        return out if rows is None else out * rows[:, :, None]

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        return [var >= 0, cp.sum(var, axis=1) == 1]

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        groups, k = event_shape
        eye = np.eye(k)
        return np.array([eye[list(c)] for c in itertools.product(range(k), repeat=groups)])

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)
        rows = _prefix_mask(lengths, scores.shape[1], scores.device)
        return probs if rows is None else probs * rows[:, :, None]

    def closed_form_projection(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """:func:`spigot.projections.project_product_of_simplices`."""
        return project_product_of_simplices(x, lengths, validate=False)

    def log_partition_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        per_group = torch.logsumexp(scores, dim=-1)
        rows = _prefix_mask(lengths, scores.shape[1], scores.device)
        if rows is not None:
            per_group = torch.where(rows, per_group, torch.zeros_like(per_group))
        return per_group.sum(dim=-1)

    def sample_batch(
        self, scores: torch.Tensor, lengths: torch.Tensor | None, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        return one_hot_samples(self.marginals_batch(scores, lengths), n, generator)
