"""The SPIGOT and straight-through layers: forward MAP, backward against independent formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from estimator_reference import reference_step_size
from polytope_cases import CASE_IDS, CASES, ExactlyTwo, exactly_two_vertices
from reference import hull_projection
from spigot import SPIGOT, ProjectionError, Simplex, StraightThrough, spigot, ste
from spigot.errors import ProjectionWarning
from spigot.polytopes import ProductOfSimplices


def expected_spigot_grad(z, g, vertices, eta, threshold, step=None):
    """``z - Proj(z - eta_b g)`` for one unpadded instance, with the hull QP as projection."""
    step = step or ("fixed" if threshold is None else "reference")
    return z - hull_projection(z - reference_step_size(g, step, eta, threshold) * g, vertices)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize(
    ("step", "eta", "threshold"),
    [
        ("fixed", 1.0, None),
        ("fixed", 0.5, None),
        ("reference", 1.0, 1.0),
        ("reference", 2.0, 0.3),
        ("normalized", 1.0, None),
        ("normalized", 0.4, None),
    ],
)
def test_backward_equals_projection_formula(case, step, eta, threshold, rng):
    _, polytope, shape, vertices = case
    verts = vertices()
    scores = torch.from_numpy(rng.normal(size=(4, *shape))).requires_grad_(True)
    g = torch.from_numpy(rng.normal(size=(4, *shape)) * 2)
    z = spigot(scores, polytope, eta=eta, threshold=threshold, step=step)
    torch.testing.assert_close(z.detach(), torch.from_numpy(polytope.map(scores.detach().numpy())))
    z.backward(g)
    for zi, gi, grad in zip(z.detach().numpy(), g.numpy(), scores.grad.numpy()):
        want = expected_spigot_grad(zi, gi, verts, eta, threshold, step)
        np.testing.assert_allclose(grad, want, atol=1e-6)


@pytest.mark.parametrize("solver", ["exact", "active-set", "pairwise-frank-wolfe", "cvxpy"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_padded_batch_backward_and_dtype(solver, dtype, rng):
    polytope = Simplex()
    lengths = torch.tensor([6, 3, 2, 5])
    scores = torch.from_numpy(rng.normal(size=(4, 6))).to(dtype).requires_grad_(True)
    g = torch.from_numpy(rng.normal(size=(4, 6))).to(dtype)
    z = spigot(scores, polytope, solver=solver, threshold=1.0, lengths=lengths)
    assert z.dtype == dtype
    z.backward(g)
    assert scores.grad.dtype == dtype
    atol = 1e-5 if dtype == torch.float32 else 1e-7
    for zi, gi, grad, n in zip(z.detach(), g, scores.grad, lengths.tolist()):
        assert torch.all(zi[n:] == 0) and torch.all(grad[n:] == 0)
        want = expected_spigot_grad(
            zi[:n].double().numpy(), gi[:n].double().numpy(), np.eye(n), 1.0, 1.0
        )
        np.testing.assert_allclose(grad[:n].double().numpy(), want, atol=atol)


def test_user_polytope_gets_a_working_layer(rng):
    polytope = ExactlyTwo()
    layer = SPIGOT(polytope, solver="active-set", eta=0.7, step="fixed")
    scores = torch.from_numpy(rng.normal(size=(3, 5))).requires_grad_(True)
    g = torch.from_numpy(rng.normal(size=(3, 5)))
    layer(scores).backward(g)
    z = polytope.map(scores.detach())
    for zi, gi, grad in zip(z.numpy(), g.numpy(), scores.grad.numpy()):
        want = expected_spigot_grad(zi, gi, exactly_two_vertices(5), 0.7, None)
        np.testing.assert_allclose(grad, want, atol=1e-7)


def test_multiple_batch_axes(rng):
    scores = torch.from_numpy(rng.normal(size=(2, 3, 4, 4))).requires_grad_(True)
    z = SPIGOT(ProductOfSimplices())(scores)
    assert z.shape == scores.shape
    (z * torch.ones_like(z)).sum().backward()
    assert scores.grad.shape == scores.shape


def test_relaxed_solver_uses_the_relaxation(rng):
    class SimplexInCube(Simplex):
        def relaxation(self):
            from spigot.polytopes import UnitCube

            return UnitCube()

    scores = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    z = spigot(scores, SimplexInCube(), solver="relaxed", step="fixed")
    z.backward(torch.tensor([[0.5, -0.4, 0.1]]))
    # z - clip(z - g, 0, 1) = [1, 0, 0] - [0.5, 0.4, 0]
    torch.testing.assert_close(scores.grad, torch.tensor([[0.5, -0.4, 0.0]]))


def test_failed_projection_raises_or_warns(rng):
    scores = torch.from_numpy(rng.normal(size=(2, 3, 3))).requires_grad_(True)
    g = torch.from_numpy(rng.normal(size=(2, 3, 3)) * 0.05)
    options = {"solver": "frank-wolfe", "tol": 1e-14, "max_iter": 1}
    z = spigot(scores, ProductOfSimplices(), **options)
    with pytest.raises(ProjectionError, match="did not reach"):
        z.backward(g)
    z = spigot(scores, ProductOfSimplices(), on_failure="warn", **options)
    with pytest.warns(ProjectionWarning):
        z.backward(g)


def test_numpy_scores_return_the_map_vertex(rng):
    scores = rng.normal(size=(3, 4))
    z = spigot(scores, Simplex())
    assert isinstance(z, np.ndarray)
    np.testing.assert_array_equal(z, Simplex().map(scores))
    np.testing.assert_array_equal(ste(scores, Simplex()), z)


def test_straight_through_is_identity_with_padding(rng):
    scores = torch.from_numpy(rng.normal(size=(3, 5))).requires_grad_(True)
    lengths = torch.tensor([5, 2, 4])
    g = torch.from_numpy(rng.normal(size=(3, 5)))
    z = StraightThrough(Simplex())(scores, lengths)
    torch.testing.assert_close(z.detach(), Simplex().map(scores.detach(), lengths))
    z.backward(g)
    mask = torch.arange(5) < lengths[:, None]
    torch.testing.assert_close(scores.grad, g * mask)
