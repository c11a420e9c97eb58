"""Projections onto SemanticGraph and LabeledArcs: every solver against the exact hull projection,
the reference relaxed procedure, certificates, padding, and the SPIGOT layer with every solver."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

from spigot import ProjectionError, spigot
from spigot.errors import UnsupportedOperation
from spigot.polytopes import LabeledArcs, SemanticGraph, Simplex
from spigot.solvers import clip_project_labeled_arcs, get_solver, project_labeled_arcs
from tests.reference import hull_projection, max_vertex_gap

pytestmark = pytest.mark.filterwarnings("ignore:The problem has an expression with dimension greater than 2")

#: Solvers that are exact on SemanticGraph, with options tight enough to compare to 1e-6.
EXACT = {
    "cvxpy": {},
    "active-set": {},
    "exact": {},
    "pairwise-frank-wolfe": {"tol": 1e-14, "max_iter": 5000},
    "away-frank-wolfe": {"tol": 1e-14, "max_iter": 5000},
    "ad3-frank-wolfe": {"tol": 1e-14, "max_iter": 5000},
    "ad3": {"tol": 1e-11, "max_iter": 20000},
}

CASES = [(2, 2, (0,)), (2, 3, (0, 1)), (3, 2, (0,))]  # (words, labels, unique labels)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1)


def target(rng: np.random.Generator, words: int, labels: int, unique=()) -> np.ndarray:
    x = rng.standard_normal((words + 1, words + 1, labels)) * 0.8
    x[..., list(unique)] += 0.6
    return x


def reference_procedure(x: np.ndarray) -> np.ndarray:
    """The reference implementation's procedure, arc by arc, with a cvxpy QP for the labels."""
    out = np.zeros_like(x)
    nodes = x.shape[0]
    for h in range(nodes):
        for m in range(1, nodes):
            if h == m:
                continue
            value = float(np.clip(x[h, m].sum(), 0.0, 1.0))
            if value <= 0:
                continue
            y = cp.Variable(x.shape[2])
            cp.Problem(cp.Minimize(cp.sum_squares(y - x[h, m])), [y >= 0, y <= 1, cp.sum(y) == value]).solve(
                solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12
            )
            out[h, m] = y.value
    return out


# ----------------------------------------------------------------------------- exact projections
@pytest.mark.parametrize("words, labels, unique", CASES)
@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_solvers_match_the_hull_projection(name, words, labels, unique, rng):
    graph = SemanticGraph(labels, unique_labels=unique)
    x = target(rng, words, labels, unique)
    vertices = graph.vertices(x.shape)
    expected = hull_projection(x, vertices)
    result = graph.project(x, solver=name, **EXACT[name])
    assert result.success, result.message
    assert np.abs(result.x - expected).max() < 1e-6
    assert result.gap == pytest.approx(max_vertex_gap(x, result.x, vertices), abs=1e-9)
    assert -1e-9 <= result.gap <= 1e-8


def test_the_unique_label_rows_matter(rng):
    """With unique labels the projection differs from the per-arc one (else the tests prove little)."""
    graph = SemanticGraph(2, unique_labels=(0,))
    x = target(rng, 2, 2, (0,))
    x[0, 1:, 0] = 0.9  # the root wants label 0 on both words
    exact = graph.project(x, solver="cvxpy").x
    per_arc = project_labeled_arcs(x)
    assert np.abs(exact - per_arc).max() > 0.1
    assert exact[0, 1:, 0].sum() <= 1 + 1e-8


@pytest.mark.parametrize("words, labels", [(1, 3), (2, 2), (2, 3)])
def test_closed_form_is_the_projection_onto_labeled_arcs(words, labels, rng):
    arcs = LabeledArcs(labels)
    x = target(rng, words, labels) * 2
    vertices = arcs.vertices(x.shape)
    expected = hull_projection(x, vertices)
    result = arcs.project(x, solver="closed-form")
    assert np.abs(result.x - expected).max() < 1e-6
    assert np.abs(project_labeled_arcs(x) - expected).max() < 1e-6
    assert result.gap == pytest.approx(max_vertex_gap(x, result.x, vertices), abs=1e-9)
    assert np.abs(arcs.project(x, solver="exact").x - expected).max() < 1e-6
    assert np.abs(arcs.project(x, solver="cvxpy").x - expected).max() < 1e-6


def test_semantic_graph_declares_no_closed_form():
    with pytest.raises(ValueError, match="SemanticGraph declares no closed-form projection"):
        SemanticGraph(2, (0,)).project(np.zeros((3, 3, 2)), solver="closed-form")


def test_closed_form_gradient():
    x = torch.randn(2, 4, 4, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 2])
    assert torch.autograd.gradcheck(lambda t: project_labeled_arcs(t, lengths), (x,))
    assert torch.autograd.gradcheck(lambda t: clip_project_labeled_arcs(t, lengths), (x,))


