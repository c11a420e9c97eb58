r"""The ``ad3-frank-wolfe`` solver: approximate projection onto any factor-graph polytope, with ad3's LP-MAP as the Frank-Wolfe oracle.

The projection :math:`\min_{p \in P} \tfrac12 \|p - x\|^2` is solved by a Frank-Wolfe method
(pairwise by default) whose linear maximisation oracle is ad3's LP-MAP (``solve_lp_map_ad3``)
on the polytope's factor graph, through the polytope's ``ad3_map_one``:

- on a :class:`~spigot.polytopes.FactorGraphPolytope`, :math:`P = \mathrm{conv}(Z)` (whatever
  faster MAP the polytope's own :meth:`map` uses): ad3's integral LP solutions are MAPs, and
  an exact integer program decides where ad3 ends fractional or stalls;
- on a :class:`~spigot.polytopes.LocalPolytope`, :math:`P` is the local polytope: ad3's LP
  solution, with the exact LP where ADMM stalls.

``max_iter`` bounds the oracle calls and so trades accuracy for time: the iterate is always a
convex combination of oracle outputs, and after the run its certificate gap is computed with
the polytope's own exact MAP, like every solver's; ``success`` says whether the gap reached
``tol`` within the budget.

It is the slow reference: the ``ad3`` solver (:mod:`spigot.solvers.ad3_qp`) runs AD3 on the
quadratic problem itself, batched.

ad3 runs on the CPU: a batch on a GPU is copied to host memory once per batch (never once per
instance), and the projection, active sets and weights go back to the input's device in one
transfer each (see :class:`~spigot.solvers.base.InstanceSolver`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spigot._batch import Array, Batch
from spigot.errors import UnsupportedOperation
from spigot.polytopes._ad3 import Ad3Options, require_ad3
from spigot.polytopes.base import Polytope
from spigot.polytopes.factor_graph import is_ad3_backed
from spigot.solvers.base import InstanceOutcome, InstanceSolver, Solution, Start, check_max_iter, check_tol
from spigot.solvers.frank_wolfe import AwayFrankWolfe, FrankWolfe, PairwiseFrankWolfe
from spigot.solvers.registry import register_solver
from spigot.solvers.result import ProjectionResult

#: Frank-Wolfe variants by name.
VARIANTS: dict[str, type[FrankWolfe]] = {
    "pairwise": PairwiseFrankWolfe,
    "away": AwayFrankWolfe,
    "vanilla": FrankWolfe,
}


@register_solver("ad3-frank-wolfe")
class Ad3FrankWolfe(InstanceSolver):
    r"""Frank-Wolfe projection with ad3's MAP (or LP-MAP) as linear oracle; approximate.

    Parameters
    ----------
    tol
        Stop when the Frank-Wolfe gap :math:`\le \mathrm{tol}\cdot\max(1, \|x - p\|_1)`.
    max_iter
        Budget of Frank-Wolfe iterations, one ad3 solve each; more is slower and more accurate.
    variant
        ``"pairwise"`` (default), ``"away"`` (both converge linearly on polytopes) or
        ``"vanilla"``.
    ad3_max_iter, ad3_tol
        ad3's own ADMM iteration limit and residual threshold for each oracle call.
    max_time
        Time budget in seconds for each instance (default 60: every oracle call is an ADMM solve); beyond it the run stops with
        ``success=False`` and status 4.
    init
        Warm start (see :class:`~spigot.solvers.base.InstanceSolver`).
    """

    name = "ad3-frank-wolfe"
    exact = False

    def __init__(
        self,
        tol: float = 1e-6,
        max_iter: int = 200,
        variant: str = "pairwise",
        ad3_max_iter: int = 10000,
        ad3_tol: float = 1e-8,
        max_time: float = 60.0,
        init: Any = None,
    ) -> None:
        super().__init__(init)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.tol = check_tol(tol)
        self.max_iter = check_max_iter(max_iter)
        self.variant = variant
        self.ad3_max_iter = check_max_iter(ad3_max_iter)
        self.ad3_tol = check_tol(ad3_tol)
        self._method = VARIANTS[variant](tol=self.tol, max_iter=self.max_iter, max_time=max_time)
        self.max_time = self._method.max_time

    def supports(self, polytope: Polytope) -> bool:
        return is_ad3_backed(polytope)

    def requirement(self, polytope: Polytope) -> str:
        return f"the 'ad3-frank-wolfe' solver needs a FactorGraphPolytope (or its LocalPolytope), got {type(polytope).__name__}"

    def run(
        self, polytope: Polytope, x: Array, lengths: Array | None = None, init: Any = None
    ) -> ProjectionResult:
        if not self.supports(polytope):
            raise UnsupportedOperation(
                f"the 'ad3-frank-wolfe' solver needs a FactorGraphPolytope (or its LocalPolytope), got "
                f"{type(polytope).__name__}; use 'active-set' or 'pairwise-frank-wolfe' instead"
            )
        require_ad3()
        return super().run(polytope, x, lengths, init=init)

    def solve(self, polytope: Polytope, batch: Batch, start: Start | None = None) -> Solution:
        """Frank-Wolfe with ad3's oracle on every instance of the flat batch."""
        if not self.supports(polytope):
            raise UnsupportedOperation(
                f"the 'ad3' solver needs a FactorGraphPolytope (or its LocalPolytope), got "
                f"{type(polytope).__name__}; use 'active-set' or 'pairwise-frank-wolfe' instead"
            )
        require_ad3()
        return super().solve(polytope, batch, start)

    def solve_one(
        self,
        polytope: Polytope,
        x: np.ndarray,
        start: tuple[np.ndarray, np.ndarray] | None,
    ) -> InstanceOutcome:
        options = Ad3Options(max_iter=self.ad3_max_iter, tol=self.ad3_tol)
        shape = x.shape

        def oracle(scores: np.ndarray) -> np.ndarray:
            return polytope.ad3_map_one(scores.reshape(shape), options).ravel()

        return self._method.iterate(oracle, x, start)
