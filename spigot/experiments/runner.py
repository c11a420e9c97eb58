"""Running an experiment over methods and seeds, with resumable runs and a results table.

Runs live under ``RUN_DIR/NAME/PRESET-CONFIGID/METHOD/seed-S/``: the checkpoint of the run in
progress and, once it is done, ``result.json``. Running the same command again skips finished
runs and resumes unfinished ones; a changed configuration gets a new folder, so a checkpoint is
never resumed under other settings.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spigot.errors import ProjectionError, UnsupportedOperation
from spigot.experiments import distributed
from spigot.experiments.blas_threads import blas_threads
from spigot.experiments.methods import check_methods
from spigot.experiments.registry import (
    GRID_SIZES,
    Experiment,
    check_preset,
    config_id,
    get_experiment,
)
from spigot.experiments.reproducibility import check_seed
from spigot.experiments.results import (
    FAILED,
    OK,
    UNSUPPORTED,
    RunRecord,
    diagnostics_table,
    format_duration,
    one_line,
    paired_differences,
    results_table,
)


@dataclass(frozen=True)
class GridPoint:
    """One setting of the dev grid for one method: its mean dev score over the finished seeds."""

    method: str
    setting: dict[str, Any]
    dev: float
    seeds: int
    chosen: bool


@dataclass(frozen=True)
class ExperimentReport:
    """Everything one :func:`run_experiment` call measured.

    Attributes
    ----------
    experiment
        The experiment that ran.
    preset, config
        Its configuration.
    records
        One record per (method, seed), in table order.
    seconds
        Wall-clock seconds of the whole call (finished runs that were skipped cost ~0).
    command
        The command line to show with the table (``None``: not shown).
    processes
        Number of ``torchrun`` processes that trained together.
    threads
        torch's intra-op threads per process.
    reused
        How many records an earlier invocation had finished (read back, not rerun).
    grid
        The dev grid's size (``"none"``: every method ran its configured setting).
    tuning
        With a grid: one :class:`GridPoint` per (method, setting) tried, in run order.
    tried
        Every run of the call, the grid's settings not chosen included (``records`` when no
        grid ran).
    """

    experiment: Experiment
    preset: str
    config: Any
    records: tuple[RunRecord, ...]
    seconds: float
    command: str | None = None
    processes: int = 1
    threads: int = 1
    reused: int = 0
    grid: str = "none"
    tuning: tuple[GridPoint, ...] = ()
    tried: tuple[RunRecord, ...] = ()

    @property
    def section_name(self) -> str:
        """The name of this report's section in a results file: the experiment's name, followed
        by ``-PRESET`` for any preset but ``full`` (so each preset keeps a section of its own)."""
        return self.experiment.name if self.preset == "full" else f"{self.experiment.name}-{self.preset}"

    def table(self) -> str:
        """The markdown table of the results (mean ± std over seeds)."""
        return results_table(self.records, self.experiment.metrics)

    def grid_summary(self) -> str:
        """The dev grid: every setting tried per method, its mean dev score, the one chosen."""
        metric = self.experiment.dev_metric
        lines = [
            f"Dev grid ({self.grid}): every method tried the settings below on every seed; the "
            f"table reports, per method, the setting with the best mean `{metric}` (**bold**).",
            "",
            "| method | setting | mean dev | seeds |",
            "|---|---|---:|---:|",
        ]
        for point in self.tuning:
            text = ", ".join(f"{k}={v}" for k, v in point.setting.items()) or "configured"
            if point.chosen:
                text = f"**{text}**"
            mean = "—" if point.seeds == 0 else f"{point.dev * 100:.1f}"
            lines.append(f"| {point.method} | {text} | {mean} | {point.seeds} |")
        return "\n".join(lines)

    def markdown_section(self) -> str:
        """The experiment's section of ``docs/results.md``: heading, setup, command, table."""
        seeds = sorted({r.seed for r in self.records})
        heading = self.experiment.name if self.preset == "full" else f"{self.experiment.name} (`--preset {self.preset}`)"
        lines = [f"## {heading}", "", self.experiment.describe(self.config), ""]
        if self.command:
            lines += ["```", self.command, "```", ""]
        threads = f"{self.threads} torch thread{'s' if self.threads > 1 else ''}"
        processes = f"{self.processes} process{'es' if self.processes > 1 else ''}"
        timing = f"wall-clock {format_duration(self.seconds)} for the whole command"
        runs = self.tried or self.records
        if self.reused:
            total = sum(r.seconds for r in runs)
            timing = (
                f"wall-clock {format_duration(self.seconds)} for this command, which read "
                f"{self.reused} of {len(runs)} finished runs back from an earlier one "
                f"(all runs together: {format_duration(total)})"
            )
        lines += [
            f"Seeds {', '.join(map(str, seeds))}; {timing} on this machine ({threads}, "
            f"{processes}); configuration `{self.preset}-{config_id(self.config)}`.",
            "",
            self.table(),
        ]
        if self.tuning:
            lines += ["", self.grid_summary()]
        paired = paired_differences(self.records, self.experiment.metrics[0])
        if paired:
            lines += ["", paired]
        if self.experiment.diagnostics:
            lines += [
                "",
                "Diagnostics (mean over seeds of the reported settings; see "
                "`spigot.experiments.diagnostics`): `score_norm` the norm of the latent scores, "
                "`margin` the smallest gap between a chosen part and its best competitor, "
                "`zero_share` the share of instances whose surrogate gradient is exactly 0, "
                "`cosine_ste` its cosine with STE-I's (— where no gradient reaches the scores); "
                "`start` before training (after pre-training where there is one), `end` after.",
                "",
                diagnostics_table(self.records, self.experiment.diagnostics),
            ]
        failures = [r for r in self.records if r.status == FAILED]
        if failures:
            lines += ["", "Failed runs (left out of the means):", ""]
            lines += [f"- {r.method} seed {r.seed}: {r.message}" for r in failures]
        if any(r.resumed for r in self.records):
            lines += [
                "",
                "Some runs resumed from a checkpoint; their `s / run` counts the last attempt only.",
            ]
        return "\n".join(lines)


