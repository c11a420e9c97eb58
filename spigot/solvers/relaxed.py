"""The ``relaxed`` solver: project onto ``polytope.relaxation()``, as the SPIGOT paper does.

Some families' reference code does not compute the Euclidean projection onto the relaxation
but a procedure of its own (for semantic graphs: clip each arc's value, then project its
labels). Such a family declares it as ``relaxed_projection`` in its class body (read through
:meth:`~spigot.polytopes.Polytope.relaxed_procedure`; not inherited, like closed forms); the
solver applies it when declared.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any


import torch

from spigot._batch import Array, Batch
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solution, Solver, Start
from spigot.solvers.registry import get_solver, register_solver
from spigot.solvers.result import CONVERGED, ProjectionResult, certified_against


@register_solver("relaxed")
class Relaxed(Solver):
    """Projection onto the polytope's cheap outer relaxation (Peng et al. 2018, Sec. 3).

    When the polytope declares a procedure (:meth:`~spigot.polytopes.Polytope.relaxed_procedure`),
    that procedure is applied; otherwise ``inner`` projects onto ``polytope.relaxation()``. The
    result is generally *not* in the polytope itself; its certificate ``gap`` is measured
    against the relaxation (so it is positive when a declared procedure is not the Euclidean
    projection onto it), and ``certified_against`` says so:
    ``"HeadSelection (relaxation of Arborescence)"``.

    Parameters
    ----------
    inner
        Solver (name or instance) used on the relaxation; ``"exact"`` by default; it decides
        where the projection runs (a declared procedure runs on the input's device).
    inner_options
        Options for ``inner`` when it is a name.
    """

    name = "relaxed"
    exact = False

    def __init__(self, inner: Any = "exact", inner_options: dict[str, Any] | None = None) -> None:
        self.inner = get_solver(inner, **(inner_options or {}))

    def supports(self, polytope: Polytope) -> bool:
        return polytope.relaxed_procedure() is not None or self.inner.supports(polytope.relaxation())

    def requirement(self, polytope: Polytope) -> str:
        relaxation = polytope.relaxation()
        return f"its inner solver {self.inner.name!r} on the relaxation: {self.inner.requirement(relaxation)}"

    def closed_form_for(self, polytope: Polytope) -> Polytope | None:
        """The relaxation when ``inner`` projects onto it by its closed form (no declared procedure)."""
        if polytope.relaxed_procedure() is not None:
            return None
        return self.inner.closed_form_for(polytope.relaxation())

    def run(self, polytope: Polytope, x: Array, lengths: Array | None = None) -> ProjectionResult:
        if polytope.relaxed_procedure() is None:  # checked against the relaxation's own shape rules
            relaxation = polytope.relaxation()
            result = self.inner.run(relaxation, x, lengths)
            return replace(result, certified_against=certified_against(relaxation, polytope))
        return super().run(polytope, x, lengths)

    def solve(self, polytope: Polytope, batch: Batch, start: Start | None = None) -> Solution:
        """The declared procedure, else ``inner`` on the relaxation (warm-started if it can be)."""
        relaxation = polytope.relaxation()
        procedure = polytope.relaxed_procedure()
        if procedure is None:
            solution = self.inner.solve(relaxation, batch, start if self.inner.warm_start else None)
            return solution if relaxation is polytope else replace(solution, against=relaxation)
        with torch.no_grad():
            p = procedure(batch.values, batch.lengths)
        size = batch.size
        message = [f"{type(polytope).__name__} reference procedure (no iterations)"] * size
        return Solution(p, [0] * size, [CONVERGED] * size, message, against=relaxation)
