"""The ``ad3`` solver (AD3-QP): against brute force and independent cvxpy models of the local polytope,
for every factor kind, with lengths, in both dtypes; warm starts, budgets, bad input."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

from spigot import spigot
from spigot.errors import UnsupportedOperation
from spigot.polytopes import FactorGraphPolytope, SemanticGraph, Simplex
from spigot.polytopes.factors import FactorGraph
from spigot.solvers import Ad3QP, get_solver
from spigot.solvers import ad3_qp
from spigot.solvers._factor_blocks import factor_blocks
from tests.polytope_cases import AgreeingSequence
from tests.reference import hull_projection, max_vertex_gap

pytestmark = pytest.mark.filterwarnings("ignore:The problem has an expression with dimension greater than 2")

TIGHT = {"tol": 1e-11, "max_iter": 20000}


def _solve(problem: cp.Problem) -> None:
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)


# ----------------------------------------------------------------------------- every factor kind
class EveryFactor(FactorGraphPolytope):
    """One factor of every kind on 21 entries (entry 20 is no coordinate), some literals negated."""

    def build(self, graph: FactorGraph) -> None:
        graph.one_of([0, 1, 2])
        graph.at_most_one([2, 3, 4], negated=[False, True, False])
        graph.budget([4, 5, 6, 7], 2, negated=[False, False, True, False])
        graph.at_least_one([7, 8, 9])
        graph.pair(0, 3, output=10)
        first, second = graph.multi_variable([11, 12]), graph.multi_variable([13, 14])
        graph.dense([first, second], outputs=[15, 16, 17, 18])
        graph.variables([19])


def every_factor_local_polytope(p: cp.Variable) -> list:
    """The local polytope of :class:`EveryFactor`, written out by hand (not from spigot's matrices)."""
    mu = cp.reshape(p[15:19], (2, 2), order="C")
    return [
        p[:20] >= 0,
        p[:20] <= 1,
        p[20] == 0,
        p[0] + p[1] + p[2] == 1,
        p[2] + (1 - p[3]) + p[4] <= 1,
        p[4] + p[5] + (1 - p[6]) + p[7] <= 2,
        p[7] + p[8] + p[9] >= 1,
        p[10] <= p[0],
        p[10] <= p[3],
        p[0] + p[3] - p[10] <= 1,
        p[11] + p[12] == 1,
        p[13] + p[14] == 1,
        cp.sum(mu, axis=1) == p[11:13],
        cp.sum(mu, axis=0) == p[13:15],
    ]


def local_projection(x: np.ndarray) -> np.ndarray:
    p = cp.Variable(x.size)
    _solve(cp.Problem(cp.Minimize(cp.sum_squares(p - x)), every_factor_local_polytope(p)))
    return p.value


def local_certificate(x: np.ndarray, p: np.ndarray) -> float:
    """``max_{v in L} <x - p, v - p>`` over the hand-written local polytope (an LP)."""
    v = cp.Variable(x.size)
    problem = cp.Problem(cp.Maximize((x - p) @ (v - p)), every_factor_local_polytope(v))
    _solve(problem)
    return float(problem.value)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_factor_kind_against_an_independent_local_polytope(dtype, rng):
    polytope = EveryFactor()
    x = torch.from_numpy(rng.standard_normal((3, 21)) * 1.5).to(dtype)
    result = polytope.project(x, solver="ad3", **TIGHT)
    assert result.x.dtype == dtype and result.success.all(), result.message
    atol = 1e-6 if dtype == torch.float64 else 1e-5
    for b in range(3):
        xb = x[b].double().numpy()
        expected = local_projection(xb)
        assert np.abs(result.x[b].double().numpy() - expected).max() < atol
        assert result.x[b, 20] == 0
        p64 = result.x[b].double().numpy()
        assert float(result.gap[b]) == pytest.approx(local_certificate(xb, p64), abs=1e-5)
    assert "local polytope" in result.message[0]


def test_the_torch_iterations_agree_with_the_kernel_and_handle_every_kind(rng):
    polytope = EveryFactor()
    blocks = factor_blocks(polytope.factor_graph((21,)))
    assert not blocks.closed_form and not blocks.plain_at_most_one
    x = torch.from_numpy(rng.standard_normal((2, 21)))
    valid = torch.as_tensor(blocks.coordinates).expand(2, -1)
    outcome = ad3_qp.admm(blocks, x, valid, None, Ad3QP(**TIGHT))
    for b in range(2):
        assert np.abs(outcome.p[b].numpy() - local_projection(x[b].numpy())).max() < 1e-6
    graph = SemanticGraph(3, (0,))
    blocks = factor_blocks(graph.factor_graph((4, 4, 3)))
    assert blocks.plain_at_most_one
    x = torch.from_numpy(rng.standard_normal((3, 4, 4, 3))).reshape(3, -1)
    valid = torch.as_tensor(blocks.coordinates).expand(3, -1)
    compiled = ad3_qp._admm_compiled(blocks, x * valid, valid, None, Ad3QP(**TIGHT))
    batched = ad3_qp._admm_torch(blocks, x * valid, valid, None, Ad3QP(**TIGHT))
    assert compiled.converged.all() and batched.converged.all()
    assert (compiled.p - batched.p).abs().max() < 1e-8


def test_pinned_copies_in_the_kernel_agree_with_the_torch_iterations(rng):
    """Entries fixed at 0 (padding) pin their copies: +inf multipliers in the kernel, masks in torch."""
    graph = SemanticGraph(3, (0, 1))
    blocks = factor_blocks(graph.factor_graph((5, 5, 3)))
    x = torch.from_numpy(rng.standard_normal((4, blocks.size)) * 2.0)
    valid = torch.as_tensor(blocks.coordinates) & torch.from_numpy(rng.random((4, blocks.size)) < 0.6)
    compiled = ad3_qp._admm_compiled(blocks, x * valid, valid, None, Ad3QP(**TIGHT))
    batched = ad3_qp._admm_torch(blocks, x * valid, valid, None, Ad3QP(**TIGHT))
    assert compiled.converged.all() and batched.converged.all()
    assert (compiled.p - batched.p).abs().max() < 1e-8
    assert compiled.p[~valid].abs().max() == 0 and torch.isfinite(compiled.p).all()


def test_the_local_polytope_of_a_user_polytope(rng):
    polytope = AgreeingSequence()
    local = polytope.relaxation()
    x = rng.standard_normal((4, 3, 6)) * 1.5
    on_polytope = polytope.project(x, solver="ad3", **TIGHT)
    on_local = local.project(x, solver="ad3", **TIGHT)
    assert np.abs(on_polytope.x - on_local.x).max() < 1e-12
    relaxed = local.project(x, solver="cvxpy")
    assert np.abs(on_polytope.x - relaxed.x).max() < 1e-6
    assert on_polytope.success.all() and np.abs(on_polytope.gap).max() < 1e-7


def test_padded_instances_of_a_user_polytope_are_solved_by_shape(rng):
    polytope = AgreeingSequence()
    x = torch.from_numpy(rng.standard_normal((3, 3, 4)))
    lengths = torch.tensor([3, 2, 2])
    result = polytope.project(x, solver="ad3", lengths=lengths, **TIGHT)
    assert result.x[1:, 2:].abs().sum() == 0
    for b in range(3):
        n = int(lengths[b])
        alone = polytope.project(x[b, :n], solver="ad3", **TIGHT)
        assert torch.allclose(result.x[b, :n], alone.x, atol=1e-9)


# ----------------------------------------------------------------------------- semantic graphs
CASES = [(2, 2, (0,)), (2, 3, (0, 1)), (3, 2, (0,))]


@pytest.mark.parametrize("words, labels, unique", CASES)
def test_semantic_graph_against_brute_force(words, labels, unique, rng):
    graph = SemanticGraph(labels, unique)
    vertices = graph.vertices((words + 1, words + 1, labels))
    for _ in range(2):
        x = rng.standard_normal((words + 1, words + 1, labels))
        result = graph.project(x, solver="ad3", **TIGHT)
        assert result.success, result.message
        assert np.abs(result.x - hull_projection(x, vertices)).max() < 1e-6
        assert float(result.gap) == pytest.approx(max_vertex_gap(x, result.x, vertices), abs=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_semantic_graph_with_lengths_against_cvxpy(dtype, rng):
    graph = SemanticGraph(4, (0, 1))
    x = torch.from_numpy(rng.standard_normal((4, 6, 6, 4))).to(dtype)
    lengths = torch.tensor([5, 3, 1, 4])
    result = graph.project(x, solver="ad3", lengths=lengths)
    assert result.x.dtype == dtype and result.success.all(), result.message
    expected = graph.project(x.double(), solver="cvxpy", lengths=lengths).x
    assert (result.x.double() - expected).flatten(1).norm(dim=1).max() < 1e-4
    for b, n in enumerate(lengths.tolist()):
        assert result.x[b, n + 1 :].abs().sum() == 0 and result.x[b, :, n + 1 :].abs().sum() == 0


def test_ignored_entries_do_not_change_the_result(rng):
    graph = SemanticGraph(3, (0,))
    x = torch.from_numpy(rng.standard_normal((2, 5, 5, 3)))
    lengths = torch.tensor([4, 2])
    masked = x.clone()
    masked[:, torch.arange(5), torch.arange(5)] = -1e9
    masked[:, :, 0] = 1e9
    masked[1, 3:] = 1e9
    masked[1, :, 3:] = -1e9
    solver = get_solver("ad3")
    plain, loud = solver.run(graph, x, lengths), solver.run(graph, masked, lengths)
    assert torch.equal(plain.x, loud.x) and torch.equal(plain.nit, loud.nit)
    assert loud.success.all() and torch.allclose(plain.gap, loud.gap, atol=1e-12)


def test_exact_and_the_spigot_layer_use_it_on_semantic_graphs(rng):
    graph = SemanticGraph(3, (0,))
    exact = get_solver("exact")
    assert isinstance(exact.choose(graph), Ad3QP)
    assert isinstance(exact.choose(AgreeingSequence().relaxation()), Ad3QP)
    scores = torch.from_numpy(rng.standard_normal((2, 4, 4, 3))).requires_grad_(True)
    z = spigot(scores, graph, step="fixed")
    downstream = torch.from_numpy(rng.standard_normal((2, 4, 4, 3)))
    (z * downstream).sum().backward()
    projected = graph.project(z.detach() - downstream, solver="cvxpy").x
    assert (scores.grad - (z.detach() - projected)).abs().max() < 1e-6


# ----------------------------------------------------------------------------- warm starts and budgets
def test_warm_starts_reach_the_same_projection(rng):
    graph = SemanticGraph(4, (0, 1))
    x = torch.from_numpy(rng.standard_normal((3, 6, 6, 4)))
    cold = graph.project(x, solver="ad3")
    warm = get_solver("ad3").run(graph, x, init=cold)
    assert warm.success.all() and (warm.x - cold.x).abs().max() < 1e-5
    z = graph.map(x)
    from_vertex = get_solver("ad3").run(graph, x, init=z)
    assert from_vertex.success.all() and (from_vertex.x - cold.x).abs().max() < 1e-5
    from_array = get_solver("ad3", init=cold.x).run(graph, x)
    assert torch.equal(from_array.x, warm.x)


def test_budgets_end_with_success_false_and_the_reason(rng):
    graph = SemanticGraph(4, (0, 1))
    x = torch.from_numpy(rng.standard_normal((2, 6, 6, 4)))
    short = graph.project(x, solver="ad3", max_iter=3)
    assert not short.success.any() and (short.nit == 3).all() and (short.status == 1).all()
    assert "max_iter=3" in short.message[0] and "residuals" in short.message[0]
    assert "instance 0" in short.failures()[0]
    timed = graph.project(x, solver="ad3", max_time=1e-9, check_every=1)
    assert not timed.success.any() and "max_time" in timed.message[0]
    slow = EveryFactor().project(rng.standard_normal(21), solver="ad3", max_time=1e-9, check_every=1)
    assert not slow.success and "max_time" in slow.message[0]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "options, match",
    [
        ({"tol": 0.0}, "tol"),
        ({"gap_tol": -1.0}, "gap_tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"max_time": float("nan")}, "max_time"),
        ({"rho": 0}, "rho"),
        ({"check_every": 0}, "check_every"),
        ({"penalty": 1.0}, "unknown option"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        get_solver("ad3", **options)


def test_bad_input():
    graph = SemanticGraph(2, (0,))
    x = torch.zeros(2, 3, 3, 2)
    with pytest.raises(UnsupportedOperation, match="FactorGraphPolytope"):
        Simplex().project(torch.zeros(3), solver="ad3")
    bad = x.clone()
    bad[0, 1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        graph.project(bad, solver="ad3")
    with pytest.raises(ValueError, match="labels"):
        graph.project(torch.zeros(3, 3, 5), solver="ad3")
    with pytest.raises(ValueError, match="lengths"):
        graph.project(x, solver="ad3", lengths=torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="init must have the shape"):
        get_solver("ad3").run(graph, x, init=torch.zeros(3, 3, 2))
    with pytest.raises(ValueError, match="init contains infinite"):
        get_solver("ad3").run(graph, x, init=torch.full_like(x, float("inf")))


@pytest.mark.parametrize("scale", [1e30, 1e200])
def test_huge_scores_are_certified_or_refused_clearly(rng, scale):
    """No exception at huge scales: a success is certified (and agrees with the active set), a failure says why.

    At 1e30 the kernel's simplex threshold works on values shifted by their maximum (unshifted,
    ``max - 1`` rounded to ``max`` and the search divided by zero); past 1e150 the instance is
    refused with the bound in its message.
    """
    graph = SemanticGraph(3, (0,))
    x = torch.from_numpy(rng.standard_normal((2, 4, 4, 3))) * scale
    result = get_solver("ad3").run(graph, x)
    exact = get_solver("active-set").run(graph, x)
    for i, (ok, message) in enumerate(zip(result.success.tolist(), result.message)):
        if ok:
            torch.testing.assert_close(result.x[i], exact.x[i], atol=1e-6, rtol=0)
        else:
            assert message and ("exceeds" in message)
    if scale > ad3_qp.LARGEST_SCORE:
        assert all("exceeds 1e+150" in message for message in result.message)
