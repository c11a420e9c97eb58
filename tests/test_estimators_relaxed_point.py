"""SPIGOT-CE and SPIGOT-EG at the relaxed point (``spigot-ce-relaxed``, ``spigot-eg-relaxed``).

The references are independent of spigot: Gibbs marginals summed over enumerated vertices
(simplex corners, every dependency tree of 3 words), the downstream gradient at the marginals
written out by hand for a quadratic decoder loss, and cvxpy projections onto the hull of the
vertices.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from estimator_reference import gibbs, reference_step_size
from polytope_cases import ExactlyTwo, exactly_two_vertices
from reference import hull_projection
from spigot import UnsupportedOperation
from spigot.autodiff import (
    ESTIMATORS,
    SpigotCERelaxed,
    SpigotEGRelaxed,
    make_estimator,
    spigot_ce,
    spigot_ce_relaxed,
    spigot_eg,
    spigot_eg_relaxed,
)
from spigot.polytopes import Arborescence, ProjectiveTree, Simplex

RELAXED = ("spigot-ce-relaxed", "spigot-eg-relaxed")


def _tree_vertices(n: int, single_root: bool, projective: bool) -> np.ndarray:
    """Every dependency tree over ``n`` words as an ``(n+1, n+1)`` 0/1 matrix, by enumeration."""
    trees = []
    for heads in itertools.product(range(n + 1), repeat=n):
        if any(h == m + 1 for m, h in enumerate(heads)):
            continue
        head = dict(zip(range(1, n + 1), heads))
        if single_root and sum(h == 0 for h in heads) != 1:
            continue

        def reaches_root(m: int) -> bool:
            seen = set()
            while m != 0:
                if m in seen:
                    return False
                seen.add(m)
                m = head[m]
            return True

        if not all(reaches_root(m) for m in head):
            continue
        if projective and any(
            min(h, m) < k < max(h, m) and not _dominates(head, h, k)
            for m, h in head.items()
            for k in range(1, n + 1)
        ):
            continue
        z = np.zeros((n + 1, n + 1))
        for m, h in head.items():
            z[h, m] = 1.0
        trees.append(z)
    return np.array(trees)


def _dominates(head: dict[int, int], h: int, k: int) -> bool:
    """Whether ``h`` is an ancestor of ``k``."""
    while k != 0:
        k = head[k]
        if k == h:
            return True
    return h == 0


class Quadratic:
    r"""Downstream loss :math:`L(z) = \sum_b \tfrac12 \|A \odot z_b - t_b\|^2` with its gradient by hand.

    Its gradient depends on where it is taken, so the gradient at the argmax and the one at the
    marginals differ: what separates the relaxed-point estimators from the argmax ones.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
        self.a = rng.normal(size=shape[1:])
        self.t = rng.normal(size=shape)
        self.calls = 0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        a, t = torch.as_tensor(self.a, dtype=z.dtype), torch.as_tensor(self.t, dtype=z.dtype)
        return 0.5 * ((a * z - t) ** 2).sum()

    def gradient(self, z: np.ndarray, b: int) -> np.ndarray:
        """The gradient in instance ``b``'s structure ``z``."""
        return self.a * (self.a * z - self.t[b])


