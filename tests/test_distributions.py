"""log_partition, entropy and sample against brute force (enumerated vertices) on small instances."""

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from spigot import UnsupportedOperation
from spigot.polytopes import (
    Arborescence,
    Budget,
    HeadSelection,
    Permutations,
    ProductOfSimplices,
    ProjectiveTree,
    Simplex,
    SpanningTree,
    UnitCube,
)

#: (id, polytope, event shape, lengths of a batch of two)
CASES = [
    ("simplex", Simplex(), (5,), [3, 5]),
    ("product", ProductOfSimplices(), (3, 3), [2, 3]),
    ("cube", UnitCube(), (4,), [2, 4]),
    ("budget", Budget(2), (5,), [3, 5]),
    ("budget-at-most", Budget(2, at_most=True), (4,), [1, 4]),
    ("head-selection", HeadSelection(), (4, 4), [2, 3]),
    ("arborescence", Arborescence(), (5, 5), [3, 4]),
    ("arborescence-single-root", Arborescence(single_root=True), (5, 5), [2, 4]),
    ("projective", ProjectiveTree(), (5, 5), [3, 4]),
    ("projective-single-root", ProjectiveTree(single_root=True), (5, 5), [1, 4]),
    ("spanning-tree", SpanningTree(), (5, 5), [3, 5]),
]
IDS = [case[0] for case in CASES]


def brute_force(polytope, scores: torch.Tensor):
    """Vertices, log Z, probabilities and entropy of one unpadded instance by enumeration."""
    vertices = torch.from_numpy(polytope.vertices(tuple(scores.shape)))
    logits = torch.einsum("v...,...->v", vertices, scores)
    log_z = torch.logsumexp(logits, dim=0)
    probs = torch.softmax(logits, dim=0)
    return vertices, log_z, probs, -(probs * torch.log(probs)).sum()


def instance(polytope, scores, shape, length):
    return scores[polytope.valid_slices(shape, length)]


