"""SparseMAP: forward against cvxpy hull projections, backward against finite differences and
against the hand-written backward of the closed-form projections."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from estimator_reference import central_jacobian
from polytope_cases import CASE_IDS, CASES, ExactlyTwo
from reference import hull_projection
from spigot import ProjectionError
from spigot.autodiff import SparseMAP, sparsemap
from spigot.errors import ProjectionWarning
from spigot.polytopes import Budget, Simplex, UnitCube
from spigot.solvers import (
    ActiveSet,
    project_box,
    project_budget,
    project_product_of_simplices,
    project_simplex,
)

CLOSED_FORMS = {
    "simplex": project_simplex,
    "product": project_product_of_simplices,
    "cube": project_box,
    "budget": lambda x, lengths: project_budget(x, 2, lengths=lengths),
    "budget-at-most": lambda x, lengths: project_budget(x, 2, at_most=True, lengths=lengths),
}


def _jacobian(polytope, x: np.ndarray, **options) -> np.ndarray:
    """``(n, n)`` Jacobian of the layer, one backward pass per output coordinate."""
    leaf = torch.from_numpy(x).requires_grad_(True)
    p = sparsemap(leaf, polytope, **options)
    rows = []
    for e in torch.eye(x.size, dtype=torch.float64):
        (row,) = torch.autograd.grad(p, leaf, e.reshape(x.shape), retain_graph=True)
        rows.append(row.ravel())
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_forward_is_the_projection(case, rng):
    _, polytope, shape, vertices = case
    verts = vertices()
    x = 1.5 * rng.normal(size=(6, *shape))
    p = sparsemap(x, polytope)
    for xi, pi in zip(x, p):
        np.testing.assert_allclose(pi, hull_projection(xi, verts), atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_backward_matches_central_finite_differences(case, rng):
    """The projection is piecewise affine: at a generic point, central differences are exact."""
    _, polytope, shape, _ = case

    def forward(t: np.ndarray) -> np.ndarray:
        return sparsemap(t, polytope)

    for scale in (0.3, 1.0, 3.0):
        x = scale * rng.normal(size=shape)
        np.testing.assert_allclose(_jacobian(polytope, x), central_jacobian(forward, x, 1e-6), atol=1e-6)


@pytest.mark.parametrize("name", CLOSED_FORMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_agrees_with_the_closed_form_backward(name, dtype, rng):
    """Padded batches too; float32 scores are differentiated at the solver's float64 point."""
    case = next(c for c in CASES if c[0] == name)
    _, polytope, shape, _ = case
    x = torch.from_numpy(1.5 * rng.normal(size=(40, *shape))).to(dtype)
    g = torch.from_numpy(rng.normal(size=(40, *shape))).to(dtype)
    lengths = torch.from_numpy(rng.integers(2, shape[0] + 1, size=40))
    leaf = x.clone().requires_grad_(True)
    (ours,) = torch.autograd.grad(sparsemap(leaf, polytope, lengths=lengths), leaf, g)
    reference = x.double().requires_grad_(True)
    (expected,) = torch.autograd.grad(CLOSED_FORMS[name](reference, lengths), reference, g.double())
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.double(), expected, atol=1e-9 if dtype == torch.float64 else 1e-6, rtol=0)


@pytest.mark.parametrize(
    ("polytope", "x", "expected"),
    [
        # an active set of two vertices (the diagonal) certifies these interior points
        (UnitCube(), [0.5, 0.5], np.eye(2)),
        (UnitCube(), [0.3, 0.3, 0.3], np.eye(3)),
        (Budget(2), [0.3] * 5, np.eye(5) - 1 / 5),
        (Simplex(), [0.0, 0.0, 0.0, 0.0], np.eye(4) - 1 / 4),
        (ExactlyTwo(), [0.1, 0.1, 0.1, 0.1], np.eye(4) - 1 / 4),
    ],
    ids=["square-diagonal", "cube-diagonal", "budget-ties", "simplex-ties", "user-ties"],
)
def test_symmetric_points_get_the_jacobian_of_the_whole_face(polytope, x, expected):
    np.testing.assert_allclose(_jacobian(polytope, np.array(x)), expected, atol=1e-10)


