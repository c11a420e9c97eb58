"""User-defined FactorGraphPolytopes get MAP, vertices, constraints and projections with no other code."""

from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np
import pytest
import torch

from polytope_cases import AgreeingSequence
from spigot import spigot
from spigot.polytopes import FactorGraph, FactorGraphPolytope, LocalPolytope
from tests.reference import hull_projection, max_vertex_gap

pytestmark = pytest.mark.filterwarnings("ignore:The problem has an expression with dimension greater than 2")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2)


# ----------------------------------------------------------------------------- three user polytopes
class DenseChain(FactorGraphPolytope):
    """A chain of T discrete variables with K states and dense pairwise factors (an HMM).

    One instance is a vector: T*K state entries, then K*K joint-state entries per edge.
    """

    event_ndim = 1

    def __init__(self, steps: int, states: int) -> None:
        self.steps, self.states = steps, states

    def check_event_shape(self, event_shape, name="scores"):
        size = self.steps * self.states + (self.steps - 1) * self.states**2
        if event_shape != (size,):
            raise ValueError(f"{name} must have {size} entries")

    def max_length(self, event_shape):
        return event_shape[0]

    def min_length(self, event_shape):
        return event_shape[0]

    def build(self, graph: FactorGraph) -> None:
        t_, k = self.steps, self.states
        chain = [graph.multi_variable(range(t * k, (t + 1) * k)) for t in range(t_)]
        start = t_ * k
        for t in range(t_ - 1):
            graph.dense([chain[t], chain[t + 1]], range(start + t * k * k, start + (t + 1) * k * k))


class Committee(FactorGraphPolytope):
    """Between 1 and 2 of d members, and members 0 and 1 never together (a negated OR)."""

    def build(self, graph: FactorGraph) -> None:
        members = range(graph.event_shape[0])
        graph.at_least_one(members)
        graph.budget(members, 2)
        graph.at_least_one([0, 1], negated=[True, True])


def sequences(steps: int, k: int) -> np.ndarray:
    """Every vertex of AgreeingSequence, from its definition."""
    out = []
    for choice in itertools.product(range(k), repeat=steps):
        z = np.zeros((steps, 2 * k))
        z[np.arange(steps), choice] = 1.0
        for t in range(steps - 1):
            if choice[t] == choice[t + 1]:
                z[t, k + choice[t]] = 1.0
        out.append(z)
    return np.array(out)


def chains(steps: int, k: int) -> np.ndarray:
    out = []
    for choice in itertools.product(range(k), repeat=steps):
        z = np.zeros(steps * k + (steps - 1) * k * k)
        z[np.arange(steps) * k + np.array(choice)] = 1.0
        for t in range(steps - 1):
            z[steps * k + t * k * k + choice[t] * k + choice[t + 1]] = 1.0
        out.append(z)
    return np.array(out)


def committees(d: int) -> np.ndarray:
    rows = [c for c in itertools.product((0.0, 1.0), repeat=d) if 1 <= sum(c) <= 2 and not (c[0] and c[1])]
    return np.array(rows)


def local_polytope_projection(x: np.ndarray, k: int) -> np.ndarray:
    """Projection onto AgreeingSequence's local polytope, modelled from scratch in cvxpy."""
    steps = x.shape[0]
    u, a = cp.Variable((steps, k)), cp.Variable((steps - 1, k))
    constraints = [u >= 0, cp.sum(u, axis=1) == 1, a >= 0, a <= u[:-1], a <= u[1:], a >= u[:-1] + u[1:] - 1]
    objective = cp.sum_squares(u - x[:, :k]) + cp.sum_squares(a - x[:-1, k:])
    cp.Problem(cp.Minimize(objective), constraints).solve(
        solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12
    )
    out = np.zeros_like(x)
    out[:, :k], out[:-1, k:] = u.value, a.value
    return out


POLYTOPES = [
    (AgreeingSequence(), (3, 6), lambda: sequences(3, 3)),
    (AgreeingSequence(), (4, 4), lambda: sequences(4, 2)),
    (DenseChain(3, 2), (14,), lambda: chains(3, 2)),
    (Committee(), (5,), lambda: committees(5)),
]
IDS = ["sequence-3x3", "sequence-4x2", "dense-chain", "committee"]


# ----------------------------------------------------------------------------- MAP and vertices
@pytest.mark.parametrize("polytope, shape, enumerate_", POLYTOPES, ids=IDS)
def test_map_and_vertices_match_brute_force(polytope, shape, enumerate_, rng):
    vertices = enumerate_()
    got = polytope.vertices(shape).reshape(len(vertices), -1)
    assert sorted(map(tuple, got)) == sorted(map(tuple, vertices.reshape(len(vertices), -1)))
    for _ in range(5):
        scores = rng.standard_normal(shape)
        best = vertices[np.argmax((vertices * scores).reshape(len(vertices), -1).sum(axis=1))]
        assert np.array_equal(polytope.map(scores), best)
        assert np.array_equal(polytope.map_ad3(scores), best)


