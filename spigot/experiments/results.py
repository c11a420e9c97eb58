"""Results over seeds: run records, the mean +- std table, and ``docs/results.md``.

Each experiment owns one section of ``docs/results.md``, between the markers
``<!-- results:NAME:begin -->`` and ``<!-- results:NAME:end -->``; :func:`update_results_file`
replaces that section (or appends it) and leaves the rest of the file, such as a hand-written
reading of the numbers, as it is.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from spigot.experiments.methods import BASELINES, ordered_methods

#: A run that finished and produced metrics.
OK = "ok"
#: A method that the experiment's polytope does not support.
UNSUPPORTED = "unsupported"
#: A run stopped by a numerical failure (a diverged loss or gradient, a singular matrix, a
#: projection short of its tolerance); see its message.
FAILED = "failed"


@dataclass(frozen=True)
class Metric:
    """A column of a results table.

    Attributes
    ----------
    key
        Key in each run's metrics dict.
    label
        Column header.
    percent
        Show the value times 100.
    digits
        Decimals shown.
    """

    key: str
    label: str
    percent: bool = True
    digits: int = 1

    def format(self, values: Sequence[float]) -> str:
        """``mean ± std`` of ``values`` (sample std; just the mean for one value); "—" when every
        value is NaN (a metric the method does not define, such as the chain arcs of a model
        without trees)."""
        if values and all(math.isnan(v) for v in values):
            return "—"
        scale = 100.0 if self.percent else 1.0
        mean = statistics.fmean(values) * scale
        if len(values) == 1:
            return f"{mean:.{self.digits}f}"
        return f"{mean:.{self.digits}f} ± {statistics.stdev(values) * scale:.{self.digits}f}"


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one (method, seed) run.

    Attributes
    ----------
    method, seed
        Which run.
    status
        :data:`OK`, :data:`UNSUPPORTED` or :data:`FAILED`.
    metrics
        Metric key -> value (empty when unsupported).
    seconds
        Wall-clock seconds of the attempt that finished the run.
    resumed
        Whether that attempt resumed from a checkpoint.
    message
        Why the method is unsupported, or why the run failed.
    """

    method: str
    seed: int
    status: str = OK
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: bool = False
    message: str = ""

    def save(self, path: Path | str) -> None:
        """Write the record as JSON."""
        Path(path).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> RunRecord:
        """Read a record written by :meth:`save`."""
        return cls(**json.loads(Path(path).read_text()))


