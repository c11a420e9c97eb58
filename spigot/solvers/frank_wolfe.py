r"""The Frank-Wolfe family for the projection :math:`\min_{p \in \mathrm{conv}(Z)} \tfrac12\|p - x\|^2`.

Each iteration calls the oracle once, :math:`v = \mathrm{map}(x - p)`; the Frank-Wolfe duality
gap :math:`\langle x - p, v - p\rangle` is exactly the projection certificate, so the methods
stop on it. The objective is quadratic, so the line search is exact:
:math:`\gamma = \mathrm{clip}(\langle x - p, d\rangle / \|d\|^2, 0, \gamma_{\max})`.

- :class:`FrankWolfe`: step towards :math:`v` (sublinear :math:`O(1/t)` rate);
- :class:`AwayFrankWolfe`: also steps away from the worst active vertex (linear rate on
  polytopes; Lacoste-Julien and Jaggi 2015);
- :class:`PairwiseFrankWolfe`: moves weight from the worst active vertex to :math:`v`.

All three keep the iterate as an explicit convex combination of the vertices visited. They run
on the CPU (float64 numpy, the polytope's ``map_one`` as oracle): a batch on a GPU is copied to
host memory once per batch and the results moved back once (see
:class:`~spigot.solvers.base.InstanceSolver`).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from spigot.polytopes.base import Polytope
from spigot.solvers.base import (
    InstanceOutcome,
    InstanceSolver,
    check_max_iter,
    check_max_time,
    check_tol,
    deadline,
    flat_oracle,
    flat_start,
)
from spigot.solvers.certificate import gap_threshold
from spigot.solvers.registry import register_solver
from spigot.solvers.result import CONVERGED, MAX_ITER, STALLED, TIME_LIMIT

#: Default tolerance of all three variants (chosen by ``benchmarks/frank_wolfe_defaults.py``, see
#: the solver guide): the pairwise and away-step methods met it on every measured instance
#: within :data:`DEFAULT_MAX_ITER`, at most 1.3e-7 from the exact projection.
DEFAULT_TOL = 1e-10
#: Default budget of MAP calls of all three variants: above the 95th percentile (1,410) of the
#: away-step method's iterations at :data:`DEFAULT_TOL` in that measurement.
DEFAULT_MAX_ITER = 2000

_WEIGHT_EPS = 1e-14
_REFRESH = 64  # recompute p from the weights every this many iterations, against drift


class FrankWolfe(InstanceSolver):
    r"""Vanilla Frank-Wolfe with exact line search.

    Runs on the CPU: a batch on a GPU is copied to host memory once per batch and the results
    moved back once.

    Parameters
    ----------
    tol
        Stop when the duality gap :math:`\le \mathrm{tol}\cdot\max(1, \|x - p\|_1)`
        (default ``1e-10``, the same for the three variants).
    max_iter
        Maximum number of iterations (MAP calls); reaching it gives ``success=False`` (default
        2,000, the same for the three variants; vanilla Frank-Wolfe converges sublinearly and
        often uses all of it).
    max_time
        Time budget in seconds for each instance (default 30); a run that exceeds it stops with
        ``success=False`` and status 4 (``math.inf``: no budget).
    init
        Warm start (see :class:`~spigot.solvers.base.InstanceSolver`); default
        :math:`\mathrm{map}(x)`.
    """

    name = "frank-wolfe"
    exact = True

    def __init__(
        self,
        tol: float = DEFAULT_TOL,
        max_iter: int = DEFAULT_MAX_ITER,
        max_time: float = 30.0,
        init: Any = None,
    ) -> None:
        super().__init__(init)
        self.tol = check_tol(tol)
        self.max_iter = check_max_iter(max_iter)
        self.max_time = check_max_time(max_time)

    def solve_one(
        self,
        polytope: Polytope,
        x: np.ndarray,
        start: tuple[np.ndarray, np.ndarray] | None,
    ) -> InstanceOutcome:
        shape = x.shape
        return self.iterate(flat_oracle(polytope, shape), x, start)

    def iterate(
        self,
        oracle: Callable[[np.ndarray], np.ndarray],
        x: np.ndarray,
        start: tuple[np.ndarray, np.ndarray] | None,
    ) -> InstanceOutcome:
        """Run the method on one instance ``x`` with any linear maximisation oracle.

        ``oracle(scores)`` maps flat scores to a flat maximiser over the polytope; ``start`` is as
        in :meth:`solve_one`.
        """
        shape = x.shape
        xf = x.ravel()
        vertices, weights = (oracle(xf)[None], np.ones(1)) if start is None else flat_start(start)
        vertices = [row for row in vertices]
        weights = list(weights)
        p = np.sum([w * v for w, v in zip(weights, vertices)], axis=0)
        status, message, nit, gap = MAX_ITER, "", 0, None
        stop_at = deadline(self.max_time)
        for nit in range(1, self.max_iter + 1):
            if nit % _REFRESH == 0:
                p = np.sum([w * v for w, v in zip(weights, vertices)], axis=0)
            residual = xf - p
            v = oracle(residual)
            gap = residual @ (v - p)
            if gap <= gap_threshold(residual, self.tol):
                status = CONVERGED
                break
            if time.perf_counter() > stop_at:
                status = TIME_LIMIT
                message = f"stopped at max_time={self.max_time:g} s after {nit} iterations with gap {gap:.3e}"
                break
            direction, gamma_max, towards, away = self._direction(residual, p, v, vertices, weights, gap)
            norm2 = direction @ direction
            if norm2 == 0.0:
                status, message = STALLED, f"stalled: zero step direction with gap {gap:.3e}"
                break
            gamma = min(max((residual @ direction) / norm2, 0.0), gamma_max)
            if gamma == 0.0:
                status, message = STALLED, f"stalled: zero step size with gap {gap:.3e}"
                break
            p = p + gamma * direction
            self._update(vertices, weights, v, towards, away, gamma)
            gap = None  # p moved: the last gap no longer certifies it
        if gap is None:
            residual = xf - p
            gap = residual @ (oracle(residual) - p)
        weights_arr = np.array(weights)
        return InstanceOutcome(
            p=p.reshape(shape),
            nit=nit,
            status=status,
            message=message,
            vertices=np.array(vertices).reshape(-1, *shape),
            weights=weights_arr / weights_arr.sum(),
            gap=float(gap),
        )

    def _direction(self, residual, p, v, vertices, weights, gap):
        """Step direction, largest step, and which vertices gain/lose weight."""
        return v - p, 1.0, True, None

    def _update(self, vertices, weights, v, towards, away, gamma) -> None:
        """Update the convex weights after a step of size ``gamma``."""
        if towards and away is None:  # p <- (1 - gamma) p + gamma v
            for i in range(len(weights)):
                weights[i] *= 1.0 - gamma
            _add_weight(vertices, weights, v, gamma)
        elif not towards:  # away step: p <- (1 + gamma) p - gamma a
            for i in range(len(weights)):
                weights[i] *= 1.0 + gamma
            weights[away] -= gamma
        else:  # pairwise: move gamma from a to v
            weights[away] -= gamma
            _add_weight(vertices, weights, v, gamma)
        _drop_zeros(vertices, weights)


def _add_weight(vertices: list, weights: list, v: np.ndarray, amount: float) -> None:
    for i, u in enumerate(vertices):
        if np.array_equal(u, v):
            weights[i] += amount
            return
    vertices.append(v)
    weights.append(amount)


def _drop_zeros(vertices: list, weights: list) -> None:
    for i in reversed(range(len(weights))):
        if weights[i] <= _WEIGHT_EPS and len(weights) > 1:
            del vertices[i], weights[i]


def _away_vertex(residual: np.ndarray, vertices: list) -> int:
    """Active vertex with the largest gradient :math:`\\langle p - x, a\\rangle`."""
    return int(np.argmin([residual @ a for a in vertices]))


@register_solver("away-frank-wolfe")
class AwayFrankWolfe(FrankWolfe):
    """Frank-Wolfe with away steps (Guélat and Marcotte 1986); linear convergence on polytopes.

    Options and defaults as :class:`FrankWolfe`.
    """

    name = "away-frank-wolfe"

    def _direction(self, residual, p, v, vertices, weights, gap):
        a = _away_vertex(residual, vertices)
        away_gap = residual @ (p - vertices[a])
        if gap >= away_gap:
            return v - p, 1.0, True, None
        wa = weights[a]
        gamma_max = wa / (1.0 - wa) if wa < 1.0 else np.inf
        return p - vertices[a], gamma_max, False, a


@register_solver("pairwise-frank-wolfe")
class PairwiseFrankWolfe(FrankWolfe):
    """Pairwise Frank-Wolfe (Lacoste-Julien and Jaggi 2015): shifts weight from away to FW vertex.

    Options and defaults as :class:`FrankWolfe`.
    """

    name = "pairwise-frank-wolfe"

    def _direction(self, residual, p, v, vertices, weights, gap):
        a = _away_vertex(residual, vertices)
        return v - vertices[a], weights[a], True, a


register_solver("frank-wolfe")(FrankWolfe)