def test_map_is_batched_padded_and_torch(rng):
    polytope = AgreeingSequence()
    scores = torch.from_numpy(rng.standard_normal((3, 4, 6))).float()
    lengths = torch.tensor([4, 2, 1])
    z = polytope.map(scores, lengths)
    assert z.dtype == torch.float32
    for b, n in enumerate(lengths.tolist()):
        valid = scores[b, :n].double().numpy()
        best = sequences(n, 3)[np.argmax((sequences(n, 3) * valid).sum(axis=(1, 2)))]
        assert np.array_equal(z[b, :n].numpy(), best)
        assert z[b, n:].abs().sum() == 0
    assert z[1, 1, 3:].abs().sum() == 0  # the last valid step has no agreement entries


def test_map_is_exact_on_degenerate_scores():
    polytope = AgreeingSequence()
    vertices = sequences(4, 3)
    for scores in (np.zeros((4, 6)), np.ones((4, 6)), np.tile([1.0, 1.0, 0.0, 0.5, 0.5, 0.0], (4, 1))):
        best = (vertices * scores).sum(axis=(1, 2)).max()
        assert np.sum(polytope.map(scores) * scores) == pytest.approx(best)


# ----------------------------------------------------------------------------- projections
EXACT = {
    "active-set": {},
    "exact": {},
    "pairwise-frank-wolfe": {"tol": 1e-14, "max_iter": 5000},
    "ad3-frank-wolfe": {"tol": 1e-14, "max_iter": 5000},
}


@pytest.mark.parametrize("polytope, shape, enumerate_", POLYTOPES, ids=IDS)
@pytest.mark.parametrize("name", sorted(EXACT))
def test_map_only_solvers_project_onto_the_hull(name, polytope, shape, enumerate_, rng):
    vertices = enumerate_()
    x = rng.standard_normal(shape)
    expected = hull_projection(x, vertices)
    result = polytope.project(x, solver=name, **EXACT[name])
    assert result.success, result.message
    assert np.abs(result.x - expected).max() < 1e-6
    assert result.gap == pytest.approx(max_vertex_gap(x, result.x, vertices), abs=1e-8)


@pytest.mark.parametrize("polytope, shape, enumerate_", POLYTOPES[2:], ids=IDS[2:])
def test_cvxpy_is_exact_where_the_local_polytope_is_tight(polytope, shape, enumerate_, rng):
    x = rng.standard_normal(shape)
    expected = hull_projection(x, enumerate_())
    assert np.abs(polytope.project(x, solver="cvxpy").x - expected).max() < 1e-6


def test_cvxpy_and_relaxed_project_onto_the_local_polytope(rng):
    polytope = AgreeingSequence()
    x = rng.standard_normal((3, 6)) * 1.5
    x[-1, 3:] = 0.0  # not coordinates
    expected = local_polytope_projection(x, 3)
    cvx = polytope.project(x, solver="cvxpy")
    relaxed = polytope.project(x, solver="relaxed")
    assert np.abs(cvx.x - expected).max() < 1e-6
    assert np.abs(relaxed.x - expected).max() < 1e-6
    assert relaxed.success
    hull = hull_projection(x, sequences(3, 3))
    assert np.abs(hull - expected).max() > 1e-3  # the local polytope is a strict relaxation here


def test_local_polytope_oracles(rng):
    polytope = AgreeingSequence()
    local = polytope.relaxation()
    assert isinstance(local, LocalPolytope) and local is polytope.relaxation()
    assert local.relaxation() is local and local.event_ndim == 2
    assert repr(local) == "LocalPolytope(polytope=AgreeingSequence())"
    vertices = sequences(3, 3)
    for _ in range(5):
        scores = rng.standard_normal((3, 6))
        lp = local.map(scores)
        assert np.sum(lp * scores) >= (vertices * scores).sum(axis=(1, 2)).max() - 1e-9
        approx = local.ad3_map_one(scores)
        assert np.sum(approx * scores) == pytest.approx(np.sum(lp * scores), abs=1e-4)
    # the relaxation is strictly looser than conv(Z): some scores have a fractional LP optimum
    draws = rng.standard_normal((40, 3, 6))
    looser = [np.sum(local.map(s) * s) - (vertices * s).sum(axis=(1, 2)).max() for s in draws]
    assert max(looser) > 1e-3


def test_ad3_frank_wolfe_on_the_local_polytope(rng):
    local = AgreeingSequence().relaxation()
    for _ in range(3):
        x = rng.standard_normal((3, 6))
        expected = local_polytope_projection(x, 3)
        result = local.project(x, solver="ad3-frank-wolfe", max_iter=1000, tol=1e-9)
        assert result.success, result.message
        assert np.abs(result.x - expected).max() < 1e-5
        exact = local.project(x, solver="active-set")
        assert exact.success and np.abs(exact.x - expected).max() < 1e-6


