"""The documentation says what the command line does: every documented ``spigot`` command parses
with the real parser, the demo's description is that of ``DEMO_RUNS``, and no command writes into
``./docs/`` unless a path there is on its command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import experiment_fixtures  # noqa: F401  (registers tiny-clusters)
from spigot import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SUBCOMMANDS = ("demo", "experiment", "study", "bench")
#: Placeholders of the pages' command lines, and a value each takes in a real command.
PLACEHOLDERS = {"NAME": "clusters", "N": "2", "P": "2"}


def documented_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every ``spigot SUBCOMMAND ...`` in a code block or code span of the pages."""
    found = []
    for page in PAGES:
        text = page.read_text()
        snippets = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)
        snippets += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for snippet in snippets:
            for line in snippet.splitlines():
                line = line.split(" #")[0].strip()
                if " | " in line:  # a list of alternatives ("spigot demo | study"), not a command
                    continue
                match = re.search(r"(?:^|[\s/])spigot ((?:%s)\b.*)$" % "|".join(SUBCOMMANDS), line)
                if match:
                    found.append((page.name, match.group(1).strip()))
    return found


COMMANDS = documented_commands()


def test_the_pages_document_every_subcommand():
    assert {command.split()[0] for _, command in COMMANDS} == set(SUBCOMMANDS)


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{p}: {c}" for p, c in COMMANDS])
def test_every_documented_command_parses(page, command):
    argv = [PLACEHOLDERS.get(word, word) for word in shlex.split(command) if word not in ("...",)]
    if len(argv) == 1:  # the subcommand named in prose ("`spigot experiment`"): it must exist
        argv.append("--help")
    try:
        cli.build_parser().parse_args(argv)
    except SystemExit as exit_info:  # --help exits 0; a parse error exits 2
        assert exit_info.code == 0, f"{page}: `spigot {command}` does not parse"


def test_the_demo_description_is_that_of_demo_runs():
    index = (ROOT / "docs" / "index.md").read_text()
    row = next(line for line in index.splitlines() if line.startswith("| `.venv/bin/spigot demo`"))
    counts = {len(methods) for _, methods in cli.DEMO_RUNS}
    words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}
    assert f"{words[len(cli.DEMO_RUNS)]} experiments' demo presets" in row
    if len(counts) == 1:
        assert f"{words[counts.pop()]} methods each" in row
    for name, methods in cli.DEMO_RUNS:
        assert f"{name} ({', '.join(methods)})" in row
    seeds = cli.build_parser().parse_args(["demo"]).seeds
    assert f"{seeds} seeds" in row


def test_experiment_writes_its_table_to_the_run_folder_not_docs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["experiment", "tiny-clusters", "--seeds", "1", "--methods", "pipeline", "--no-progress"]
    assert cli.main(argv) == 0
    assert not (tmp_path / "docs").exists()
    assert "<!-- results:tiny-clusters:begin -->" in (tmp_path / "runs" / "results.md").read_text()
    assert "table written to runs/results.md" in capsys.readouterr().out


def test_experiment_and_bench_write_docs_only_when_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    assert cli.main(["bench", "--quick", "--only", "simplex"]) == 0
    assert list((tmp_path / "docs").iterdir()) == []
    assert cli.main(["bench", "--quick", "--only", "simplex", "--output", "docs/benchmarks.md"]) == 0
    assert "<!-- bench:simplex:begin -->" in (tmp_path / "docs" / "benchmarks.md").read_text()
    argv = ["experiment", "tiny-clusters", "--seeds", "1", "--methods", "pipeline", "--no-progress"]
    assert cli.main([*argv, "--results", "docs/results.md"]) == 0
    assert "<!-- results:tiny-clusters:begin -->" in (tmp_path / "docs" / "results.md").read_text()
