"""Solver/structure mismatches fail when a layer is built or a projection is asked, with a useful message;
``ProjectionError`` carries the gap reached, the tolerance and the iterations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytope_cases import ExactlyTwo
from spigot import (
    SPIGOT,
    Arborescence,
    IncompatibleSolver,
    ProjectionError,
    SparseMAP,
    SpigotCE,
    UnsupportedOperation,
    make_estimator,
    spigot,
    spigot_ce,
)
from spigot.polytopes import Simplex

CLOSED_FORM = "solver 'closed-form' cannot project onto ExactlyTwo: ExactlyTwo declares no closed-form projection"
CVXPY = "solver 'cvxpy' cannot project onto ExactlyTwo: ExactlyTwo does not define constraints"
INSTEAD = "use solver='exact'"


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: SPIGOT(ExactlyTwo(), solver="closed-form"), CLOSED_FORM),
        (lambda: SPIGOT(ExactlyTwo(), solver="cvxpy"), CVXPY),
        (lambda: spigot(torch.zeros(4), ExactlyTwo(), solver="cvxpy"), CVXPY),
        (lambda: make_estimator("spigot", ExactlyTwo(), solver="closed-form"), CLOSED_FORM),
        (lambda: SPIGOT(Arborescence(), solver="ad3"), "the 'ad3' solver needs a FactorGraphPolytope"),
        (lambda: SPIGOT(ExactlyTwo(), solver="relaxed", inner="closed-form"), "solver 'relaxed' cannot project onto ExactlyTwo: its inner solver 'closed-form'"),
        (lambda: SparseMAP(Arborescence(), solver="ad3"), "SparseMAP: solver 'ad3' cannot project onto Arborescence"),
        (lambda: ExactlyTwo().project(np.zeros(4), solver="closed-form"), CLOSED_FORM),
        (lambda: ExactlyTwo().project(np.zeros(4), solver="cvxpy"), CVXPY),
    ],
)
def test_a_mismatch_raises_when_built_or_called_naming_solver_structure_and_alternative(build, message):
    with pytest.raises(IncompatibleSolver) as error:
        build()
    assert message in str(error.value)
    assert INSTEAD in str(error.value)
    assert isinstance(error.value, UnsupportedOperation) and isinstance(error.value, ValueError)


def test_spigot_ce_checks_its_solver_at_construction():
    class SimplexSubclass(Simplex):  # has marginals, but a subclass inherits no closed form
        pass

    with pytest.raises(IncompatibleSolver, match="SPIGOT-CE: solver 'closed-form' cannot project onto SimplexSubclass"):
        SpigotCE(SimplexSubclass(), solver="closed-form")
    with pytest.raises(IncompatibleSolver, match="SPIGOT-CE"):
        spigot_ce(torch.zeros(3), SimplexSubclass(), solver="closed-form")


def test_compatible_choices_still_build():
    SPIGOT(ExactlyTwo(), solver="active-set")
    SPIGOT(Arborescence(), solver="relaxed")  # closed form on the head-selection relaxation
    SPIGOT(Arborescence(), solver="cvxpy")
    SparseMAP(ExactlyTwo())


def test_projection_error_carries_the_gap_the_tolerance_and_the_iterations():
    layer = SPIGOT(Arborescence(), solver="pairwise-frank-wolfe", max_iter=2, tol=1e-10)
    scores = torch.randn(3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    z = layer(scores)
    with pytest.raises(ProjectionError) as error:
        (z * torch.randn(3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))).sum().backward()
    err = error.value
    assert err.tol == 1e-10 and err.nit == 2 and err.gap > 1e-10 and len(err.instances) >= 1
    text = str(err)
    assert f"gap reached {err.gap:.3e} after 2 iteration(s) against tol 1.0e-10" in text


def test_projection_error_is_still_built_from_a_message_alone():
    err = ProjectionError("SPIGOT backward: stalled")
    assert str(err) == "SPIGOT backward: stalled" and err.gap is None and err.instances == ()
