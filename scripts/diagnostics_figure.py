"""Draw the diagnostics of finished experiment runs: ``python scripts/diagnostics_figure.py RUNS OUT.png``.

``RUNS`` is one configuration's run folder (``RUN_DIR/NAME/PRESET-CONFIGID``, or several, the
settings of a dev grid) holding ``METHOD/seed-S/result.json``; each method's panel bar is the mean
over its seeds (and settings) of a diagnostic of :mod:`spigot.experiments.diagnostics`, before
(``start``) and after (``end``) training.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from spigot.experiments.methods import ordered_methods
from spigot.experiments.results import OK, RunRecord

PANELS = (
    ("score_norm", "norm of the scores"),
    ("margin", "margin of the argmax"),
    ("zero_share", "share of zero surrogate gradients"),
    ("cosine_ste", "cosine with STE-I's gradient"),
)


def main(folders: list[Path], out: Path) -> None:
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for folder in folders:
        for path in folder.glob("*/seed-*/result.json"):
            record = RunRecord.load(path)
            if record.status != OK:
                continue
            for key, value in record.metrics.items():
                if math.isfinite(value):
                    values[(record.method, key)].append(value)
    methods = list(ordered_methods({method for method, _ in values}))
    figure = Figure(figsize=(12, 3.2), layout="constrained")
    for ax, (key, title) in zip(figure.subplots(1, len(PANELS)), PANELS):
        for offset, when in ((-0.2, "start"), (0.2, "end")):
            means = [statistics.fmean(values.get((m, f"{when}_{key}"), [math.nan])) for m in methods]
            ax.bar([i + offset for i in range(len(methods))], means, width=0.4, label=when)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    figure.axes[0].legend(fontsize=8)
    figure.savefig(out, dpi=110)


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:-1]], Path(sys.argv[-1]))