@pytest.mark.parametrize(("name", "polytope", "shape", "lengths"), CASES, ids=IDS)
def test_log_partition_and_entropy_against_brute_force(name, polytope, shape, lengths):
    scores = torch.randn(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    leaf = scores.clone().requires_grad_(True)
    log_z = polytope.log_partition(leaf, lengths=torch.tensor(lengths))
    entropy = polytope.entropy(leaf, lengths=torch.tensor(lengths))
    assert log_z.shape == entropy.shape == (2,)
    for b, length in enumerate(lengths):
        part = instance(polytope, scores[b], shape, length).clone().requires_grad_(True)
        _, ref_log_z, _, ref_entropy = brute_force(polytope, part)
        torch.testing.assert_close(log_z[b], ref_log_z.detach(), atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(entropy[b], ref_entropy.detach(), atol=1e-10, rtol=1e-10)
        # gradients: of log Z, the marginals; of the entropy, the brute-force entropy's gradient
        (grad_log_z,) = torch.autograd.grad(log_z[b], leaf, retain_graph=True)
        (grad_entropy,) = torch.autograd.grad(entropy[b], leaf, retain_graph=True)
        (ref_grad_log_z, ref_grad_entropy) = (
            torch.autograd.grad(brute_force(polytope, part)[k], part)[0] for k in (1, 3)
        )
        mask = torch.zeros(shape, dtype=torch.bool)
        mask[polytope.valid_slices(shape, length)] = True
        torch.testing.assert_close(grad_log_z[b][mask].reshape(part.shape), ref_grad_log_z, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(grad_entropy[b][mask].reshape(part.shape), ref_grad_entropy, atol=1e-8, rtol=1e-8)
        assert grad_log_z[b][~mask].abs().sum() == 0 and grad_entropy[b][~mask].abs().sum() == 0
        torch.testing.assert_close(
            grad_log_z[b], polytope.marginals(scores[b : b + 1], torch.tensor([length]))[0], atol=1e-9, rtol=1e-9
        )


@pytest.mark.parametrize(("name", "polytope", "shape", "lengths"), CASES, ids=IDS)
def test_samples_follow_the_gibbs_distribution(name, polytope, shape, lengths):
    """Pearson's chi-square over the vertices, at the 1e-4 level (a fixed seed: deterministic).

    With ``n = 4000`` draws and every expected count at least 5 (rarer vertices are pooled),
    the statistic of exact samples exceeds the 0.9999 quantile with probability 1e-4 per
    instance. Its power: sampling frequencies ``q`` instead of ``p`` add about
    ``n * sum (q - p)^2 / p``, e.g. 36 for one vertex of probability 0.1 drawn 3 points too
    often, against a quantile 26 above the statistic's mean ``df`` at ``df = 10`` and 46 at
    ``df = 50`` (``scipy.stats.chi2.ppf(1 - 1e-4, df)``: 35.6 and 96.0).
    """
    n = 4000
    scores = torch.randn(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    draws = polytope.sample(scores, lengths=torch.tensor(lengths), n=n, generator=torch.Generator().manual_seed(2))
    assert draws.shape == (n, 2, *shape) and draws.dtype == scores.dtype
    for b, length in enumerate(lengths):
        mask = torch.zeros(shape, dtype=torch.bool)
        mask[polytope.valid_slices(shape, length)] = True
        assert draws[:, b][:, ~mask].abs().sum() == 0, "padded entries of a sample must be 0"
        part = instance(polytope, scores[b], shape, length)
        vertices, _, probs, _ = brute_force(polytope, part)
        valid = draws[:, b][:, mask].reshape(n, -1)
        hits = (valid[:, None, :] == vertices.reshape(len(vertices), -1)[None]).all(dim=-1)
        assert bool((hits.sum(dim=1) == 1).all()), "every sample must be a vertex"
        observed, expected = hits.sum(dim=0).double(), probs * n
        common = expected >= 5
        observed = torch.cat([observed[common], observed[~common].sum()[None]])
        expected = torch.cat([expected[common], expected[~common].sum()[None]])
        keep = expected > 0
        statistic = (((observed - expected) ** 2)[keep] / expected[keep]).sum().item()
        df = int(keep.sum()) - 1
        assert statistic <= (chi2.ppf(1 - 1e-4, df=df) if df > 0 else 0.0), (name, b, statistic)


def test_sample_shapes_numpy_and_arguments():
    scores = np.random.default_rng(0).normal(size=(3, 2, 4))
    draws = UnitCube().sample(scores, n=5)
    assert isinstance(draws, np.ndarray) and draws.shape == (5, 3, 2, 4)
    one = Simplex().sample(torch.randn(4), n=3)
    assert one.shape == (3, 4) and bool((one.sum(-1) == 1).all())
    assert Simplex().log_partition(torch.zeros(4)).shape == ()
    with pytest.raises(ValueError, match="n must be a positive integer"):
        Simplex().sample(torch.randn(4), n=0)
    with pytest.raises(TypeError, match="generator"):
        Simplex().sample(torch.randn(4), generator=0)
    for method in ("log_partition", "entropy", "sample"):
        with pytest.raises(UnsupportedOperation):
            getattr(Permutations(), method)(torch.randn(3, 3))
    assert Arborescence().supports("sample_batch") and not Permutations().supports("log_partition_batch")


def test_same_seed_same_samples():
    scores = torch.randn(2, 5, 5, dtype=torch.float64)
    first = Arborescence().sample(scores, n=20, generator=torch.Generator().manual_seed(3))
    again = Arborescence().sample(scores, n=20, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, again)


def test_log_partition_moves_with_a_constant_shift_of_constant_sum_structures():
    """log Z(s + c) = log Z(s) + c k when every vertex has k ones (validation's shift must not hide it)."""
    scores = torch.randn(3, 6, dtype=torch.float64)
    for polytope, k in ((Simplex(), 1), (Budget(2), 2)):
        shifted = polytope.log_partition(scores + 5.0)
        torch.testing.assert_close(shifted, polytope.log_partition(scores) + 5.0 * k)
    arcs = torch.randn(2, 5, 5, dtype=torch.float64)
    for polytope in (Arborescence(), ProjectiveTree()):
        torch.testing.assert_close(polytope.log_partition(arcs + 3.0), polytope.log_partition(arcs) + 3.0 * 4)
