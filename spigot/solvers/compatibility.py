"""Whether a solver can run on a structure, checked when a layer is built or a projection is asked.

Each solver says what it needs through :meth:`~spigot.solvers.base.Solver.supports` and
:meth:`~spigot.solvers.base.Solver.requirement`; :func:`check_compatible` turns a mismatch into
an :class:`~spigot.errors.IncompatibleSolver` naming the solver, the structure, what is missing
and what to use instead, before any data flows (never at the first backward pass).
"""

from __future__ import annotations

from spigot.errors import IncompatibleSolver
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver

#: What every structure with a MAP oracle supports, suggested when a solver does not fit.
INSTEAD = (
    "use solver='exact' (the fastest exact solver the structure supports) or 'active-set' "
    "(needs only map_one) instead"
)


def check_compatible(solver: Solver, polytope: Polytope, where: str = "") -> Solver:
    """Return ``solver`` if it can project onto ``polytope``; raise :class:`IncompatibleSolver` otherwise.

    Parameters
    ----------
    solver
        A resolved solver instance.
    polytope
        The structure it will project onto.
    where
        The caller, for the message (``"SPIGOT"``, ``"SparseMAP"``); empty for a plain projection.
    """
    if solver.supports(polytope):
        return solver
    prefix = f"{where}: " if where else ""
    raise IncompatibleSolver(
        f"{prefix}solver {solver.name!r} cannot project onto {type(polytope).__name__}: "
        f"{solver.requirement(polytope)}; {INSTEAD}"
    )
