"""The ``closed-form`` solver: exact batched projections for polytopes that have one.

A polytope names its closed form by declaring ``closed_form_projection`` in its class body
(read through :meth:`~spigot.polytopes.Polytope.closed_form`; not inherited, so that a user's
subclass, which may change the vertex set, never inherits one by accident).
"""

from __future__ import annotations

import torch

from spigot._batch import Batch
from spigot.polytopes import Polytope
from spigot.solvers.base import Solution, Solver, Start
from spigot.solvers.registry import register_solver
from spigot.solvers.result import CONVERGED


@register_solver("closed-form")
class ClosedFormSolver(Solver):
    """Exact projection by the closed form the polytope declares (batched torch; no iterations).

    The built-in closed forms run on the input's device with no host transfer (on CPU tensors
    the simplex projection uses a compiled kernel instead); the certificate uses the polytope's
    batched oracle.
    """

    name = "closed-form"
    exact = True

    def supports(self, polytope: Polytope) -> bool:
        return polytope.closed_form() is not None

    def closed_form_for(self, polytope: Polytope) -> Polytope | None:
        return polytope if self.supports(polytope) else None

    def requirement(self, polytope: Polytope) -> str:
        return (
            f"{type(polytope).__name__} declares no closed-form projection (closed_form_projection "
            "in its class body; a subclass never inherits one)"
        )

    def solve(self, polytope: Polytope, batch: Batch, start: Start | None = None) -> Solution:
        """The closed form on the flat batch (no iterations; ``start`` is ignored)."""
        fn = polytope.closed_form()
        if fn is None:
            raise ValueError(
                f"{type(polytope).__name__} declares no closed-form projection "
                "(closed_form_projection in its class body); use solver='exact' to pick the best "
                "available solver"
            )
        with torch.no_grad():
            p = fn(batch.values, batch.lengths)
        size = batch.size
        return Solution(p, [0] * size, [CONVERGED] * size, ["closed form"] * size, closed_form=True)
