"""``spigot study``: options described by --help, clear errors, a CSV, a summary and plots."""

from __future__ import annotations

import pandas as pd
import pytest

from spigot import cli
from spigot.experiments.projection_study import COLUMNS, FAMILIES

pytestmark = pytest.mark.filterwarnings("ignore:Solution may be inaccurate")


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["study", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--polytope", "--sizes", "--full", "--solvers", "--budgets", "--instances", "--target", "--eta", "--seed", "--threads", "--output", "--no-plots"):
        assert option in out, option
    for family in FAMILIES:
        assert family in out


def test_a_small_study_writes_its_csv_summary_and_plots(tmp_path, capsys):
    argv = ["study", "--polytope", "arborescence", "--sizes", "3", "4", "--instances", "1"]
    argv += ["--budgets", "1,20", "--solvers", "relaxed", "active-set", "cvxpy", "--output", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "| family | size | solver | max_iter |" in out and "study finished in" in out
    table = pd.read_csv(tmp_path / "study.csv")
    assert list(table.columns) == list(COLUMNS)
    assert set(table.solver) == {"relaxed", "active-set", "cvxpy"}
    assert set(table["size"]) == {"n_words=3", "n_words=4"}
    assert sorted(table.max_iter.dropna().unique()) == [1, 20]
    assert (tmp_path / "summary.md").read_text().startswith("| family | size | solver")
    assert (tmp_path / "arborescence.png").stat().st_size > 10_000


def test_no_plots_and_two_families(tmp_path, capsys):
    argv = ["study", "--polytope", "simplex", "budget", "--budgets", "none", "--instances", "1"]
    argv += ["--solvers", "closed-form", "active-set", "--no-plots", "--output", str(tmp_path)]
    assert cli.main(argv) == 0
    table = pd.read_csv(tmp_path / "study.csv")
    assert set(table.family) == {"simplex", "budget"} and table.max_iter.isna().all()
    assert not list(tmp_path.glob("*.png"))
    assert "time_ratio" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--polytope", "hypercube"], "invalid choice: 'hypercube'"),
        (["--polytope", "simplex", "budget", "--sizes", "10"], "--sizes needs exactly one --polytope"),
        (["--polytope", "simplex", "--sizes", "ten"], "expected a size such as 10 or 5x2"),
        (["--polytope", "simplex", "--sizes", "0"], "size entries must be positive"),
        (["--polytope", "budget", "--sizes", "10"], "sizes of 'budget' are 2 positive integer(s)"),
        (["--polytope", "simplex", "--full", "--sizes", "10"], "--sizes and --full exclude each other"),
        (["--budgets", "0,10"], "budgets must be positive integers"),
        (["--budgets", "many"], "expected budgets such as 1,10,100 or none"),
        (["--polytope", "simplex", "--solvers", "ad3"], "unknown solver label(s) ['ad3']"),
        (["--instances", "0"], "--instances: expected a positive integer"),
    ],
)
def test_bad_arguments_fail_with_a_message(argv, message, tmp_path, capsys):
    try:
        status = cli.main(["study", *argv, "--output", str(tmp_path)])
    except SystemExit as exit_info:
        status = exit_info.code
    assert status != 0
    assert message in capsys.readouterr().err
