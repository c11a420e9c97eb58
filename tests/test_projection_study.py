"""The projection-error study: its table is complete and consistent with the certificates, on every family."""

from __future__ import annotations

import numpy as np
import pytest

import dataclasses

from polytope_cases import ExactlyTwo
from reference import hull_projection
from spigot.experiments.projection_study import (
    COLUMNS,
    FAMILIES,
    StudyFamily,
    StudySolver,
    dm_semantic_graph,
    get_family,
    markdown_table,
    projection_study,
    summarize_study,
    summary_lines,
)
from spigot.polytopes import Arborescence, Budget

pytestmark = pytest.mark.filterwarnings("ignore:The problem has an expression with dimension greater than 2")

SMALL_SOLVERS = (
    StudySolver("relaxed", "relaxed"),
    StudySolver("closed-form (relaxation)", "closed-form", on_relaxation=True),
    StudySolver("cvxpy", "cvxpy"),
    StudySolver("active-set", "active-set"),
    StudySolver("pairwise-frank-wolfe", "pairwise-frank-wolfe", {"max_iter": 200}),
    StudySolver("ad3-frank-wolfe (5 it)", "ad3-frank-wolfe", {"max_iter": 5}),
    StudySolver("ad3", "ad3"),
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
    assert (table.time_s > 0).all() and (table.time_iqr_s >= 0).all()
    assert table.repeats.between(1, 5).all() and (table[table.time_s < 1e-3].repeats == 5).all()
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
    ad3 = table[table.solver == "ad3-frank-wolfe (5 it)"]
    assert ad3.distance.max() > 1e-4 and not ad3.success.all()


def test_summary_and_markdown(table):
    summary = summarize_study(table)
    assert len(summary) == 2 * len(SMALL_SOLVERS)
    assert list(summary.columns) == [
        "family", "size", "solver", "max_iter", "distance", "max_distance", "max_gap",
        "max_feasibility", "time_s", "time_iqr_s", "nit", "success",
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


def test_a_users_structure_is_studied_through_from_polytope():
    family = StudyFamily.from_polytope(ExactlyTwo, sizes=[(4,), (6,)])
    assert family.name == "ExactlyTwo" and family.size_names == ("axis0",) and family.baseline == "active-set"
    # MAP-only: no closed form, no cvxpy, no relaxation; the MAP-only solvers remain
    assert [s.label for s in family.solvers] == ["active-set", "pairwise-frank-wolfe", "away-frank-wolfe", "frank-wolfe"]
    table = projection_study(family, n_instances=2, budgets=[1, 200], repeats=3, seed=2)
    assert set(table["size"]) == {"axis0=4", "axis0=6"} and table.repeats.between(1, 3).all()
    assert set(table.certified_against) == {"ExactlyTwo"}
    # the reference is the exact projection: compare it with the hull of the vertices, brute force
    rng = np.random.default_rng(2)
    x = rng.standard_normal(4)
    from polytope_cases import exactly_two_vertices

    star = hull_projection(x, exactly_two_vertices(4))
    best = table[(table["size"] == "axis0=4") & (table.instance == 0) & (table.solver == "active-set") & (table.max_iter == 200)]
    assert float(best.distance.iloc[0]) < 1e-9 and float(best.reference_gap.iloc[0]) < 1e-9
    assert np.allclose(np.asarray(ExactlyTwo().project(x, solver="active-set").x), star, atol=1e-8)
    lines = summary_lines(summarize_study(table, baseline=family.baseline))
    assert len(lines) == 1 and lines[0].startswith("ExactlyTwo [axis0=6]: ") and "active-set" in lines[0]


def test_from_polytope_takes_an_instance_or_a_factory_and_a_shape_function():
    family = StudyFamily.from_polytope(
        lambda size: Budget(size[1]), sizes=[(6, 2)], shape=lambda size: (size[0],), size_names=("d", "k"), name="budget-2"
    )
    assert {"closed-form", "cvxpy", "active-set"} <= {s.label for s in family.solvers}
    table = projection_study(family, n_instances=1, repeats=1)
    assert set(table["size"]) == {"d=6, k=2"} and set(table.family) == {"budget-2"}
    trees = StudyFamily.from_polytope(Arborescence(), sizes=[(4, 4)])
    assert "relaxed" in {s.label for s in trees.solvers}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"polytope": ExactlyTwo, "sizes": []}, "at least one size"),
        ({"polytope": int, "sizes": [(3,)]}, "must be a Polytope"),
        ({"polytope": "simplex", "sizes": [(3,)]}, "must be a Polytope"),
        ({"polytope": lambda size: 3, "sizes": [(3,)]}, "must return a Polytope"),
        ({"polytope": ExactlyTwo, "sizes": [(3,), (3, 3)]}, "sizes of 'ExactlyTwo'"),
        ({"polytope": ExactlyTwo, "sizes": [(3,)], "baseline": "cvxpy"}, "baseline 'cvxpy'"),
    ],
)
def test_from_polytope_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StudyFamily.from_polytope(**kwargs)


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats"):
        projection_study("simplex", sizes=[(3,)], repeats=0)
