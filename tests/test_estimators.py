"""The estimator zoo: registry, the shared contract, and the marginal-based backward passes.

Every backward pass is checked against an independent computation from enumerated vertices
(``estimator_reference``): brute-force Gibbs marginals and covariances, brute-force MAP, and
cvxpy projections onto the hull of the vertices.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from estimator_reference import brute_map, gibbs, spigot_ce_gradient, spigot_eg_gradient
from polytope_cases import CASES, ExactlyTwo, exactly_two_vertices
from reference import hull_projection
from spigot import ProjectionError, UnsupportedOperation
from spigot.autodiff import (
    ESTIMATORS,
    SpigotCE,
    available_estimators,
    estimator_options,
    make_estimator,
    marginals,
    spigot_ce,
    spigot_eg,
    ste_marginals,
)
from spigot.errors import ProjectionWarning
from spigot.polytopes import Budget, ProductOfSimplices, Simplex, UnitCube

NEEDS_MARGINALS = {"ste-s", "spigot-ce", "spigot-eg", "marginals"}
STOCHASTIC = {"perturbed", "imle"}
#: Called with the downstream loss itself (tested in test_estimators_relaxed_point.py).
NEEDS_DOWNSTREAM = {"spigot-ce-relaxed", "spigot-eg-relaxed"}
MARGINAL_CASES = [c for c in CASES if c[1].supports("marginals_batch")]
MARGINAL_IDS = [c[0] for c in MARGINAL_CASES]


def _options(name: str, seed: int = 0) -> dict:
    """Small, reproducible options for the stochastic estimators."""
    if name == "perturbed":
        return {"n_samples": 16, "generator": torch.Generator().manual_seed(seed)}
    if name == "imle":
        return {"n_samples": 3, "generator": torch.Generator().manual_seed(seed)}
    return {}


def _lengths(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor([shape[0], 2, shape[0] - 1])


def _valid(shape: tuple[int, ...], lengths: torch.Tensor) -> torch.Tensor:
    """``(B, *shape)`` mask of valid entries: lengths count the entries of the first event axis."""
    first = torch.arange(shape[0])[None, :] < lengths[:, None]
    return first.reshape(len(lengths), shape[0], *([1] * (len(shape) - 1))).expand(len(lengths), *shape)


def _forward_backward(module, x: torch.Tensor, g: torch.Tensor, lengths=None):
    leaf = x.detach().clone().requires_grad_(True)
    out = module(leaf, lengths=lengths)
    (grad,) = torch.autograd.grad(out, leaf, g)
    return out.detach(), grad


PAIRS = [
    (case, name)
    for case in CASES
    for name in ESTIMATORS
    if name not in NEEDS_DOWNSTREAM and (name not in NEEDS_MARGINALS or case[1].supports("marginals_batch"))
]
PAIR_IDS = [f"{c[0]}-{n}" for c, n in PAIRS]


# ----------------------------------------------------------------------------- registry
def test_registry_names_every_method():
    assert set(ESTIMATORS) == {
        "ste-i", "ste-s", "spigot", "spigot-ce", "spigot-eg", "spigot-ce-relaxed", "spigot-eg-relaxed",
        "sparsemap", "marginals", "perturbed", "imle",
    }
    assert available_estimators() == sorted(ESTIMATORS)
    for name, cls in ESTIMATORS.items():
        module = make_estimator(name, Simplex())
        assert type(module) is cls and isinstance(module, torch.nn.Module)


def test_make_estimator_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown estimator 'spigot-xx'.*known estimators.*sparsemap"):
        make_estimator("spigot-xx", Simplex())
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['sigmaa'\].*'perturbed'.*sigma"):
        make_estimator("perturbed", Simplex(), sigmaa=1.0)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['tol'\] for estimator 'ste-i'"):
        make_estimator("ste-i", Simplex(), tol=1e-3)
    with pytest.raises(ValueError, match=r"\['bogus'\].*'spigot-ce'.*max_iter \(solver 'active-set'\)"):
        make_estimator("spigot-ce", Simplex(), solver="active-set", bogus=1)
    # solver options are accepted by the estimators that project
    module = make_estimator("sparsemap", ExactlyTwo(), solver="active-set", tol=1e-10)
    assert module.solver.tol == 1e-10
    assert "eta" in estimator_options("spigot-eg") and "lambda_" in estimator_options("imle")


@pytest.mark.parametrize("name", sorted(NEEDS_MARGINALS))
def test_estimators_needing_marginals_refuse_a_polytope_without_them(name):
    # STE-S and SPIGOT-CE/EG fall back on the SparseMAP point unless the Gibbs marginals are asked for
    options = {"marginals": "gibbs"} if name in ("ste-s", "spigot-ce", "spigot-eg") else {}
    with pytest.raises(UnsupportedOperation, match="marginals"):
        make_estimator(name, ExactlyTwo(), **options)
    functional = {
        "ste-s": ste_marginals, "spigot-ce": spigot_ce, "spigot-eg": spigot_eg, "marginals": marginals,
    }
    with pytest.raises(UnsupportedOperation, match="ExactlyTwo does not define marginals"):
        functional[name](torch.zeros(4), ExactlyTwo(), **options)


# ----------------------------------------------------------------------------- shared contract
@pytest.mark.parametrize(("case", "name"), PAIRS, ids=PAIR_IDS)
def test_padding_is_zero_and_never_influences_valid_entries(case, name, rng):
    _, polytope, shape, _ = case
    lengths = _lengths(shape)
    valid = _valid(shape, lengths)
    x = torch.from_numpy(rng.normal(size=(3, *shape)))
    g = torch.from_numpy(rng.normal(size=(3, *shape)))
    wild = torch.where(valid, x, 100.0 * torch.from_numpy(rng.normal(size=(3, *shape))))
    out, grad = _forward_backward(make_estimator(name, polytope, **_options(name)), x, g, lengths)
    module = make_estimator(name, polytope, **_options(name))
    out_wild, grad_wild = _forward_backward(module, wild, 3.0 * g, lengths)
    for tensor in (out, grad, out_wild, grad_wild):
        assert torch.all(tensor[~valid] == 0)
    torch.testing.assert_close(out, out_wild)
    if name not in STOCHASTIC:  # the same instances as separate, unpadded calls
        torch.testing.assert_close(grad, grad_wild / 3.0 if name == "ste-i" else grad)
        for i, n in enumerate(lengths.tolist()):
            single_out, single_grad = _forward_backward(make_estimator(name, polytope), x[i, :n], g[i, :n])
            torch.testing.assert_close(out[i, :n], single_out, atol=1e-9, rtol=0)
            torch.testing.assert_close(grad[i, :n], single_grad, atol=1e-8, rtol=0)


@pytest.mark.parametrize(("case", "name"), PAIRS, ids=PAIR_IDS)
def test_dtype_batch_shape_and_numpy_follow_the_input(case, name, rng):
    _, polytope, shape, _ = case
    x64 = torch.from_numpy(rng.normal(size=(2, 2, *shape)))
    g64 = torch.from_numpy(rng.normal(size=(2, 2, *shape)))
    out64, grad64 = _forward_backward(make_estimator(name, polytope, **_options(name)), x64, g64)
    module = make_estimator(name, polytope, **_options(name))
    out32, grad32 = _forward_backward(module, x64.float(), g64.float())
    assert out64.shape == grad64.shape == x64.shape
    assert out64.dtype == grad64.dtype == torch.float64
    assert out32.dtype == grad32.dtype == torch.float32
    if name not in STOCHASTIC:
        torch.testing.assert_close(out32.double(), out64, atol=1e-4, rtol=0)
        torch.testing.assert_close(grad32.double(), grad64, atol=1e-4, rtol=0)
    as_numpy = make_estimator(name, polytope, **_options(name))(x64.numpy())
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float64
    np.testing.assert_allclose(as_numpy, out64.numpy(), atol=1e-12)


@pytest.mark.parametrize(("case", "name"), PAIRS, ids=PAIR_IDS)
def test_bad_scores_gradients_and_lengths_raise(case, name, rng):
    _, polytope, shape, _ = case
    module = make_estimator(name, polytope, **_options(name))
    x = torch.from_numpy(rng.normal(size=(2, *shape)))
    with pytest.raises(ValueError, match="scores contains NaN"):
        module(torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="scores contains infinite"):
        module(torch.where(x > 0, x, float("inf")))
    with pytest.raises(ValueError, match="lengths must lie in"):
        module(x, lengths=torch.tensor([shape[0] + 1, 1]))
    with pytest.raises(ValueError, match="lengths must have the batch shape"):
        module(x, lengths=torch.tensor([shape[0]]))
    leaf = x.clone().requires_grad_(True)
    out = module(leaf)
    with pytest.raises(ValueError, match="incoming gradient dL/dz contains NaN"):
        out.backward(torch.full_like(out, float("nan")))


@pytest.mark.parametrize(
    ("name", "option", "value", "message"),
    [
        ("spigot-ce", "eta", 0.0, "eta must be a positive"),
        ("spigot-ce", "eta", float("nan"), "eta must be a positive"),
        ("spigot-eg", "eta", -1.0, "eta must be a positive"),
        ("spigot-eg", "threshold", 0.0, "threshold must be None or a positive"),
        ("spigot-ce", "output", "softmax", "output must be one of"),
        ("spigot-ce", "on_failure", "ignore", "on_failure must be one of"),
        ("perturbed", "sigma", 0.0, "sigma must be a positive"),
        ("perturbed", "sigma", -2.0, "sigma must be a positive"),
        ("perturbed", "n_samples", 0, "n_samples must be a positive integer"),
        ("imle", "lambda_", 0.0, "lambda_ must be a positive"),
        ("imle", "temperature", 0.0, "temperature must be a positive"),
        ("imle", "noise", "uniform", "noise must be one of"),
        ("imle", "k", 0, "k must be a positive integer"),
        ("imle", "terms", 2.5, "terms must be a positive integer"),
        ("sparsemap", "solver", "nope", "unknown solver 'nope'"),
    ],
)
def test_bad_options_name_the_argument(name, option, value, message):
    with pytest.raises(ValueError, match=message):
        make_estimator(name, Simplex(), **{option: value})


def test_bad_polytope_and_generator_types():
    with pytest.raises(TypeError, match="polytope must be a spigot Polytope"):
        make_estimator("ste-s", "simplex")
    with pytest.raises(TypeError, match="generator must be None or a torch.Generator"):
        make_estimator("perturbed", Simplex(), generator=0)


# ----------------------------------------------------------------------------- marginal-based estimators
@pytest.mark.parametrize("case", MARGINAL_CASES, ids=MARGINAL_IDS)
def test_ste_s_backward_is_the_covariance_of_the_gibbs_distribution(case, rng):
    """STE-S: argmax forward; backward J_mu(s)^T g with J_mu = Cov[z] (brute force)."""
    _, polytope, shape, vertices = case
    verts = vertices()
    x, g = rng.normal(size=(4, *shape)), rng.normal(size=(4, *shape))
    out, grad = _forward_backward(make_estimator("ste-s", polytope), torch.from_numpy(x), torch.from_numpy(g))
    for xi, gi, oi, di in zip(x, g, out.numpy(), grad.numpy()):
        np.testing.assert_array_equal(oi, brute_map(xi, verts))
        np.testing.assert_allclose(di.ravel(), gibbs(xi, verts)[1] @ gi.ravel(), atol=1e-10)


@pytest.mark.parametrize("case", MARGINAL_CASES, ids=MARGINAL_IDS)
def test_marginals_forward_and_backward_match_brute_force(case, rng):
    _, polytope, shape, vertices = case
    verts = vertices()
    x, g = rng.normal(size=(4, *shape)), rng.normal(size=(4, *shape))
    module = make_estimator("marginals", polytope)
    out, grad = _forward_backward(module, torch.from_numpy(x), torch.from_numpy(g))
    for xi, gi, oi, di in zip(x, g, out.numpy(), grad.numpy()):
        mean, covariance = gibbs(xi, verts)
        np.testing.assert_allclose(oi, mean, atol=1e-12)
        np.testing.assert_allclose(di.ravel(), covariance @ gi.ravel(), atol=1e-10)


@pytest.mark.parametrize("case", MARGINAL_CASES, ids=MARGINAL_IDS)
@pytest.mark.parametrize("output", ["argmax", "marginals"])
def test_spigot_ce_matches_its_formula(case, output, rng):
    """SPIGOT-CE: backward mu(s) - Proj_P(mu(s) - eta g), whatever the forward output."""
    _, polytope, shape, vertices = case
    verts = vertices()
    x, g = rng.normal(size=(3, *shape)), rng.normal(size=(3, *shape))
    module = make_estimator("spigot-ce", polytope, eta=0.7, output=output, step="fixed")
    out, grad = _forward_backward(module, torch.from_numpy(x), torch.from_numpy(g))
    for xi, gi, oi, di in zip(x, g, out.numpy(), grad.numpy()):
        expected_out = brute_map(xi, verts) if output == "argmax" else gibbs(xi, verts)[0]
        np.testing.assert_allclose(oi, expected_out, atol=1e-12)
        np.testing.assert_allclose(di, spigot_ce_gradient(xi, gi, 0.7, verts), atol=1e-6)


@pytest.mark.parametrize("case", MARGINAL_CASES, ids=MARGINAL_IDS)
@pytest.mark.parametrize("output", ["argmax", "marginals"])
def test_spigot_eg_matches_its_formula(case, output, rng):
    """SPIGOT-EG: backward mu(s) - mu(s - eta g), whatever the forward output."""
    _, polytope, shape, vertices = case
    verts = vertices()
    x, g = rng.normal(size=(3, *shape)), rng.normal(size=(3, *shape))
    module = make_estimator("spigot-eg", polytope, eta=1.5, output=output, step="fixed")
    out, grad = _forward_backward(module, torch.from_numpy(x), torch.from_numpy(g))
    for xi, gi, oi, di in zip(x, g, out.numpy(), grad.numpy()):
        expected_out = brute_map(xi, verts) if output == "argmax" else gibbs(xi, verts)[0]
        np.testing.assert_allclose(oi, expected_out, atol=1e-12)
        np.testing.assert_allclose(di, spigot_eg_gradient(xi, gi, 1.5, verts), atol=1e-10)


def test_spigot_ce_eg_on_the_simplex_are_softmax_sparsemax_formulas(rng):
    """The unstructured case written out: CE = softmax(s) - sparsemax(softmax(s) - eta g)."""
    s = torch.from_numpy(rng.normal(size=(5, 6)))
    g = torch.from_numpy(rng.normal(size=(5, 6)))
    p = torch.softmax(s, -1)
    sparsemax = torch.from_numpy(np.stack([hull_projection(t, np.eye(6)) for t in (p - 2.0 * g).numpy()]))
    _, grad_ce = _forward_backward(SpigotCE(Simplex(), eta=2.0, step="fixed"), s, g)
    _, grad_eg = _forward_backward(make_estimator("spigot-eg", Simplex(), eta=2.0, step="fixed"), s, g)
    torch.testing.assert_close(grad_ce, p - sparsemax, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad_eg, p - torch.softmax(s - 2.0 * g, -1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["spigot-ce", "spigot-eg"])
def test_threshold_caps_the_step_per_instance(name, rng):
    """eta_b = min(eta, threshold / ||g_b||): instance 0 keeps eta, instance 1 is capped."""
    polytope, verts = UnitCube(), UnitCube().vertices((4,))
    x = rng.normal(size=(2, 4))
    g = np.stack([0.01 * rng.normal(size=4), 10.0 * rng.normal(size=4)])
    _, grad = _forward_backward(
        make_estimator(name, polytope, eta=2.0, threshold=1.0), torch.from_numpy(x), torch.from_numpy(g)
    )
    reference = spigot_ce_gradient if name == "spigot-ce" else spigot_eg_gradient
    for xi, gi, di in zip(x, g, grad.numpy()):
        eta_b = min(2.0, 1.0 / np.linalg.norm(gi))
        np.testing.assert_allclose(di, reference(xi, gi, eta_b, verts), atol=1e-6)


def test_spigot_ce_backward_projection_failure_raises_or_warns(rng):
    x = torch.from_numpy(rng.normal(size=(2, 6))).requires_grad_(True)
    g = torch.from_numpy(rng.normal(size=(2, 6)))
    layer = SpigotCE(Budget(3), solver="frank-wolfe", max_iter=1, tol=1e-12)
    with pytest.raises(ProjectionError, match="SPIGOT-CE backward"):
        layer(x).backward(g)
    lenient = SpigotCE(Budget(3), solver="frank-wolfe", max_iter=1, tol=1e-12, on_failure="warn")
    with pytest.warns(ProjectionWarning, match="SPIGOT-CE backward"):
        lenient(x).backward(g)


# ----------------------------------------------------------------------------- MAP-only estimators
def test_map_only_estimators_on_a_user_polytope_match_the_same_structure_built_in(rng):
    """ExactlyTwo (map_one only) is Budget(2): every MAP-only estimator must agree on it."""
    x = torch.from_numpy(rng.normal(size=(4, 6)))
    g = torch.from_numpy(rng.normal(size=(4, 6)))
    for name in sorted(set(ESTIMATORS) - NEEDS_MARGINALS - NEEDS_DOWNSTREAM):
        user = _forward_backward(make_estimator(name, ExactlyTwo(), **_options(name, seed=3)), x, g)
        builtin = _forward_backward(make_estimator(name, Budget(2), **_options(name, seed=3)), x, g)
        for a, b in zip(user, builtin):
            torch.testing.assert_close(a, b, atol=1e-8, rtol=0, msg=name)


def test_ste_i_and_spigot_backward_formulas(rng):
    verts = exactly_two_vertices(5)
    x, g = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    _, grad = _forward_backward(make_estimator("ste-i", ExactlyTwo()), torch.from_numpy(x), torch.from_numpy(g))
    np.testing.assert_array_equal(grad.numpy(), g)
    out, grad = _forward_backward(
        make_estimator("spigot", ExactlyTwo(), eta=0.5, step="fixed"), torch.from_numpy(x), torch.from_numpy(g)
    )
    for xi, gi, oi, di in zip(x, g, out.numpy(), grad.numpy()):
        z = brute_map(xi, verts)
        np.testing.assert_array_equal(oi, z)
        np.testing.assert_allclose(di, z - hull_projection(z - 0.5 * gi, verts), atol=1e-6)


@pytest.mark.parametrize(
    "polytope", [ProductOfSimplices(), Budget(2, at_most=True)], ids=["product", "budget-at-most"]
)
def test_functional_and_module_forms_agree(polytope, rng):
    shape = (3, 3) if isinstance(polytope, ProductOfSimplices) else (5,)
    x = torch.from_numpy(rng.normal(size=(2, *shape)))
    g = torch.from_numpy(rng.normal(size=(2, *shape)))
    lengths = torch.tensor([shape[0], 2])
    functional = {
        "ste-s": lambda t: ste_marginals(t, polytope, lengths),
        "spigot-ce": lambda t: spigot_ce(t, polytope, eta=0.3, lengths=lengths, output="marginals"),
        "spigot-eg": lambda t: spigot_eg(t, polytope, eta=0.3, lengths=lengths),
        "marginals": lambda t: marginals(t, polytope, lengths),
    }
    options = {
        "ste-s": {}, "spigot-ce": {"eta": 0.3, "output": "marginals"}, "spigot-eg": {"eta": 0.3}, "marginals": {},
    }
    for name, fn in functional.items():
        module = make_estimator(name, polytope, **options[name])
        a = _forward_backward(lambda t, lengths: fn(t), x, g)
        b = _forward_backward(module, x, g, lengths)
        for u, v in zip(a, b):
            torch.testing.assert_close(u, v, msg=name)


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_outputs_and_gradients_stay_on_the_cuda_device(name, rng, target_device):
    x = torch.from_numpy(rng.normal(size=(3, 5))).float().to(target_device)
    g = torch.from_numpy(rng.normal(size=(3, 5))).float().to(target_device)
    lengths = torch.tensor([5, 2, 4], device=target_device)
    out, grad = _forward_backward(make_estimator(name, Budget(2), **_options(name)), x, g, lengths)
    assert out.device == grad.device == target_device and out.dtype == grad.dtype == torch.float32
    assert torch.all(out[1, 2:] == 0) and torch.all(grad[1, 2:] == 0)
