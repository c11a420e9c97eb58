"""A closed form's residual at a step, :math:`x - \\Pi(x - t d)`, and the SPIGOT backward that uses it.

``HeadSelection`` declares ``closed_form_residual``; on CPU tensors it is one compiled pass per
instance. It must equal the residual written out with the closed form itself, with padding,
in both dtypes, whatever ``d`` holds off the arcs; and the SPIGOT family's backward must give
the same gradient through it as through the solver's projection (``certify=True`` takes that
path), which ``test_trees_spigot`` checks against independent projections.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spigot import Arborescence, HeadSelection, ProjectiveTree, Simplex, spigot
from spigot._batch import as_batch
from spigot.autodiff import spigot_ce, spigot_ce_relaxed
from spigot.autodiff._common import pulled_back_residual, variables_mask
from spigot.polytopes import LabeledArcs, SemanticGraph
from spigot.projections import head_selection_residual, project_head_selection
from spigot.solvers.registry import get_solver

LENGTHS = torch.tensor([6, 3, 1, 5])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_head_selection_residual_is_the_point_minus_the_projection_of_the_step(dtype, lengths, rng):
    point = torch.from_numpy(rng.normal(size=(4, 8, 8))).to(dtype)
    direction = torch.from_numpy(rng.normal(size=(4, 8, 8)) * 3.0).to(dtype)
    sizes = torch.from_numpy(rng.uniform(0.0, 2.0, size=4))
    sizes[1] = 0.0  # no step: the residual of the point itself
    got = head_selection_residual(point, direction, sizes, lengths)
    stepped = (point.double() - sizes.reshape(-1, 1, 1) * direction.double()).to(dtype)
    want = point - project_head_selection(stepped, lengths)
    assert got.dtype == dtype and got.shape == point.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, want, atol=tol, rtol=0)
    junk = direction.clone()
    junk[:, :, 0] = 1e6  # the root column, the diagonal and padding are not arcs: ignored
    junk[:, torch.arange(8), torch.arange(8)] = -1e6
    if lengths is not None:
        junk[2, 3:, :] = 1e6
    torch.testing.assert_close(head_selection_residual(point, junk, sizes, lengths), got, atol=0, rtol=0)


def test_residual_form_is_declared_not_inherited():
    class Restricted(HeadSelection):
        """A subclass that may change the vertex set: no closed form, no residual form."""

    assert HeadSelection().residual_form() is not None
    assert Restricted().residual_form() is None and Restricted().closed_form() is None
    assert Arborescence().residual_form() is None


def test_solvers_name_the_polytope_whose_closed_form_they_apply():
    tree, heads = Arborescence(), HeadSelection()
    assert type(get_solver("relaxed").closed_form_for(tree)) is HeadSelection
    assert get_solver("exact").closed_form_for(heads) is heads
    assert get_solver("closed-form").closed_form_for(heads) is heads
    assert get_solver("exact").closed_form_for(tree) is None  # the active set: an algorithm
    assert get_solver("active-set").closed_form_for(heads) is None
    assert get_solver("relaxed").closed_form_for(SemanticGraph(2)) is None  # a declared procedure
    arcs = LabeledArcs(2)
    assert get_solver("relaxed").closed_form_for(arcs) is arcs  # its own relaxation, a closed form


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("step, threshold", [("normalized", None), ("reference", 0.4), ("fixed", None)])
@pytest.mark.parametrize("polytope", [Arborescence(), ProjectiveTree(single_root=True), HeadSelection()])
def test_spigot_backward_through_the_residual_form_equals_the_projection_path(polytope, step, threshold, dtype):
    """``certify=True`` projects with the solver and certifies; the default uses the residual form."""
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(4, 8, 8, generator=generator, dtype=torch.float64).to(dtype)
    grad = torch.randn(4, 8, 8, generator=generator, dtype=torch.float64).to(dtype) * 4.0
    grads = []
    for certify in (False, True):
        leaf = scores.clone().requires_grad_(True)
        z = spigot(leaf, polytope, solver="relaxed", lengths=LENGTHS, step=step, threshold=threshold, certify=certify)
        z.backward(grad)
        grads.append(leaf.grad)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(grads[0], grads[1], atol=tol, rtol=0)
    assert grads[0].abs().sum() > 0


def test_pulled_back_residual_uses_the_residual_form_only_where_it_applies(monkeypatch):
    """The residual form runs for a closed form without certificate; a certificate or an
    algorithm takes the stepped point through the solver."""
    calls = []
    original = HeadSelection.closed_form_residual

    def counted(self, *args):
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(HeadSelection, "closed_form_residual", counted)
    scores = torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = as_batch(Arborescence(), scores)
    z = Arborescence().map_batch(batch.values, None)
    grad = torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rule = ("normalized", 1.0, None)
    for solver, certify, used in [("relaxed", False, True), ("relaxed", True, False), ("exact", False, False)]:
        calls.clear()
        pulled_back_residual(
            get_solver(solver), Arborescence(), batch, z, grad, rule, variables_mask(batch), certify, "raise", "test",
            vertices=z,
        )
        assert bool(calls) == used, (solver, certify)


def test_spigot_ce_through_the_residual_form_equals_the_projection_path(rng):
    scores = torch.from_numpy(rng.normal(size=(4, 7, 7)))
    grad = torch.from_numpy(rng.normal(size=(4, 7, 7)))
    grads = []
    for certify in (False, True):
        leaf = scores.clone().requires_grad_(True)
        spigot_ce(leaf, HeadSelection(), solver="exact", lengths=LENGTHS, certify=certify).backward(grad)
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-12, rtol=0)
    assert grads[0].abs().sum() > 0


def test_simplex_has_no_residual_form_and_keeps_the_projection_path(rng):
    """Families without a declared residual form are untouched: SPIGOT still projects the step."""
    assert Simplex().residual_form() is None
    scores = torch.from_numpy(rng.normal(size=(3, 5))).requires_grad_(True)
    z = spigot(scores, Simplex(), step="fixed")
    g = torch.from_numpy(rng.normal(size=(3, 5)))
    z.backward(g)
    expected = z.detach() - Simplex().project(z.detach() - g).x
    torch.testing.assert_close(scores.grad, expected, atol=1e-12, rtol=0)
    assert np.isfinite(scores.grad.numpy()).all()


def test_spigot_ce_at_the_relaxed_point_through_the_residual_form_equals_the_projection_path(rng):
    scores = torch.from_numpy(rng.normal(size=(4, 7, 7)))
    weights = torch.from_numpy(rng.normal(size=(4, 7, 7)))
    grads = []
    for certify in (False, True):
        leaf = scores.clone().requires_grad_(True)
        out = spigot_ce_relaxed(
            leaf, HeadSelection(), lambda mu: (mu * weights).sum(), solver="exact", lengths=LENGTHS, certify=certify
        )
        out.backward(torch.ones_like(out))
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-12, rtol=0)
    assert grads[0].abs().sum() > 0
