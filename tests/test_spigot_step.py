"""The step rules of the SPIGOT family: sum/mean invariance, the variables' mask, overflow, checks.

Expected gradients come from ``estimator_reference`` (step sizes written out from their
definitions, projections by the cvxpy model of ``reference.hull_projection`` over enumerated
vertices), never from a spigot solver.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from estimator_reference import gibbs, reference_step_size, spigot_gradient
from reference import hull_projection
from spigot import SPIGOT, Arborescence, LabeledArcs, Simplex, SpanningTree, spigot
from spigot._batch import as_batch
from spigot.autodiff import make_estimator, spigot_ce, spigot_eg
from spigot.autodiff._common import gradient_step, take_step, variables_mask
from spigot.polytopes import Budget

STEPS = ["normalized", "reference", "fixed"]


def _grad(layer, scores: torch.Tensor, loss_of_output) -> torch.Tensor:
    leaf = scores.detach().clone().requires_grad_(True)
    loss_of_output(layer(leaf)).backward()
    return leaf.grad


def _word_losses(weights: torch.Tensor):
    """Per-instance losses ``<w_b, z_b>``, as the caller's summed or mean-reduced loss."""
    return {
        "sum": lambda z: (z * weights).flatten(1).sum(1).sum(),
        "mean": lambda z: (z * weights).flatten(1).sum(1).mean(),
    }


@pytest.mark.parametrize("name", ["spigot", "spigot-ce", "spigot-eg"])
def test_normalized_step_is_the_same_for_a_summed_and_a_mean_loss(name, rng):
    layer = make_estimator(name, Budget(2), eta=0.8)
    assert layer.step == "normalized"
    scores = torch.from_numpy(rng.normal(size=(5, 6)))
    losses = _word_losses(torch.from_numpy(rng.normal(size=(5, 6))))
    summed, mean = _grad(layer, scores, losses["sum"]), _grad(layer, scores, losses["mean"])
    torch.testing.assert_close(summed, mean, atol=1e-10, rtol=0)
    assert summed.abs().sum() > 0


@pytest.mark.parametrize("name", ["spigot", "spigot-ce", "spigot-eg"])
def test_reference_step_on_a_mean_loss_takes_eta_times_the_number_of_terms(name, rng):
    """min(K eta, tau / ||g / K||) g / K = min(eta, tau / ||g||) g: eta=K on a mean of K terms."""
    batch = 5
    scores = torch.from_numpy(rng.normal(size=(batch, 6)))
    losses = _word_losses(torch.from_numpy(rng.normal(size=(batch, 6)) * rng.uniform(0.1, 3, (batch, 1))))
    on_sum = make_estimator(name, Budget(2), step="reference", eta=1.0, threshold=0.7)
    on_mean = make_estimator(name, Budget(2), step="reference", eta=float(batch), threshold=0.7)
    torch.testing.assert_close(
        _grad(on_sum, scores, losses["sum"]), _grad(on_mean, scores, losses["mean"]), atol=1e-10, rtol=0
    )
    fixed_sum = make_estimator(name, Budget(2), step="fixed", eta=1.0)
    fixed_mean = make_estimator(name, Budget(2), step="fixed", eta=float(batch))
    torch.testing.assert_close(
        _grad(fixed_sum, scores, losses["sum"]), _grad(fixed_mean, scores, losses["mean"]), atol=1e-10, rtol=0
    )


def _arc_instance_mask(size: int, n: int) -> np.ndarray:
    """The arcs h -> m of an n-word sentence in a (size, size) matrix: m a word, h != m, h <= n."""
    mask = np.zeros((size, size), dtype=bool)
    mask[: n + 1, 1 : n + 1] = True
    np.fill_diagonal(mask, False)
    return mask


@pytest.mark.parametrize("step", STEPS)
def test_tree_step_norm_counts_the_valid_arcs_only(step, rng):
    """Large gradients on the diagonal, the root column and padding change nothing."""
    polytope, lengths, size = Arborescence(), torch.tensor([3, 2]), 4
    scores = torch.from_numpy(rng.normal(size=(2, size, size)))
    g = rng.normal(size=(2, size, size))
    masks = np.stack([_arc_instance_mask(size, n) for n in lengths.tolist()])
    noisy = np.where(masks, g, 100.0 * rng.normal(size=g.shape))
    threshold = 0.5 if step == "reference" else None
    layer = SPIGOT(polytope, solver="active-set", eta=0.9, threshold=threshold, step=step)
    leaf = scores.clone().requires_grad_(True)
    z = layer(leaf, lengths)
    z.backward(torch.from_numpy(noisy))
    for b, n in enumerate(lengths.tolist()):
        region = (slice(0, n + 1), slice(0, n + 1))
        g_arcs = np.where(masks[b], g[b], 0.0)[region]
        eta_b = reference_step_size(g_arcs, step, 0.9, threshold)
        want = spigot_gradient(z[b].detach().numpy()[region], g_arcs, eta_b, polytope.vertices((n + 1, n + 1)))
        np.testing.assert_allclose(leaf.grad[b].numpy()[region], want, atol=1e-6)
        assert torch.all(leaf.grad[b][~torch.from_numpy(masks[b])] == 0)


