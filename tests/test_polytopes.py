"""MAP oracles and marginals of the simplex family against brute-force enumeration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytope_cases import CASE_IDS, CASES
from spigot.polytopes import Budget, ProductOfSimplices, Simplex, UnitCube


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_map_maximizes_over_enumerated_vertices(case, rng):
    _, polytope, shape, vertices = case
    verts = vertices()
    scores = rng.normal(size=(50, *shape))
    z = polytope.map(scores)
    assert isinstance(z, np.ndarray) and z.shape == scores.shape
    best = np.max(verts.reshape(len(verts), -1) @ scores.reshape(50, -1).T, axis=0)
    achieved = np.sum(z * scores, axis=tuple(range(1, scores.ndim)))
    np.testing.assert_allclose(achieved, best, atol=1e-12)
    flat = verts.reshape(len(verts), -1)
    for zi in z.reshape(50, -1):  # every output is one of the vertices
        assert np.any(np.all(flat == zi, axis=1))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_map_one_and_map_batch_agree(case, rng):
    _, polytope, shape, _ = case
    scores = torch.from_numpy(rng.normal(size=(20, *shape)))
    batched = polytope.map_batch(scores, None)
    looped = np.stack([polytope.map_one(s.numpy()) for s in scores])
    np.testing.assert_array_equal(batched.numpy(), looped)


@pytest.mark.parametrize("polytope", [Simplex(), UnitCube(), Budget(2), Budget(2, at_most=True)], ids=repr)
def test_map_with_lengths_matches_cropped_instances(polytope, rng):
    scores = torch.from_numpy(rng.normal(size=(6, 7)))
    lengths = torch.tensor([7, 2, 3, 5, 2, 6])
    z = polytope.map(scores, lengths)
    for zi, si, n in zip(z, scores, lengths.tolist()):
        np.testing.assert_array_equal(zi[:n].numpy(), polytope.map_one(si[:n].numpy()))
        assert torch.all(zi[n:] == 0)


def test_product_of_simplices_lengths_count_groups(rng):
    scores = torch.from_numpy(rng.normal(size=(3, 4, 5)))
    z = ProductOfSimplices().map(scores, torch.tensor([4, 1, 2]))
    assert z.sum(dim=(1, 2)).tolist() == [4.0, 1.0, 2.0]
    assert torch.all(z[1, 1:] == 0) and torch.all(z[2, 2:] == 0)


def test_map_keeps_batch_shape_device_and_dtype(rng):
    scores = torch.from_numpy(rng.normal(size=(2, 3, 6))).float()
    z = Simplex().map(scores)
    assert z.shape == (2, 3, 6) and z.dtype == torch.float32
    assert torch.all(z.sum(-1) == 1)


def test_integer_scores_are_accepted():
    z = Simplex().map(torch.tensor([1, 5, 2]))
    assert z.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("case", CASES[:5], ids=CASE_IDS[:5])
def test_marginals_match_brute_force_gibbs_expectation(case, rng):
    _, polytope, shape, vertices = case
    verts = vertices()
    flat = verts.reshape(len(verts), -1)
    scores = rng.normal(size=(8, *shape))
    mu = polytope.marginals(torch.from_numpy(scores)).numpy()
    for s, m in zip(scores, mu):
        logits = flat @ s.ravel()
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        np.testing.assert_allclose(m.ravel(), probs @ flat, atol=1e-10)


@pytest.mark.parametrize("polytope", [Simplex(), UnitCube(), Budget(2), Budget(2, at_most=True)], ids=repr)
def test_marginals_with_lengths_and_gradients(polytope, rng):
    scores = torch.from_numpy(rng.normal(size=(3, 6))).requires_grad_(True)
    lengths = torch.tensor([6, 3, 4])
    mu = polytope.marginals(scores, lengths)
    for mi, si, n in zip(mu, scores, lengths.tolist()):
        ref = polytope.marginals(si[:n].detach()[None])[0]
        torch.testing.assert_close(mi[:n].detach(), ref)
        assert torch.all(mi[n:] == 0)
    assert torch.autograd.gradcheck(lambda s: polytope.marginals(s, lengths), (scores,))


def test_supports_reports_optional_hooks():
    from polytope_cases import ExactlyTwo

    assert Simplex().supports("constraints") and Simplex().supports("marginals_batch")
    user = ExactlyTwo()
    assert not any(user.supports(c) for c in ("map_batch", "constraints", "vertices", "marginals_batch"))
    with pytest.raises(ValueError, match="capability"):
        user.supports("projection")