# ----------------------------------------------------------------------------- the reference procedure
@pytest.mark.parametrize("words, labels, unique", CASES)
def test_relaxed_is_the_reference_procedure(words, labels, unique, rng):
    graph = SemanticGraph(labels, unique_labels=unique)
    x = target(rng, words, labels, unique) * 1.5
    expected = reference_procedure(x)
    result = graph.project(x, solver="relaxed")
    assert result.success and int(result.nit) == 0
    assert np.abs(result.x - expected).max() < 1e-6
    assert np.abs(clip_project_labeled_arcs(x) - expected).max() < 1e-6
    relaxation_vertices = graph.relaxation().vertices(x.shape)
    assert result.gap == pytest.approx(max_vertex_gap(x, result.x, relaxation_vertices), abs=1e-9)


def test_relaxed_differs_from_the_euclidean_projection():
    x = np.zeros((2, 2, 2))
    x[0, 1] = [0.6, -0.3]  # unlabeled value 0.3: the labels must sum to 0.3
    reference = clip_project_labeled_arcs(x)
    euclidean = project_labeled_arcs(x)
    assert np.allclose(reference[0, 1], [0.3, 0.0])
    assert np.allclose(euclidean[0, 1], [0.6, 0.0])
    result = SemanticGraph(2).project(x, solver="relaxed")
    # residual r = (0.3, -0.3); the best vertex is label 0: <r, e_0 - p> = 0.3 - 0.09
    assert result.gap == pytest.approx(0.21)
    assert result.gap == pytest.approx(max_vertex_gap(x, result.x, LabeledArcs(2).vertices(x.shape)))


def test_relaxed_clips_the_arc_value():
    x = np.zeros((2, 2, 3))
    x[0, 1] = [2.0, 1.0, -1.0]  # unlabeled value 2 -> 1
    x[1, 1] = [5.0, 5.0, 5.0]  # a self-loop: not an arc
    p = clip_project_labeled_arcs(x)
    assert np.allclose(p[0, 1], [1.0, 0.0, 0.0])
    assert not p[1, 1].any()
    x[0, 1] = [-2.0, 1.0, 0.5]  # unlabeled value <= 0 -> no arc
    assert not clip_project_labeled_arcs(x)[0, 1].any()


# ----------------------------------------------------------------------------- padding
@pytest.mark.parametrize(
    "name, options, polytope",
    [
        ("relaxed", {}, SemanticGraph(2, (0,))),
        ("cvxpy", {}, SemanticGraph(2, (0,))),
        ("active-set", {}, SemanticGraph(2, (0,))),
        ("ad3-frank-wolfe", {"tol": 1e-12, "max_iter": 3000}, SemanticGraph(2, (0,))),
        ("closed-form", {}, LabeledArcs(2)),
    ],
)
def test_padding(name, options, polytope, rng):
    x = torch.from_numpy(np.stack([target(rng, 3, 2, (0,)) for _ in range(3)]))
    lengths = torch.tensor([3, 1, 2])
    result = polytope.project(x, solver=name, lengths=lengths, **options)
    assert result.x.shape == x.shape and result.gap.shape == (3,)
    for b, n in enumerate(lengths.tolist()):
        assert result.x[b, n + 1 :].abs().sum() == 0 and result.x[b, :, n + 1 :].abs().sum() == 0
        alone = polytope.project(x[b, : n + 1, : n + 1], solver=name, **options)
        assert torch.allclose(result.x[b, : n + 1, : n + 1], alone.x, atol=1e-6)
        assert float(result.gap[b]) == pytest.approx(float(alone.gap), abs=1e-8)


# ----------------------------------------------------------------------------- the ad3-frank-wolfe solver
def test_ad3_frank_wolfe_budget_trades_accuracy_for_time(rng):
    graph = SemanticGraph(3, unique_labels=(0, 1))
    x = target(rng, 4, 3, (0, 1)) * 2
    exact = graph.project(x, solver="cvxpy").x
    errors = []
    for budget in (2, 10, 80):
        result = graph.project(x, solver="ad3-frank-wolfe", max_iter=budget, tol=1e-10)
        errors.append(np.linalg.norm(result.x - exact))
        assert errors[-1] ** 2 <= float(result.gap) + 1e-9  # the certificate bounds the error
        if result.success:  # success is claimed only when the certificate meets the tolerance
            assert float(result.gap) <= 1e-10 * max(1.0, np.abs(x - result.x).sum())
    assert errors[0] > errors[1] > errors[2]
    short = graph.project(x, solver="ad3-frank-wolfe", max_iter=2)
    assert not short.success and "max_iter" in short.message[0]


def test_ad3_frank_wolfe_checks_its_options_and_polytope():
    with pytest.raises(ValueError, match="variant"):
        get_solver("ad3-frank-wolfe", variant="fancy")
    with pytest.raises(ValueError, match="max_iter"):
        get_solver("ad3-frank-wolfe", max_iter=0)
    with pytest.raises(ValueError, match="unknown option"):
        get_solver("ad3-frank-wolfe", budget=3)
    with pytest.raises(UnsupportedOperation, match="FactorGraphPolytope"):
        Simplex().project(np.zeros(3), solver="ad3-frank-wolfe")


