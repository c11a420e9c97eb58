"""Figures of the projection-error study: error and certificate against iterations and time.

:func:`plot_family` draws one family of a :func:`~spigot.experiments.projection_study.projection_study`
table: one row of panels per size, four columns (distance to the exact projection and
certificate gap, each against iterations and against wall time), medians over instances.
Iterative solvers run at several budgets are lines; solvers without a budget (closed forms,
``cvxpy``, ``relaxed``) are single points in the time panels and dotted horizontal levels in
the iteration panels. Figures are built without pyplot, so they work under any backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

#: Values at or below this are drawn at this level on the logarithmic axes.
FLOOR = 1e-16

_PANELS = (
    ("nit", "distance", "iterations (MAP calls)", "distance to exact projection"),
    ("nit", "gap", "iterations (MAP calls)", "certificate gap"),
    ("time_s", "distance", "wall time (s)", "distance to exact projection"),
    ("time_s", "gap", "wall time (s)", "certificate gap"),
)


def plot_family(table: pd.DataFrame, family: str) -> Figure:
    """The study figure of ``family`` (rows of ``table`` with that family).

    Parameters
    ----------
    table
        Rows of :func:`~spigot.experiments.projection_study.projection_study`.
    family
        The family to draw.

    Returns
    -------
    matplotlib.figure.Figure
        One row of four panels per size.
    """
    rows = table[table["family"] == family]
    if rows.empty:
        raise ValueError(f"the table has no rows of family {family!r}; it has {sorted(set(table['family']))}")
    medians = (
        rows.groupby(["size", "solver", "max_iter"], sort=False, dropna=False)
        .agg(distance=("distance", "median"), gap=("gap", "median"), time_s=("time_s", "median"), nit=("nit", "median"))
        .reset_index()
    )
    sizes = list(dict.fromkeys(medians["size"]))
    solvers = list(dict.fromkeys(medians["solver"]))
    colors = {s: f"C{i % 10}" for i, s in enumerate(solvers)}
    relaxed = set(rows[rows["gap_against"] == "relaxation"]["solver"])
    labels = {s: f"{s} (gap against the relaxation)" if s in relaxed else s for s in solvers}
    figure = Figure(figsize=(16, 3.2 * len(sizes) + 0.8), layout="constrained")
    axes = figure.subplots(len(sizes), len(_PANELS), squeeze=False)
    for row, size in zip(axes, sizes):
        here = medians[medians["size"] == size]
        for ax, (x, y, xlabel, ylabel) in zip(row, _PANELS):
            for solver in solvers:
                _draw(ax, here[here["solver"] == solver], x, y, labels[solver], colors[solver])
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(size, fontsize=9)
            ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0, 2].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(5, len(labels)), fontsize=8)
    figure.suptitle(f"{family}: medians over instances")
    return figure


def save_family_plots(table: pd.DataFrame, folder: str | Path) -> list[Path]:
    """Write ``FAMILY.png`` for every family of ``table`` into ``folder``; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for family in dict.fromkeys(table["family"]):
        path = folder / f"{family}.png"
        plot_family(table, family).savefig(path, dpi=90)
        paths.append(path)
    return paths


def _draw(ax, points: pd.DataFrame, x: str, y: str, label: str, color: str) -> None:
    """One solver on one panel: a line over budgets, or a point / horizontal level."""
    if points.empty:
        return
    values = np.maximum(points[y].to_numpy(dtype=float), FLOOR)
    if points["max_iter"].notna().any():
        order = np.argsort(points[x].to_numpy(dtype=float), kind="stable")
        xs = np.maximum(points[x].to_numpy(dtype=float)[order], FLOOR)
        ax.plot(xs, values[order], marker="o", markersize=3, color=color, label=label)
    elif x == "nit":
        ax.axhline(values[0], linestyle=":", color=color, label=label)
    else:
        ax.plot(max(float(points[x].iloc[0]), FLOOR), values[0], marker="s", linestyle="none", color=color, label=label)
