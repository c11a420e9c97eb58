"""The ``relaxed`` solver: project onto ``polytope.relaxation()``, as the SPIGOT paper does.

Some families' reference code does not compute the Euclidean projection onto the relaxation
but a procedure of its own (for semantic graphs: clip each arc's value, then project its
labels). Such procedures are registered per polytope class (exact type, like closed forms)
with :func:`register_relaxed_projection`; the solver uses them when registered.
"""

from __future__ import annotations

from typing import Any, Callable

import dataclasses

import torch

from spigot._batch import Array, as_batch
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver, assemble
from spigot.solvers.registry import get_solver, register_solver
from spigot.solvers.result import CONVERGED, ProjectionResult, certified_against

#: ``fn(polytope, x (B, *event), lengths (B,) or None) -> p (B, *event)``, torch; ``p`` must lie
#: in ``polytope.relaxation()``.
RelaxedProjection = Callable[[Polytope, torch.Tensor, torch.Tensor | None], torch.Tensor]

_RELAXED: dict[type[Polytope], RelaxedProjection] = {}


def register_relaxed_projection(polytope_type: type[Polytope], fn: RelaxedProjection) -> None:
    """Register the reference procedure ``fn`` of the ``relaxed`` solver for exactly ``polytope_type``."""
    _RELAXED[polytope_type] = fn


def relaxed_projection_for(polytope: Polytope) -> RelaxedProjection | None:
    """The registered relaxed procedure for ``polytope``'s exact type, or ``None``."""
    return _RELAXED.get(type(polytope))


@register_solver("relaxed")
class Relaxed(Solver):
    """Projection onto the polytope's cheap outer relaxation (Peng et al. 2018, Sec. 3).

    When a procedure is registered for the polytope's type (:func:`register_relaxed_projection`),
    that procedure is applied; otherwise ``inner`` projects onto ``polytope.relaxation()``. The
    result is generally *not* in the polytope itself; its certificate ``gap`` is measured
    against the relaxation (so it is positive when a registered procedure is not the Euclidean
    projection onto it), and ``certified_against`` says so:
    ``"HeadSelection (relaxation of Arborescence)"``.

    Parameters
    ----------
    inner
        Solver (name or instance) used on the relaxation; ``"exact"`` by default; it decides
        where the projection runs (a registered procedure runs on the input's device).
    inner_options
        Options for ``inner`` when it is a name.
    """

    name = "relaxed"
    exact = False

    def __init__(self, inner: Any = "exact", inner_options: dict[str, Any] | None = None) -> None:
        self.inner = get_solver(inner, **(inner_options or {}))

    def supports(self, polytope: Polytope) -> bool:
        return relaxed_projection_for(polytope) is not None or self.inner.supports(polytope.relaxation())

    def requirement(self, polytope: Polytope) -> str:
        relaxation = polytope.relaxation()
        return f"its inner solver {self.inner.name!r} on the relaxation: {self.inner.requirement(relaxation)}"

    def run(self, polytope: Polytope, x: Array, lengths: Array | None = None) -> ProjectionResult:
        procedure = relaxed_projection_for(polytope)
        relaxation = polytope.relaxation()
        if procedure is None:
            result = self.inner.run(relaxation, x, lengths)
            return dataclasses.replace(result, certified_against=certified_against(relaxation, polytope))
        batch = as_batch(polytope, x, lengths, name="x")
        with torch.no_grad():
            p = procedure(polytope, batch.values, batch.lengths)
        size = batch.size
        message = [f"{type(polytope).__name__} reference procedure (no iterations)"] * size
        return assemble(relaxation, batch, p, [0] * size, [CONVERGED] * size, message, relaxes=polytope)
