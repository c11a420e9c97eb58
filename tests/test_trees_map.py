"""MAP oracles of the tree polytopes: brute force, networkx, padding, input checks."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from spigot import Arborescence, HeadSelection, ProjectiveTree, SpanningTree

DEPENDENCY = [
    Arborescence(),
    Arborescence(single_root=True),
    ProjectiveTree(),
    ProjectiveTree(single_root=True),
]
ALL = DEPENDENCY + [SpanningTree(), HeadSelection()]


def event_size(polytope, n: int) -> int:
    """Side of the score matrix of an instance with n words (n nodes for spanning trees)."""
    return n if isinstance(polytope, SpanningTree) else n + 1


def brute_force_best(scores: np.ndarray, vertices: np.ndarray) -> float:
    return float(np.max(np.einsum("vij,ij->v", vertices, scores)))


@pytest.mark.parametrize(
    "polytope, counts",
    [
        (Arborescence(), [1, 3, 16, 125, 1296, 16807]),  # (n+1)^(n-1)
        (Arborescence(single_root=True), [1, 2, 9, 64, 625, 7776]),  # n^(n-1)
        (ProjectiveTree(), [1, 3, 12, 55, 273, 1428]),  # binom(3n, n) / (2n + 1)
        (ProjectiveTree(single_root=True), [1, 2, 7, 30, 143, 728]),  # binom(3n-2, n-1) / n
        (SpanningTree(), [1, 1, 3, 16, 125, 1296]),  # n^(n-2)
        (HeadSelection(), [1, 4, 27, 256, 3125, 46656]),  # n^n
    ],
    ids=["arborescence", "arborescence-single", "projective", "projective-single", "spanning", "heads"],
)
def test_vertex_counts_match_closed_formulas(polytope, counts):
    for n, expected in enumerate(counts, start=1):
        size = event_size(polytope, n)
        vertices = polytope.vertices((size, size))
        assert len(vertices) == expected
        assert len(np.unique(vertices.reshape(len(vertices), -1), axis=0)) == expected
        if not isinstance(polytope, SpanningTree):
            assert np.all(vertices[:, :, 0] == 0)
            assert np.all(np.trace(vertices, axis1=1, axis2=2) == 0)
            assert np.all(vertices.sum(axis=1)[:, 1:] == 1)  # one head per word
        else:
            assert np.all(np.tril(vertices) == 0) and np.all(vertices.sum(axis=(1, 2)) == n - 1)


@pytest.mark.parametrize("polytope", ALL, ids=repr)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_map_matches_brute_force(polytope, n):
    rng = np.random.default_rng(n)
    size = event_size(polytope, n)
    vertices = polytope.vertices((size, size))
    continuous = rng.normal(size=(12, size, size))
    ties = rng.integers(-2, 3, size=(6, size, size)).astype(np.float64)  # many ties
    scores = np.concatenate([continuous, ties])
    batched = polytope.map(scores)
    for s, z in zip(scores, batched):
        best = brute_force_best(s, vertices)
        assert np.isclose(np.sum(z * s), best, atol=1e-9)
        assert any(np.array_equal(z, v) for v in vertices)  # a vertex, not just a good score
        assert np.isclose(np.sum(polytope.map_one(s) * s), best, atol=1e-9)


def test_single_root_beats_greedy_root_choice():
    """The best single-root tree need not hang below the multi-root tree's best root child."""
    # Root prefers word 1, but word 1 only fits as a leaf; word 2 must head the sentence.
    scores = np.full((4, 4), -10.0)
    scores[0, 1], scores[0, 2], scores[0, 3] = 5.0, 1.0, -5.0
    scores[2, 1], scores[2, 3] = 4.0, 4.0
    scores[1, 2], scores[1, 3] = -20.0, -20.0
    polytope = Arborescence(single_root=True)
    best = brute_force_best(scores, polytope.vertices((4, 4)))
    z = polytope.map(scores)
    assert np.isclose(np.sum(z * scores), best)
    assert z[0, 2] == 1 and z[:, 0].sum() == 0 and z[0].sum() == 1


def _networkx_arborescence(scores: np.ndarray, words: range, root: int | None) -> float:
    graph = nx.DiGraph()
    for h in ([0] if root is None else []) + list(words):
        for m in words:
            if h != m and m != root:
                graph.add_edge(h, m, weight=scores[h, m])
    tree = nx.maximum_spanning_arborescence(graph)
    return sum(scores[h, m] for h, m in tree.edges())


@pytest.mark.parametrize("n", [7, 13, 24, 41, 60])
def test_arborescence_matches_networkx(n):
    rng = np.random.default_rng(100 + n)
    scores = rng.normal(size=(2, n + 1, n + 1))
    z = Arborescence().map(scores)
    for s, zi in zip(scores, z):
        assert np.isclose(np.sum(zi * s), _networkx_arborescence(s, range(1, n + 1), None))


@pytest.mark.parametrize("n", [5, 9, 12])
def test_single_root_arborescence_matches_networkx_over_root_children(n):
    rng = np.random.default_rng(200 + n)
    scores = rng.normal(size=(2, n + 1, n + 1))
    z = Arborescence(single_root=True).map(scores)
    for s, zi in zip(scores, z):
        best = max(
            s[0, r] + _networkx_arborescence(s, range(1, n + 1), root=r) for r in range(1, n + 1)
        )
        assert np.isclose(np.sum(zi * s), best)
        assert zi[0].sum() == 1