@pytest.mark.parametrize("variant", ["away", "vanilla"])
def test_ad3_frank_wolfe_variants(variant, rng):
    graph = SemanticGraph(2, unique_labels=(0,))
    x = target(rng, 2, 2, (0,))
    expected = hull_projection(x, graph.vertices(x.shape))
    result = graph.project(x, solver="ad3-frank-wolfe", variant=variant, max_iter=3000, tol=1e-9)
    assert np.linalg.norm(result.x - expected) ** 2 <= float(result.gap) + 1e-9
    assert np.abs(result.x - expected).max() < (1e-3 if variant == "vanilla" else 1e-5)


# ----------------------------------------------------------------------------- the SPIGOT layer
SPIGOT_SOLVERS = {**EXACT, "relaxed": {}}


@pytest.mark.parametrize("name", sorted(SPIGOT_SOLVERS))
def test_spigot_layer_with_every_solver(name, rng):
    graph = SemanticGraph(2, unique_labels=(0,))
    scores = torch.from_numpy(target(rng, 3, 2, (0,))).requires_grad_(True)
    downstream = torch.from_numpy(rng.standard_normal(scores.shape))
    z = spigot(scores, graph, solver=name, step="fixed", **SPIGOT_SOLVERS[name])
    assert torch.equal(z, torch.from_numpy(graph.map(scores.detach().numpy())))
    (z * downstream).sum().backward()
    pulled = z.detach().numpy() - downstream.numpy()
    if name == "relaxed":
        expected = z.detach().numpy() - reference_procedure(pulled)
    else:
        expected = z.detach().numpy() - hull_projection(pulled, graph.vertices(pulled.shape))
    assert np.abs(scores.grad.numpy() - expected).max() < 1e-5


def test_spigot_layer_on_labeled_arcs_with_closed_form_and_padding(rng):
    arcs = LabeledArcs(3)
    scores = torch.from_numpy(np.stack([target(rng, 3, 3), target(rng, 3, 3)])).requires_grad_(True)
    lengths = torch.tensor([3, 2])
    z = spigot(scores, arcs, solver="closed-form", lengths=lengths, step="fixed")
    downstream = torch.from_numpy(rng.standard_normal(scores.shape))
    (z * downstream).sum().backward()
    expected = z.detach() - project_labeled_arcs(z.detach() - downstream, lengths)
    assert torch.allclose(scores.grad, expected)
    assert scores.grad[1, 3:].abs().sum() == 0


def test_spigot_layer_raises_when_ad3_frank_wolfe_misses_its_tolerance(rng):
    graph = SemanticGraph(3, unique_labels=(0,))
    scores = torch.from_numpy(target(rng, 4, 3, (0,))).requires_grad_(True)
    z = spigot(scores, graph, solver="ad3-frank-wolfe", max_iter=1, tol=1e-12)
    with pytest.raises(ProjectionError, match="did not reach"):
        (z * torch.randn(z.shape, dtype=z.dtype)).sum().backward()


def test_exact_picks_the_fastest_exact_solver():
    from spigot.solvers import ActiveSet, Ad3QP, ClosedFormSolver, CvxpyQP

    exact = get_solver("exact")
    assert isinstance(exact.choose(SemanticGraph(2, (0,))), Ad3QP)
    assert exact.choose(SemanticGraph(2, (0,))) is exact.choose(SemanticGraph(3))  # caches stay warm
    assert isinstance(exact.choose(LabeledArcs(2)), ClosedFormSolver)
    assert isinstance(exact.choose(SemanticGraph(2).relaxation().relaxation()), ClosedFormSolver)

    class Custom(SemanticGraph):
        pass

    assert isinstance(exact.choose(Custom(2)), ActiveSet)  # declarations are not inherited

    class Declared(SemanticGraph):
        preferred_exact_solver = "cvxpy"

    assert isinstance(exact.choose(Declared(2)), CvxpyQP)

    class Unknown(SemanticGraph):
        preferred_exact_solver = "simplex-method"

    with pytest.raises(ValueError, match="unknown solver"):
        exact.choose(Unknown(2))


def test_spigot_layer_default_solver_with_padding(rng):
    graph = SemanticGraph(3, unique_labels=(0, 1))
    scores = torch.from_numpy(np.stack([target(rng, 4, 3, (0, 1)) for _ in range(2)])).requires_grad_(True)
    lengths = torch.tensor([4, 2])
    z = spigot(scores, graph, lengths=lengths, eta=0.5, step="fixed")
    downstream = torch.from_numpy(rng.standard_normal(scores.shape))
    (z * downstream).sum().backward()
    for b, n in enumerate(lengths.tolist()):
        zb, gb = z[b, : n + 1, : n + 1].detach().numpy(), downstream[b, : n + 1, : n + 1].numpy()
        expected = zb - graph.project(zb - 0.5 * gb, solver="cvxpy").x
        assert np.abs(scores.grad[b, : n + 1, : n + 1].numpy() - expected).max() < 1e-6
        assert scores.grad[b, n + 1 :].abs().sum() == 0
