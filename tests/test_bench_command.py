"""``spigot bench``: options described by --help, a quick run rewriting a benchmarks page, section bookkeeping."""

from __future__ import annotations

import json

import pytest

from spigot import cli
from spigot.experiments.benchmarks import SECTIONS, read_sections, section_names, update_benchmarks_file
from spigot.experiments.benchmarks.report import PLACEHOLDERS

pytestmark = pytest.mark.filterwarnings("ignore")  # peers' deprecation and solver-accuracy warnings


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--only", "--quick", "--rounds", "--threads", "--seed", "--output", "--json", "--device"):
        assert option in out, option
    for name in section_names():
        assert name in out


def test_quick_run_rewrites_every_installed_section(tmp_path, capsys):
    page, raw = tmp_path / "benchmarks.md", tmp_path / "bench.json"
    assert cli.main(["bench", "--quick", "--output", str(page), "--json", str(raw)]) == 0
    out = capsys.readouterr().out
    text = page.read_text()
    sections = read_sections(text)
    installed = [s.name for s in SECTIONS if s.device == "cpu" and not s.missing_peers()]
    assert list(sections) == installed + ["gpu"] and installed
    assert sections["gpu"] == PLACEHOLDERS["gpu"]  # a CPU run measures no GPU figure
    assert text.startswith("# Benchmarks")
    command = f"spigot bench --quick --output {page} --json {raw}"
    for name in installed:
        body = sections[name]
        assert body.startswith("## ") and f"Command: `{command}`" in body, name
    if "simplex" in sections:
        assert "x entmax" in out and "Goal **" in sections["simplex"]
    if "trees" in sections:
        assert "ratio ours/peer" in sections["trees"] and "Goals: **MAP**" in sections["trees"]
    if "ad3-qp" in sections:
        assert "lp-sparsemap" in sections["ad3-qp"] and "float32" in sections["ad3-qp"]
        assert "ad3-qp goals:" in out
    assert set(json.loads(raw.read_text())) == set(installed)


def test_one_section_keeps_the_others(tmp_path, capsys):
    page = tmp_path / "benchmarks.md"
    update_benchmarks_file(page, {"trees": "## Trees\n\nold trees", "simplex": "## Simplex projection\n\nold"}, section_names())
    assert cli.main(["bench", "--quick", "--only", "simplex", "--output", str(page)]) == 0
    sections = read_sections(page.read_text())
    assert sections["trees"] == "## Trees\n\nold trees"
    assert sections["simplex"] != "## Simplex projection\n\nold" and "x entmax" in sections["simplex"]


def test_quick_without_output_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--quick", "--only", "simplex"]) == 0
    assert not (tmp_path / "docs").exists()
    assert "wrote" not in capsys.readouterr().out


def test_unknown_sections_are_refused_by_the_page_writer(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark section"):
        update_benchmarks_file(tmp_path / "b.md", {"tpu": "## TPU"}, section_names())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "tpu"], "unknown section(s) ['tpu']"),
        (["--only", "gpu"], "section(s) ['gpu'] run with --device cuda, not --device cpu"),
        (["--device", "cuda", "--only", "simplex,trees"], "section(s) ['simplex', 'trees'] run with --device cpu"),
        (["--device", "tpu"], "argument --device: invalid choice"),
        (["--only", ","], "unknown section(s)"),
        (["--rounds", "0"], "--rounds: expected a positive integer"),
        (["--quick", "--no-write"], "unrecognized arguments: --no-write"),
    ],
)
def test_bad_arguments_fail_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_notes_survive_a_rerun_of_their_section(tmp_path, capsys):
    """A hand-written note (a spread over runs) stays after its section when the section is rerun."""
    page = tmp_path / "benchmarks.md"
    update_benchmarks_file(page, {"simplex": "## Simplex projection\n\nold"}, section_names())
    text = page.read_text().replace(
        "<!-- bench:simplex:end -->",
        "<!-- bench:simplex:end -->\n\n<!-- note:simplex:begin -->\nSpread over six runs.\n<!-- note:simplex:end -->"
        "\n\nstray text outside every marker",
    )
    page.write_text(text)
    assert cli.main(["bench", "--quick", "--only", "simplex", "--output", str(page)]) == 0
    text = page.read_text()
    assert read_sections(text, "note") == {"simplex": "Spread over six runs."}
    assert text.index("<!-- bench:simplex:end -->") < text.index("<!-- note:simplex:begin -->")
    assert "stray text" not in text
    assert "x entmax" in read_sections(text)["simplex"]
