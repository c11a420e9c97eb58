"""Permutations and BipartiteMatchings against brute force and independent cvxpy models."""

import math

import numpy as np
import pytest
import torch

from spigot import SPIGOT, BipartiteMatchings, Permutations
from tests.reference import hull_projection

# vanilla Frank-Wolfe converges sublinearly and need not reach its tolerance on these instances
MAP_ONLY = ("active-set", "pairwise-frank-wolfe", "away-frank-wolfe", "exact")


def brute_force_map(vertices: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return vertices[np.argmax(np.einsum("vij,ij->v", vertices, scores))]


def test_vertex_counts():
    # n! permutations; partial matchings of r x c: sum_k C(r,k) C(c,k) k!
    for n in range(1, 5):
        assert len(Permutations().vertices((n, n))) == math.factorial(n)
    for r, c in [(1, 1), (2, 3), (3, 3), (3, 4)]:
        count = sum(math.comb(r, k) * math.comb(c, k) * math.factorial(k) for k in range(min(r, c) + 1))
        vertices = BipartiteMatchings().vertices((r, c))
        assert len(vertices) == count == len({v.tobytes() for v in vertices})
        assert (vertices.sum(axis=1) <= 1).all() and (vertices.sum(axis=2) <= 1).all()


@pytest.mark.parametrize(("polytope", "shape"), [(Permutations(), (4, 4)), (BipartiteMatchings(), (3, 4)), (BipartiteMatchings(), (4, 3))])
def test_map_against_brute_force(polytope, shape):
    rng = np.random.default_rng(0)
    vertices = polytope.vertices(shape)
    scores = rng.normal(size=(60, *shape))
    batched = polytope.map(torch.from_numpy(scores))
    for b in range(len(scores)):
        best = brute_force_map(vertices, scores[b])
        assert np.isclose((best * scores[b]).sum(), (batched[b].numpy() * scores[b]).sum())
        np.testing.assert_array_equal(polytope.map_one(scores[b]), batched[b].numpy())


def test_map_with_lengths_equals_the_unpadded_instances():
    rng = np.random.default_rng(1)
    scores = torch.from_numpy(rng.normal(size=(3, 5, 5)))
    z = Permutations().map(scores, lengths=torch.tensor([2, 5, 4]))
    for b, n in enumerate([2, 5, 4]):
        torch.testing.assert_close(z[b, :n, :n], Permutations().map(scores[b, :n, :n]))
        assert z[b].sum() == n
    lengths = torch.tensor([[2, 5], [5, 1], [3, 3]])
    z = BipartiteMatchings().map(scores, lengths=lengths)
    for b, (r, c) in enumerate(lengths.tolist()):
        torch.testing.assert_close(z[b, :r, :c], BipartiteMatchings().map(scores[b, :r, :c]))
        assert z[b].sum() == z[b, :r, :c].sum()
    with pytest.raises(ValueError, match="square"):
        Permutations().map(torch.zeros(3, 4))


@pytest.mark.parametrize(("polytope", "shape"), [(Permutations(), (4, 4)), (BipartiteMatchings(), (3, 4))])
def test_every_solver_against_cvxpy_and_the_hull(polytope, shape):
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(3, *shape)))
    exact = polytope.project(x, solver="cvxpy")
    vertices = polytope.vertices(shape)
    for b in range(3):  # the constraints model against the convex hull of the enumerated vertices
        np.testing.assert_allclose(exact.x[b].numpy(), hull_projection(x[b].numpy(), vertices), atol=1e-5)
    for solver in MAP_ONLY:
        result = polytope.project(x, solver=solver)
        assert bool(result.success.all()), solver
        np.testing.assert_allclose(result.x.numpy(), exact.x.numpy(), atol=1e-5, err_msg=solver)


def test_padded_projection_and_spigot_gradient():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(size=(2, 4, 5)))
    lengths = torch.tensor([[2, 3], [4, 5]])
    result = BipartiteMatchings().project(x, solver="active-set", lengths=lengths)
    alone = BipartiteMatchings().project(x[0, :2, :3], solver="cvxpy")
    np.testing.assert_allclose(result.x[0, :2, :3].numpy(), alone.x.numpy(), atol=1e-6)
    assert result.x[0, 2:].abs().sum() == 0 and result.x[0, :, 3:].abs().sum() == 0
    padded_cvxpy = BipartiteMatchings().project(x, solver="cvxpy", lengths=lengths)
    np.testing.assert_allclose(padded_cvxpy.x.numpy(), result.x.numpy(), atol=1e-6)
    scores = x.clone().requires_grad_(True)
    z = SPIGOT(BipartiteMatchings(), solver="active-set")(scores, lengths=lengths)
    (z * torch.from_numpy(rng.normal(size=(2, 4, 5)))).sum().backward()
    assert scores.grad[0, 2:].abs().sum() == 0 and scores.grad[0, :, 3:].abs().sum() == 0
    assert scores.grad.abs().sum() > 0


def test_matchings_on_square_all_positive_scores_are_permutations():
    rng = np.random.default_rng(4)
    scores = rng.uniform(0.1, 1.0, size=(20, 4, 4))
    np.testing.assert_array_equal(
        BipartiteMatchings().map(torch.from_numpy(scores)).numpy(), Permutations().map(torch.from_numpy(scores)).numpy()
    )