def test_padding_of_projections(rng):
    polytope = AgreeingSequence()
    x = torch.from_numpy(rng.standard_normal((2, 3, 4)))
    lengths = torch.tensor([3, 2])
    for name in ("active-set", "ad3-frank-wolfe", "cvxpy"):
        result = polytope.project(x, solver=name, lengths=lengths)
        assert result.x[1, 2:].abs().sum() == 0
        alone = polytope.project(x[1, :2], solver=name)
        assert torch.allclose(result.x[1, :2], alone.x, atol=1e-6)


def test_spigot_layer_on_a_user_polytope(rng):
    polytope = AgreeingSequence()
    vertices = sequences(3, 2)
    for name, options in (("active-set", {}), ("ad3-frank-wolfe", {"tol": 1e-14, "max_iter": 5000})):
        scores = torch.from_numpy(rng.standard_normal((3, 4))).requires_grad_(True)
        z = spigot(scores, polytope, solver=name, step="fixed", **options)
        downstream = torch.from_numpy(rng.standard_normal((3, 4)))
        (z * downstream).sum().backward()
        target = (z.detach() - downstream).numpy()
        expected = z.detach().numpy() - hull_projection(target, vertices)
        assert np.abs(scores.grad.numpy() - expected).max() < 1e-6


# ----------------------------------------------------------------------------- the description
def test_free_variables_follow_their_sign():
    class Free(FactorGraphPolytope):
        def build(self, graph):
            graph.variables(range(graph.event_shape[0] - 1))  # the last entry is no coordinate

    scores = np.array([0.5, -0.2, 0.0, 3.0])
    assert np.array_equal(Free().map(scores), [1.0, 0.0, 0.0, 0.0])
    assert np.array_equal(Free().map_ad3(scores), [1.0, 0.0, 0.0, 0.0])
    assert Free().vertices((4,)).shape == (8, 4)


def test_infeasible_graphs_raise():
    class Contradiction(FactorGraphPolytope):
        def build(self, graph):
            graph.one_of([0])
            graph.one_of([0], negated=[True])

    with pytest.raises(ValueError, match="no assignment"):
        Contradiction().map(np.zeros(1))
    with pytest.raises(ValueError, match="no assignment"):
        Contradiction().vertices((1,))
    with pytest.raises(ValueError, match="no assignment|empty"):
        Contradiction().relaxation().map(np.zeros(1))


def test_builder_checks_its_input():
    graph = FactorGraph((2, 3))
    with pytest.raises(ValueError, match="out of range"):
        graph.one_of([(2, 0)])
    with pytest.raises(ValueError, match="tuple of 2 ints"):
        graph.one_of([(0,)])
    with pytest.raises(ValueError, match="same entry twice"):
        graph.at_most_one([(0, 0), 0])
    with pytest.raises(ValueError, match="negated"):
        graph.at_most_one([(0, 0), (0, 1)], negated=[True])
    with pytest.raises(ValueError, match="budget"):
        graph.budget([(0, 0)], -1)
    with pytest.raises(ValueError, match="two different variables"):
        graph.pair((0, 0), (0, 0), output=(1, 0))
    graph.pair((0, 0), (0, 1), output=(1, 0))
    with pytest.raises(ValueError, match="factor output"):
        graph.variable((1, 0))
    with pytest.raises(ValueError, match="already a variable or an output"):
        graph.pair((0, 0), (0, 2), output=(0, 1))
    first = graph.multi_variable([(0, 0), (0, 1)])
    assert graph.multi_variable([(0, 0), (0, 1)]) == first
    with pytest.raises(ValueError, match="only one multi-variable"):
        graph.multi_variable([(0, 1), (0, 2)])
    second = graph.multi_variable([(0, 2), (1, 1)])
    with pytest.raises(ValueError, match="needs 4 outputs"):
        graph.dense([first, second], [(1, 2)])
    with pytest.raises(ValueError, match="ids from multi_variable"):
        graph.dense([7], [])
    graph.freeze()
    with pytest.raises(RuntimeError, match="frozen"):
        graph.one_of([(1, 2)])
    assert "variables=4" in repr(graph)


def test_local_polytope_constraints_describe_the_factors():
    graph = FactorGraph((5,))
    graph.one_of([0, 1], negated=[False, True])  # z0 + (1 - z1) = 1
    graph.at_least_one([2, 3])  # z2 + z3 >= 1
    graph.pair(0, 2, output=4)
    local = graph.freeze().local_polytope()
    assert local.violation(np.array([1.0, 1.0, 1.0, 0.0, 1.0])) == 0.0
    assert local.violation(np.array([1.0, 0.0, 1.0, 0.0, 1.0])) == pytest.approx(1.0)  # one-of broken
    assert local.violation(np.array([1.0, 1.0, 0.0, 0.0, 0.0])) == pytest.approx(1.0)  # OR broken
    assert local.violation(np.array([1.0, 1.0, 1.0, 0.0, 0.0])) == pytest.approx(1.0)  # pair: w >= a + b - 1
    assert local.violation(np.array([0.5, 0.5, 0.5, 0.5, 0.25])) == 0.0  # fractional, inside