def run_experiment(
    name: str,
    seeds: int | Sequence[int] = 5,
    methods: Sequence[str] | None = None,
    preset: str = "full",
    run_dir: Path | str = "runs",
    fresh: bool = False,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = print,
    threads: int | None = 1,
    grid: str = "none",
) -> ExperimentReport:
    """Run every (method, seed) of experiment ``name`` and collect the results.

    Parameters
    ----------
    name
        A registered experiment (see :func:`~spigot.experiments.available_experiments`).
    seeds
        A count ``N`` (seeds ``0..N-1``) or an explicit list of seeds.
    methods
        Methods to compare; default: all the experiment supports.
    preset
        ``"full"`` or ``"demo"``.
    run_dir
        Root folder of checkpoints and finished-run records.
    fresh
        Delete this configuration's earlier runs first instead of resuming them.
    progress
        Show progress bars.
    command
        The command line to record with the table.
    log
        Called with one line per finished run (main process only); ``None`` for silence.
    threads
        torch's intra-op threads, and the threads of numpy's and scipy's OpenBLAS (see
        :mod:`~spigot.experiments.blas_threads`), during the call (restored afterwards);
        ``None`` keeps the current settings. One thread is the default: the models are small,
        and extra threads mostly add synchronisation (under load from other processes, a
        2-thread run of ``clusters`` measured several times slower than a 1-thread one, and a
        2-thread SVD of numpy 35 times slower than a 1-thread one). For parallelism, run under
        ``torchrun``.
    grid
        ``"none"``, ``"reduced"`` or ``"full"`` (:data:`~spigot.experiments.registry.GRID_SIZES`):
        tune every method on the experiment's dev grid of that size and report, per method,
        the setting with the best mean dev score over the seeds. Each setting's runs live in
        the folder of its own configuration (a setting equal to the configured one shares its
        runs).
    """
    experiment = get_experiment(name)
    preset = check_preset(preset, experiment.variants)
    seed_list = _seed_list(seeds)
    chosen = check_methods(methods if methods is not None else experiment.methods())
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
    if grid not in GRID_SIZES:
        raise ValueError(f"grid must be one of {GRID_SIZES}, got {grid!r}")
    config = experiment.config(preset)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with blas_threads(threads) if threads is not None else nullcontext():
            return _run_all(
                experiment,
                preset,
                config,
                chosen,
                seed_list,
                Path(run_dir),
                fresh,
                progress,
                command,
                log,
                grid,
            )
    finally:
        torch.set_num_threads(previous_threads)


