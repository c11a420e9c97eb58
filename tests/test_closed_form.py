"""Closed-form projections: exactness against independent cvxpy models, padding, and backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reference import hull_projection
from spigot.polytopes import Budget, ProductOfSimplices, Simplex, UnitCube
from spigot.solvers import (
    project_box,
    project_budget,
    project_product_of_simplices,
    project_simplex,
)

FUNCTIONS = {
    "simplex": (lambda x, n=None: project_simplex(x, n), Simplex(), (6,)),
    "product": (lambda x, n=None: project_product_of_simplices(x, n), ProductOfSimplices(), (3, 3)),
    "box": (lambda x, n=None: project_box(x, n), UnitCube(), (5,)),
    "budget": (lambda x, n=None: project_budget(x, 2, lengths=n), Budget(2), (6,)),
    "budget-at-most": (lambda x, n=None: project_budget(x, 2, at_most=True, lengths=n), Budget(2, at_most=True), (6,)),
}


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])
def test_matches_hull_projection_of_enumerated_vertices(name, scale, rng):
    fn, polytope, shape = FUNCTIONS[name]
    vertices = polytope.vertices(shape)
    x = scale * rng.normal(size=(15, *shape))
    p = fn(x)
    assert isinstance(p, np.ndarray)
    for xi, pi in zip(x, p):
        np.testing.assert_allclose(pi, hull_projection(xi, vertices), atol=1e-6)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_padding_equals_projecting_the_cropped_instance(name, rng):
    fn, _, shape = FUNCTIONS[name]
    x = torch.from_numpy(rng.normal(size=(4, *shape)))
    lengths = torch.tensor([shape[0], 2, 3, 2])
    p = fn(x, lengths)
    for pi, xi, n in zip(p, x, lengths.tolist()):
        torch.testing.assert_close(pi[:n], fn(xi[:n][None])[0])
        assert torch.all(pi[n:] == 0)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_backward_passes_gradcheck(name, rng):
    fn, _, shape = FUNCTIONS[name]
    # a generic point: away from the kinks where the projection is not differentiable
    x = torch.from_numpy(rng.normal(size=(3, *shape))).requires_grad_(True)
    lengths = torch.tensor([shape[0], 2, 3])
    assert torch.autograd.gradcheck(lambda t: fn(t), (x,))
    assert torch.autograd.gradcheck(lambda t: fn(t, lengths), (x,))


def test_simplex_mask_excludes_entries(rng):
    x = torch.from_numpy(rng.normal(size=(4, 5)))
    mask = torch.from_numpy(rng.random((4, 5)) > 0.4)
    mask[:, 0] = True
    p = project_simplex(x, mask=mask)
    assert torch.all(p[~mask] == 0)
    for pi, xi, mi in zip(p, x, mask):
        torch.testing.assert_close(pi[mi], project_simplex(xi[mi]))


def test_float32_follows_input_dtype(rng):
    x = torch.from_numpy(rng.normal(size=(2, 5))).float()
    for p in (project_simplex(x), project_box(x), project_budget(x, 3)):
        assert p.dtype == torch.float32


def test_budget_ties_and_saturation():
    x = torch.tensor([[0.5, 0.5, 0.5, 0.5], [3.0, 3.0, -4.0, -4.0], [9.0, 9.0, 9.0, 9.0]])
    p = project_budget(x, 2)
    torch.testing.assert_close(p, torch.tensor([[0.5] * 4, [1.0, 1.0, 0.0, 0.0], [0.5] * 4]))
    q = project_budget(torch.tensor([[0.2, 0.3, -1.0]]), 2, at_most=True)
    torch.testing.assert_close(q, torch.tensor([[0.2, 0.3, 0.0]]))


def test_budget_equal_to_number_of_items_gives_all_ones():
    p = project_budget(torch.tensor([[-3.0, 0.1, 7.0]]), 3)
    torch.testing.assert_close(p, torch.ones(1, 3))


def _sorted_simplex_projection(v: np.ndarray) -> np.ndarray:
    """Textbook sort-based projection (Held et al. 1974), independent of the library's kernel."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > css)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1), 0.0)


@given(
    arrays(
        np.float64,
        st.integers(1, 40),
        elements=st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5]), st.floats(-1e6, 1e6)),
    )
)
def test_simplex_kernel_matches_sort_based_projection_with_ties(v):
    p = project_simplex(v)
    np.testing.assert_allclose(p, _sorted_simplex_projection(v), atol=1e-9 * max(1.0, np.abs(v).max()))
    assert abs(p.sum() - 1.0) < 1e-12 * max(1.0, np.abs(v).max()) * len(v) and np.all(p >= 0)
