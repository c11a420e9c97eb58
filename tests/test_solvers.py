"""Every solver on every simplex-family polytope and on a user's map_one-only polytope.

References are independent of the solvers: the QP over convex weights of the enumerated vertices
(``reference.hull_projection``) and brute-force certificates over every vertex.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from polytope_cases import CASE_IDS, CASES, ExactlyTwo, exactly_two_vertices
from reference import hull_projection, max_vertex_gap
from spigot.polytopes import Budget, ProductOfSimplices, Simplex, UnitCube
from spigot.solvers import ProjectionResult, available_solvers, get_solver
from spigot.solvers.exact import Exact

EXACT_SOLVERS = ["closed-form", "cvxpy", "active-set", "away-frank-wolfe", "pairwise-frank-wolfe", "exact", "relaxed"]


def _applicable(solver_name, polytope):
    return get_solver(solver_name).supports(polytope)


def _check_convex_combination(result: ProjectionResult, vertices: np.ndarray, atol=1e-9):
    """The active set holds vertices of Z and convex weights reproducing x."""
    flat = vertices.reshape(len(vertices), -1)
    x = np.asarray(result.x).reshape(len(result.active_set), -1)
    for xi, verts, w in zip(x, result.active_set, result.weights):
        verts = np.asarray(verts).reshape(len(w), -1)
        assert np.all(np.asarray(w) >= 0) and abs(np.sum(w) - 1) < 1e-9
        for v in verts:
            assert np.any(np.all(flat == v, axis=1)), "active vertex is not in Z"
        np.testing.assert_allclose(np.asarray(w) @ verts, xi, atol=atol)


PAIRS = [(case, name) for case in CASES for name in EXACT_SOLVERS if _applicable(name, case[1])]


@pytest.mark.parametrize(("case", "solver_name"), PAIRS, ids=[f"{c[0]}-{n}" for c, n in PAIRS])
def test_exact_solvers_agree_with_hull_projection(case, solver_name, rng):
    _, polytope, shape, vertices = case
    verts = vertices()
    x = 2.0 * rng.normal(size=(12, *shape))
    result = polytope.project(x, solver=solver_name)
    assert result.all_success, result.failures()
    assert result.gap.shape == (12,) and result.nit.shape == (12,)
    for xi, pi, gap in zip(x, result.x, result.gap):
        np.testing.assert_allclose(pi, hull_projection(xi, verts), atol=1e-6)
        assert max_vertex_gap(xi, pi, verts) <= 1e-8
        assert abs(gap - max_vertex_gap(xi, pi, verts)) <= 1e-9
    if result.active_set is not None:
        _check_convex_combination(result, verts)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_frank_wolfe_certificate_bounds_its_distance(case, rng):
    """Vanilla FW is sublinear; what it certifies is ||p - p*||^2 <= gap."""
    _, polytope, shape, vertices = case
    verts = vertices()
    x = rng.normal(size=(10, *shape))
    result = polytope.project(x, solver="frank-wolfe", tol=1e-6, max_iter=5000)
    for xi, pi, gap in zip(x, result.x, result.gap):
        distance = np.linalg.norm(pi - hull_projection(xi, verts))
        assert distance**2 <= gap + 1e-9
    _check_convex_combination(result, verts)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_thousand_instances_agree_with_independent_cvxpy_model(case, rng):
    """The issue's acceptance check: 1e-6 agreement, gap <= 1e-6, on 1,000 random instances.

    The reference is the polytope's own constraints in cvxpy where it has them, else the hull QP.
    """
    _, polytope, shape, vertices = case
    x = rng.normal(size=(1000, *shape)) * rng.choice([0.1, 1.0, 5.0], size=(1000,) + (1,) * len(shape))
    if polytope.supports("constraints"):
        reference = get_solver("cvxpy").run(polytope, x).x
    else:
        verts = vertices()
        reference = np.stack([hull_projection(xi, verts) for xi in x[:100]])
        x = x[:100]
    for name in EXACT_SOLVERS:
        if name == "cvxpy" or not _applicable(name, polytope):
            continue
        result = polytope.project(x, solver=name)
        assert result.all_success, (name, result.failures()[:3])
        assert float(np.max(result.gap)) <= 1e-6, name
        np.testing.assert_allclose(result.x, reference, atol=1e-6, err_msg=name)


@given(
    data=arrays(np.float64, (6,), elements=st.floats(-50, 50, allow_nan=False)),
    which=st.sampled_from([0, 2, 3, 4, 5]),
)
def test_projection_properties(data, which):
    """Feasibility, certificate, idempotence and the vertex inequality, on arbitrary inputs."""
    _, polytope, _, vertices = CASES[which]
    shape = (6,)
    verts = {
        0: Simplex().vertices(shape),
        2: UnitCube().vertices(shape),
        3: Budget(2).vertices(shape),
        4: Budget(2, at_most=True).vertices(shape),
        5: exactly_two_vertices(6),
    }[which]
    result = polytope.project(data, solver="active-set")
    p = result.x
    assert result.success and result.gap <= 1e-9 * max(1.0, np.abs(data - p).sum())
    residual = data - p
    assert np.max((verts - p) @ residual) <= 1e-9 * max(1.0, np.abs(residual).sum())
    again = polytope.project(p, solver="active-set").x
    np.testing.assert_allclose(again, p, atol=1e-9)


def test_warm_start_from_previous_result_and_from_points(rng):
    polytope = ExactlyTwo()
    x = rng.normal(size=(5, 6))
    cold = polytope.project(x, solver="active-set")
    warm = polytope.project(x, solver="active-set", init=cold)
    np.testing.assert_allclose(warm.x, cold.x, atol=1e-12)
    assert np.all(warm.nit == 1)  # already optimal: one MAP call to certify
    z = polytope.map(x)
    from_vertex = get_solver("pairwise-frank-wolfe").run(polytope, x, init=z)
    np.testing.assert_allclose(from_vertex.x, cold.x, atol=1e-6)


def test_exact_picks_closed_form_when_registered():
    solver = Exact()
    assert solver.choose(Simplex()).name == "closed-form"
    assert solver.choose(ExactlyTwo()).name == "active-set"


def test_relaxed_projects_onto_the_relaxation():
    class SimplexWithCubeRelaxation(Simplex):
        def relaxation(self):
            return UnitCube()

    x = np.array([0.9, 0.8, -0.2])
    result = SimplexWithCubeRelaxation().project(x, solver="relaxed")
    np.testing.assert_allclose(result.x, [0.9, 0.8, 0.0])
    assert result.gap <= 1e-12  # certified against the cube


def test_padded_batches_equal_cropped_instances(rng):
    polytope = ExactlyTwo()
    x = torch.from_numpy(rng.normal(size=(4, 7)))
    lengths = torch.tensor([7, 3, 2, 5])
    for name in ["active-set", "pairwise-frank-wolfe", "exact"]:
        result = polytope.project(x, solver=name, lengths=lengths)
        for xi, pi, n in zip(x, result.x, lengths.tolist()):
            single = polytope.project(xi[:n], solver=name)
            torch.testing.assert_close(pi[:n], single.x, atol=1e-9, rtol=0)
            assert torch.all(pi[n:] == 0)
        for verts, n in zip(result.active_set, lengths.tolist()):
            assert torch.all(verts[:, n:] == 0)


def test_batch_shape_is_preserved(rng):
    x = torch.from_numpy(rng.normal(size=(2, 3, 4, 4)))
    result = ProductOfSimplices().project(x, solver="active-set")
    assert result.x.shape == (2, 3, 4, 4)
    assert result.gap.shape == result.nit.shape == result.success.shape == (2, 3)
    assert len(result.message) == len(result.active_set) == 6


def test_float32_input_returns_float32(rng):
    x = torch.from_numpy(rng.normal(size=(3, 5))).float()
    for name in ["closed-form", "active-set", "cvxpy"]:
        result = Simplex().project(x, solver=name)
        assert result.x.dtype == torch.float32 and result.gap.dtype == torch.float64


def test_max_iter_exhaustion_is_reported_not_hidden(rng):
    x = rng.normal(size=(3, 3, 3)) * 0.1  # projections deep inside: FW needs many steps
    result = ProductOfSimplices().project(x, solver="frank-wolfe", max_iter=2, tol=1e-12)
    assert not result.all_success
    assert set(np.asarray(result.status).tolist()) <= {0, 1}
    assert any("max_iter" in m for m in result.message)


def test_registry_lists_every_solver_of_the_contract():
    assert {
        "closed-form", "cvxpy", "active-set", "frank-wolfe", "away-frank-wolfe",
        "pairwise-frank-wolfe", "relaxed", "exact",
    } <= set(available_solvers())
