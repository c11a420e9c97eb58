"""The ``exact`` solver: the fastest exact solver that a polytope supports."""

from __future__ import annotations

from typing import Any

from spigot._batch import Array
from spigot.polytopes.base import Polytope
from spigot.solvers.active_set import ActiveSet
from spigot.solvers.base import Solver
from spigot.solvers.closed_form import ClosedFormSolver
from spigot.solvers.registry import register_solver
from spigot.solvers.result import ProjectionResult


@register_solver("exact")
class Exact(Solver):
    """A registered closed form when there is one, else the MAP-only active-set method.

    Parameters
    ----------
    tol, max_iter, init
        Passed to :class:`~spigot.solvers.active_set.ActiveSet` when it is used.
    """

    name = "exact"
    exact = True
    warm_start = True

    def __init__(self, tol: float = 1e-12, max_iter: int = 1000, init: Any = None) -> None:
        self._closed_form = ClosedFormSolver()
        self._active_set = ActiveSet(tol=tol, max_iter=max_iter, init=init)
        self.tol, self.max_iter, self.init = tol, max_iter, init

    def choose(self, polytope: Polytope) -> Solver:
        """The solver used for ``polytope``."""
        return self._closed_form if self._closed_form.supports(polytope) else self._active_set

    def run(
        self, polytope: Polytope, x: Array, lengths: Array | None = None, init: Any = None
    ) -> ProjectionResult:
        solver = self.choose(polytope)
        if solver is self._active_set:
            return solver.run(polytope, x, lengths, init=init)
        return solver.run(polytope, x, lengths)
