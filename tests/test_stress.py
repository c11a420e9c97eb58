"""Stress: 10,000 random instances per solver, with varied sizes, scales and ties.

Marked slow (skipped by default); run with ``make test-slow``. Every projection must be feasible
and certified; every solver must stop on its own (max_iter bounds each one).
"""

from __future__ import annotations

import zlib

import cvxpy as cp
import numpy as np
import pytest

from polytope_cases import ExactlyTwo
from spigot.polytopes import Budget, ProductOfSimplices, Simplex, UnitCube
from spigot.solvers import get_solver

pytestmark = pytest.mark.slow

N_INSTANCES = 10_000
SOLVERS = ["closed-form", "cvxpy", "active-set", "frank-wolfe", "away-frank-wolfe", "pairwise-frank-wolfe", "exact"]
POLYTOPES = [Simplex(), ProductOfSimplices(), UnitCube(), Budget(2), Budget(3, at_most=True), ExactlyTwo()]


def random_instances(rng: np.random.Generator, shape: tuple[int, ...], count: int) -> np.ndarray:
    """Gaussian, huge, tiny, tied (rounded), constant and sparse instances, mixed."""
    x = rng.normal(size=(count, *shape))
    kind = rng.integers(0, 6, size=count)
    scale = 10.0 ** rng.uniform(-8, 8, size=count)
    x[kind == 1] *= scale[kind == 1].reshape(-1, *([1] * len(shape)))
    x[kind == 2] = np.round(x[kind == 2])  # many ties
    x[kind == 3] = rng.normal(size=(int((kind == 3).sum()),) + (1,) * len(shape))  # all equal
    x[kind == 4] = np.where(rng.random(x[kind == 4].shape) < 0.7, 0.0, x[kind == 4])
    x[kind == 5] *= 1e-9
    return np.broadcast_to(x, (count, *shape)).copy()


def feasibility_violation(polytope, p: np.ndarray) -> float:
    var = cp.Variable(p.shape)
    var.value = p
    return max(float(np.max(c.violation())) for c in polytope.constraints(var))


PAIRS = [(p, s) for p in POLYTOPES for s in SOLVERS if get_solver(s).supports(p)]


@pytest.mark.parametrize(("polytope", "solver_name"), PAIRS, ids=[f"{p!r}-{s}" for p, s in PAIRS])
def test_every_projection_is_feasible_and_certified(polytope, solver_name):
    solver = get_solver(solver_name)
    rng = np.random.default_rng(zlib.crc32(f"{polytope!r}-{solver_name}".encode()))
    done = 0
    while done < N_INSTANCES:
        size = int(rng.integers(3, 9))
        shape = (size, size) if polytope.event_ndim == 2 else (size,)
        x = random_instances(rng, shape, 500)
        result = solver.run(polytope, x)
        scale = np.maximum(1.0, np.abs(x - result.x).reshape(500, -1).sum(axis=1))
        if solver_name != "frank-wolfe":  # vanilla FW is sublinear: it may stop at max_iter
            assert result.all_success, result.failures()[:3]
            assert np.all(result.gap <= 1e-6 * scale)
        for xi, pi, verts, w in zip(x, result.x, result.active_set or [None] * 500, result.weights or [None] * 500):
            magnitude = max(1.0, float(np.abs(xi).max()))
            if polytope.supports("constraints"):
                assert feasibility_violation(polytope, pi) <= 1e-7 * magnitude
            if verts is not None:
                np.testing.assert_allclose(w @ verts.reshape(len(w), -1), pi.ravel(), atol=1e-8 * magnitude)
                assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-9
        done += 500