def test_semantic_graph_step_norm_counts_the_labels_of_valid_arcs_only(rng):
    polytope, n_labels = LabeledArcs(2), 2
    lengths = torch.tensor([2, 1])
    scores = torch.from_numpy(rng.normal(size=(2, 3, 3, n_labels)))
    g = rng.normal(size=(2, 3, 3, n_labels))
    masks = np.stack([_arc_instance_mask(3, n) for n in lengths.tolist()])[..., None].repeat(n_labels, -1)
    assert torch.equal(variables_mask(as_batch(polytope, scores, lengths)), torch.from_numpy(masks))
    noisy = np.where(masks, g, 50.0)
    leaf = scores.clone().requires_grad_(True)
    z = spigot(leaf, polytope, solver="exact", eta=0.6, lengths=lengths)  # the normalized step
    z.backward(torch.from_numpy(noisy))
    for b, n in enumerate(lengths.tolist()):
        region = (slice(0, n + 1), slice(0, n + 1), slice(None))
        g_arcs = np.where(masks[b], g[b], 0.0)[region]
        eta_b = reference_step_size(g_arcs, "normalized", 0.6, None)
        verts = polytope.vertices((n + 1, n + 1, n_labels))
        want = spigot_gradient(z[b].detach().numpy()[region], g_arcs, eta_b, verts)
        np.testing.assert_allclose(leaf.grad[b].numpy()[region], want, atol=1e-6)


def test_spanning_tree_variables_are_the_upper_triangle_of_each_instance():
    mask = variables_mask(as_batch(SpanningTree(), torch.zeros(2, 4, 4), torch.tensor([4, 2])))
    assert torch.equal(mask[0], torch.ones(4, 4, dtype=torch.bool).triu(1))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 1] = True
    assert torch.equal(mask[1], expected)


def test_default_variable_mask_is_the_valid_region():
    mask = variables_mask(as_batch(Simplex(), torch.zeros(2, 4), torch.tensor([4, 2])))
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert variables_mask(as_batch(Simplex(), torch.zeros(2, 4))) is None  # every entry counts


@pytest.mark.parametrize("scale", [1e-200, 1e160, 1e300])
@pytest.mark.parametrize("name", ["spigot", "spigot-ce", "spigot-eg"])
def test_huge_and_tiny_gradients_keep_their_step(name, scale, rng):
    """||g|| overflowing (or underflowing) must not turn the step into 0 or NaN."""
    scores = torch.from_numpy(rng.normal(size=(3, 5)))
    g = torch.from_numpy(rng.normal(size=(3, 5)))
    normalized = make_estimator(name, Budget(2), eta=0.7)
    capped = make_estimator(name, Budget(2), step="reference", eta=1.0, threshold=0.7)
    want = _grad(normalized, scores, lambda z: (z * g).sum())
    assert want.abs().sum() > 0
    torch.testing.assert_close(_grad(normalized, scores, lambda z: (z * g * scale).sum()), want, atol=1e-9, rtol=0)
    if scale > 1:  # the cap is active: a step of length tau, as the normalized step of length 0.7
        torch.testing.assert_close(_grad(capped, scores, lambda z: (z * g * scale).sum()), want, atol=1e-9, rtol=0)


@pytest.mark.parametrize("step", STEPS)
def test_a_zero_gradient_gives_a_zero_step(step):
    threshold = 1.0 if step == "reference" else None
    scores = torch.tensor([[0.3, -0.2, 1.0]], dtype=torch.float64, requires_grad=True)
    spigot(scores, Simplex(), step=step, threshold=threshold).backward(torch.zeros(1, 3, dtype=torch.float64))
    assert torch.equal(scores.grad, torch.zeros(1, 3, dtype=torch.float64))


def test_spigot_ce_eg_normalized_match_their_formulas(rng):
    """The pulled-back estimators with the default step, against brute force and cvxpy."""
    verts = np.eye(4)
    x, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)) * 0.01
    for name in ["spigot-ce", "spigot-eg"]:
        layer = make_estimator(name, Simplex(), eta=1.3)
        grads = _grad(layer, torch.from_numpy(x), lambda z: (z * torch.from_numpy(g)).sum()).numpy()
        for xi, gi, di in zip(x, g, grads):
            eta_b = reference_step_size(gi, "normalized", 1.3, None)
            mu = gibbs(xi, verts)[0]
            if name == "spigot-ce":
                want = mu - hull_projection(mu - eta_b * gi, verts)
            else:
                want = mu - gibbs(xi - eta_b * gi, verts)[0]
            np.testing.assert_allclose(di, want, atol=1e-6)


