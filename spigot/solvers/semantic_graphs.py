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

The ``exact`` solver of :class:`~spigot.polytopes.SemanticGraph` is ``cvxpy``: its constraints
are totally unimodular, so the QP onto them is the projection onto :math:`\mathrm{conv}(Z)`,
and an interior-point method is far faster there than the active-set method (see the
"Semantic graphs" section of ``docs/benchmarks.md``).
"""

from __future__ import annotations

import torch

from spigot.polytopes.base import Polytope
from spigot.polytopes.semantic_graph import LabeledArcs, SemanticGraph
from spigot.projections import labeled_arcs_projection, reference_projection
from spigot.solvers.closed_form import register_closed_form
from spigot.solvers.exact import register_exact_solver
from spigot.solvers.relaxed import register_relaxed_projection


def _closed_form(polytope: Polytope, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    return labeled_arcs_projection(x, lengths)


def _reference(polytope: Polytope, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    return reference_projection(x, lengths)


register_closed_form(LabeledArcs, _closed_form)
register_relaxed_projection(SemanticGraph, _reference)
register_exact_solver(SemanticGraph, "cvxpy")
