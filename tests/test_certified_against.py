"""``ProjectionResult.certified_against``: what each solver's certificate is measured against."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spigot.polytopes import Arborescence, SemanticGraph, Simplex, UnitCube
from spigot.solvers import ProjectionResult


@pytest.mark.parametrize("solver", ["active-set", "cvxpy", "pairwise-frank-wolfe", "exact"])
def test_exact_solvers_certify_against_the_polytope(solver):
    x = torch.randn(2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = Arborescence().project(x, solver=solver)
    assert result.certified_against == "Arborescence" and not result.on_relaxation
    assert "certified_against='Arborescence'" in repr(result)


def test_relaxed_names_the_relaxation_and_its_small_gap_is_not_a_distance():
    x = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    relaxed = Arborescence().project(x, solver="relaxed")
    exact = Arborescence().project(x, solver="active-set")
    assert relaxed.certified_against == "HeadSelection (relaxation of Arborescence)"
    assert relaxed.on_relaxation and relaxed.success
    assert float(relaxed.gap) < 1e-9  # exact on the relaxation...
    assert float((relaxed.x - exact.x).norm()) > 1e-3  # ...but not the projection onto the trees
    assert "relaxation of Arborescence" in repr(relaxed)


def test_relaxed_with_a_reference_procedure_and_with_no_relaxation():
    graph = SemanticGraph(3).project(np.random.default_rng(0).normal(size=(4, 4, 3)), solver="relaxed")
    assert graph.certified_against == "LabeledArcs (relaxation of SemanticGraph)"
    simplex = Simplex().project(np.array([0.3, 2.0, -1.0]), solver="relaxed")
    assert simplex.certified_against == "Simplex" and not simplex.on_relaxation


def test_a_user_relaxation_is_named():
    class SimplexInCube(Simplex):
        def relaxation(self):
            return UnitCube()

    result = SimplexInCube().project(np.array([0.9, 0.8, -0.2]), solver="relaxed")
    assert result.certified_against == "UnitCube (relaxation of SimplexInCube)"


def test_the_field_is_a_frozen_dataclass_field_with_a_default():
    result = ProjectionResult(x=np.zeros(2), gap=np.zeros(()), nit=np.zeros(()), success=np.ones((), bool),
                              status=np.zeros(()), message=("",))
    assert result.certified_against == ""
    with pytest.raises(AttributeError):
        result.certified_against = "Simplex"  # frozen