def _surrogate(layer_call, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.detach().clone().requires_grad_(True)
    out = layer_call(leaf)
    (grad,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    return out.detach(), grad


def _reference(kind: str, scores: np.ndarray, gamma: np.ndarray, eta_b: float, vertices: np.ndarray) -> np.ndarray:
    mu = gibbs(scores, vertices)[0]
    if kind == "ce":
        return mu - hull_projection(mu - eta_b * gamma, vertices)
    return mu - gibbs(scores - eta_b * gamma, vertices)[0]


CASES = [
    ("simplex-5", Simplex(), (5,), np.eye(5)),
    ("arborescence-3", Arborescence(), (4, 4), _tree_vertices(3, single_root=False, projective=False)),
    ("arborescence-single-root-3", Arborescence(single_root=True), (4, 4), _tree_vertices(3, True, False)),
    ("projective-3", ProjectiveTree(), (4, 4), _tree_vertices(3, single_root=False, projective=True)),
]


def test_the_enumerated_trees_are_the_known_counts():
    # (n+1)^(n-1) = 16 rooted trees over 3 words, 9 single-rooted; 12 of the 16 are projective
    assert [len(c[3]) for c in CASES[1:]] == [16, 9, 12]


@pytest.mark.parametrize("kind", ["ce", "eg"])
@pytest.mark.parametrize(("step", "eta"), [("fixed", 0.7), ("normalized", 0.5), ("reference", 2.0)])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_gradient_matches_brute_force_marginals_a_hand_gradient_and_cvxpy(case, kind, step, eta, rng):
    _, polytope, shape, vertices = case
    x = rng.normal(size=(3, *shape))
    downstream = Quadratic(rng, x.shape)
    threshold = 0.8 if step == "reference" else None
    fn = spigot_ce_relaxed if kind == "ce" else spigot_eg_relaxed
    out, grad = _surrogate(
        lambda s: fn(s, polytope, downstream, eta=eta, threshold=threshold, step=step), torch.from_numpy(x)
    )
    assert downstream.calls == 1  # one decoder pass for the whole batch
    mask = vertices.max(axis=0) > 0  # the polytope's variables
    for b in range(3):
        mu = gibbs(x[b], vertices)[0]
        gamma = downstream.gradient(mu, b) * mask
        # the step's norm counts the polytope's variables only
        eta_b = reference_step_size(gamma[mask], step, eta, threshold)
        expected = _reference(kind, x[b], gamma, eta_b, vertices)
        np.testing.assert_allclose(grad[b].numpy(), expected, atol=2e-6)
        flat = vertices.reshape(len(vertices), -1)
        np.testing.assert_array_equal(out[b].numpy(), vertices[np.argmax(flat @ x[b].ravel())])


@pytest.mark.parametrize("kind", ["ce", "eg"])
def test_a_linear_downstream_gives_the_argmax_estimators_gradient(kind, rng):
    # L(z) = <c, z> has the same gradient c at the argmax and at the marginals
    x = torch.from_numpy(rng.normal(size=(4, 6)))
    c = torch.from_numpy(rng.normal(size=(4, 6)))
    relaxed, argmax = (spigot_ce_relaxed, spigot_ce) if kind == "ce" else (spigot_eg_relaxed, spigot_eg)
    leaf = x.clone().requires_grad_(True)
    (relaxed_grad,) = torch.autograd.grad(relaxed(leaf, Simplex(), lambda z: (c * z).sum()).sum(), leaf)
    leaf = x.clone().requires_grad_(True)
    (argmax_grad,) = torch.autograd.grad(argmax(leaf, Simplex()), leaf, c)
    torch.testing.assert_close(relaxed_grad, argmax_grad)


def test_the_gradient_at_the_argmax_is_not_used_but_the_decoder_learns_from_the_argmax(rng):
    x = torch.from_numpy(rng.normal(size=(2, 4)))
    weight = torch.nn.Parameter(torch.from_numpy(rng.normal(size=(4,))))

    def downstream(z: torch.Tensor) -> torch.Tensor:
        return ((z * weight).sum(dim=1) ** 2).sum()

    layer = SpigotCERelaxed(Simplex(), step="fixed")
    first = x.clone().requires_grad_(True)
    z = layer(first, downstream=downstream)
    downstream(z).backward()
    second = x.clone().requires_grad_(True)
    (10.0 * downstream(layer(second, downstream=downstream))).backward(inputs=[second])
    torch.testing.assert_close(first.grad, second.grad)  # the outer loss's scale does not enter
    # the decoder's parameter got the gradient at the argmax only (the second pass adds nothing)
    onehot = torch.nn.functional.one_hot(x.argmax(dim=1), 4).double()
    expected = (2 * (onehot * weight.detach()).sum(dim=1, keepdim=True) * onehot).sum(dim=0)
    torch.testing.assert_close(weight.grad, expected)


def test_padding_is_zero_and_matches_single_instances(rng):
    polytope = Arborescence()
    x = torch.from_numpy(rng.normal(size=(3, 5, 5)))
    lengths = torch.tensor([4, 2, 3])
    weights = torch.from_numpy(rng.normal(size=(3, 5, 5)))

    def downstream(z: torch.Tensor) -> torch.Tensor:
        return (torch.sin(z * weights[: len(z), : z.shape[1], : z.shape[2]]) ** 2).sum()

    for cls in (SpigotCERelaxed, SpigotEGRelaxed):
        layer = cls(polytope, step="fixed")
        out, grad = _surrogate(lambda s: layer(s, lengths, downstream=downstream), x)
        for b, n in enumerate(lengths.tolist()):
            keep = torch.zeros(5, 5, dtype=torch.bool)
            keep[: n + 1, : n + 1] = True
            assert torch.all(out[b][~keep] == 0) and torch.all(grad[b][~keep] == 0)
            assert torch.all(grad[b].diagonal() == 0) and torch.all(grad[b][:, 0] == 0)

            def single(z: torch.Tensor, b: int = b, n: int = n) -> torch.Tensor:
                return (torch.sin(z * weights[b, : n + 1, : n + 1]) ** 2).sum()

            one_out, one_grad = _surrogate(lambda s: layer(s, downstream=single), x[b, : n + 1, : n + 1])
            torch.testing.assert_close(out[b, : n + 1, : n + 1], one_out)
            torch.testing.assert_close(grad[b, : n + 1, : n + 1], one_grad, atol=1e-10, rtol=0)


def test_a_structure_without_marginals_steps_from_the_sparsemap_point(rng):
    vertices = exactly_two_vertices(5)
    x = rng.normal(size=(5,))
    downstream = Quadratic(rng, (1, 5))
    _, grad = _surrogate(
        lambda s: spigot_ce_relaxed(s, ExactlyTwo(), lambda z: downstream(z[None]), solver="active-set",
                                    tol=1e-10, step="fixed", eta=0.5),
        torch.from_numpy(x),
    )
    point = hull_projection(x, vertices)
    gamma = downstream.gradient(point, 0)
    np.testing.assert_allclose(grad.numpy(), point - hull_projection(point - 0.5 * gamma, vertices), atol=1e-5)
    layer = make_estimator("spigot-eg-relaxed", ExactlyTwo(), solver="active-set", tol=1e-10, step="fixed")
    _, grad = _surrogate(lambda s: layer(s, downstream=lambda z: downstream(z[None])), torch.from_numpy(x))
    np.testing.assert_allclose(grad.numpy(), point - hull_projection(x - gamma, vertices), atol=1e-5)


def test_registry_and_numpy_input():
    assert {"spigot-ce-relaxed", "spigot-eg-relaxed"} <= set(ESTIMATORS)
    for name in RELAXED:
        layer = make_estimator(name, Simplex(), eta=0.5)
        assert layer.needs_downstream
        x = np.array([[0.1, 2.0, -1.0]])
        np.testing.assert_array_equal(layer(x), [[0.0, 1.0, 0.0]])  # numpy: the argmax, no call
        assert "eta=0.5" in repr(layer)


@pytest.mark.parametrize("name", RELAXED)
def test_bad_input_raises_with_the_argument_named(name):
    layer = make_estimator(name, Simplex())
    x = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(UnsupportedOperation, match=f"{name} evaluates the downstream loss.*downstream="):
        layer(x)
    with pytest.raises(TypeError, match="downstream must be a callable"):
        layer(x, downstream=3.0)
    with pytest.raises(ValueError, match="scores contains NaN"):
        layer(torch.full((2, 3), float("nan")), downstream=lambda z: z.sum())
    with pytest.raises(ValueError, match="lengths must lie in"):
        layer(torch.zeros(2, 3), torch.tensor([4, 1]), downstream=lambda z: z.sum())
    with pytest.raises(ValueError, match="downstream must return a scalar loss tensor, got \\(2, 3\\)"):
        layer(x, downstream=lambda z: z).sum().backward()
    with pytest.raises(ValueError, match="downstream must return a scalar loss tensor, got float"):
        layer(x, downstream=lambda z: 1.0).sum().backward()
    with pytest.raises(ValueError, match="downstream loss at the relaxed point contains NaN"):
        layer(x, downstream=lambda z: z.sum() * float("nan")).sum().backward()
    with pytest.raises(ValueError, match="incoming gradient dL/dz contains NaN"):
        layer(x, downstream=lambda z: z.sum()).backward(torch.full((2, 3), float("nan")))
    for option, value, message in [("eta", 0.0, "eta must be a positive"), ("step", "long", "step must be one of"),
                                   ("marginals", "softmax", "marginals must be one of")]:
        with pytest.raises(ValueError, match=message):
            make_estimator(name, Simplex(), **{option: value})
    with pytest.raises(UnsupportedOperation, match="ExactlyTwo does not define marginals"):
        make_estimator(name, ExactlyTwo(), marginals="gibbs")


def test_a_downstream_without_gradient_gives_zero():
    x = torch.tensor([[0.3, -0.2, 1.0]], requires_grad=True)
    spigot_ce_relaxed(x, Simplex(), lambda z: torch.tensor(2.0)).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