def _run_all(
    experiment: Experiment,
    preset: str,
    config: Any,
    methods: tuple[str, ...],
    seed_list: list[int],
    run_dir: Path,
    fresh: bool,
    progress: bool,
    command: str | None,
    log: Callable[[str], None] | None,
    grid: str = "none",
) -> ExperimentReport:
    grids = experiment.grid(config, grid) if grid != "none" else {}
    roots = {
        config_id(c): run_dir / experiment.name / f"{preset}-{config_id(c)}"
        for c in [config]
        + [experiment.with_setting(config, m, s) for m in methods for s in grids.get(m, ())]
    }
    if fresh and distributed.is_main_process():
        for root in roots.values():
            if root.exists():
                shutil.rmtree(root)
    distributed.barrier()
    started = time.perf_counter()
    records: list[RunRecord] = []
    tuning: list[GridPoint] = []
    tried_runs: list[RunRecord] = []
    reused = 0
    for method in methods:
        tried: list[tuple[dict[str, Any], list[RunRecord]]] = []
        for setting in grids.get(method, ({},)):
            setting_config = experiment.with_setting(config, method, setting) if setting else config
            root = roots[config_id(setting_config)]
            runs: list[RunRecord] = []
            for seed in seed_list:
                workdir = root / method / f"seed-{seed}"
                record, read_back = _run_one(experiment, method, seed, setting_config, workdir, progress)
                runs.append(record)
                reused += read_back
                if log is not None and distributed.is_main_process():
                    suffix = f" [{setting}]" if setting else ""
                    log(_summary(experiment, record) + suffix)
                if record.status == UNSUPPORTED:
                    break
            tried.append((setting, runs))
            tried_runs.extend(runs)
            if runs and runs[-1].status == UNSUPPORTED:
                break
        best = max(range(len(tried)), key=lambda i: _mean_dev(tried[i][1], experiment.dev_metric))
        records.extend(tried[best][1])
        if grids:
            for i, (setting, runs) in enumerate(tried):
                done = [r for r in runs if r.status == OK]
                tuning.append(
                    GridPoint(method, setting, _mean_dev(runs, experiment.dev_metric), len(done), i == best)
                )
    return ExperimentReport(
        experiment,
        preset,
        config,
        tuple(records),
        time.perf_counter() - started,
        command,
        distributed.world_size(),
        torch.get_num_threads(),
        reused,
        grid,
        tuple(tuning),
        tuple(tried_runs),
    )


def _mean_dev(runs: Sequence[RunRecord], key: str) -> float:
    """Mean of ``key`` over the finished runs (``-inf`` when none finished)."""
    values = [r.metrics[key] for r in runs if r.status == OK and key in r.metrics]
    return sum(values) / len(values) if values else -math.inf


def _run_one(
    experiment: Experiment, method: str, seed: int, config: Any, workdir: Path, progress: bool
) -> tuple[RunRecord, bool]:
    """Run one (method, seed), or read its record back; say which."""
    done = workdir / "result.json"
    distributed.barrier()
    if done.is_file():
        return RunRecord.load(done), True
    resumed = (workdir / "checkpoint.pt").is_file()
    started = time.perf_counter()
    try:
        metrics = experiment.run(method, seed, config, workdir, progress)
    except UnsupportedOperation as error:
        record = RunRecord(method, seed, UNSUPPORTED, message=str(error))
    except (FloatingPointError, torch.linalg.LinAlgError, ProjectionError) as error:
        # a numerical failure of this run is a result too: record it, go on with the others
        message = f"{type(error).__name__}: {one_line(str(error))}"
        seconds = time.perf_counter() - started
        record = RunRecord(method, seed, FAILED, seconds=seconds, message=message)
    else:
        missing = [m.key for m in experiment.metrics if m.key not in metrics]
        if missing:
            raise RuntimeError(
                f"experiment {experiment.name!r} returned no value for metric(s) {missing}"
            )
        seconds = time.perf_counter() - started
        record = RunRecord(
            method, seed, OK, {k: float(v) for k, v in metrics.items()}, seconds, resumed
        )
    if distributed.is_main_process():
        workdir.mkdir(parents=True, exist_ok=True)
        record.save(done)
    distributed.barrier()
    return record, False


def _summary(experiment: Experiment, record: RunRecord) -> str:
    if record.status == FAILED:
        return f"{experiment.name} {record.method} seed {record.seed}: failed ({record.message})"
    if record.status != OK:
        return f"{experiment.name} {record.method}: not supported ({record.message})"
    values = ", ".join(
        f"{m.label} {record.metrics[m.key] * (100 if m.percent else 1):.{m.digits}f}"
        for m in experiment.metrics
    )
    return (
        f"{experiment.name} {record.method} seed {record.seed}: {values} ({record.seconds:.1f} s)"
    )


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, bool):
        raise ValueError(f"seeds must be a positive count or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be a positive count, got {seeds}")
        return list(range(seeds))
    seed_list = [check_seed(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be a non-empty list without repeats, got {list(seeds)}")
    return seed_list