@pytest.mark.parametrize("solver", ["pairwise-frank-wolfe", "away-frank-wolfe", "active-set"])
def test_other_vertex_solvers_give_the_same_gradient(solver, rng):
    x = 1.5 * rng.normal(size=(5,))
    reference = _jacobian(Budget(2), x)
    np.testing.assert_allclose(_jacobian(ExactlyTwo(), x, solver=solver), reference, atol=1e-6)


def test_relaxed_solver_differentiates_the_projection_onto_the_relaxation(rng):
    class SimplexWithCubeRelaxation(Simplex):
        def relaxation(self):
            return UnitCube()

    x = np.array([0.9, 0.3, -0.2, 1.4])
    layer = SparseMAP(SimplexWithCubeRelaxation(), solver="relaxed")
    leaf = torch.from_numpy(x).requires_grad_(True)
    p = layer(leaf)
    np.testing.assert_allclose(p.detach().numpy(), np.clip(x, 0, 1), atol=1e-12)
    (grad,) = torch.autograd.grad(p, leaf, torch.ones(4, dtype=torch.float64))
    np.testing.assert_allclose(grad.numpy(), [1.0, 1.0, 0.0, 0.0], atol=1e-12)


def test_solvers_without_an_active_set_are_refused():
    for solver in ["cvxpy", "closed-form"]:
        with pytest.raises(ValueError, match="SparseMAP differentiates through the active set"):
            SparseMAP(Simplex(), solver=solver)
    # exact switches to its active-set method where it would use the closed form
    assert isinstance(SparseMAP(Simplex()).solver, ActiveSet)


def test_failed_forward_projection_raises_or_warns(rng):
    x = torch.from_numpy(0.1 * rng.normal(size=(2, 6)))
    with pytest.raises(ProjectionError, match="SparseMAP forward"):
        sparsemap(x, ExactlyTwo(), solver="active-set", max_iter=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sparsemap(x, ExactlyTwo(), solver="active-set", max_iter=1, on_failure="warn")
    assert any(issubclass(w.category, ProjectionWarning) for w in caught)


@given(x=arrays(np.float64, (5,), elements=st.floats(-5, 5, allow_nan=False)))
def test_backward_is_an_orthogonal_projector(x):
    """J = J^T = J^2 at every point, generic or not."""
    jacobian = _jacobian(UnitCube(), x)
    np.testing.assert_allclose(jacobian, jacobian.T, atol=1e-9)
    np.testing.assert_allclose(jacobian @ jacobian, jacobian, atol=1e-9)


@pytest.mark.parametrize("with_zero", [False, True])
def test_face_span_projector_matches_an_svd_of_the_vertex_differences(with_zero, rng):
    from spigot.autodiff.sparsemap_layer import FaceSpan

    d = 12
    vertices = (rng.random((7, d)) < 0.5).astype(np.float64)
    if with_zero:
        vertices[0] = 0.0  # M^T M is singular-prone here; the lifted Gram matrix is not
    vertices = np.vstack([vertices, vertices[1] + vertices[2] - vertices[3]])  # affinely dependent
    span = FaceSpan(d)
    added = [span.add(v) for v in vertices]
    differences = vertices[1:] - vertices[0]
    _, singular, rows = np.linalg.svd(differences, full_matrices=False)
    basis = rows[singular > 1e-9 * singular[0]]
    assert span.size == len(basis) + 1 and not added[-1]
    expected = basis.T @ basis
    jacobian = np.stack([span.project(e) for e in np.eye(d)], axis=1)
    np.testing.assert_allclose(jacobian, expected, atol=1e-10)


def test_face_span_projector_is_niculae_formula_on_independent_vertices(rng):
    from spigot.autodiff.sparsemap_layer import FaceSpan

    d, k = 10, 4
    m = (rng.random((d, k)) < 0.5).astype(np.float64)
    m[0] = 1.0  # linearly independent columns, almost surely
    assert np.linalg.matrix_rank(m) == k
    z = np.linalg.inv(m.T @ m)
    ones = np.ones(k)
    expected = m @ (z - np.outer(z @ ones, ones @ z) / (ones @ z @ ones)) @ m.T
    span = FaceSpan(d)
    for v in m.T:
        assert span.add(v)
    jacobian = np.stack([span.project(e) for e in np.eye(d)], axis=1)
    np.testing.assert_allclose(jacobian, expected, atol=1e-10)