@pytest.mark.parametrize("n", [2, 8, 21, 40, 60])
def test_spanning_tree_matches_networkx(n):
    rng = np.random.default_rng(300 + n)
    scores = rng.normal(size=(n, n))
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from((i, j, scores[i, j]) for i in range(n) for j in range(i + 1, n))
    tree = nx.maximum_spanning_tree(graph)
    z = SpanningTree().map(scores)
    assert np.isclose(np.sum(z * scores), tree.size(weight="weight"))
    assert np.all(np.tril(z) == 0) and z.sum() == n - 1


@pytest.mark.parametrize("polytope", ALL, ids=repr)
def test_padded_batch_matches_cropped_instances(polytope):
    rng = np.random.default_rng(7)
    lengths = torch.tensor([6, 1, 4, 2, 6])
    size = event_size(polytope, 6)
    scores = torch.from_numpy(rng.normal(size=(5, size, size)))
    z = polytope.map(scores, lengths)
    for zi, si, n in zip(z, scores, lengths.tolist()):
        k = event_size(polytope, n)
        assert torch.equal(zi[:k, :k], polytope.map(si[:k, :k]))
        assert zi.sum() == zi[:k, :k].sum()  # padding stays 0


@pytest.mark.parametrize("polytope", ALL, ids=repr)
def test_padding_scores_never_influence_valid_entries(polytope):
    rng = np.random.default_rng(8)
    size = event_size(polytope, 5)
    scores = rng.normal(size=(size, size))
    noisy = scores + 1e3 * rng.normal(size=(size, size)) * (np.add.outer(np.arange(size), np.arange(size)) > 0)
    k = event_size(polytope, 3)
    noisy[:k, :k] = scores[:k, :k]
    lengths = np.array(3)
    assert np.array_equal(polytope.map(scores, lengths), polytope.map(noisy, lengths))


def test_arcs_into_root_and_diagonal_are_ignored():
    rng = np.random.default_rng(9)
    scores = rng.normal(size=(6, 6))
    loud = scores.copy()
    loud[:, 0] = 1e6
    np.fill_diagonal(loud, 1e6)
    for polytope in DEPENDENCY + [HeadSelection()]:
        assert np.array_equal(polytope.map(scores), polytope.map(loud))


@pytest.mark.parametrize("polytope", ALL, ids=repr)
def test_map_keeps_library_dtype_and_batch_shape(polytope):
    size = event_size(polytope, 4)
    scores = torch.randn(2, 3, size, size, dtype=torch.float32)
    z = polytope.map(scores)
    assert z.shape == scores.shape and z.dtype == torch.float32
    z_np = polytope.map(scores.double().numpy())
    assert isinstance(z_np, np.ndarray) and np.array_equal(z_np, z.double().numpy())


@pytest.mark.parametrize("polytope", DEPENDENCY + [HeadSelection()], ids=repr)
def test_dependency_input_errors_name_the_argument(polytope):
    with pytest.raises(ValueError, match="scores.*square"):
        polytope.map(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="scores.*square"):
        polytope.map(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="NaN"):
        polytope.map(torch.full((4, 4), float("nan")))
    with pytest.raises(ValueError, match="lengths"):
        polytope.map(torch.zeros(2, 4, 4), torch.tensor([3, 4]))  # 4 words need a 5x5 matrix
    with pytest.raises(ValueError, match="lengths"):
        polytope.map(torch.zeros(2, 4, 4), torch.tensor([0, 2]))


def test_spanning_tree_input_errors_and_single_node():
    with pytest.raises(ValueError, match="scores.*square"):
        SpanningTree().map(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="lengths"):
        SpanningTree().map(torch.zeros(2, 3, 3), torch.tensor([4, 2]))
    assert torch.equal(SpanningTree().map(torch.ones(1, 1)), torch.zeros(1, 1))


def test_single_root_option_must_be_boolean():
    with pytest.raises(TypeError, match="single_root"):
        Arborescence(single_root="yes")
    with pytest.raises(TypeError, match="single_root"):
        ProjectiveTree(single_root=1)


def test_vertices_refuses_huge_enumerations():
    with pytest.raises(ValueError, match="tiny"):
        Arborescence().vertices((12, 12))


@pytest.mark.cuda
@pytest.mark.parametrize("polytope", ALL, ids=repr)
def test_cuda_tensors_give_the_cpu_results(polytope, target_device):
    size = event_size(polytope, 7)
    scores = torch.randn(3, size, size, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5])
    z = polytope.map(scores.to(target_device), lengths)
    assert z.device == target_device and torch.equal(z.cpu(), polytope.map(scores, lengths))
    mu = polytope.marginals(scores.to(target_device), lengths)
    torch.testing.assert_close(mu.cpu(), polytope.marginals(scores, lengths))
    solver = "closed-form" if isinstance(polytope, HeadSelection) else "active-set"
    p = polytope.project(scores.to(target_device), solver=solver, lengths=lengths).x
    torch.testing.assert_close(p.cpu(), polytope.project(scores, solver=solver, lengths=lengths).x)
