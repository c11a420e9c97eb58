"""The ``closed-form`` solver: exact batched projections for polytopes that have one.

Closed forms are registered per polytope class (exact type, so that a user's subclass, which
may change the vertex set, never inherits one by accident) with :func:`register_closed_form`.
"""

from __future__ import annotations

from typing import Callable

import torch

from spigot._batch import Array, as_batch
from spigot.polytopes import Budget, HeadSelection, Polytope, ProductOfSimplices, Simplex, UnitCube
from spigot.solvers.base import Solver, assemble
from spigot.projections import (
    project_box,
    project_budget,
    project_head_selection,
    project_product_of_simplices,
    project_simplex,
)
from spigot.solvers.registry import register_solver
from spigot.solvers.result import CONVERGED, ProjectionResult

#: ``fn(polytope, x (B, *event), lengths (B,) or None) -> p (B, *event)``, torch, differentiable.
ClosedForm = Callable[[Polytope, torch.Tensor, torch.Tensor | None], torch.Tensor]

_CLOSED_FORMS: dict[type[Polytope], ClosedForm] = {}


def register_closed_form(polytope_type: type[Polytope], fn: ClosedForm) -> None:
    """Register the exact projection ``fn`` for instances of exactly ``polytope_type``."""
    _CLOSED_FORMS[polytope_type] = fn


def closed_form_for(polytope: Polytope) -> ClosedForm | None:
    """The registered closed form for ``polytope``'s exact type, or ``None``."""
    return _CLOSED_FORMS.get(type(polytope))


@register_solver("closed-form")
class ClosedFormSolver(Solver):
    """Exact projection by a registered closed form (batched torch; no iterations).

    The built-in closed forms run on the input's device with no host transfer (on CPU tensors
    the simplex projection uses a compiled kernel instead); the certificate uses the polytope's
    batched oracle.
    """

    name = "closed-form"
    exact = True

    def supports(self, polytope: Polytope) -> bool:
        return closed_form_for(polytope) is not None

    def run(self, polytope: Polytope, x: Array, lengths: Array | None = None) -> ProjectionResult:
        fn = closed_form_for(polytope)
        if fn is None:
            raise ValueError(
                f"no closed-form projection is registered for {type(polytope).__name__}; "
                f"closed forms exist for {sorted(t.__name__ for t in _CLOSED_FORMS)}. "
                "Use solver='exact' to pick the best available solver"
            )
        batch = as_batch(polytope, x, lengths, name="x")
        with torch.no_grad():
            p = fn(polytope, batch.values, batch.lengths)
        size = batch.size
        return assemble(polytope, batch, p, [0] * size, [CONVERGED] * size, ["closed form"] * size)


register_closed_form(Simplex, lambda poly, x, n: project_simplex(x, n, validate=False))
register_closed_form(
    ProductOfSimplices, lambda poly, x, n: project_product_of_simplices(x, n, validate=False)
)
register_closed_form(UnitCube, lambda poly, x, n: project_box(x, n, validate=False))
register_closed_form(
    Budget, lambda poly, x, n: project_budget(x, poly.k, poly.at_most, n, validate=False)
)


register_closed_form(HeadSelection, lambda poly, x, n: project_head_selection(x, n))
