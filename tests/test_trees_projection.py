"""Projections onto the tree polytopes: hull projections, extended formulation, certificates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import hull_projection, max_vertex_gap

from spigot import Arborescence, HeadSelection, ProjectiveTree, SpanningTree
from spigot.errors import UnsupportedOperation
from spigot.solvers import get_solver

TREES = [
    Arborescence(),
    Arborescence(single_root=True),
    ProjectiveTree(),
    ProjectiveTree(single_root=True),
    SpanningTree(),
]
# (solver, options, tolerance on the distance to the exact projection)
MAP_ONLY = [
    ("active-set", {}, 1e-8),
    ("exact", {}, 1e-8),
    ("pairwise-frank-wolfe", {"tol": 1e-10, "max_iter": 20000}, 1e-4),
    ("away-frank-wolfe", {"tol": 1e-10, "max_iter": 20000}, 1e-4),
    ("frank-wolfe", {"tol": 1e-5, "max_iter": 20000}, 3e-2),  # sublinear rate
]


def event_size(polytope, n: int) -> int:
    return n if isinstance(polytope, SpanningTree) else n + 1


@pytest.fixture(scope="module")
def hull_cases():
    """Random points and their exact projections onto conv(enumerated trees), n = 4 (5 nodes)."""
    rng = np.random.default_rng(20)
    cases = {}
    for polytope in TREES + [HeadSelection()]:
        size = event_size(polytope, 4) if not isinstance(polytope, HeadSelection) else 4
        vertices = polytope.vertices((size, size))
        points = rng.normal(size=(3, size, size)) * 1.5
        cases[repr(polytope)] = (vertices, points, np.array([hull_projection(x, vertices) for x in points]))
    return cases


@pytest.mark.parametrize("polytope", TREES, ids=repr)
@pytest.mark.parametrize("solver, options, tol", MAP_ONLY, ids=[s for s, _, _ in MAP_ONLY])
def test_map_only_solvers_match_hull_projection(polytope, solver, options, tol, hull_cases):
    vertices, points, expected = hull_cases[repr(polytope)]
    result = polytope.project(points, solver=solver, **options)
    assert result.success.all()
    np.testing.assert_allclose(result.x, expected, atol=tol)
    for x, p, w, a, gap in zip(points, result.x, result.weights, result.active_set, result.gap):
        np.testing.assert_allclose(np.tensordot(w, a, axes=1), p, atol=1e-10)  # certified combination
        assert abs(w.sum() - 1) < 1e-10 and (w >= 0).all()
        assert float(gap) == pytest.approx(max_vertex_gap(x, p, vertices), abs=1e-9)
    # the certificate bounds the distance to the projection: |p - p*|^2 <= gap
    distances = ((result.x - expected) ** 2).sum(axis=(1, 2))
    assert (distances <= np.maximum(result.gap, 0) + 1e-12).all()


@pytest.mark.parametrize("polytope", [p for p in TREES if p.supports("constraints")], ids=repr)
def test_cvxpy_extended_formulation_matches_hull_projection(polytope, hull_cases):
    _, points, expected = hull_cases[repr(polytope)]
    result = polytope.project(points, solver="cvxpy")
    np.testing.assert_allclose(result.x, expected, atol=1e-6)


@pytest.mark.parametrize("polytope", TREES, ids=repr)
def test_reported_gap_is_the_brute_force_certificate(polytope, hull_cases):
    vertices, points, _ = hull_cases[repr(polytope)]
    result = polytope.project(points, solver="away-frank-wolfe", tol=1e-3)
    for x, p, gap in zip(points, result.x, result.gap):
        assert float(gap) == pytest.approx(max_vertex_gap(x, p, vertices), abs=1e-12)
        assert float(gap) >= -1e-12


def test_head_selection_closed_form_matches_hull_and_cvxpy(hull_cases):
    polytope = HeadSelection()
    vertices, points, expected = hull_cases[repr(polytope)]
    closed = polytope.project(points, solver="closed-form")
    np.testing.assert_allclose(closed.x, expected, atol=1e-8)
    np.testing.assert_allclose(polytope.project(points, solver="cvxpy").x, expected, atol=1e-6)
    assert (closed.gap <= 1e-12).all()
    assert get_solver("exact").choose(polytope).name == "closed-form"


@pytest.mark.parametrize("polytope", [Arborescence(), ProjectiveTree(single_root=True)], ids=repr)
def test_relaxed_solver_projects_onto_head_selection(polytope):
    rng = np.random.default_rng(21)
    x = torch.from_numpy(rng.normal(size=(3, 6, 6)))
    lengths = torch.tensor([5, 3, 1])
    relaxed = polytope.project(x, solver="relaxed", lengths=lengths)
    direct = HeadSelection().project(x, solver="closed-form", lengths=lengths)
    torch.testing.assert_close(relaxed.x, direct.x)
    # each valid word's column sums to 1 over its valid heads; everything else is 0
    for p, n in zip(relaxed.x, lengths.tolist()):
        assert torch.allclose(p[: n + 1, 1 : n + 1].sum(dim=0), torch.ones(n, dtype=p.dtype))
        assert p.sum() == pytest.approx(n) and (p >= 0).all()
        assert (p[:, 0] == 0).all() and (torch.diagonal(p) == 0).all()


@pytest.mark.parametrize("single_root", [False, True])
def test_active_set_matches_extended_formulation_at_n8(single_root):
    polytope = Arborescence(single_root=single_root)
    rng = np.random.default_rng(22)
    x = rng.normal(size=(2, 9, 9)) * 1.5
    exact = polytope.project(x, solver="active-set", tol=1e-12)
    reference = polytope.project(x, solver="cvxpy", tol=1e-9)
    assert exact.success.all() and reference.success.all()
    np.testing.assert_allclose(exact.x, reference.x, atol=1e-6)
    assert (np.abs(exact.gap) <= 1e-9).all()


def test_spanning_tree_active_set_matches_extended_formulation():
    rng = np.random.default_rng(23)
    x = rng.normal(size=(7, 7)) * 1.5
    polytope = SpanningTree()
    np.testing.assert_allclose(
        polytope.project(x, solver="active-set").x, polytope.project(x, solver="cvxpy").x, atol=2e-6
    )


@pytest.mark.parametrize("polytope", TREES, ids=repr)
def test_padded_projection_matches_cropped_instances(polytope):
    rng = np.random.default_rng(24)
    size = event_size(polytope, 5)
    x = torch.from_numpy(rng.normal(size=(3, size, size)))
    lengths = torch.tensor([5, 2, 3])
    result = polytope.project(x, solver="active-set", lengths=lengths)
    for p, xi, n in zip(result.x, x, lengths.tolist()):
        k = event_size(polytope, n)
        torch.testing.assert_close(p[:k, :k], polytope.project(xi[:k, :k], solver="active-set").x, atol=1e-9, rtol=0)
        assert p.abs().sum() == pytest.approx(p[:k, :k].abs().sum())


def test_active_set_warm_start_reuses_the_active_set():
    polytope = Arborescence()
    x = np.random.default_rng(25).normal(size=(2, 8, 8))
    cold = polytope.project(x, solver="active-set")
    warm = polytope.project(x, solver="active-set", init=cold)
    np.testing.assert_allclose(warm.x, cold.x, atol=1e-10)
    assert (warm.nit == 1).all()
    from_vertex = polytope.project(x, solver="active-set", init=polytope.map(x))
    np.testing.assert_allclose(from_vertex.x, cold.x, atol=1e-10)


def test_tree_projection_at_n20_is_certified():
    x = torch.randn(2, 21, 21, dtype=torch.float64) * 2.0
    result = Arborescence().project(x, solver="active-set", tol=1e-9)
    assert result.success.all() and (result.gap <= 1e-9 * (x - result.x).abs().sum(dim=(1, 2))).all()
    assert torch.allclose(result.x.sum(dim=1)[:, 1:], torch.ones(2, 20, dtype=torch.float64))


def test_cvxpy_needs_constraints():
    with pytest.raises(UnsupportedOperation, match="constraints"):
        ProjectiveTree().project(np.zeros((4, 4)), solver="cvxpy")
