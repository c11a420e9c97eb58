"""The unit cube and its budget slices: any subset, exactly k, or at most k of d items.

MAP and marginals are batched torch and run on the input's device (no host transfer).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from spigot._lazy import LazyModule
from spigot.polytopes._shifted_scores import check_marginals, shift_by_max
from spigot.polytopes._distributions import subset_samples
from spigot.polytopes.base import Polytope
from spigot.polytopes.simplex import _prefix_mask
from spigot.projections import project_box, project_budget

cp = LazyModule("cvxpy")


class UnitCube(Polytope):
    r"""The unit cube :math:`[0, 1]^d = \mathrm{conv}\{0, 1\}^d`: any subset of d items.

    MAP is the sign test :math:`z_i = [s_i > 0]`; the marginals are :math:`\sigma(s)`, the
    log-partition :math:`\sum_i \log(1 + e^{s_i})`, and :meth:`sample` draws independent
    Bernoulli variables of means :math:`\sigma(s)` (exact). ``lengths`` counts the valid items.
    """

    event_ndim = 1

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        return (scores > 0).astype(np.float64)

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        out = (scores > 0).to(scores.dtype)
        mask = _prefix_mask(lengths, scores.shape[-1], scores.device)
        return out if mask is None else out * mask

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        return [var >= 0, var <= 1]

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        return np.array(list(itertools.product((0.0, 1.0), repeat=event_shape[0])))

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        probs = torch.sigmoid(scores)
        mask = _prefix_mask(lengths, scores.shape[-1], scores.device)
        return probs if mask is None else probs * mask

    def closed_form_projection(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """:func:`spigot.projections.project_box`."""
        return project_box(x, lengths, validate=False)

    def log_partition_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        per_item = torch.nn.functional.softplus(scores)
        mask = _prefix_mask(lengths, scores.shape[-1], scores.device)
        return (per_item if mask is None else per_item * mask).sum(dim=-1)

    def sample_batch(
        self, scores: torch.Tensor, lengths: torch.Tensor | None, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        probs = self.marginals_batch(scores, lengths).to(torch.float64)
        uniform = torch.rand((n, *probs.shape), generator=generator, dtype=torch.float64, device=probs.device)
        return (uniform < probs).to(scores.dtype)


class Budget(Polytope):
    r"""Subsets of exactly ``k`` (or, with ``at_most=True``, at most ``k``) of d items.

    .. math::
        P = \{p \in [0, 1]^d : \textstyle\sum_i p_i = k\} \quad\text{or}\quad
        \{p \in [0, 1]^d : \textstyle\sum_i p_i \le k\},

    both integral polytopes whose vertices are the indicator vectors of the subsets. MAP takes
    the ``k`` highest scores (only the positive ones when ``at_most``). The marginals come from
    the log-partition function :math:`\log \sum_{|S| = k} e^{s(S)}`, an elementary symmetric
    polynomial computed by a log-space dynamic program in :math:`O(dk)` (:meth:`log_partition`);
    :meth:`sample` is exact, by backward sampling through the same tables (at most ``k``: the
    size first, then the items).

    Parameters
    ----------
    k
        The budget, a positive integer. With ``at_most=False`` every instance needs at least
        ``k`` valid items.
    at_most
        Whether subsets may have fewer than ``k`` items.
    """

    event_ndim = 1

    def __init__(self, k: int, at_most: bool = False) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = int(k)
        self.at_most = bool(at_most)

    def has_constant_vertex_sum(self) -> bool:
        return not self.at_most

    def check_event_shape(self, event_shape: tuple[int, ...], name: str = "scores") -> None:
        super().check_event_shape(event_shape, name)
        if not self.at_most and event_shape[0] < self.k:
            raise ValueError(
                f"{name} has {event_shape[0]} items, fewer than the budget k={self.k} of {self!r}"
            )

    def min_length(self, event_shape: tuple[int, ...]) -> int:
        return 1 if self.at_most else self.k

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        order = np.argsort(-scores, kind="stable")[: self.k]
        if self.at_most:
            order = order[scores[order] > 0]
        out = np.zeros_like(scores)
        out[order] = 1.0
        return out

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        mask = _prefix_mask(lengths, scores.shape[-1], scores.device)
        masked = scores if mask is None else scores.masked_fill(~mask, float("-inf"))
        k = min(self.k, scores.shape[-1])
        top = masked.topk(k, dim=-1)
        keep = torch.ones_like(top.values)
        if self.at_most:
            keep = (top.values > 0).to(scores.dtype)
        elif mask is not None:
            keep = torch.isfinite(top.values).to(scores.dtype)
        return torch.zeros_like(scores).scatter_(-1, top.indices, keep)

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        total = cp.sum(var) <= self.k if self.at_most else cp.sum(var) == self.k
        return [var >= 0, var <= 1, total]

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        d = event_shape[0]
        sizes = range(0, self.k + 1) if self.at_most else (self.k,)
        rows = []
        for size in sizes:
            for subset in itertools.combinations(range(d), size):
                row = np.zeros(d)
                row[list(subset)] = 1.0
                rows.append(row)
        return np.array(rows)

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        with torch.enable_grad():
            leaf = scores if scores.requires_grad else scores.detach().requires_grad_(True)
            log_z = self._log_partition(leaf, lengths)
            (mu,) = torch.autograd.grad(log_z.sum(), leaf, create_graph=scores.requires_grad)
        items = torch.full((scores.shape[0],), scores.shape[1]) if lengths is None else lengths
        totals = items.clamp(max=self.k) if self.at_most else torch.full_like(items, self.k)
        check_marginals(mu, totals.to(scores.device), self.at_most, repr(self))
        return mu

    def log_partition_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return self._log_partition(scores, lengths)

    def sample_batch(
        self, scores: torch.Tensor, lengths: torch.Tensor | None, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        valid = _prefix_mask(lengths, scores.shape[-1], scores.device)
        return subset_samples(scores, valid, self.k, self.at_most, n, generator)

    def _log_partition(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        r"""``log sum_{S valid} exp(sum_{i in S} s_i)`` per instance, by a DP over items.

        The DP runs on the scores shifted by their per-instance maximum :math:`c` (a constant for
        autograd): on ``s - c`` its sums keep the resolution of the scores' differences however
        large the scores (with ``s + 1e17`` the unshifted sums absorbed the differences and the
        marginals reached 4). The constant :math:`k c` (or, with ``at_most``, the size's
        :math:`m c` with :math:`m = k` for :math:`c \ge 0` and 0 otherwise) is added back after
        the DP, as a constant, so the value is exact and its gradient is still the marginals.
        """
        batch, d = scores.shape
        valid = _prefix_mask(lengths, d, scores.device)
        shifted = shift_by_max(scores, valid, floor=torch.finfo(scores.dtype).min / (8 * (d + 2)))
        # A finite stand-in for log 0: -inf would give NaN (double) gradients.
        log_zero = torch.finfo(scores.dtype).min / 8
        empty = torch.full((batch, 1), log_zero, dtype=scores.dtype, device=scores.device)
        # table[:, j] = log e_j(exp(t_1..t_i)) for subsets of size j of the items seen so far
        table = torch.cat([torch.zeros_like(empty), empty.expand(batch, self.k)], dim=1)
        for i in range(d):
            take = torch.cat([empty, table[:, :-1] + shifted.values[:, i : i + 1]], dim=1)
            updated = torch.stack([table, take]).logsumexp(dim=0)
            table = updated if valid is None else torch.where(valid[:, i : i + 1], updated, table)
        c = shifted.shift.reshape(-1)
        if not self.at_most:
            return table[:, self.k] + self.k * c
        sizes = torch.arange(self.k + 1, device=scores.device, dtype=scores.dtype)
        # (j - m) c <= 0 for every size j: no overflow, and -inf only where exp underflows anyway
        offset = torch.where(c >= 0, float(self.k), 0.0)
        return torch.logsumexp(table + (sizes - offset[:, None]) * c[:, None], dim=1) + offset * c

    def closed_form_projection(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """:func:`spigot.projections.project_budget` with this budget."""
        return project_budget(x, self.k, self.at_most, lengths, validate=False)
