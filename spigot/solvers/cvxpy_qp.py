r"""Exact projection as a quadratic program in cvxpy, from the polytope's own constraints.

.. math:: \min_p \tfrac12 \|p - x\|^2 \quad \text{s.t. } p \in P \text{ (polytope.constraints(p))}

The problem is built once per (polytope, instance shape) with cvxpy Parameters, so re-solving for
another instance of that shape reuses the canonicalisation. The objective is solved in the
equivalent, scaled form :math:`\tfrac{1}{2c}\|p\|^2 - \langle p, x / c\rangle` with
:math:`c = \max(1, \|x\|_\infty)`: without it, interior-point solvers declare well-posed
projections of huge inputs (:math:`|x| \sim 10^8`) infeasible.

cvxpy and its QP solvers run on the CPU: a batch on a GPU is copied to host memory once per
batch (never once per instance), solved there in float64, and the projections go back to the
input's device in one transfer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spigot._batch import Batch
from spigot._lazy import LazyModule
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solution, Solver, Start, check_max_iter, check_tol
from spigot.solvers.certificate import gap_threshold
from spigot.solvers.registry import register_solver
from spigot.solvers.result import CONVERGED, FAILED, STALLED


#: Relative tolerance (as in :func:`~spigot.solvers.certificate.gap_threshold`) that the certificate
#: of an "optimal" Clarabel answer must meet. On random instances of every built-in polytope
#: (scales 0.1 to 1e4) the worst gap was 7e-4 of this threshold.
CERTIFICATE_TOL = 1e-9

cp = LazyModule("cvxpy")


@register_solver("cvxpy")
class CvxpyQP(Solver):
    """Exact QP projection through cvxpy (Clarabel by default, tight tolerances).

    Runs on the CPU: a batch on a GPU is copied to host memory once per batch and the
    projections moved back once.

    Parameters
    ----------
    tol
        Clarabel's absolute and relative gap and feasibility tolerances.
    max_iter
        Interior-point iteration limit.
    backend
        The cvxpy solver name (``"CLARABEL"``; any installed QP solver works).
    """

    name = "cvxpy"
    exact = True

    def __init__(self, tol: float = 1e-12, max_iter: int = 200, backend: str = "CLARABEL") -> None:
        self.tol = check_tol(tol)
        self.max_iter = check_max_iter(max_iter)
        if backend not in cp.installed_solvers():
            raise ValueError(
                f"backend {backend!r} is not an installed cvxpy solver; installed: {cp.installed_solvers()}"
            )
        self.backend = backend
        self._problems: dict[tuple[int, tuple[int, ...]], tuple[Any, ...]] = {}

    def supports(self, polytope: Polytope) -> bool:
        return polytope.supports("constraints")

    def requirement(self, polytope: Polytope) -> str:
        return (
            f"{type(polytope).__name__} does not define constraints(var), the cvxpy constraints "
            "of its polytope that the 'cvxpy' solver needs"
        )

    def problem(
        self, polytope: Polytope, shape: tuple[int, ...]
    ) -> tuple[cp.Problem, cp.Parameter, cp.Parameter, cp.Variable]:
        """The cached QP for instances of ``shape``: (problem, weight 1/c, target x/c, variable)."""
        key = (id(polytope), shape)
        if key not in self._problems:
            var = cp.Variable(shape)
            weight = cp.Parameter(nonneg=True)
            target = cp.Parameter(shape)
            objective = cp.Minimize(0.5 * weight * cp.sum_squares(var) - cp.sum(cp.multiply(var, target)))
            problem = cp.Problem(objective, polytope.constraints(var))
            # the polytope is stored too, so that its id cannot be reused while cached
            self._problems[key] = (polytope, problem, weight, target, var)
        return self._problems[key][1:]

    def _options(self) -> dict[str, Any]:
        if self.backend == "CLARABEL":
            return {
                "tol_gap_abs": self.tol,
                "tol_gap_rel": self.tol,
                "tol_feas": self.tol,
                "tol_ktratio": self.tol,
                "max_iter": self.max_iter,
            }
        return {"max_iters": self.max_iter}

    def _certify(
        self, polytope: Polytope, xi: np.ndarray, solution: np.ndarray, status: list[int], message: list[str]
    ) -> None:
        """Demote an "optimal" answer whose certificate exceeds :data:`CERTIFICATE_TOL` to stalled.

        Far from the polytope (``x + 1e17``) the scaled QP loses the differences between the
        entries of ``x`` and the interior-point solver still reports an optimum; the certificate
        (one MAP call) catches it, so such an answer is never a silent success.
        """
        residual = xi - solution
        vertex = np.asarray(polytope.map_one(residual), dtype=np.float64)
        gap = float(residual.ravel() @ (vertex - solution).ravel())
        threshold = gap_threshold(residual, CERTIFICATE_TOL)
        if gap > threshold:
            status[-1] = STALLED
            message[-1] = (
                f"{self.backend} reported an optimum, but its certificate gap {gap:.3e} exceeds "
                f"{threshold:.3e}: x is too far from the polytope (max |x| = {np.abs(xi).max():.3e}) "
                "for the QP in float64; use 'active-set' or a closed form, or recentre x"
            )

    def solve(self, polytope: Polytope, batch: Batch, start: Start | None = None) -> Solution:
        """One QP per instance of the flat batch (``start`` is ignored)."""
        solutions, nit, status, message = [], [], [], []
        for xi in batch.instances():
            problem, weight, target, var = self.problem(polytope, xi.shape)
            scale = max(1.0, float(np.abs(xi).max()))
            weight.value, target.value = 1.0 / scale, xi / scale
            try:
                problem.solve(solver=self.backend, **self._options())
            except cp.error.SolverError as err:
                solutions.append(np.zeros_like(xi))
                nit.append(0)
                status.append(FAILED)
                message.append(f"{self.backend} failed: {err}")
                continue
            stats = problem.solver_stats
            nit.append(int(stats.num_iters or 0) if stats is not None else 0)
            if problem.status == cp.OPTIMAL:
                status.append(CONVERGED)
                message.append(f"{self.backend}: optimal")
            elif problem.status == cp.OPTIMAL_INACCURATE:
                status.append(STALLED)
                message.append(f"{self.backend}: optimal_inaccurate")
            else:
                status.append(FAILED)
                message.append(f"{self.backend}: {problem.status}")
            value = var.value if var.value is not None else np.zeros_like(xi)
            solution = np.asarray(value, dtype=np.float64).reshape(xi.shape)
            if status[-1] == CONVERGED:
                self._certify(polytope, xi, solution, status, message)
            solutions.append(solution)
        return Solution(batch.embed(solutions).to(batch.values.device), nit, status, message)
