"""One solve core: run = check + solve + certify + restore; layers call solve with explicit warm starts."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from spigot import spigot
from spigot._batch import as_batch
from spigot.polytopes import Arborescence, FactorGraph, FactorGraphPolytope, HeadSelection
from spigot.solvers import get_solver
from spigot.solvers.base import certify, vertex_starts
from spigot.solvers.certificate import certificate_gap
from spigot.solvers.result import TIME_LIMIT


class CountingArborescence(Arborescence):
    """Counts the batched MAP calls (the certificate and the old warm-start rediscovery use it)."""

    calls = 0

    def map_batch(self, scores, lengths):
        CountingArborescence.calls += 1
        return super().map_batch(scores, lengths)


class CountingHeadSelection(HeadSelection):
    calls = 0
    closed_form_projection = HeadSelection.closed_form_projection  # same vertex set: re-declared

    def map_batch(self, scores, lengths):
        CountingHeadSelection.calls += 1
        return super().map_batch(scores, lengths)


class FrustratedTriangle(FactorGraphPolytope):
    """Three binary variables, pairwise at most one: its LP relaxation has the vertex (1/2, 1/2, 1/2)."""

    def build(self, graph: FactorGraph) -> None:
        for i, j in ((0, 1), (1, 2), (0, 2)):
            graph.at_most_one([i, j])


def test_run_is_solve_certified_and_reshaped():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2, 3, 5, 5)))
    polytope = Arborescence()
    solver = get_solver("active-set")
    result = solver.run(polytope, x)
    batch = as_batch(polytope, x, name="x")
    solution = solver.solve(polytope, batch)
    assert solution.gap is not None  # the loop's own certificate, no extra MAP call
    recomputed = certificate_gap(polytope, batch.values, solution.p, None)
    torch.testing.assert_close(solution.gap, recomputed, atol=1e-12, rtol=0)
    torch.testing.assert_close(result.x, solution.p.reshape(x.shape))
    torch.testing.assert_close(result.gap, solution.gap.reshape(2, 3))


def test_closed_form_solution_is_certified_only_when_asked():
    x = torch.randn(4, 6, 6, dtype=torch.float64)
    polytope = HeadSelection()
    batch = as_batch(polytope, x, name="x")
    solution = get_solver("closed-form").solve(polytope, batch)
    assert solution.closed_form and solution.gap is None
    certified = certify(polytope, batch, solution)
    assert (certified.gap.abs() < 1e-10).all()


def test_spigot_backward_with_active_set_makes_no_batched_map_call():
    polytope = CountingArborescence()
    scores = torch.randn(3, 5, 5, dtype=torch.float64, requires_grad=True)
    z = spigot(scores, polytope, solver="active-set", step="fixed")
    CountingArborescence.calls = 0
    (z * torch.randn(z.shape, dtype=z.dtype)).sum().backward()
    # warm start {z} given explicitly (no map(2z - 1)), certificate from the solver loop
    assert CountingArborescence.calls == 0
    reference = scores.detach().clone().requires_grad_(True)
    torch.manual_seed(0)
    g = torch.randn(z.shape, dtype=z.dtype)
    out = spigot(reference, Arborescence(), solver="active-set", step="fixed")
    (out * g).sum().backward()
    expected = out.detach() - Arborescence().project(out.detach() - g, solver="active-set").x
    torch.testing.assert_close(reference.grad, expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("certify_flag, calls", [(False, 0), (True, 1)])
def test_closed_form_certificate_in_the_backward_only_with_certify(certify_flag, calls):
    polytope = CountingHeadSelection()
    torch.manual_seed(1)
    scores = torch.randn(4, 6, 6, dtype=torch.float32, requires_grad=True)
    z = spigot(scores, polytope, solver="closed-form", certify=certify_flag, step="fixed")
    CountingHeadSelection.calls = 0
    g = torch.randn(z.shape)
    (z * g).sum().backward()
    assert CountingHeadSelection.calls == calls
    expected = z.detach() - HeadSelection().project(z.detach() - g, solver="closed-form").x
    torch.testing.assert_close(scores.grad, expected)


def test_certify_must_be_a_flag():
    with pytest.raises(TypeError, match="certify must be True or False"):
        spigot(torch.zeros(3, 3), HeadSelection(), certify="yes")


def test_vertex_starts_take_the_valid_region():
    polytope = Arborescence()
    z = polytope.map(torch.randn(2, 5, 5, dtype=torch.float64), torch.tensor([4, 2]))
    batch = as_batch(polytope, z, torch.tensor([4, 2]))
    starts = vertex_starts(batch, z)
    assert [v.shape for v, _ in starts] == [(1, 5, 5), (1, 3, 3)]
    assert all(w.tolist() == [1.0] for _, w in starts)


def test_time_budget_ends_a_vanilla_frank_wolfe_run_with_its_status():
    polytope = FrustratedTriangle()
    x = np.array([0.7, 0.5, 0.3])  # projection (0.53, 0.33, 0.13): inside a face, FW zigzags
    # the rounding floor of the certificate's threshold lets a long run converge, so the budget
    # is set to expire within the first iterations
    solver = get_solver("frank-wolfe", tol=1e-300, max_iter=10**9, max_time=1e-6)
    started = time.perf_counter()
    result = polytope.project(x, solver=solver)
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0
    assert not bool(result.success) and int(result.status) == TIME_LIMIT
    assert "max_time=1e-06" in result.message[0]
    assert float(result.gap) > 0


def test_time_budget_is_checked():
    with pytest.raises(ValueError, match="max_time must be a positive number"):
        get_solver("frank-wolfe", max_time=0)
    with pytest.raises(ValueError, match="max_time must be a positive number"):
        get_solver("active-set", max_time=float("nan"))
    assert get_solver("pairwise-frank-wolfe", max_time=math.inf).max_time == math.inf
