"""The ``exact`` solver: the fastest exact solver that a polytope supports.

The polytope's declared closed form comes first; then the solver it declares as
``preferred_exact_solver`` (a family whose constraints describe its polytope exactly, e.g.
semantic graphs, may prefer ``cvxpy``); then the MAP-only active-set method, which works
everywhere. Declarations are per class and not inherited (see
:class:`~spigot.polytopes.Polytope`).
"""

from __future__ import annotations

from typing import Any

from spigot._batch import Array, Batch
from spigot.polytopes.base import Polytope
from spigot.solvers.active_set import ActiveSet
from spigot.solvers.base import Solution, Solver, Start
from spigot.solvers.closed_form import ClosedFormSolver
from spigot.solvers.registry import get_solver, register_solver, solver_options
from spigot.solvers.result import ProjectionResult


@register_solver("exact")
class Exact(Solver):
    """The declared closed form, else the declared preferred solver, else the MAP-only active-set method.

    The chosen solver decides where the work runs: closed forms on the input's device, the
    others on the CPU with one host transfer per batch each way.

    Parameters
    ----------
    tol, max_iter, max_time, init
        Passed to :class:`~spigot.solvers.active_set.ActiveSet` when it is used.
    """

    name = "exact"
    exact = True
    warm_start = True

    def __init__(
        self, tol: float = 1e-12, max_iter: int = 1000, max_time: float = 30.0, init: Any = None
    ) -> None:
        self._closed_form = ClosedFormSolver()
        self._active_set = ActiveSet(tol=tol, max_iter=max_iter, max_time=max_time, init=init)
        self.max_time = self._active_set.max_time
        self._preferred: dict[str, Solver] = {}
        self.tol, self.max_iter, self.init = tol, max_iter, init

    def choose(self, polytope: Polytope) -> Solver:
        """The solver used for ``polytope``."""
        if self._closed_form.supports(polytope):
            return self._closed_form
        declared = polytope.exact_solver()
        if declared is not None:
            name, options = declared
            key = f"{name}{sorted(options.items())}"
            if key not in self._preferred:  # one instance per declaration keeps solver caches warm
                self._preferred[key] = get_solver(name, **options)
            return self._preferred[key]
        return self._active_set

    def closed_form_for(self, polytope: Polytope) -> Polytope | None:
        return self.choose(polytope).closed_form_for(polytope)

    def solve(self, polytope: Polytope, batch: Batch, start: Start | None = None) -> Solution:
        """The chosen solver's :meth:`~spigot.solvers.base.Solver.solve` (warm-started if it can be)."""
        solver = self.choose(polytope)
        return solver.solve(polytope, batch, start if solver.warm_start else None)

    def run(
        self, polytope: Polytope, x: Array, lengths: Array | None = None, init: Any = None
    ) -> ProjectionResult:
        solver = self.choose(polytope)
        if solver is self._active_set:
            return solver.run(polytope, x, lengths, init=init)
        return solver.run(polytope, x, lengths)
