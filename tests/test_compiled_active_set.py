"""The compiled active-set loop (polytopes with ``compiled_map``) against the Python loop and brute force.

A subclass that does not re-declare ``compiled_map`` has no compiled oracle (the declaration is
not inherited), so ``PythonLoop*`` below run the very same polytopes through the Python loop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import hull_projection, max_vertex_gap

from spigot import Arborescence, ProjectiveTree, SpanningTree
from spigot.autodiff import sparsemap
from spigot.solvers import _active_set_kernel as kernel
from spigot.solvers import certificate_gap, get_solver
from spigot.solvers.active_set import ActiveSet
from spigot.solvers.certificate import gap_threshold
from spigot.solvers.result import CONVERGED, MAX_ITER, TIME_LIMIT


class PythonLoopArborescence(Arborescence):
    """The same trees, without the compiled oracle."""


class PythonLoopProjectiveTree(ProjectiveTree):
    """The same trees, without the compiled oracle."""


PAIRS = [
    (Arborescence(), PythonLoopArborescence()),
    (Arborescence(single_root=True), PythonLoopArborescence(single_root=True)),
    (ProjectiveTree(), PythonLoopProjectiveTree()),
    (ProjectiveTree(single_root=True), PythonLoopProjectiveTree(single_root=True)),
]


def test_only_the_declaring_classes_have_a_compiled_oracle():
    assert Arborescence().compiled_oracle((5, 5)) is not None
    assert ProjectiveTree(single_root=True).compiled_oracle((5, 5)) is not None
    assert PythonLoopArborescence().compiled_oracle((5, 5)) is None
    assert SpanningTree().compiled_oracle((5, 5)) is None


@pytest.mark.parametrize("compiled, python", PAIRS, ids=[repr(c) for c, _ in PAIRS])
def test_compiled_oracle_is_map_one(compiled, python):
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 9):
        oracle = compiled.compiled_oracle((n + 1, n + 1))
        for _ in range(5):
            scores = rng.normal(size=(n + 1, n + 1))
            vertex = np.zeros((n + 1) ** 2)
            vertex[oracle.function(scores.ravel(), oracle.params)] = 1.0
            np.testing.assert_array_equal(vertex.reshape(n + 1, n + 1), compiled.map_one(scores))


@pytest.mark.parametrize("compiled, python", PAIRS, ids=[repr(c) for c, _ in PAIRS])
def test_compiled_loop_matches_python_loop(compiled, python):
    rng = np.random.default_rng(1)
    for n in (1, 2, 4, 7, 12):
        x = rng.normal(size=(3, n + 1, n + 1)) * 2.0
        fast = compiled.project(x, solver="active-set", tol=1e-12)
        slow = python.project(x, solver="active-set", tol=1e-12)
        assert fast.success.all() and slow.success.all()
        np.testing.assert_allclose(fast.x, slow.x, atol=1e-8, rtol=0)
        for p, w, a in zip(fast.x, fast.weights, fast.active_set):
            np.testing.assert_allclose(np.tensordot(w, a, axes=1), p, atol=1e-12)
            assert (w > 0).all() and abs(w.sum() - 1.0) < 1e-12
            assert set(np.unique(a)) <= {0.0, 1.0}
        # the reported gap is the certificate of the returned point
        recomputed = certificate_gap(compiled, torch.from_numpy(x), torch.from_numpy(fast.x), None)
        np.testing.assert_allclose(fast.gap, recomputed.numpy(), atol=1e-12)


@pytest.mark.parametrize("compiled", [c for c, _ in PAIRS], ids=repr)
def test_compiled_loop_matches_brute_force(compiled):
    rng = np.random.default_rng(2)
    vertices = compiled.vertices((5, 5))
    for x in rng.normal(size=(3, 5, 5)) * 1.5:
        result = compiled.project(x, solver="active-set")
        np.testing.assert_allclose(result.x, hull_projection(x, vertices), atol=1e-7)
        assert float(result.gap) == pytest.approx(max_vertex_gap(x, result.x, vertices), abs=1e-12)


def test_compiled_loop_matches_the_extended_formulation_at_n10():
    x = np.random.default_rng(3).normal(size=(11, 11)) * 1.5
    exact = Arborescence().project(x, solver="active-set", tol=1e-12)
    reference = Arborescence().project(x, solver="cvxpy", tol=1e-9)
    np.testing.assert_allclose(exact.x, reference.x, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_loop_on_torch_batches_with_padding(dtype):
    x = torch.randn(3, 9, 9, dtype=dtype, generator=torch.Generator().manual_seed(4))
    lengths = torch.tensor([8, 3, 5])
    fast = Arborescence().project(x, solver="active-set", lengths=lengths)
    slow = PythonLoopArborescence().project(x, solver="active-set", lengths=lengths)
    assert fast.x.dtype == dtype and fast.success.all()
    torch.testing.assert_close(fast.x, slow.x, atol=1e-8, rtol=0)
    for p, n in zip(fast.x, lengths.tolist()):
        assert p[n + 1 :].abs().sum() == 0 and p[:, n + 1 :].abs().sum() == 0


def test_warm_starts_from_a_result_and_from_points():
    polytope = Arborescence()
    x = np.random.default_rng(5).normal(size=(2, 10, 10))
    cold = polytope.project(x, solver="active-set")
    warm = polytope.project(x, solver="active-set", init=cold)
    assert (warm.nit == 1).all() and warm.success.all()
    np.testing.assert_allclose(warm.x, cold.x, atol=1e-12)
    from_points = polytope.project(x, solver="active-set", init=polytope.map(x))
    np.testing.assert_allclose(from_points.x, cold.x, atol=1e-10)
    # a start the compiled loop cannot store (not 0/1) runs the Python loop, to the same point
    fractional = (np.full((1, 10, 10), 0.5), np.ones(1))
    outcome = ActiveSet().solve_one(polytope, x[0], fractional)
    assert outcome.status == CONVERGED
    np.testing.assert_allclose(outcome.p, cold.x[0], atol=1e-9)


def test_warm_start_with_affinely_dependent_vertices():
    polytope = Arborescence()
    x = np.random.default_rng(6).normal(size=(7, 7))
    cold = polytope.project(x, solver="active-set")
    vertices = np.concatenate([cold.active_set[0], cold.active_set[0][:1]])  # one twice
    weights = np.concatenate([cold.weights[0], [0.5]])
    fast = ActiveSet().solve_one(polytope, x, (vertices, weights))
    slow = ActiveSet().solve_one(PythonLoopArborescence(), x, (vertices, weights))
    assert fast.status == slow.status == CONVERGED
    np.testing.assert_allclose(fast.p, slow.p, atol=1e-10)
    np.testing.assert_allclose(fast.p, cold.x, atol=1e-10)


def test_max_iter_and_time_limit_statuses():
    x = np.random.default_rng(7).normal(size=(2, 16, 16)) * 2.0
    for polytope in (Arborescence(), PythonLoopArborescence()):
        capped = polytope.project(x, solver="active-set", max_iter=3)
        assert (capped.status == MAX_ITER).all() and (capped.nit == 3).all() and not capped.success.any()
        recomputed = certificate_gap(polytope, torch.from_numpy(x), torch.from_numpy(capped.x), None)
        np.testing.assert_allclose(capped.gap, recomputed.numpy(), atol=1e-12)
    fast = Arborescence().project(x, solver="active-set", max_iter=3)
    slow = PythonLoopArborescence().project(x, solver="active-set", max_iter=3)
    np.testing.assert_allclose(fast.x, slow.x, atol=1e-10)
    timed = Arborescence().project(x, solver="active-set", tol=1e-300, max_time=1e-9)
    assert (timed.status == TIME_LIMIT).all() and (timed.nit == 1).all()
    assert "max_time=1e-09" in timed.message[0]


def test_growing_past_the_initial_capacity():
    x = np.random.default_rng(8).normal(size=(31, 31))
    fast = Arborescence().project(x, solver="active-set")
    assert fast.success and len(fast.weights[0]) > 16
    np.testing.assert_allclose(fast.x, PythonLoopArborescence().project(x, solver="active-set").x, atol=1e-8)


@pytest.mark.parametrize(
    "x, match",
    [(np.full((4, 4), np.nan), "x contains NaN"), (np.zeros((4, 5)), "square"), (np.zeros((1, 1)), "n >= 1")],
    ids=["nan", "not square", "no word"],
)
def test_bad_input_errors_are_unchanged(x, match):
    messages = []
    for polytope in (Arborescence(), PythonLoopArborescence()):
        with pytest.raises(ValueError, match=match) as error:
            polytope.project(x, solver="active-set")
        messages.append(str(error.value).replace("PythonLoop", ""))
    assert messages[0] == messages[1]
    with pytest.raises(ValueError, match="max_iter"):
        get_solver("active-set", max_iter=0)


def test_compiled_gap_threshold_is_the_python_rule():
    rng = np.random.default_rng(9)
    for scale in (0.0, 1e-3, 1.0, 1e6, 1e17, 1e200):
        residual = rng.normal(size=50) * scale
        for tol in (1e-12, 1e-6):
            assert kernel.gap_threshold(residual, tol) == pytest.approx(gap_threshold(residual, tol), rel=1e-12)


def test_supports_of_rejects_what_the_loop_cannot_store():
    vertices = np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    supports, counts = kernel.supports_of(vertices, 2)
    assert counts.tolist() == [2, 1] and supports[0].tolist() == [1, 2] and supports[1, 0] == 0
    assert kernel.supports_of(vertices, 1) is None  # more ones than the oracle's vertices have
    assert kernel.supports_of(vertices * 0.5, 2) is None  # not 0/1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparsemap_backward_compiled_matches_python(dtype):
    generator = torch.Generator().manual_seed(10)
    scores = torch.randn(4, 13, 13, dtype=dtype, generator=generator)
    grad = torch.randn(4, 13, 13, dtype=dtype, generator=generator)
    lengths = torch.tensor([12, 5, 9, 1])
    results = []
    for polytope in (Arborescence(), PythonLoopArborescence()):
        leaf = scores.clone().requires_grad_(True)
        p = sparsemap(leaf, polytope, lengths=lengths)
        p.backward(grad)
        results.append((p.detach(), leaf.grad))
    tol = 1e-8 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(results[0][0], results[1][0], atol=tol, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=tol, rtol=0)


def test_sparsemap_backward_matches_finite_differences():
    x = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(11)) * 2.0
    g = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    leaf = x.clone().requires_grad_(True)
    sparsemap(leaf, Arborescence()).backward(g)
    direction = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    step = 1e-6
    ahead = sparsemap(x + step * direction, Arborescence(), tol=1e-14)
    behind = sparsemap(x - step * direction, Arborescence(), tol=1e-14)
    numeric = ((ahead - behind) * g).sum() / (2 * step)
    assert math.isclose(float((leaf.grad * direction).sum()), float(numeric), abs_tol=1e-5)
