"""The three Frank-Wolfe variants share one set of defaults, the one the solver guide documents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polytope_cases import exactly_two_vertices
from reference import hull_projection
from spigot.solvers import get_solver
from spigot.solvers.frank_wolfe import DEFAULT_MAX_ITER, DEFAULT_TOL

VARIANTS = ("frank-wolfe", "away-frank-wolfe", "pairwise-frank-wolfe")


@pytest.mark.parametrize("name", VARIANTS)
def test_one_set_of_defaults(name):
    solver = get_solver(name)
    assert (solver.tol, solver.max_iter) == (DEFAULT_TOL, DEFAULT_MAX_ITER) == (1e-10, 2000)


def test_the_guide_states_the_defaults():
    guide = (Path(__file__).resolve().parent.parent / "docs" / "solvers.md").read_text()
    assert f"`tol={DEFAULT_TOL:.0e}` and `max_iter={DEFAULT_MAX_ITER}`" in guide


@pytest.mark.parametrize("name", ["away-frank-wolfe", "pairwise-frank-wolfe"])
def test_the_linear_variants_meet_the_default_against_brute_force(name):
    from polytope_cases import ExactlyTwo

    rng = np.random.default_rng(4)
    x = 2.0 * rng.normal(size=(6, 7))
    result = ExactlyTwo().project(x, solver=name)
    assert result.all_success
    for xi, pi in zip(x, result.x):
        np.testing.assert_allclose(pi, hull_projection(xi, exactly_two_vertices(7)), atol=1e-6)
