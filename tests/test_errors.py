"""Every bad input of DESIGN.md "Errors" raises at once with a message naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytope_cases import ExactlyTwo
from spigot import SPIGOT, Budget, Simplex, UnsupportedOperation, get_solver, spigot, ste
from spigot.polytopes import ProductOfSimplices
from spigot.solvers import project_budget, project_simplex


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scores(bad):
    x = torch.tensor([[0.1, bad, 0.3]])
    with pytest.raises(ValueError, match="scores contains (NaN|infinite|-inf)"):
        Simplex().map(x)
    with pytest.raises(ValueError, match="x contains"):
        Simplex().project(x)
    with pytest.raises(ValueError, match="scores contains"):
        spigot(x, Simplex())
    with pytest.raises(ValueError, match="x contains"):
        project_simplex(x)


def test_non_finite_incoming_gradient():
    scores = torch.randn(2, 4, requires_grad=True)
    z = spigot(scores, Simplex())
    with pytest.raises(ValueError, match="incoming gradient"):
        z.backward(torch.tensor([[0.0, float("nan"), 0, 0], [0, 0, 0, 0]]))
    z = ste(scores, Simplex())
    with pytest.raises(ValueError, match="incoming gradient"):
        z.backward(torch.full((2, 4), float("inf")))


def test_wrong_shapes():
    with pytest.raises(ValueError, match="at least 2 axes"):
        ProductOfSimplices().map(torch.randn(4))
    with pytest.raises(ValueError, match="fewer than the budget"):
        Budget(3).map(torch.randn(2))
    with pytest.raises(ValueError, match="empty event shape"):
        Simplex().map(torch.randn(3, 0))
    with pytest.raises(ValueError, match="init must have the shape"):
        Simplex().project(torch.randn(2, 3), solver="active-set", init=torch.zeros(3, 3))


def test_wrong_types():
    with pytest.raises(TypeError, match="scores must be a torch.Tensor or a numpy.ndarray"):
        Simplex().map([1.0, 2.0])
    with pytest.raises(TypeError, match="real numbers"):
        Simplex().map(torch.tensor([True, False]))
    with pytest.raises(TypeError, match="polytope must be a spigot Polytope"):
        spigot(torch.randn(3), "simplex")


@pytest.mark.parametrize(
    ("lengths", "error", "message"),
    [
        (torch.tensor([3, 0]), ValueError, r"lengths must lie in \[1, 4\]"),
        (torch.tensor([3, 5]), ValueError, r"lengths must lie in \[1, 4\]"),
        (torch.tensor([3]), ValueError, "lengths must have the batch shape"),
        (torch.tensor([3.0, 2.0]), TypeError, "lengths must be an integer tensor"),
    ],
)
def test_bad_lengths(lengths, error, message):
    x = torch.randn(2, 4)
    with pytest.raises(error, match=message):
        Simplex().map(x, lengths)
    with pytest.raises(error, match=message):
        Simplex().project(x, lengths=lengths)


def test_budget_lengths_below_k():
    with pytest.raises(ValueError, match=r"lengths must lie in \[2, 5\]"):
        Budget(2).map(torch.randn(2, 5), torch.tensor([5, 1]))
    with pytest.raises(ValueError, match="at least k=2 valid entries"):
        project_budget(torch.randn(2, 5), 2, lengths=torch.tensor([5, 1]))


@pytest.mark.parametrize("eta", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_step_size(eta):
    with pytest.raises(ValueError, match="eta must be a positive finite number"):
        spigot(torch.randn(3), Simplex(), eta=eta)
    with pytest.raises(ValueError, match="eta must be a positive finite number"):
        SPIGOT(Simplex(), eta=eta)


def test_bad_threshold_and_failure_policy():
    with pytest.raises(ValueError, match="threshold must be None or a positive"):
        spigot(torch.randn(3), Simplex(), threshold=0.0)
    with pytest.raises(ValueError, match="on_failure must be one of"):
        spigot(torch.randn(3), Simplex(), on_failure="ignore")


def test_unknown_solver_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown solver 'fastest'.*active-set.*closed-form"):
        get_solver("fastest")
    with pytest.raises(ValueError, match="unknown solver"):
        Simplex().project(np.zeros(3), solver="fastest")
    with pytest.raises(ValueError, match="unknown solver"):
        spigot(torch.randn(3), Simplex(), solver="fastest")
    with pytest.raises(TypeError, match="solver must be a name or a Solver"):
        get_solver(3)


def test_unknown_or_invalid_solver_options():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['tolerance'\].*valid options"):
        get_solver("active-set", tolerance=1e-3)
    with pytest.raises(ValueError, match="tol must be a positive finite number"):
        get_solver("frank-wolfe", tol=0.0)
    with pytest.raises(ValueError, match="max_iter must be a positive integer"):
        get_solver("active-set", max_iter=0)
    with pytest.raises(ValueError, match="options .* were given with a solver instance"):
        get_solver(get_solver("exact"), tol=1e-3)
    with pytest.raises(ValueError, match="backend 'NOPE' is not an installed cvxpy solver"):
        get_solver("cvxpy", backend="NOPE")


def test_missing_capabilities_are_named():
    with pytest.raises(UnsupportedOperation, match="constraints.*'cvxpy' solver"):
        ExactlyTwo().project(np.zeros(4), solver="cvxpy")
    with pytest.raises(UnsupportedOperation, match="marginals"):
        ExactlyTwo().marginals(np.zeros(4))
    with pytest.raises(ValueError, match="ExactlyTwo declares no closed-form projection"):
        ExactlyTwo().project(np.zeros(4), solver="closed-form")


def test_map_one_returning_wrong_shape_is_caught():
    class Broken(ExactlyTwo):
        def map_one(self, scores):
            return np.zeros(len(scores) + 1)

    with pytest.raises(ValueError, match="map_one returned shape"):
        Broken().map(np.zeros(4))


def test_invalid_budget_options():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        Budget(0)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        project_budget(torch.randn(4), 1.5)
