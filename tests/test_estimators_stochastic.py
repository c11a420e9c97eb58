"""Perturbed maximizers and I-MLE against closed forms, quadrature and brute force.

Tolerances are five standard errors of the Monte-Carlo mean (the generator is seeded, so each
test is deterministic; five standard errors keep the seed choice from mattering). A forward
coordinate is a mean of M Bernoulli draws, standard error at most 0.5 / sqrt(M); a gradient
coordinate is a mean of M draws of <y, g> Z_j / sigma, standard error at most
max|<y, g>| / (sigma sqrt(M)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from estimator_reference import brute_map, central_jacobian, gaussian_argmax_probabilities
from polytope_cases import ExactlyTwo, exactly_two_vertices
from spigot.autodiff import IMLE, PerturbedMaximizer, imle, make_estimator, perturbed
from spigot.autodiff.noise import sample_noise, standard_gamma
from spigot.polytopes import Budget, ProductOfSimplices, Simplex, UnitCube

M = 40_000
FORWARD_TOL = 5 * 0.5 / math.sqrt(M)


def _forward_backward(fn, x: np.ndarray, g: np.ndarray):
    leaf = torch.from_numpy(x).requires_grad_(True)
    out = fn(leaf)
    (grad,) = torch.autograd.grad(out, leaf, torch.from_numpy(g))
    return out.detach().numpy(), grad.numpy()


def _gradient_tol(g: np.ndarray, sigma: float, ones: float = 1.0) -> float:
    """Five standard errors of a gradient coordinate; |<y, g>| <= ones * max|g|."""
    return 5 * ones * float(np.abs(g).max()) / (sigma * math.sqrt(M))


# ----------------------------------------------------------------------------- perturbed maximizers
@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_perturbed_on_two_choices_matches_the_normal_cdf(sigma, rng):
    """k = 2: y_1 = Phi((s_1 - s_2) / (sigma sqrt 2)), J = phi(.) / (sigma sqrt 2) [[1, -1], [-1, 1]]."""
    x, g = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    generator = torch.Generator().manual_seed(1)
    out, grad = _forward_backward(lambda t: perturbed(t, Simplex(), sigma, M, generator=generator), x, g)
    scale = sigma * math.sqrt(2)
    delta = (x[:, 0] - x[:, 1]) / scale
    expected_out = np.stack([stats.norm.cdf(delta), stats.norm.cdf(-delta)], axis=1)
    slope = stats.norm.pdf(delta) / scale
    expected_grad = np.stack([slope * (g[:, 0] - g[:, 1]), slope * (g[:, 1] - g[:, 0])], axis=1)
    np.testing.assert_allclose(out, expected_out, atol=FORWARD_TOL)
    np.testing.assert_allclose(grad, expected_grad, atol=_gradient_tol(g, sigma))


def test_perturbed_on_three_choices_matches_quadrature(rng):
    """k = 3: y_i = int phi(t) prod_j Phi((s_i - s_j)/sigma + t) dt; J by differences of it."""
    sigma = 0.8
    x, g = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    generator = torch.Generator().manual_seed(2)
    out, grad = _forward_backward(lambda t: perturbed(t, Simplex(), sigma, M, generator=generator), x, g)
    for xi, gi, oi, di in zip(x, g, out, grad):
        np.testing.assert_allclose(oi, gaussian_argmax_probabilities(xi, sigma), atol=FORWARD_TOL)
        jacobian = central_jacobian(lambda t: gaussian_argmax_probabilities(t, sigma), xi, 1e-4)
        np.testing.assert_allclose(di, jacobian.T @ gi, atol=_gradient_tol(gi, sigma))


def test_perturbed_on_the_cube_and_product_match_their_closed_forms(rng):
    """Cube: y = Phi(s / sigma), J = diag(phi(s / sigma) / sigma), one independent item each.

    Product of 2-simplices: one k = 2 simplex per row.
    """
    sigma = 1.3
    x, g = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    generator = torch.Generator().manual_seed(3)
    out, grad = _forward_backward(lambda t: perturbed(t, UnitCube(), sigma, M, generator=generator), x, g)
    np.testing.assert_allclose(out, stats.norm.cdf(x / sigma), atol=FORWARD_TOL)
    expected = stats.norm.pdf(x / sigma) / sigma * g
    np.testing.assert_allclose(grad, expected, atol=_gradient_tol(g, sigma, ones=4))

    x, g = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    product = ProductOfSimplices()
    out, grad = _forward_backward(lambda t: perturbed(t, product, sigma, M, generator=generator), x, g)
    delta = (x[:, 0] - x[:, 1]) / (sigma * math.sqrt(2))
    np.testing.assert_allclose(out[:, 0], stats.norm.cdf(delta), atol=FORWARD_TOL)
    slope = stats.norm.pdf(delta) / (sigma * math.sqrt(2))
    np.testing.assert_allclose(grad[:, 0], slope * (g[:, 0] - g[:, 1]), atol=_gradient_tol(g, sigma, ones=3))


def test_perturbed_budget_forward_is_in_the_polytope_and_reproducible(rng):
    x = torch.from_numpy(rng.normal(size=(3, 6)))
    layer = PerturbedMaximizer(Budget(2), sigma=0.5, n_samples=50, generator=torch.Generator().manual_seed(7))
    first = layer(x)
    again = perturbed(x, Budget(2), 0.5, 50, generator=torch.Generator().manual_seed(7))
    other = perturbed(x, Budget(2), 0.5, 50, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)
    torch.testing.assert_close(first.sum(-1), torch.full((3,), 2.0, dtype=torch.float64))
    assert torch.all((first >= 0) & (first <= 1))


# ----------------------------------------------------------------------------- I-MLE
def test_imle_without_noise_is_map_and_the_map_difference(rng):
    """noise="none": forward map(s), backward map(s) - map(s - lambda g) (brute force)."""
    verts = exactly_two_vertices(5)
    x, g = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    out, grad = _forward_backward(lambda t: imle(t, ExactlyTwo(), lambda_=2.0, noise="none"), x, g)
    for xi, gi, oi, di in zip(x, g, out, grad):
        z = brute_map(xi, verts)
        np.testing.assert_array_equal(oi, z)
        np.testing.assert_array_equal(di, z - brute_map(xi - 2.0 * gi, verts))


@pytest.mark.parametrize("noise", ["sum-of-gamma", "gumbel", "gaussian"])
def test_imle_reuses_the_forward_noise_in_the_target_sample(noise, rng):
    """Forward map(s + eps); backward map(s + eps) - map(s - lambda g + eps), the same eps."""
    verts = Budget(2).vertices((5,))
    x, g = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    options = dict(lambda_=1.5, noise=noise, temperature=0.7, k=2, terms=5)
    layer = IMLE(Budget(2), **options, generator=torch.Generator().manual_seed(11))
    out, grad = _forward_backward(layer, x, g)
    eps = 0.7 * sample_noise(
        noise, (1, 3, 5), torch.float64, torch.device("cpu"), torch.Generator().manual_seed(11), k=2, terms=5
    )[0].numpy()
    for xi, gi, ei, oi, di in zip(x, g, eps, out, grad):
        z = brute_map(xi + ei, verts)
        np.testing.assert_array_equal(oi, z)
        np.testing.assert_array_equal(di, z - brute_map(xi - 1.5 * gi + ei, verts))


def test_imle_with_gumbel_noise_samples_the_gibbs_distribution_on_the_simplex(rng):
    """Gumbel-max: the mean of M perturb-and-MAP samples tends to softmax(s)."""
    x = rng.normal(size=(2, 4))
    generator = torch.Generator().manual_seed(5)
    out = imle(torch.from_numpy(x), Simplex(), noise="gumbel", n_samples=M, generator=generator)
    expected = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out.numpy(), expected, atol=FORWARD_TOL)


def test_imle_numpy_and_padding(rng):
    x = rng.normal(size=(2, 5))
    out = imle(x, Budget(2), noise="none", lengths=np.array([5, 3]))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out[1, 3:], 0)
    assert out[1, :3].sum() == 2


# ----------------------------------------------------------------------------- noise
@pytest.mark.parametrize("concentration", [0.1, 0.5, 1.0, 3.0])
def test_standard_gamma_sampler_matches_the_gamma_distribution(concentration):
    """Kolmogorov-Smirnov against scipy's Gamma(concentration, 1), plus reproducibility."""
    def draw(seed: int) -> torch.Tensor:
        return standard_gamma((50_000,), concentration, torch.device("cpu"), torch.Generator().manual_seed(seed))

    samples = draw(0)
    torch.testing.assert_close(samples, draw(0))
    assert stats.kstest(samples.numpy(), stats.gamma(concentration).cdf).pvalue > 1e-3


