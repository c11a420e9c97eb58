"""The projection-error study: its table is complete and consistent with the certificates, on every family."""

from __future__ import annotations

import numpy as np
import pytest

import dataclasses

from spigot.experiments.projection_study import (
    COLUMNS,
    FAMILIES,
    StudySolver,
    dm_semantic_graph,
    get_family,
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


@pytest.fixture(scope="module")
def table():
    return projection_study("semantic-graph", sizes=[(2, 2), (4, 3)], solvers=SMALL_SOLVERS, n_instances=2, seed=3)


def test_the_table_has_one_row_per_size_instance_and_solver(table):
    assert list(table.columns) == list(COLUMNS)
    assert set(table["size"]) == {"n_words=2, n_labels=2", "n_words=4, n_labels=3"}
    assert table.max_iter.isna().all()
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
    assert (relaxed.certified_against == "LabeledArcs (relaxation of SemanticGraph)").all()
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
        "family", "size", "solver", "max_iter", "distance", "max_distance", "max_gap",
        "max_feasibility", "time_s", "nit", "success",
    ]
    ratios = summarize_study(table, baseline="cvxpy")
    assert np.allclose(ratios[ratios.solver == "cvxpy"].time_ratio, 1.0)
    assert (ratios.time_ratio > 0).all()
    with pytest.raises(ValueError, match="baseline"):
        summarize_study(table, baseline="simplex")
    text = markdown_table(summary)
    lines = text.splitlines()
    assert len(lines) == 2 + len(summary) and lines[0].startswith("| family | size | solver | max_iter")


def test_spigot_targets_and_custom_families():
    family = dataclasses.replace(FAMILIES["semantic-graph"], make=lambda size: dm_semantic_graph(size[1]).relaxation())
    result = projection_study(
        family,
        sizes=[(3, 2)],
        solvers=family.solvers[:3],
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
        ({"sizes": [(2,)]}, "sizes"),
        ({"budgets": [0, 5]}, "budgets"),
        ({"budgets": []}, "budgets"),
        ({"family": "hypercube"}, "unknown polytope family"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        projection_study(**{"family": "semantic-graph", "sizes": [(2, 2)], **kwargs})


def test_every_family_solver_and_reference_is_registered():
    from spigot.solvers import available_solvers

    for family in FAMILIES.values():
        assert {s.solver for s in family.solvers} | {family.reference.solver} <= set(available_solvers())
        assert family.baseline in {s.label for s in family.solvers}
        for size in family.sizes + family.full_sizes:
            assert family.check_size(size) == size
    with pytest.raises(ValueError, match="unknown solver label"):
        get_family("simplex").solver("ad3")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_budgets_trace_the_iterative_solvers_on_every_family(name):
    family = FAMILIES[name]
    size = family.sizes[0]
    table = projection_study(name, sizes=[size], n_instances=1, budgets=[1, 500], seed=1)
    swept = table[table.max_iter.notna()]
    assert set(swept.max_iter) == {1, 500}
    assert (swept.nit <= swept.max_iter).all()
    # one row per budget for each iterative solver, label = its registered name
    assert not swept.duplicated(["solver", "max_iter"]).any()
    assert {"active-set", "pairwise-frank-wolfe"} <= set(swept.solver)
    exact = table[(table.solver == "active-set") & (table.max_iter == 500)]
    assert (exact.distance < 1e-6).all() and exact.success.all()
    for solver, rows in swept.groupby("solver"):
        first, last = rows.sort_values("max_iter").distance.to_numpy()
        assert last <= first + 1e-9, solver
    feasible = table[(table.gap_against == "polytope") & (table.feasibility < 1e-9)]
    assert (feasible.distance**2 <= feasible.gap + feasible.reference_gap + 1e-9).all()
    assert (table.reference_gap < 1e-6).all()
