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
    for option in ("--polytope", "--sizes", "--repeats", "module:Class", "--full", "--solvers", "--budgets", "--instances", "--target", "--eta", "--seed", "--threads", "--output", "--no-plots"):
        assert option in out, option
    for family in FAMILIES:
        assert family in out


def test_a_small_study_writes_its_csv_summary_and_plots(tmp_path, capsys):
    argv = ["study", "--polytope", "arborescence", "--sizes", "3", "4", "--instances", "1"]
    argv += ["--budgets", "1,20", "--solvers", "relaxed", "active-set", "cvxpy", "--output", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "arborescence [n_words=4]: " in out and "study finished in" in out
    assert len(out.strip().splitlines()) <= 12
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
        (["--polytope", "hypercube"], "expected a family (arborescence, budget"),
        (["--polytope", "polytope_cases:ExactlyTwo"], "--polytope polytope_cases:ExactlyTwo needs --sizes"),
        (["--polytope", "no_such_module:Thing", "--sizes", "3"], "cannot import 'no_such_module'"),
        (["--polytope", "polytope_cases:exactly_two_vertices", "--sizes", "3"], "has no Polytope subclass named 'exactly_two_vertices'"),
        (["--repeats", "0"], "--repeats: expected a positive integer"),
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


def test_a_users_structure_from_a_module_and_the_summary_is_short(tmp_path, capsys):
    argv = ["study", "--polytope", "polytope_cases:ExactlyTwo", "--sizes", "4", "6", "--instances", "1"]
    argv += ["--budgets", "1,30", "--repeats", "2", "--output", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) <= 12
    assert "ExactlyTwo [axis0=6]: " in out
    table = pd.read_csv(tmp_path / "study.csv")
    assert set(table.family) == {"ExactlyTwo"} and set(table["size"]) == {"axis0=4", "axis0=6"}
    assert table.repeats.between(1, 2).all() and set(table.certified_against) == {"ExactlyTwo"}
    assert (tmp_path / "ExactlyTwo.png").exists()


def test_the_custom_polytope_page_study_runs_from_its_file(tmp_path, capsys):
    """The page's structure, saved as structures.py, studied with the command the page shows."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "custom-polytope.md").read_text()
    (tmp_path / "structures.py").write_text(re.findall(r"```python\n(.*?)```", page, flags=re.S)[0])
    command = re.search(r"spigot study --polytope structures.py:(\w+) (.*)", page)
    assert command, "the page shows `spigot study --polytope structures.py:CLASS ...`"
    argv = ["study", "--polytope", f"{tmp_path / 'structures.py'}:{command.group(1)}", "--sizes", "3x3", "4x4"]
    argv += ["--instances", "1", "--budgets", "1,20", "--repeats", "1", "--no-plots", "--output", str(tmp_path / "out")]
    assert cli.main(argv) == 0
    table = pd.read_csv(tmp_path / "out" / "study.csv")
    assert {"cvxpy", "active-set"} <= set(table.solver)
    exact = table[(table.solver == "cvxpy") | ((table.solver == "active-set") & (table.max_iter == 20))]
    assert (exact.distance < 1e-6).all()
