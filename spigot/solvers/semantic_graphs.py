r"""Projections registered for semantic graphs: the per-arc closed form, the reference procedure, the exact solver.

The two per-arc projections act on arrays of shape ``(..., n+1, n+1, L)`` arc by arc
(non-arcs and padding are output as 0) and are differentiable torch functions.

- :func:`project_labeled_arcs` is the Euclidean projection onto
  :math:`\{y \ge 0 : \sum_l y_l \le 1\}` for every arc, :math:`y = \mathrm{clip}(x - \tau, 0, 1)`
  with :math:`\tau = 0` when the clipped vector already sums to at most 1; it is the
  ``closed-form`` solver of :class:`~spigot.polytopes.LabeledArcs`.
- :func:`clip_project_labeled_arcs` is the procedure of the SPIGOT reference implementation
  for semantic graphs (``ProjectSDP``): the arc's unlabeled value
  :math:`a = \mathrm{clip}(\sum_l x_l, 0, 1)` (at a vertex, whether the arc is present) is fixed
  first, then the labels are projected onto :math:`\{y \in [0, 1]^L : \sum_l y_l = a\}`
  (all 0 when :math:`a = 0`). It lands in the same per-arc polytope but is *not* the Euclidean
  projection onto it; it is the ``relaxed`` solver of :class:`~spigot.polytopes.SemanticGraph`.

The ``exact`` solver of :class:`~spigot.polytopes.SemanticGraph` is ``ad3`` (AD3-QP, batched
ADMM onto the local polytope, at ``tol=1e-9``): its constraints are totally unimodular, so the
local polytope is :math:`\mathrm{conv}(Z)` and the projection onto it is exact to the solver's
tolerance; it is far faster there than ``cvxpy`` (interior point, one instance at a time) and the
active-set method (see the "AD3-QP" section of ``docs/benchmarks.md``).
"""

from __future__ import annotations

import torch

from spigot._batch import Array, as_batch, to_tensor
from spigot.polytopes.base import Polytope
from spigot.polytopes._word_graphs import arc_mask
from spigot.polytopes.semantic_graph import LabeledArcs, SemanticGraph
from spigot.solvers.closed_form import register_closed_form
from spigot.solvers.ad3_qp import EXACT_TOL
from spigot.solvers.exact import register_exact_solver
from spigot.solvers.projections import project_budget
from spigot.solvers.relaxed import register_relaxed_projection

__all__ = ["clip_project_labeled_arcs", "project_labeled_arcs"]


def _arcs(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``(B, N, N, 1)`` arc mask for a flat batch ``x`` of shape ``(B, N, N, L)``."""
    return arc_mask(lengths, x.shape[1], x.shape[0], x.device)[..., None]


def labeled_arcs_projection(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Exact per-arc projection of a validated flat batch ``(B, N, N, L)``."""
    return project_budget(x, 1, at_most=True, validate=False) * _arcs(x, lengths)


def reference_projection(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """The reference implementation's clip-then-project procedure on a validated flat batch."""
    mask = _arcs(x, lengths)
    x = x * mask
    radius = x.sum(dim=-1, keepdim=True).clamp(0.0, 1.0)
    return _scaled_simplex_projection(x, radius) * mask


def _scaled_simplex_projection(x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    r"""Projection of each row onto :math:`\{y \ge 0 : \sum y = r\}` (0 where :math:`r = 0`).

    :math:`y = (x - \tau)_+` with :math:`\tau = (\sum_{i \le \rho} u_i - r) / \rho` for the
    sorted :math:`u` and the largest :math:`\rho` with :math:`\rho\, u_\rho > \sum_{i \le \rho}
    u_i - r` (Held et al. 1974).
    """
    u = torch.sort(x, dim=-1, descending=True).values
    excess = u.cumsum(dim=-1) - radius
    ranks = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    support = (u * ranks > excess).sum(dim=-1, keepdim=True)
    tau = excess.gather(-1, (support - 1).clamp(min=0)) / support.clamp(min=1)
    return torch.where(radius > 0, (x - tau).clamp(min=0.0), torch.zeros_like(x))


def _validated(x: Array, lengths: Array | None):
    tensor, _ = to_tensor(x, "x")
    if tensor.ndim < 3:
        raise ValueError(f"x must have shape (..., n+1, n+1, L), got shape {tuple(tensor.shape)}")
    return as_batch(LabeledArcs(tensor.shape[-1]), x, lengths, name="x")


def project_labeled_arcs(x: Array, lengths: Array | None = None) -> Array:
    r"""Euclidean projection onto :class:`~spigot.polytopes.LabeledArcs`, arc by arc.

    Parameters
    ----------
    x
        ``(..., n+1, n+1, L)`` tensor or array.
    lengths
        Optional ``(...)`` integer word counts; padding and non-arcs are output as 0.
    """
    batch = _validated(x, lengths)
    return batch.restore(labeled_arcs_projection(batch.values, batch.lengths))


def clip_project_labeled_arcs(x: Array, lengths: Array | None = None) -> Array:
    r"""The SPIGOT reference procedure for semantic graphs (see the module), arc by arc.

    Parameters are those of :func:`project_labeled_arcs`.
    """
    batch = _validated(x, lengths)
    return batch.restore(reference_projection(batch.values, batch.lengths))


def _closed_form(polytope: Polytope, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    return labeled_arcs_projection(x, lengths)


def _reference(polytope: Polytope, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    return reference_projection(x, lengths)


register_closed_form(LabeledArcs, _closed_form)
register_relaxed_projection(SemanticGraph, _reference)
register_exact_solver(SemanticGraph, "ad3", tol=EXACT_TOL)