def test_step_defaults_and_backward_compatibility():
    assert SPIGOT(Simplex()).step == "normalized"
    legacy = SPIGOT(Simplex(), eta=1.0, threshold=1.0)  # the former eta/threshold arguments
    assert (legacy.step, legacy.eta, legacy.threshold) == ("reference", 1.0, 1.0)
    assert SPIGOT(Simplex(), step="reference").threshold == 1.0  # the reference's tau


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"step": "capped"}, "step must be one of"),
        ({"step": "normalized", "threshold": 1.0}, "threshold=1.0 applies only to step='reference'"),
        ({"step": "fixed", "threshold": 0.5}, "applies only to step='reference'"),
        ({"step": "reference", "threshold": 0.0}, "threshold must be None or a positive"),
        ({"step": "normalized", "eta": 0.0}, "eta must be a positive"),
        ({"step": "reference", "eta": float("inf")}, "eta must be a positive"),
    ],
)
@pytest.mark.parametrize("name", ["spigot", "spigot-ce", "spigot-eg"])
def test_bad_step_options_name_the_argument(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_estimator(name, Simplex(), **options)
    functional = {"spigot": spigot, "spigot-ce": spigot_ce, "spigot-eg": spigot_eg}[name]
    with pytest.raises(ValueError, match=message):
        functional(torch.zeros(3), Simplex(), **options)


@pytest.mark.parametrize("rule", ["normalized", "reference", "fixed"])
def test_step_of_a_strided_gradient_is_that_of_its_contiguous_copy(rule):
    grad = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0)).transpose(1, 2)  # strided (3, 4, 5)
    keep = torch.ones(4, 5, dtype=torch.bool)
    keep[0] = False
    threshold = 1.0 if rule == "reference" else None
    for variables in (None, keep):
        step = gradient_step(grad, rule, 0.5, threshold, variables)
        assert torch.equal(step, gradient_step(grad.contiguous(), rule, 0.5, threshold, variables))


def _variables_cases(rng):
    """``(shape, variables)`` pairs: no mask, an event mask shared by the batch, a per-instance mask."""
    shared = torch.from_numpy(rng.random((4, 5)) < 0.7)
    own = torch.from_numpy(rng.random((3, 4, 5)) < 0.7)
    own[1] = False  # an instance with no variable keeps its point
    return [((3, 4, 5), None), ((3, 4, 5), shared), ((3, 4, 5), own)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rule", STEPS)
def test_compiled_step_agrees_with_the_torch_expression(rule, dtype, rng):
    """On CPU tensors outside autograd ``take_step`` is one compiled pass; inside it, torch's ops."""
    threshold = 0.3 if rule == "reference" else None
    for shape, variables in _variables_cases(rng):
        for scale in (1e-3, 1.0, 1e3):
            point = torch.from_numpy(rng.normal(size=shape)).to(dtype)
            grad = torch.from_numpy(rng.normal(size=shape) * scale).to(dtype)
            grad[0] = 0.0  # a zero gradient: no step
            compiled = take_step(point, grad, rule, 0.7, threshold, variables)
            expected = point - gradient_step(grad, rule, 0.7, threshold, variables)
            with torch.enable_grad():
                tracked = take_step(point, grad.clone().requires_grad_(True), rule, 0.7, threshold, variables)
            assert compiled.dtype == dtype and compiled.shape == point.shape
            tol = 1e-6 if dtype == torch.float32 else 1e-13
            torch.testing.assert_close(compiled, expected, atol=tol, rtol=tol)
            torch.testing.assert_close(compiled, tracked.detach(), atol=tol, rtol=tol)
            torch.testing.assert_close(compiled[0], point[0], atol=0, rtol=0)
            if variables is not None:  # entries outside the variables keep the point exactly
                outside = ~variables.expand(shape)
                assert torch.equal(compiled[outside], point[outside])


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_compiled_step_of_an_extreme_float64_gradient(scale, rng):
    """Squares that underflow or overflow in float64: the norm is recomputed scaled, the step kept."""
    point = torch.from_numpy(rng.normal(size=(2, 3, 4)))
    direction = torch.from_numpy(rng.normal(size=(2, 3, 4)))
    stepped = take_step(point, direction * scale, "normalized", 0.5, None, None)
    unit = point - 0.5 * direction / direction.flatten(1).norm(dim=1).reshape(2, 1, 1)
    torch.testing.assert_close(stepped, unit, atol=1e-12, rtol=0)


@pytest.mark.parametrize("bad, message", [(float("nan"), "NaN"), (float("inf"), "infinite"), (-float("inf"), "-inf")])
def test_compiled_step_rejects_a_non_finite_gradient_even_outside_the_variables(bad, message):
    point, grad = torch.zeros(2, 3, 3), torch.ones(2, 3, 3)
    variables = torch.ones(3, 3, dtype=torch.bool)
    variables[2, 2] = False
    grad[1, 2, 2] = bad
    with pytest.raises(ValueError, match=f"the incoming gradient dL/dz contains {message}"):
        take_step(point, grad, "normalized", 1.0, None, variables)


def test_spigot_rejects_a_non_finite_incoming_gradient():
    leaf = torch.randn(2, 4, 4, dtype=torch.float32, requires_grad=True)
    z = spigot(leaf, Arborescence(), solver="relaxed")
    grad = torch.ones_like(z)
    grad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="dL/dz contains NaN"):
        z.backward(grad)
