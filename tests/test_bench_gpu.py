"""``spigot bench --device cuda``: the GPU section's measurements run on the CPU (tiny sizes, host
timer) to check their rows, and the command's behaviour without a GPU. No figure produced
here ever reaches a benchmarks page: :func:`gpu.run` and the command refuse non-CUDA results."""

from __future__ import annotations

import pytest
import torch

from spigot import cli
from spigot.experiments.benchmarks import BenchSettings, SectionResult, read_sections, section_names, update_benchmarks_file
from spigot.experiments.benchmarks import gpu
from spigot.experiments.benchmarks.report import PLACEHOLDERS
from spigot.experiments.benchmarks.timing import HostTimer, compare, timer_for

pytestmark = pytest.mark.filterwarnings("ignore")  # peers' deprecation warnings

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a CUDA device")


def positive(value: object) -> bool:
    return isinstance(value, float) and value > 0


def test_timer_for_the_cpu_is_a_host_timer():
    timer = timer_for("cpu")
    assert isinstance(timer, HostTimer) and timer.name
    assert positive(timer.seconds(lambda: torch.ones(3).sum(), repeats=3, number=2, warmup=1))
    times = compare({"a": lambda: None, "b": lambda: sum(range(100))}, rounds=2, timer=timer, repeats=2, number=2, warmup=0)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


def test_sort_projection_peer_is_the_simplex_projection():
    x = torch.randn(40, 13, dtype=torch.float64) * 3
    from spigot.solvers import project_simplex

    torch.testing.assert_close(gpu.sort_projection(x), project_simplex(x), rtol=0.0, atol=1e-12)


@pytest.fixture(scope="module")
def cpu_rows():
    timer = timer_for("cpu")
    simplex = gpu.bench_simplex("cpu", timer, quick=True, seed=1)
    steps = [gpu.bench_spigot_step("cpu", timer, single, quick=True, seed=1) for single in (False, True)]
    return timer, simplex, steps


def test_simplex_measurement_rows_are_well_formed(cpu_rows):
    _, simplex, _ = cpu_rows
    assert (simplex["batch"], simplex["k"]) == gpu.simplex_sizes(quick=True)
    assert set(simplex["forward_us"]) == {"spigot", "spigot (validated)", "entmax sparsemax", "sort-based", "copy"}
    assert set(simplex["forward_backward_us"]) == {"spigot", "entmax sparsemax"}
    assert all(positive(t) for t in [*simplex["forward_us"].values(), *simplex["forward_backward_us"].values()])
    for name, ratio in simplex["ratios"].items():
        assert ratio == pytest.approx(simplex["forward_us"]["spigot"] / simplex["forward_us"][name])
    assert simplex["goal_us"] == gpu.SIMPLEX_GOAL_US
    assert simplex["met"] == (simplex["forward_us"]["spigot"] <= gpu.SIMPLEX_GOAL_US)


def test_spigot_step_measurement_rows_are_well_formed(cpu_rows):
    _, _, steps = cpu_rows
    assert [s["single_root"] for s in steps] == [False, True]
    for row in steps:
        assert (row["batch"], row["n"]) == gpu.step_sizes(quick=True)
        assert positive(row["ours_ms"]) and positive(row["peer_ms"])
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["peer_ms"])
        assert row["met"] == (row["ratio"] <= row["goal"])


def test_section_markdown_and_headline_from_rows(cpu_rows):
    timer, simplex, steps = cpu_rows
    text = gpu.render("spigot bench --device cuda", "a test device", timer.name, simplex, steps)
    assert text.startswith("## GPU") and "**a test device**" in text
    assert "| forward pass | time (us) | spigot / this |" in text and "x.clone()" in text
    assert "| root mode | spigot (ms) | torch-struct (ms) | ratio |" in text
    assert text.count("Goal **") == 2
    lines = gpu.headline(simplex, steps)
    assert lines[0].startswith("gpu simplex forward:") and "goal (<= 0.5x)" in lines[-1]


def test_the_section_refuses_anything_but_cuda():
    with pytest.raises(ValueError, match="CUDA device only"):
        gpu.run(BenchSettings(quick=True, device="cpu"))


@no_cuda
def test_the_section_refuses_when_cuda_is_missing():
    with pytest.raises(ValueError, match="no CUDA device is available"):
        gpu.run(BenchSettings(quick=True, device="cuda"))


@no_cuda
@pytest.mark.parametrize("argv", [["--device", "cuda"], ["--device", "cuda", "--only", "gpu", "--quick"]])
def test_device_cuda_without_cuda_fails_in_one_line(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", *argv]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spigot bench: error: --device cuda: no CUDA device is available")
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "docs").exists()


def test_a_gpu_block_is_written_only_from_a_cuda_measurement(tmp_path, monkeypatch, capsys):
    """Even if the section returned figures from another device, the command would not write them."""
    page = tmp_path / "benchmarks.md"
    update_benchmarks_file(page, {"simplex": "## Simplex projection\n\nold"}, section_names())
    before = page.read_text()
    fake = SectionResult("gpu", "## GPU\n\nfake", ["fake"], {"device_type": "cpu"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu, "run", lambda settings: fake)
    assert cli.main(["bench", "--device", "cuda", "--output", str(page)]) == 1
    assert "refusing to write the gpu section" in capsys.readouterr().err
    assert page.read_text() == before


def test_cpu_runs_keep_the_gpu_block_and_a_new_page_gets_the_placeholder(tmp_path, capsys):
    page = tmp_path / "benchmarks.md"
    update_benchmarks_file(page, {"trees": "## Trees\n\nold"}, section_names())
    assert read_sections(page.read_text())["gpu"] == PLACEHOLDERS["gpu"]
    assert "Not measured yet" in PLACEHOLDERS["gpu"] and "spigot bench --device cuda --only gpu" in PLACEHOLDERS["gpu"]
    measured = "## GPU\n\nMeasured on **some GPU**."
    update_benchmarks_file(page, {"gpu": measured}, section_names())
    assert cli.main(["bench", "--quick", "--only", "simplex", "--output", str(page)]) == 0
    sections = read_sections(page.read_text())
    assert sections["gpu"] == measured and sections["trees"] == "## Trees\n\nold"
    assert list(sections)[-1] == "gpu"
