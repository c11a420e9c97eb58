"""The ``closed-form`` solver: exact batched projections for polytopes that have one.

Closed forms are registered per polytope class (exact type, so that a user's subclass, which
may change the vertex set, never inherits one by accident) with :func:`register_closed_form`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from spigot._batch import Array, as_batch
from spigot._lazy import LazyModule
from spigot.polytopes import Budget, HeadSelection, Polytope, ProductOfSimplices, Simplex, UnitCube
from spigot.polytopes._word_graphs import arc_mask, host_lengths, host_scores
from spigot.solvers.base import Solver, assemble
from spigot.solvers.projections import (
    jvp_sum_constrained,
    project_box,
    project_budget,
    project_product_of_simplices,
    project_simplex,
)
from spigot.solvers.registry import register_solver
from spigot.solvers.result import CONVERGED, ProjectionResult

#: The numba-compiled head-selection kernel, compiled (or loaded from numba's cache) at first use.
kernel = LazyModule("spigot.solvers._simplex_kernel")

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

    def requirement(self, polytope: Polytope) -> str:
        return (
            f"no closed-form projection is registered for {type(polytope).__name__} (closed forms "
            f"exist for {sorted(t.__name__ for t in _CLOSED_FORMS)}; a subclass never inherits one)"
        )

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


class _HeadSelectionProjection(torch.autograd.Function):
    """Columns onto simplices; on CPU tensors one compiled pass over the batch, no masks built."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        batch, size, _ = x.shape
        if x.device.type == "cpu":
            values = host_scores(x)
            out = np.zeros_like(values)
            kernel.head_selection_projections(values, host_lengths(lengths, batch, size - 1), out)
            p = torch.from_numpy(out).to(x.dtype)
        else:
            valid = arc_mask(lengths, size, batch, x.device).transpose(-1, -2)
            p = project_simplex(x.transpose(-1, -2), mask=valid, validate=False).transpose(-1, -2)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (p,) = ctx.saved_tensors
        jvp = jvp_sum_constrained(grad.transpose(-1, -2), (p > 0).transpose(-1, -2))
        return jvp.transpose(-1, -2), None


def _project_head_selection(poly: HeadSelection, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Project every column ``x[:, m]`` onto the simplex over the heads ``h != m``, ``h <= n``.

    The Jacobian is that of each column's simplex projection (see
    :mod:`spigot.solvers.projections`), taken along the heads axis.
    """
    return _HeadSelectionProjection.apply(x, lengths)


register_closed_form(HeadSelection, _project_head_selection)
