"""The ``spigot`` command line: help everywhere, clear errors, the demo and experiment commands."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import experiment_fixtures  # noqa: F401  (registers tiny-clusters)
from spigot import cli

ROOT = Path(__file__).resolve().parent.parent


def _run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["experiment", "--help"]])
def test_help_is_available_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: spigot")
    assert ("demo" in out and "experiment" in out) if argv == ["--help"] else "--seeds" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["nope"], "invalid choice: 'nope'"),
        (["experiment"], "the following arguments are required: NAME"),
        (["experiment", "no-such-experiment"], "invalid choice: 'no-such-experiment'"),
        (["experiment", "clusters", "--seeds", "0"], "--seeds: expected a positive integer, got 0"),
        (
            ["experiment", "clusters", "--seeds", "two"],
            "--seeds: expected a positive integer, got 'two'",
        ),
        (["experiment", "clusters", "--methods", "spigot,magic"], "unknown method(s) ['magic']"),
        (["experiment", "clusters", "--preset", "huge"], "--preset: invalid choice: 'huge'"),
        (["demo", "--threads", "-1"], "--threads: expected a positive integer"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_experiment_prints_the_table_and_writes_the_results_file(tmp_path, capsys):
    results = tmp_path / "results.md"
    argv = [
        "experiment",
        "tiny-clusters",
        "--seeds",
        "2",
        "--methods",
        "pipeline,spigot",
        "--no-progress",
    ]
    argv += ["--run-dir", str(tmp_path / "runs"), "--results", str(results)]
    status, out, _ = _run(capsys, *argv)
    assert status == 0
    assert "| method | test accuracy (%) |" in out and "| pipeline |" in out and "| spigot |" in out
    text = results.read_text()
    assert "<!-- results:tiny-clusters:begin -->" in text and "| spigot |" in text
    assert "spigot experiment tiny-clusters --seeds 2 --methods pipeline,spigot" in text
    # the same command again reads the finished runs back instead of training
    assert (tmp_path / "runs" / "tiny-clusters").is_dir()
    status, out_again, _ = _run(capsys, *argv[:-2], "--no-results")
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert status == 0 and table == [
        line for line in out_again.splitlines() if line.startswith("|")
    ]


def test_demo_prints_a_table_per_demo_experiment(monkeypatch, capsys):
    monkeypatch.setattr(
        cli,
        "DEMO_RUNS",
        (
            ("tiny-clusters", ("pipeline", "ste-i", "spigot")),
            ("tiny-sentiment", ("pipeline", "spigot")),
        ),
    )
    status, out, _ = _run(capsys, "demo", "--seeds", "2", "--no-progress")
    assert status == 0
    assert "== tiny-clusters" in out and "| ste-i |" in out and "demo finished in" in out
    assert "== tiny-sentiment" in out and "| chain arcs in test trees (%) |" in out


def test_the_demo_runs_clusters_sentiment_and_parse_then_label_with_known_methods():
    from spigot.experiments import available_experiments, check_methods, get_experiment

    assert [name for name, _ in cli.DEMO_RUNS] == ["clusters", "sentiment", "parse-then-label"]
    assert dict(cli.DEMO_RUNS)["parse-then-label"] == ("pipeline", "ste-i", "spigot", "marginals")
    assert get_experiment("parse-then-label").config("demo").parser_weight > 0  # the paper's regime
    for name, methods in cli.DEMO_RUNS:
        assert name in available_experiments()
        assert check_methods(methods) == methods
        assert get_experiment(name).config("demo") != get_experiment(name).config("full")


def test_tree_experiments_run_from_the_command_line(tmp_path, capsys):
    results = tmp_path / "results.md"
    argv = ["experiment", "tiny-sentiment", "--seeds", "1", "--methods", "pipeline,spigot"]
    argv += ["--no-progress", "--run-dir", str(tmp_path / "runs"), "--results", str(results)]
    status, out, _ = _run(capsys, *argv)
    assert status == 0 and "| pipeline |" in out and "| spigot |" in out
    assert "<!-- results:tiny-sentiment:begin -->" in results.read_text()
    with pytest.raises(SystemExit):
        cli.main(["experiment", "parse-then-label", "--help"])
    assert "parse-then-label" in capsys.readouterr().out


def test_runtime_errors_exit_1_with_a_message(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("something named went wrong")

    monkeypatch.setattr("spigot.experiments.run_experiment", broken)
    status, _, err = _run(capsys, "experiment", "tiny-clusters", "--no-results")
    assert status == 1 and "spigot experiment: error: something named went wrong" in err


def test_commands_register_once(monkeypatch):
    monkeypatch.setattr(cli, "_COMMANDS", dict(cli._COMMANDS))
    command = cli.Command("extra-test-command", "help", lambda parser: None, lambda args, parser: 0)
    assert cli.register_command(command) is command
    assert cli.register_command(command) is command
    with pytest.raises(ValueError, match="already registered"):
        cli.register_command(
            cli.Command("extra-test-command", "other", lambda parser: None, lambda a, p: 0)
        )
    with pytest.raises(TypeError, match="expects a Command"):
        cli.register_command("demo")
    parser = cli.build_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    assert cli.main(["extra-test-command"]) == 0


def test_module_entry_point_runs():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "spigot", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "experiment" in done.stdout


@pytest.mark.slow
def test_the_real_demo_finishes_and_prints_both_tables():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "spigot", "demo", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "== clusters" in done.stdout and "== sentiment" in done.stdout
    for row in ("| pipeline |", "| ste-i |", "| spigot |", "| marginals |", "| imle |"):
        assert done.stdout.count(row) == 2  # one row in each experiment's table
