"""Marginals of the tree polytopes: brute-force sums, stability, padding, differentiability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from spigot import Arborescence, HeadSelection, NumericalError, ProjectiveTree, SpanningTree
from spigot.polytopes._tree_marginals import TOLERANCE

ALL = [
    Arborescence(),
    Arborescence(single_root=True),
    ProjectiveTree(),
    ProjectiveTree(single_root=True),
    SpanningTree(),
    HeadSelection(),
]


def event_size(polytope, n: int) -> int:
    return n if isinstance(polytope, SpanningTree) else n + 1


def brute_force_marginals(scores: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """E[z] under p(z) ~ exp<s, z>, summed over every enumerated vertex in log space."""
    energies = np.einsum("vij,ij->v", vertices, scores)
    probs = np.exp(energies - logsumexp(energies))
    return np.einsum("v,vij->ij", probs, vertices)


@pytest.mark.parametrize("polytope", ALL, ids=repr)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_marginals_match_brute_force(polytope, n):
    rng = np.random.default_rng(10 + n)
    size = event_size(polytope, n)
    vertices = polytope.vertices((size, size))
    scores = rng.normal(size=(4, size, size)) * 2.0
    mu = polytope.marginals(torch.from_numpy(scores)).numpy()
    for s, m in zip(scores, mu):
        np.testing.assert_allclose(m, brute_force_marginals(s, vertices), atol=1e-10)


@pytest.mark.parametrize("polytope", ALL, ids=repr)
def test_marginals_are_stable_for_large_scores(polytope):
    rng = np.random.default_rng(11)
    size = event_size(polytope, 4)
    vertices = polytope.vertices((size, size))
    scores = rng.normal(size=(size, size)) * 300.0  # exp() would overflow without rescaling
    mu = polytope.marginals(torch.from_numpy(scores)).numpy()
    assert np.all(np.isfinite(mu))
    np.testing.assert_allclose(mu, brute_force_marginals(scores, vertices), atol=1e-8)


def cycle_scores(gap: float, n: int = 5, seed: int = 0) -> np.ndarray:
    """Words 1 and 2 prefer each other as heads; every other arc scores about ``gap`` lower."""
    rng = np.random.default_rng(seed)
    scores = -gap + rng.normal(size=(n + 1, n + 1))
    scores[1, 2], scores[2, 1] = 0.0, 0.3
    scores[0, 3:] = rng.normal(size=n - 2)
    return scores


@pytest.mark.parametrize("single_root", [False, True])
@pytest.mark.parametrize("gap", [30.0, 40.0, 80.0, 300.0])
def test_marginals_are_accurate_when_the_laplacian_is_singular_to_working_precision(single_root, gap):
    """Gaps beyond about 37 round the diagonal of the Laplacian (the inverse alone went wrong silently)."""
    polytope = Arborescence(single_root=single_root)
    vertices = polytope.vertices((6, 6))
    scores = np.stack([cycle_scores(gap), np.random.default_rng(1).normal(size=(6, 6))])
    mu = polytope.marginals(torch.from_numpy(scores)).numpy()
    for s, m in zip(scores, mu):
        np.testing.assert_allclose(m, brute_force_marginals(s, vertices), atol=1e-12)


@pytest.mark.parametrize("single_root", [False, True])
def test_marginals_of_widely_spread_scores_with_padding_match_brute_force(single_root):
    polytope = Arborescence(single_root=single_root)
    rng = np.random.default_rng(12)
    scores = rng.normal(size=(30, 7, 7)) * 40.0
    lengths = rng.integers(1, 7, size=30)
    mu = polytope.marginals(torch.from_numpy(scores), lengths=torch.from_numpy(lengths)).numpy()
    for s, m, n in zip(scores, mu, lengths):
        vertices = polytope.vertices((n + 1, n + 1))
        expected = brute_force_marginals(s[: n + 1, : n + 1], vertices)
        np.testing.assert_allclose(m[: n + 1, : n + 1], expected, atol=2 * TOLERANCE[torch.float64])
        assert not m[n + 1 :].any() and not m[:, n + 1 :].any()


@pytest.mark.parametrize("single_root", [False, True])
def test_accurate_marginals_are_differentiable(single_root):
    """A batch mixing a well-conditioned and an ill-conditioned instance: gradcheck, no NaN."""
    scores = torch.from_numpy(np.stack([np.random.default_rng(2).normal(size=(5, 5)), cycle_scores(45.0, n=4)]))
    polytope = Arborescence(single_root=single_root)
    x = scores.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: polytope.marginals(t, lengths=torch.tensor([4, 4])), (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("single_root", [False, True])
def test_marginals_beyond_float64_raise_a_clear_error(single_root):
    scores = torch.from_numpy(np.stack([np.random.default_rng(3).normal(size=(6, 6)), cycle_scores(1000.0)]))
    with pytest.raises(NumericalError, match=r"undefined in floating point for instance\(s\) \[1\]"):
        Arborescence(single_root=single_root).marginals(scores)


def test_spanning_tree_marginals_with_widely_spread_scores_match_brute_force():
    polytope = SpanningTree()
    vertices = polytope.vertices((5, 5))
    scores = np.random.default_rng(13).normal(size=(20, 5, 5)) * 60.0
    mu = polytope.marginals(torch.from_numpy(scores)).numpy()
    for s, m in zip(scores, mu):
        np.testing.assert_allclose(m, brute_force_marginals(s, vertices), atol=2 * TOLERANCE[torch.float64])


@pytest.mark.parametrize("polytope", ALL, ids=repr)
def test_marginals_lie_in_the_polytope_at_n40(polytope):
    size = event_size(polytope, 40)
    scores = torch.randn(2, size, size, dtype=torch.float64) * 3.0
    mu = polytope.marginals(scores)
    assert torch.isfinite(mu).all() and (mu >= -1e-12).all()
    if isinstance(polytope, SpanningTree):
        assert torch.allclose(mu.sum(dim=(1, 2)), torch.full((2,), size - 1.0, dtype=torch.float64))
    else:
        assert torch.allclose(mu.sum(dim=1)[:, 1:], torch.ones(2, size - 1, dtype=torch.float64))
        assert (mu[:, :, 0] == 0).all() and (torch.diagonal(mu, dim1=1, dim2=2) == 0).all()
        if getattr(polytope, "single_root", False):
            assert torch.allclose(mu[:, 0].sum(dim=1), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("polytope", ALL, ids=repr)
def test_padded_marginals_match_cropped_instances(polytope):
    rng = np.random.default_rng(12)
    lengths = torch.tensor([5, 2, 1, 4])
    size = event_size(polytope, 5)
    scores = torch.from_numpy(rng.normal(size=(4, size, size)))
    mu = polytope.marginals(scores, lengths)
    for mi, si, n in zip(mu, scores, lengths.tolist()):
        k = event_size(polytope, n)
        torch.testing.assert_close(mi[:k, :k], polytope.marginals(si[:k, :k]), atol=1e-12, rtol=0)
        assert mi.abs().sum() == pytest.approx(mi[:k, :k].abs().sum())


@pytest.mark.parametrize("polytope", ALL, ids=repr)
def test_marginals_are_differentiable(polytope):
    size = event_size(polytope, 3)
    scores = torch.randn(2, size, size, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 2])
    assert torch.autograd.gradcheck(lambda s: polytope.marginals(s, lengths), (scores,))


@pytest.mark.parametrize("polytope", ALL, ids=repr)
def test_marginals_follow_dtype_and_numpy(polytope):
    size = event_size(polytope, 3)
    scores = torch.randn(size, size, dtype=torch.float32)
    mu = polytope.marginals(scores)
    assert mu.dtype == torch.float32 and mu.shape == scores.shape
    mu_np = polytope.marginals(scores.double().numpy())
    assert isinstance(mu_np, np.ndarray)
    np.testing.assert_allclose(mu_np, mu.double().numpy(), atol=1e-6)


@pytest.mark.parametrize("single_root", [False, True])
def test_marginals_with_underflowing_arcs_raise_a_clear_error(single_root):
    """Scores so spread that no arborescence keeps a non-zero weight: an error, never NaN."""
    scores = torch.zeros(2, 6, 6, dtype=torch.float64)
    for word, head in ((3, 4), (4, 3)):  # words 3 and 4 can only take each other as head
        scores[1, :, word] = -2000.0
        scores[1, head, word] = 0.0
    with pytest.raises(NumericalError, match=r"undefined in floating point for instance\(s\) \[1\]"):
        Arborescence(single_root=single_root).marginals(scores)
    assert torch.isfinite(Arborescence(single_root=single_root).marginals(scores[:1])).all()
