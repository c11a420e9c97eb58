"""The ``relaxed`` solver: project onto ``polytope.relaxation()``, as the SPIGOT paper does."""

from __future__ import annotations

from typing import Any

from spigot._batch import Array
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver
from spigot.solvers.registry import get_solver, register_solver
from spigot.solvers.result import ProjectionResult


@register_solver("relaxed")
class Relaxed(Solver):
    """Projection onto the polytope's cheap outer relaxation (Peng et al. 2018, Sec. 3).

    The result is generally *not* in the polytope itself; its certificate ``gap`` is measured
    against the relaxation.

    Parameters
    ----------
    inner
        Solver (name or instance) used on the relaxation; ``"exact"`` by default.
    inner_options
        Options for ``inner`` when it is a name.
    """

    name = "relaxed"
    exact = False

    def __init__(self, inner: Any = "exact", inner_options: dict[str, Any] | None = None) -> None:
        self.inner = get_solver(inner, **(inner_options or {}))

    def run(self, polytope: Polytope, x: Array, lengths: Array | None = None) -> ProjectionResult:
        return self.inner.run(polytope.relaxation(), x, lengths)
