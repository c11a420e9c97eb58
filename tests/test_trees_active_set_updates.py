"""The active set's updated Cholesky factor (used on trees, generic in itself)."""

from __future__ import annotations

import numpy as np
import pytest

from spigot import ProductOfSimplices, UnitCube
from spigot.solvers import _cholesky
from spigot.solvers.active_set import ActiveSetState


def lifted_gram(vertices: np.ndarray) -> np.ndarray:
    return vertices @ vertices.T + 1.0


def test_append_and_delete_keep_the_factor_exact():
    rng = np.random.default_rng(0)
    vertices = (rng.random((9, 30)) < 0.4).astype(np.float64)
    chol = np.zeros((9, 9))
    for m, v in enumerate(vertices):
        pivot = _cholesky.append(chol, m, vertices[:m] @ v + 1.0, v @ v + 1.0)
        assert pivot > 0
    np.testing.assert_allclose(chol @ chol.T, lifted_gram(vertices), atol=1e-10)
    kept = list(range(9))
    for k in [4, 0, 6, 2]:
        _cholesky.delete(chol, len(kept), k)
        del kept[k]
        m = len(kept)
        factor = np.tril(chol[:m, :m])
        np.testing.assert_allclose(factor @ factor.T, lifted_gram(vertices[kept]), atol=1e-10)


def test_affine_weights_solve_the_constrained_least_squares():
    rng = np.random.default_rng(1)
    vertices = rng.normal(size=(5, 12))
    x = rng.normal(size=12)
    chol = np.linalg.cholesky(lifted_gram(vertices))
    beta = _cholesky.affine_weights(chol, 5, vertices @ x + 1.0)
    # KKT system of min |V^T b - x|^2 s.t. sum(b) = 1
    kkt = np.block([[vertices @ vertices.T, np.ones((5, 1))], [np.ones((1, 5)), np.zeros((1, 1))]])
    expected = np.linalg.solve(kkt, np.concatenate([vertices @ x, [1.0]]))[:5]
    np.testing.assert_allclose(beta, expected, atol=1e-10)


def test_state_rejects_affinely_dependent_vertices():
    state = ActiveSetState(np.zeros(3))
    assert state.add(np.array([1.0, 0.0, 0.0]), 1.0)
    assert state.add(np.array([0.0, 1.0, 0.0]))
    assert not state.add(np.array([1.0, 0.0, 0.0]))  # a duplicate
    assert state.add(np.zeros(3))  # the origin is affinely independent of the two
    assert not state.add(np.array([2.0, -1.0, 0.0]))  # 2 e1 - e2: on their affine hull
    assert state.size == 3


@pytest.mark.parametrize("polytope, shape", [(UnitCube(), (9,)), (ProductOfSimplices(), (4, 6))], ids=repr)
def test_active_set_still_matches_closed_forms(polytope, shape):
    x = np.random.default_rng(2).normal(size=(6, *shape)) * 2.0
    active = polytope.project(x, solver="active-set")
    np.testing.assert_allclose(active.x, polytope.project(x, solver="closed-form").x, atol=1e-10)
    warm = polytope.project(x, solver="active-set", init=active)
    assert (warm.nit == 1).all()
