"""SPIGOT through tree polytopes, end to end on padded batches of sentences."""

from __future__ import annotations

import pytest
import torch

from spigot import SPIGOT, Arborescence, HeadSelection, ProjectiveTree, SpanningTree, spigot

LENGTHS = torch.tensor([6, 3, 1, 5])


def padded_scores(size: int, requires_grad: bool = True) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(len(LENGTHS), size, size, dtype=torch.float64, generator=generator)
    return scores.requires_grad_(requires_grad)


@pytest.mark.parametrize(
    "polytope, solver, reference",
    [
        (Arborescence(), "relaxed", lambda p, t, n: HeadSelection().project(t, "closed-form", lengths=n).x),
        (Arborescence(), "exact", lambda p, t, n: p.project(t, "active-set", lengths=n).x),
        (Arborescence(single_root=True), "exact", lambda p, t, n: p.project(t, "active-set", lengths=n).x),
        (ProjectiveTree(), "relaxed", lambda p, t, n: HeadSelection().project(t, "closed-form", lengths=n).x),
        (ProjectiveTree(), "exact", lambda p, t, n: p.project(t, "active-set", lengths=n).x),
    ],
    ids=["arborescence-relaxed", "arborescence-exact", "single-root-exact", "projective-relaxed", "projective-exact"],
)
def test_backward_is_z_minus_projection_of_the_gradient_step(polytope, solver, reference):
    scores = padded_scores(7)
    z = spigot(scores, polytope, solver=solver, lengths=LENGTHS, step="fixed")
    assert torch.equal(z.detach(), polytope.map(scores.detach(), LENGTHS))
    g = torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z.backward(g)
    expected = z.detach() - reference(polytope, z.detach() - g, LENGTHS)
    torch.testing.assert_close(scores.grad, expected, atol=1e-9, rtol=0)
    for grad, n in zip(scores.grad, LENGTHS.tolist()):
        assert grad.abs().sum() == pytest.approx(grad[: n + 1, : n + 1].abs().sum())  # padding gets 0


def test_threshold_caps_the_step_per_instance():
    polytope = Arborescence()
    scores = padded_scores(7)
    z = spigot(scores, polytope, solver="relaxed", eta=1.0, threshold=1.0, lengths=LENGTHS)
    g = 5.0 * torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    z.backward(g)
    valid = torch.zeros_like(g, dtype=torch.bool)
    for mask, n in zip(valid, LENGTHS.tolist()):
        mask[: n + 1, 1 : n + 1] = True  # the arcs h -> m: m a word, h a node
        mask.fill_diagonal_(False)
    g = g * valid  # the diagonal, the root column and padding do not count in the norms
    eta = torch.clamp(1.0 / g.flatten(1).norm(dim=1), max=1.0)[:, None, None]
    target = z.detach() - eta * g
    expected = z.detach() - HeadSelection().project(target, "closed-form", lengths=LENGTHS).x
    torch.testing.assert_close(scores.grad, expected, atol=1e-12, rtol=0)


def test_spanning_tree_spigot_backward():
    polytope = SpanningTree()
    scores = padded_scores(6)
    lengths = torch.tensor([6, 2, 1, 4])
    z = spigot(scores, polytope, solver="exact", lengths=lengths, step="fixed")
    g = torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    z.backward(g)
    expected = z.detach() - polytope.project(z.detach() - g, "active-set", lengths=lengths).x
    torch.testing.assert_close(scores.grad, expected, atol=1e-9, rtol=0)


def test_training_a_parser_layer_moves_towards_the_gold_tree():
    """A linear arc scorer trained through SPIGOT (relaxed) learns to output a gold tree."""
    torch.manual_seed(0)
    n, features = 6, 5
    inputs = torch.randn(n + 1, n + 1, features)
    weights = torch.zeros(features, requires_grad=True)
    layer = SPIGOT(Arborescence(), solver="relaxed")
    optimizer = torch.optim.SGD([weights], lr=0.5)
    target_scores = (inputs @ torch.randn(features)).detach()
    gold = Arborescence().map(target_scores)
    for _ in range(60):
        optimizer.zero_grad()
        z = layer((inputs @ weights)[None])[0]
        loss = 0.5 * ((z - gold) ** 2).sum()
        loss.backward()
        optimizer.step()
    assert torch.equal(layer((inputs @ weights)[None])[0], gold)


def test_relaxed_spigot_step_does_no_per_sentence_work_on_the_device():
    """Forward MAP plus relaxed backward on a padded batch dispatches the same torch operations
    (and reads the same number of values back) for 2 sentences as for 16: the batch is handled
    by batched operations and whole-batch copies, never sentence by sentence."""
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: Counter = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    counts = []
    for batch in (2, 16):
        generator = torch.Generator().manual_seed(batch)
        scores = torch.randn(batch, 8, 8, generator=generator).requires_grad_(True)
        lengths = torch.randint(2, 8, (batch,), generator=generator)
        lengths[0] = 7
        grad = torch.randn(batch, 8, 8, generator=generator)
        with Count() as mode:
            spigot(scores, Arborescence(), solver="relaxed", lengths=lengths).backward(grad)
        assert scores.grad is not None and (scores.grad[1, lengths[1] + 1 :] == 0).all()
        counts.append(mode.ops)
    assert counts[0] == counts[1]
