"""STE-S, SPIGOT-CE and SPIGOT-EG on structures without marginals, through the SparseMAP point.

The reference is independent of every spigot solver: projections onto the convex hull of the
enumerated vertices by a cvxpy QP over convex weights (tests/reference.py).
"""

import numpy as np
import pytest
import torch

from spigot import (
    Permutations,
    Simplex,
    SpigotCE,
    SpigotEG,
    StraightThroughMarginals,
    UnsupportedOperation,
    spigot_ce,
    spigot_eg,
)
from tests.polytope_cases import ExactlyTwo, exactly_two_vertices
from tests.reference import hull_projection

#: (id, polytope, event shape, vertices)
CASES = [
    ("user-exactly-two", ExactlyTwo(), (5,), exactly_two_vertices(5)),
    ("permutations", Permutations(), (3, 3), Permutations().vertices((3, 3))),
    ("simplex-sparsemap", Simplex(), (4,), np.eye(4)),
]
IDS = [case[0] for case in CASES]
ETA = 0.7


def _gradient(module, scores, g, lengths=None):
    leaf = scores.clone().requires_grad_(True)
    out = module(leaf, lengths=lengths)
    (grad,) = torch.autograd.grad(out, leaf, g)
    return out.detach(), grad


@pytest.mark.parametrize(("name", "polytope", "shape", "vertices"), CASES, ids=IDS)
def test_ce_and_eg_against_hull_projections(name, polytope, shape, vertices):
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.normal(size=(3, *shape)))
    g = torch.from_numpy(rng.normal(size=(3, *shape)))
    ce = SpigotCE(polytope, eta=ETA, step="fixed", marginals="sparsemap", solver="active-set", tol=1e-12)
    eg = SpigotEG(polytope, eta=ETA, step="fixed", marginals="sparsemap", solver="active-set", tol=1e-12)
    z, grad_ce = _gradient(ce, scores, g)
    _, grad_eg = _gradient(eg, scores, g)
    p, _ = _gradient(SpigotCE(polytope, marginals="sparsemap", output="marginals"), scores, g)
    torch.testing.assert_close(z, polytope.map(scores))
    for b in range(3):
        s, gb = scores[b].numpy(), g[b].numpy()
        point = hull_projection(s, vertices)
        np.testing.assert_allclose(p[b].numpy(), point, atol=1e-6)
        expected_ce = point - hull_projection(point - ETA * gb, vertices)
        expected_eg = point - hull_projection(s - ETA * gb, vertices)
        np.testing.assert_allclose(grad_ce[b].numpy(), expected_ce, atol=1e-6)
        np.testing.assert_allclose(grad_eg[b].numpy(), expected_eg, atol=1e-6)


def test_auto_picks_the_sparsemap_point_only_without_marginals():
    assert SpigotCE(ExactlyTwo()).marginals == "sparsemap" and "marginals='sparsemap'" in repr(SpigotEG(Permutations()))
    assert SpigotCE(Simplex()).marginals == "gibbs" and SpigotEG(Simplex()).marginals == "gibbs"
    with pytest.raises(UnsupportedOperation, match="marginals"):
        SpigotEG(Permutations(), marginals="gibbs")
    with pytest.raises(ValueError, match="marginals must be one of"):
        spigot_ce(torch.zeros(4), Simplex(), marginals="entropy")
    # functional form on numpy: the SparseMAP point as output
    point = spigot_eg(np.array([0.3, 0.1, 0.2, -2.0]), Simplex(), marginals="sparsemap", output="marginals")
    # sparsemax by hand: the support is the three largest, threshold (0.6 - 1) / 3
    np.testing.assert_allclose(point, np.array([0.3 + 0.4 / 3, 0.1 + 0.4 / 3, 0.2 + 0.4 / 3, 0.0]), atol=1e-9)


def test_padding_with_the_sparsemap_point():
    rng = np.random.default_rng(1)
    scores = torch.from_numpy(rng.normal(size=(2, 4, 4)))
    g = torch.from_numpy(rng.normal(size=(2, 4, 4)))
    lengths = torch.tensor([3, 4])
    for cls in (SpigotCE, SpigotEG):
        module = cls(Permutations(), eta=ETA)
        _, grad = _gradient(module, scores, g, lengths)
        _, alone = _gradient(module, scores[:1, :3, :3], g[:1, :3, :3])
        assert grad[0, 3:].abs().sum() == 0 and grad[0, :, 3:].abs().sum() == 0
        torch.testing.assert_close(grad[0, :3, :3], alone[0], atol=1e-8, rtol=0)


@pytest.mark.parametrize(("name", "polytope", "shape", "vertices"), CASES, ids=IDS)
def test_ste_s_is_the_jacobian_of_the_projection(name, polytope, shape, vertices):
    """Against central differences of the cvxpy hull projection (piecewise linear: exact away from kinks)."""
    rng = np.random.default_rng(2)
    scores = torch.from_numpy(rng.normal(size=(3, *shape)))
    g = torch.from_numpy(rng.normal(size=(3, *shape)))
    module = StraightThroughMarginals(polytope, marginals="sparsemap")
    z, grad = _gradient(module, scores, g)
    torch.testing.assert_close(z, polytope.map(scores))
    step = 1e-4
    for b in range(3):
        s, gb = scores[b].numpy(), g[b].numpy()
        jvp = (hull_projection(s + step * gb, vertices) - hull_projection(s - step * gb, vertices)) / (2 * step)
        np.testing.assert_allclose(grad[b].numpy(), jvp, atol=1e-4)  # J is symmetric: J^T g = J g
    assert StraightThroughMarginals(ExactlyTwo()).marginals == "sparsemap"
    assert StraightThroughMarginals(Simplex()).marginals == "gibbs"
