"""The projection-error study: its table is complete and consistent with the certificates."""

from __future__ import annotations

import numpy as np
import pytest

from spigot.experiments.projection_study import (
    DEFAULT_SOLVERS,
    StudySolver,
    dm_semantic_graph,
    markdown_table,
    projection_study,
    summarize_study,
)

pytestmark = pytest.mark.filterwarnings("ignore:The problem has an expression with dimension greater than 2")

SMALL_SOLVERS = (
    StudySolver("relaxed", "relaxed"),
    StudySolver("closed-form (relaxation)", "closed-form", on_relaxation=True),
    StudySolver("cvxpy", "cvxpy"),
    StudySolver("active-set", "active-set"),
    StudySolver("pairwise-frank-wolfe", "pairwise-frank-wolfe", {"max_iter": 200}),
    StudySolver("ad3 (5 it)", "ad3", {"max_iter": 5}),
)
COLUMNS = [
    "polytope", "n_words", "n_labels", "instance", "solver", "distance", "gap",
    "gap_against", "feasibility", "time_s", "nit", "success",
]


@pytest.fixture(scope="module")
def table():
    return projection_study(sizes=[(2, 2), (4, 3)], solvers=SMALL_SOLVERS, n_instances=2, seed=3)


def test_the_table_has_one_row_per_size_instance_and_solver(table):
    assert list(table.columns) == COLUMNS
    assert len(table) == 2 * 2 * len(SMALL_SOLVERS)
    assert set(table.solver) == {s.label for s in SMALL_SOLVERS}
    assert (table.time_s > 0).all()
    assert set(table.polytope) == {"SemanticGraph(n_labels=2, unique_labels=(0,))",
                                   "SemanticGraph(n_labels=3, unique_labels=(0, 1))"}


def test_exact_solvers_have_no_error(table):
    exact = table[table.solver.isin(["cvxpy", "active-set"])]
    assert (exact.distance < 1e-6).all() and (exact.feasibility < 1e-8).all() and exact.success.all()


def test_distances_are_bounded_by_the_certificates(table):
    feasible = table[(table.gap_against == "polytope") & (table.feasibility < 1e-9)]
    assert len(feasible) >= 4 * 4
    assert (feasible.distance**2 <= feasible.gap + 1e-8).all()


def test_relaxed_rows_are_measured_against_the_relaxation(table):
    relaxed = table[table.solver.isin(["relaxed", "closed-form (relaxation)"])]
    assert (relaxed.gap_against == "relaxation").all()
    assert relaxed.feasibility.max() > 1e-3  # the unique-label rows are violated somewhere
    assert (table[table.solver == "closed-form (relaxation)"].gap.abs() < 1e-9).all()
    assert table[table.solver == "relaxed"].distance.max() > 1e-3


def test_a_small_iteration_budget_leaves_error(table):
    ad3 = table[table.solver == "ad3 (5 it)"]
    assert ad3.distance.max() > 1e-4 and not ad3.success.all()


def test_summary_and_markdown(table):
    summary = summarize_study(table)
    assert len(summary) == 2 * len(SMALL_SOLVERS)
    assert list(summary.columns) == [
        "n_words", "n_labels", "solver", "distance", "max_distance", "max_gap",
        "max_feasibility", "time_s", "success",
    ]
    ratios = summarize_study(table, baseline="cvxpy")
    assert np.allclose(ratios[ratios.solver == "cvxpy"].time_ratio, 1.0)
    assert (ratios.time_ratio > 0).all()
    with pytest.raises(ValueError, match="baseline"):
        summarize_study(table, baseline="simplex")
    text = markdown_table(summary)
    lines = text.splitlines()
    assert len(lines) == 2 + len(summary) and lines[0].startswith("| n_words | n_labels | solver")


def test_spigot_targets_and_custom_polytopes():
    result = projection_study(
        sizes=[(3, 2)],
        solvers=DEFAULT_SOLVERS[:3],
        polytope=lambda labels: dm_semantic_graph(labels).relaxation(),
        target="spigot",
        eta=0.5,
        n_instances=1,
    )
    assert len(result) == 3
    assert set(result.polytope) == {"LabeledArcs(n_labels=2)"}
    exact = result[result.solver.isin(["cvxpy", "closed-form (relaxation)"])]
    assert (exact.distance < 1e-6).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": "noise"}, "target"),
        ({"n_instances": 0}, "n_instances"),
        ({"eta": -1.0}, "eta"),
        ({"sizes": [(0, 2)]}, "sizes"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        projection_study(**{"sizes": [(2, 2)], **kwargs})


def test_the_default_solvers_are_registered():
    from spigot.solvers import available_solvers

    assert {s.solver for s in DEFAULT_SOLVERS} <= set(available_solvers())
