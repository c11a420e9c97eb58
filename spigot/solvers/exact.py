"""The ``exact`` solver: the fastest exact solver that a polytope supports.

A registered closed form comes first; then a solver registered for the polytope's family with
:func:`register_exact_solver` (exact type, like closed forms: a family whose constraints
describe its polytope exactly, e.g. semantic graphs, may prefer ``cvxpy``); then the MAP-only
active-set method, which works everywhere.
"""

from __future__ import annotations

from typing import Any

from spigot._batch import Array
from spigot.polytopes.base import Polytope
from spigot.solvers.active_set import ActiveSet
from spigot.solvers.base import Solver
from spigot.solvers.closed_form import ClosedFormSolver
from spigot.solvers.registry import get_solver, register_solver, solver_options
from spigot.solvers.result import ProjectionResult

_PREFERRED: dict[type[Polytope], tuple[str, dict[str, Any]]] = {}


def register_exact_solver(polytope_type: type[Polytope], solver: str, **options: Any) -> None:
    """Make ``solver`` (a registered name, with ``options``) the ``exact`` choice for exactly ``polytope_type``.

    Register only a solver that is exact on that family and faster there than active-set.
    """
    unknown = sorted(set(options) - set(solver_options(solver)))  # an unknown name raises here
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for solver {solver!r}; valid options: {solver_options(solver)}")
    _PREFERRED[polytope_type] = (solver, dict(options))


@register_solver("exact")
class Exact(Solver):
    """A registered closed form, else a registered exact solver, else the MAP-only active-set method.

    The chosen solver decides where the work runs: closed forms on the input's device, the
    others on the CPU with one host transfer per batch each way.

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
        self._preferred: dict[type[Polytope], Solver] = {}
        self.tol, self.max_iter, self.init = tol, max_iter, init

    def choose(self, polytope: Polytope) -> Solver:
        """The solver used for ``polytope``."""
        if self._closed_form.supports(polytope):
            return self._closed_form
        family = type(polytope)
        if family in _PREFERRED:
            if family not in self._preferred:  # one instance per family keeps solver caches warm
                name, options = _PREFERRED[family]
                self._preferred[family] = get_solver(name, **options)
            return self._preferred[family]
        return self._active_set

    def run(
        self, polytope: Polytope, x: Array, lengths: Array | None = None, init: Any = None
    ) -> ProjectionResult:
        solver = self.choose(polytope)
        if solver is self._active_set:
            return solver.run(polytope, x, lengths, init=init)
        return solver.run(polytope, x, lengths)