@pytest.mark.parametrize(("k", "terms"), [(1, 10), (3, 5), (2, 30)])
def test_sum_of_gamma_moments(k, terms):
    """SoG(k, s): mean (H_s - log s) / k, variance sum_{i<=s} i^-2 / k; a sum of k copies has
    mean H_s - log s and variance sum_{i<=s} i^-2, tending to the Gumbel's (gamma, pi^2 / 6)."""
    n = 50_000
    samples = sample_noise("sum-of-gamma", (n, k), torch.float64, torch.device("cpu"),
                           torch.Generator().manual_seed(0), k=k, terms=terms).numpy()
    harmonic = sum(1.0 / i for i in range(1, terms + 1))
    squares = sum(1.0 / i**2 for i in range(1, terms + 1))
    mean, variance = (harmonic - math.log(terms)) / k, squares / k
    # five standard errors of the mean; the variance to 5% (its relative standard error is
    # sqrt((kurtosis - 1) / n) < 1% here)
    np.testing.assert_allclose(samples.mean(), mean, atol=5 * math.sqrt(variance / (n * k)))
    np.testing.assert_allclose(samples.var(), variance, rtol=0.05)
    total = samples.sum(axis=1)
    np.testing.assert_allclose(total.mean(), harmonic - math.log(terms), atol=5 * math.sqrt(squares / n))


def test_gumbel_and_gaussian_noise_distributions():
    n = 200_000
    generator = torch.Generator().manual_seed(0)
    gumbel = sample_noise("gumbel", (n,), torch.float64, torch.device("cpu"), generator).numpy()
    gaussian = sample_noise("gaussian", (n,), torch.float32, torch.device("cpu"), generator)
    assert gaussian.dtype == torch.float32
    assert stats.kstest(gumbel, stats.gumbel_r.cdf).pvalue > 1e-3
    assert stats.kstest(gaussian.double().numpy(), stats.norm.cdf).pvalue > 1e-3
    with pytest.raises(ValueError, match="noise must be one of"):
        sample_noise("cauchy", (3,), torch.float64, torch.device("cpu"))


def test_stochastic_estimators_are_built_by_name_with_a_generator(rng):
    x = torch.from_numpy(rng.normal(size=(2, 5)))
    a = make_estimator("imle", Budget(2), k=2, generator=torch.Generator().manual_seed(1))(x)
    b = make_estimator("imle", Budget(2), k=2, generator=torch.Generator().manual_seed(1))(x)
    torch.testing.assert_close(a, b)
