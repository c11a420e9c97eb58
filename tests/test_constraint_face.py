"""SparseMAP on semantic graphs through AD3-QP: the Jacobian of the certified constraint face of ADMM's point."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from spigot.autodiff import constraint_face as cf
from spigot.autodiff.sparsemap_layer import SparseMAP, sparsemap
from spigot.polytopes import SemanticGraph
from spigot.solvers import Ad3QP, get_solver
from spigot.solvers.exact import Exact


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(17)


def gradient(x: torch.Tensor, w: torch.Tensor, graph, lengths=None, **options) -> tuple[torch.Tensor, torch.Tensor]:
    scores = x.clone().requires_grad_(True)
    p = sparsemap(scores, graph, lengths=lengths, **options)
    (p * w).sum().backward()
    return p.detach(), scores.grad


def test_semantic_graphs_use_ad3_and_no_active_set():
    layer = SparseMAP(SemanticGraph(3, (0,)))
    assert isinstance(layer.solver, Exact) and isinstance(layer.solver.choose(layer.polytope), Ad3QP)
    assert isinstance(SparseMAP(SemanticGraph(3, (0,)), solver="ad3").solver, Ad3QP)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradient_agrees_with_the_active_set_with_lengths(dtype, rng):
    graph = SemanticGraph(3, (0, 1))
    x = torch.from_numpy(rng.standard_normal((4, 5, 5, 3)) * 1.5).to(dtype)
    w = torch.from_numpy(rng.standard_normal(x.shape)).to(dtype)
    lengths = torch.tensor([4, 2, 3, 1])
    p, grad = gradient(x, w, graph, lengths)
    p_ref, grad_ref = gradient(x, w, graph, lengths, solver="active-set")
    assert grad.dtype == dtype
    atol = 1e-9 if dtype == torch.float64 else 1e-5
    assert (p - p_ref).abs().max() < (1e-7 if dtype == torch.float64 else 1e-5)
    assert (grad - grad_ref).abs().max() < atol
    for b, n in enumerate(lengths.tolist()):
        assert grad[b, n + 1 :].abs().sum() == 0 and grad[b, :, n + 1 :].abs().sum() == 0
    # every instance's face was certified (no fallback to the active set was needed)
    points = get_solver("exact").run(graph, x.double(), lengths).x
    for b, n in enumerate(lengths.tolist()):
        region = (slice(0, n + 1), slice(0, n + 1))
        assert cf.constraint_face(graph, x[b][region].double().numpy(), points[b][region].numpy()) is not None


def test_gradient_against_finite_differences_of_cvxpy(rng):
    """An independent Jacobian: central differences of the cvxpy projection (Clarabel)."""
    graph = SemanticGraph(3, (0, 1))
    x = torch.from_numpy(rng.standard_normal((1, 4, 4, 3)) * 1.5)
    w = torch.from_numpy(rng.standard_normal(x.shape))
    _, grad = gradient(x, w, graph)
    cvxpy, step = get_solver("cvxpy"), 1e-5
    expected = torch.zeros_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index in np.ndindex(*x.shape[1:]):
            e = torch.zeros_like(x)
            e[(0, *index)] = step
            expected[(0, *index)] = ((cvxpy.run(graph, x + e).x - cvxpy.run(graph, x - e).x) * w).sum() / (2 * step)
    assert (grad - expected).abs().max() < 1e-6


def test_an_uncertified_point_gives_no_face(rng):
    graph = SemanticGraph(3, (0,))
    x = rng.standard_normal((4, 4, 3)) * 1.5
    exact = get_solver("active-set").run(graph, x).x
    assert cf.constraint_face(graph, x, exact) is not None
    assert cf.constraint_face(graph, x, np.zeros_like(x)) is None  # not the projection
    other = get_solver("active-set").run(graph, x + rng.standard_normal(x.shape)).x
    assert cf.constraint_face(graph, x, other) is None


def test_a_degenerate_projection_falls_back_to_the_active_set():
    """At x = 0 the projection 0 has a kink (every multiplier 0): the face is not certified and
    the backward pass uses the active-set method's face instead."""
    graph = SemanticGraph(2, (0,))
    x = torch.zeros((1, 3, 3, 2), dtype=torch.float64)
    assert cf.constraint_face(graph, x[0].numpy(), np.zeros((3, 3, 2))) is None
    w = torch.from_numpy(np.random.default_rng(3).standard_normal(x.shape))
    _, grad = gradient(x, w, graph)
    _, grad_ref = gradient(x, w, graph, solver="active-set")
    assert torch.allclose(grad, grad_ref, atol=1e-12)


def test_dependent_tight_rows_are_certified_by_the_lp(monkeypatch):
    """Two arcs of one head, both labels unique, all four entries in the support: the arc rows and
    the head-label rows are linearly dependent (both pairs sum to the same vector), so the
    multipliers are not unique. Built from p = [[0.6, 0.4], [0.4, 0.6]] and the positive
    multipliers (arc 1: 3, arc 2: 0.01, labels: 0.01, 0.01), the least-squares (minimum-norm)
    multipliers have a negative entry; the LP finds positive ones and certifies the face."""
    graph = SemanticGraph(2, (0, 1))
    x = np.zeros((3, 3, 2))
    x[0, 1] = [0.6 + 3.0 + 0.01, 0.4 + 3.0 + 0.01]
    x[0, 2] = [0.4 + 0.01 + 0.01, 0.6 + 0.01 + 0.01]
    x[1, 2] = x[2, 1] = [-1.0, -1.0]
    p = get_solver("active-set").run(graph, x).x
    assert np.allclose(p[0, 1:], [[0.6, 0.4], [0.4, 0.6]], atol=1e-9)
    calls = []
    lp = cf._strict_multipliers_exist
    monkeypatch.setattr(cf, "_strict_multipliers_exist", lambda *args: calls.append(1) or lp(*args))
    face = cf.constraint_face(graph, x, p)
    assert face is not None and calls == [1]
    g = np.random.default_rng(0).standard_normal(x.size)
    w = torch.from_numpy(g.reshape(x.shape))[None]
    _, grad_ref = gradient(torch.from_numpy(x)[None], w, graph, solver="active-set")
    assert np.allclose(face.project(g), grad_ref[0].numpy().ravel(), atol=1e-9)
