"""Projection algorithms onto polytopes, each returning a certified :class:`ProjectionResult`.

Use :func:`get_solver` (or :meth:`Polytope.project`) with one of :func:`available_solvers`:
``closed-form``, ``cvxpy``, ``active-set``, ``frank-wolfe``, ``away-frank-wolfe``,
``pairwise-frank-wolfe``, ``relaxed``, ``exact``, ``ad3`` (AD3 on the quadratic problem: batched
ADMM onto a factor graph's local polytope) and ``ad3-frank-wolfe`` (Frank-Wolfe with ad3's
LP-MAP as oracle, which needs the optional ad3 package, built by ``make install``).
"""

from spigot.solvers.active_set import ActiveSet
from spigot.solvers.ad3_qp import Ad3QP
from spigot.solvers.ad3_solver import Ad3FrankWolfe
from spigot.solvers.base import InstanceOutcome, InstanceSolver, Solver
from spigot.solvers.certificate import certificate_gap
from spigot.solvers.closed_form import ClosedFormSolver
from spigot.solvers.cvxpy_qp import CvxpyQP
from spigot.solvers.exact import Exact
from spigot.solvers.frank_wolfe import AwayFrankWolfe, FrankWolfe, PairwiseFrankWolfe
from spigot.projections import (
    clip_project_labeled_arcs,
    head_selection_residual,
    project_box,
    project_budget,
    project_head_selection,
    project_labeled_arcs,
    project_product_of_simplices,
    project_simplex,
)
from spigot.solvers.registry import available_solvers, get_solver, register_solver, solver_options
from spigot.solvers.relaxed import Relaxed
from spigot.solvers.result import ProjectionResult

__all__ = [
    "ActiveSet",
    "Ad3FrankWolfe",
    "Ad3QP",
    "AwayFrankWolfe",
    "ClosedFormSolver",
    "CvxpyQP",
    "Exact",
    "FrankWolfe",
    "InstanceOutcome",
    "InstanceSolver",
    "PairwiseFrankWolfe",
    "ProjectionResult",
    "Relaxed",
    "Solver",
    "available_solvers",
    "certificate_gap",
    "clip_project_labeled_arcs",
    "get_solver",
    "head_selection_residual",
    "project_box",
    "project_budget",
    "project_head_selection",
    "project_labeled_arcs",
    "project_product_of_simplices",
    "project_simplex",
    "register_solver",
    "solver_options",
]