def results_table(records: Sequence[RunRecord], metrics: Sequence[Metric]) -> str:
    """A markdown table: one row per method (table order), ``mean ± std`` over its seeds.

    Columns: the method, each metric, the number of seeds and the mean seconds per run. An
    unsupported method's row says so instead of numbers; failed runs are left out of the
    means, and the seed count says how many failed (``4 (1 failed)``).
    """
    if not metrics:
        raise ValueError("metrics must name at least one column")
    header = ["method", *(m.label for m in metrics), "seeds", "s / run"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for method in ordered_methods(r.method for r in records):
        runs = [r for r in records if r.method == method]
        done = [r for r in runs if r.status == OK]
        failed = sum(r.status == FAILED for r in runs)
        count = str(len(done)) + (f" ({failed} failed)" if failed else "")
        if not done:
            reason = next((r.message for r in runs if r.message), "not supported")
            label = "failed" if failed else "n/a"
            cells = [f"{label}: {one_line(reason)}"] + [""] * (len(metrics) - 1) + [count, ""]
        else:
            cells = [m.format([r.metrics[m.key] for r in done]) for m in metrics]
            cells += [count, f"{statistics.fmean(r.seconds for r in done):.1f}"]
        lines.append("| " + " | ".join([method, *cells]) + " |")
    return "\n".join(lines)


def paired_differences(
    records: Sequence[RunRecord], metric: Metric, baseline: str | None = None
) -> str:
    """A markdown table of each method's per-seed difference to ``baseline`` on ``metric``.

    ``baseline=None`` picks the first of :data:`~spigot.experiments.methods.BASELINES`
    (``pipeline``, ``no-tree``, ``chain``) with a finished run.

    For the seeds where both runs finished: the differences (method minus baseline, in the
    metric's unit), their mean, the two-sided p-values of the paired t-test and of the Wilcoxon
    signed-rank test (``scipy.stats``; "n/a" with fewer than two seeds or all differences 0),
    and how many seeds the method won. Empty when ``baseline`` has no finished run.
    """
    scale = 100.0 if metric.percent else 1.0
    if baseline is None:
        finished = {r.method for r in records if r.status == OK}
        baseline = next((name for name in BASELINES if name in finished), None)
        if baseline is None:
            return ""
    base = {r.seed: r.metrics[metric.key] for r in records if r.method == baseline and r.status == OK}
    if not base:
        return ""
    lines = [
        f"Paired differences to `{baseline}` ({metric.label}, method minus {baseline}, per seed):",
        "",
        "| method | per seed | mean | paired t-test p | Wilcoxon p | wins |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for method in ordered_methods(r.method for r in records):
        if method == baseline:
            continue
        pairs = sorted(
            (r.seed, (r.metrics[metric.key] - base[r.seed]) * scale)
            for r in records
            if r.method == method and r.status == OK and r.seed in base
        )
        if not pairs:
            continue
        diffs = [d for _, d in pairs]
        per_seed = ", ".join(f"{seed}: {d:+.{metric.digits}f}" for seed, d in pairs)
        t_p, w_p = _paired_p_values(diffs)
        wins = f"{sum(d > 0 for d in diffs)}/{len(diffs)}"
        lines.append(
            f"| {method} | {per_seed} | {statistics.fmean(diffs):+.{metric.digits}f} | {t_p} | {w_p} | {wins} |"
        )
    return "\n".join(lines)


def _paired_p_values(diffs: list[float]) -> tuple[str, str]:
    if len(diffs) < 2 or all(d == 0 for d in diffs):
        return "n/a", "n/a"
    from scipy import stats

    t_p = stats.ttest_1samp(diffs, 0.0).pvalue
    w_p = stats.wilcoxon(diffs).pvalue
    return tuple("n/a" if not math.isfinite(p) else f"{p:.3f}" for p in (t_p, w_p))


def diagnostics_table(records: Sequence[RunRecord], metrics: Sequence[Metric]) -> str:
    """A markdown table of the diagnostics' means over each method's finished runs (NaN skipped)."""
    header = ["method", *(m.label for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(metrics)) + "|"]
    for method in ordered_methods(r.method for r in records):
        done = [r for r in records if r.method == method and r.status == OK]
        if not done:
            continue
        cells = []
        for m in metrics:
            values = [r.metrics[m.key] for r in done if math.isfinite(r.metrics.get(m.key, math.nan))]
            scale = 100.0 if m.percent else 1.0
            cells.append(f"{statistics.fmean(values) * scale:.{m.digits}f}" if values else "—")
        lines.append("| " + " | ".join([method, *cells]) + " |")
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """``1 h 02 min 03 s``-style text for a wall-clock duration."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite non-negative number, got {seconds!r}")
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{seconds:.1f} s"


def update_results_file(path: Path | str, name: str, section: str) -> None:
    """Put ``section`` between experiment ``name``'s markers in the markdown file ``path``.

    The file is created (with a title) when missing; an existing section is replaced in place,
    a new one appended; text outside the markers is kept.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"name must be lower-case letters, digits and dashes, got {name!r}")
    path = Path(path)
    begin, end = f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"
    block = f"{begin}\n{section.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def one_line(text: str) -> str:
    """``text`` on one line, without the ``|`` that would break a markdown table cell."""
    return " ".join(text.split()).replace("|", "/")
