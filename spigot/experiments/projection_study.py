r"""How far each projection solver lands from the exact projection, on random instances.

A *family* (:class:`StudyFamily`, registered in :data:`FAMILIES`, or built for any structure
with :meth:`StudyFamily.from_polytope`) says which polytope an instance size gives, which solvers to compare on it and which exact solver gives the
reference. For every size of a family, :func:`projection_study` draws random targets
:math:`x` (scores, or SPIGOT's :math:`\mathrm{map}(s) - \eta g`), computes the exact
projection :math:`p^\star = \Pi_P(x)` with the reference solver, runs every solver and reports,
per instance and solver,

- ``distance``: :math:`\|p - p^\star\|_2`;
- ``gap``: the certificate the solver reports (against ``gap_against``: the polytope, or its
  relaxation for the ``relaxed`` solver and for rows run on the relaxation;
  ``certified_against`` names it, as :attr:`ProjectionResult.certified_against` does:
  ``"HeadSelection (relaxation of Arborescence)"``);
- ``feasibility``: how far :math:`p` lies outside :math:`P`: the largest violation of the
  polytope's own constraints (``polytope.constraints``) when they use no auxiliary variable,
  otherwise the distance from :math:`p` to :math:`P` computed by the reference solver; 0 when
  :math:`p \in P`;
- ``time_s``: wall-clock seconds of the solver's ``run`` (certificate included): the median of
  up to ``repeats`` timed runs after one untimed warm-up run on the same instance (fewer once
  they add up to :data:`REPEAT_BUDGET_S`; column ``repeats`` counts them), and ``time_iqr_s``
  their interquartile range; ``nit`` and ``success``;
- ``reference_gap``: the reference's own certificate, which bounds its error:
  :math:`\|p^\star - \Pi_P(x)\|^2 \le` ``reference_gap``.

Iterative solvers (the vertex-based ones: ``active-set``, the Frank-Wolfe family, ``ad3``) can
be run at several iteration budgets (``budgets``), one row each, which traces their error and
certificate against iterations and time; ``max_iter`` records the budget.

:func:`summarize_study` reduces the table to one row per family, size, solver and budget (with
times relative to a baseline solver of the same run), :func:`markdown_table` formats it, and
:mod:`spigot.experiments.study_plots` draws it. ``spigot study`` runs the whole thing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import cvxpy as cp
import numpy as np
import pandas as pd

from spigot.polytopes import Arborescence, Budget, ProjectiveTree, SemanticGraph, Simplex
from spigot.polytopes.base import Polytope
from spigot.solvers.base import InstanceSolver, Solver
from spigot.solvers.registry import get_solver
from spigot.solvers.result import certified_against

TARGETS = ("scores", "spigot")
#: A solver stops repeating its timed runs on an instance once they add up to this many seconds:
#: long runs vary little relative to their length, and repeating them would dominate the study.
REPEAT_BUDGET_S = 0.05

#: Columns of the table :func:`projection_study` returns, in order.
COLUMNS = (
    "family", "polytope", "size", "dim", "instance", "solver", "max_iter", "distance", "gap",
    "gap_against", "certified_against", "feasibility", "time_s", "time_iqr_s", "repeats", "nit", "success",
    "reference_gap",
)


@dataclass(frozen=True)
class StudySolver:
    """One solver of the study.

    Attributes
    ----------
    label
        Its name in the table.
    solver
        Registered solver name.
    options
        Solver options.
    on_relaxation
        Project onto ``polytope.relaxation()`` instead of the polytope (e.g. the exact per-arc
        ``closed-form`` projection of a semantic graph).
    """

    label: str
    solver: str
    options: Mapping[str, Any] = field(default_factory=dict)
    on_relaxation: bool = False

    def build(self, max_iter: int | None = None) -> Solver:
        """The configured solver, with ``max_iter`` overriding its own budget when given."""
        options = dict(self.options)
        if max_iter is not None:
            options["max_iter"] = max_iter
        return get_solver(self.solver, **options)

    @property
    def iterative(self) -> bool:
        """Whether budgets apply: a vertex-based solver whose iterations are MAP calls."""
        return isinstance(get_solver(self.solver, **self.options), InstanceSolver)


@dataclass(frozen=True)
class StudyFamily:
    """A polytope family of the study: sizes, solvers and the exact reference.

    Attributes
    ----------
    name
        The key in :data:`FAMILIES` (``spigot study --polytope NAME``).
    description
        One line: the polytope and what a size means.
    size_names
        Names of the integers of one size, e.g. ``("n_words", "n_labels")``.
    make
        ``size -> polytope``.
    shape
        ``size -> event shape`` of one instance.
    sizes
        The default grid (quick enough for ``spigot study``'s default run).
    full_sizes
        The larger grid of ``spigot study --full``.
    solvers
        The solvers compared by default.
    reference
        The exact solver that gives :math:`p^\\star` (run at a tight tolerance).
    baseline
        The solver label that times are divided by in :func:`summarize_study`.
    """

    name: str
    description: str
    size_names: tuple[str, ...]
    make: Callable[[tuple[int, ...]], Polytope]
    shape: Callable[[tuple[int, ...]], tuple[int, ...]]
    sizes: tuple[tuple[int, ...], ...]
    full_sizes: tuple[tuple[int, ...], ...]
    solvers: tuple[StudySolver, ...]
    reference: StudySolver
    baseline: str

    def check_size(self, size: Sequence[int]) -> tuple[int, ...]:
        """Validate one size (positive integers, one per name) and return it as a tuple."""
        values = tuple(size)
        if len(values) != len(self.size_names) or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values
        ):
            names = " x ".join(self.size_names)
            raise ValueError(
                f"sizes of {self.name!r} are {len(self.size_names)} positive integer(s) ({names}), got {size!r}"
            )
        return tuple(int(v) for v in values)

    def size_label(self, size: tuple[int, ...]) -> str:
        """``"n_words=5, n_labels=2"``."""
        return ", ".join(f"{name}={value}" for name, value in zip(self.size_names, size))

    @classmethod
    def from_polytope(
        cls,
        polytope: Polytope | type[Polytope] | Callable[[tuple[int, ...]], Polytope],
        sizes: Sequence[Sequence[int]],
        *,
        shape: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None,
        size_names: Sequence[str] | None = None,
        name: str | None = None,
        description: str | None = None,
        solvers: Sequence[StudySolver] | None = None,
        reference: StudySolver | None = None,
        baseline: str = "active-set",
        full_sizes: Sequence[Sequence[int]] | None = None,
    ) -> "StudyFamily":
        """A family for any structure, such as a user's :class:`~spigot.polytopes.Polytope` subclass.

        Parameters
        ----------
        polytope
            A polytope instance (used at every size), a :class:`Polytope` subclass (built once
            with no arguments: sizes come from the scores) or a function ``size -> polytope``.
        sizes
            The sizes to study. By default a size *is* the event shape of one instance
            (``(5, 5)`` for 5 x 5 matrices); give ``shape`` when it is not.
        shape
            ``size -> event shape`` of one instance (default: the size itself).
        size_names
            Names of a size's integers (default ``axis0, axis1, ...``).
        name, description
            The family's name in the table (default: the polytope's class name) and one line
            about it.
        solvers
            The solvers to compare (default: :func:`default_solvers`, every registered solver
            that supports the structure).
        reference
            The exact solver giving :math:`p^\\star` (default: ``active-set`` at ``tol=1e-12``,
            which needs only ``map_one``).
        baseline
            The solver label that times are divided by (default ``active-set``).
        full_sizes
            The grid of ``--full`` (default: ``sizes``).

        Raises
        ------
        ValueError
            No size, sizes of different lengths, a ``polytope`` that is not one, or a
            ``baseline`` that is not among the solvers.
        """
        make = _polytope_factory(polytope)
        grid = tuple(tuple(int(v) for v in size) for size in sizes)
        if not grid:
            raise ValueError("sizes must hold at least one size, e.g. [(5, 5)]")
        names = tuple(size_names) if size_names is not None else tuple(f"axis{i}" for i in range(len(grid[0])))
        probe = make(grid[0])
        family = cls(
            name=name or type(probe).__name__,
            description=description or f"{type(probe).__name__} (a user's structure)",
            size_names=names,
            make=make,
            shape=shape or (lambda size: tuple(size)),
            sizes=grid,
            full_sizes=tuple(tuple(size) for size in full_sizes) if full_sizes is not None else grid,
            solvers=tuple(solvers) if solvers is not None else default_solvers(probe),
            reference=reference or StudySolver("reference", "active-set", {"tol": 1e-12, "max_iter": 5000}),
            baseline=baseline,
        )
        for size in family.sizes + family.full_sizes:
            family.check_size(size)
        if baseline not in {s.label for s in family.solvers}:
            raise ValueError(
                f"baseline {baseline!r} is not among the solvers {[s.label for s in family.solvers]}"
            )
        return family

    def solver(self, label: str) -> StudySolver:
        """The default solver with this label."""
        for entry in self.solvers:
            if entry.label == label:
                return entry
        raise ValueError(
            f"unknown solver label {label!r} for {self.name!r}; known: {[s.label for s in self.solvers]}"
        )


def dm_semantic_graph(n_labels: int) -> SemanticGraph:
    """A DM-like semantic graph: the first half of the labels (rounded up) are unique per head."""
    return SemanticGraph(n_labels, unique_labels=range((n_labels + 1) // 2))


_FRANK_WOLFE = (
    StudySolver("pairwise-frank-wolfe", "pairwise-frank-wolfe", {"max_iter": 500}),
    StudySolver("away-frank-wolfe", "away-frank-wolfe", {"max_iter": 500}),
    StudySolver("frank-wolfe", "frank-wolfe", {"max_iter": 500}),
)

#: The study's polytope families, by name.
FAMILIES: dict[str, StudyFamily] = {
    family.name: family
    for family in (
        StudyFamily(
            name="simplex",
            description="the probability simplex over k choices",
            size_names=("k",),
            make=lambda size: Simplex(),
            shape=lambda size: (size[0],),
            sizes=((10,), (100,)),
            full_sizes=((10,), (100,), (1000,)),
            solvers=(
                StudySolver("closed-form", "closed-form"),
                StudySolver("cvxpy", "cvxpy"),
                StudySolver("active-set", "active-set"),
                *_FRANK_WOLFE,
            ),
            reference=StudySolver("reference", "closed-form"),
            baseline="closed-form",
        ),
        StudyFamily(
            name="budget",
            description="subsets of exactly k of d items (the budget polytope)",
            size_names=("d", "k"),
            make=lambda size: Budget(size[1]),
            shape=lambda size: (size[0],),
            sizes=((20, 5), (100, 10)),
            full_sizes=((20, 5), (100, 10), (1000, 50)),
            solvers=(
                StudySolver("closed-form", "closed-form"),
                StudySolver("cvxpy", "cvxpy"),
                StudySolver("active-set", "active-set"),
                *_FRANK_WOLFE,
            ),
            reference=StudySolver("reference", "closed-form"),
            baseline="closed-form",
        ),
        StudyFamily(
            name="arborescence",
            description="non-projective dependency trees over n words (relaxation: head selection)",
            size_names=("n_words",),
            make=lambda size: Arborescence(),
            shape=lambda size: (size[0] + 1, size[0] + 1),
            sizes=((5,), (10,)),
            full_sizes=((5,), (10,), (20,)),
            solvers=(
                StudySolver("relaxed", "relaxed"),
                StudySolver("cvxpy", "cvxpy"),
                StudySolver("active-set", "active-set"),
                *_FRANK_WOLFE,
            ),
            reference=StudySolver("reference", "active-set", {"tol": 1e-12, "max_iter": 5000}),
            baseline="active-set",
        ),
        StudyFamily(
            name="projective-tree",
            description="projective dependency trees over n words (relaxation: head selection)",
            size_names=("n_words",),
            make=lambda size: ProjectiveTree(),
            shape=lambda size: (size[0] + 1, size[0] + 1),
            sizes=((5,), (10,)),
            full_sizes=((5,), (10,), (20,)),
            solvers=(
                StudySolver("relaxed", "relaxed"),
                StudySolver("active-set", "active-set"),
                *_FRANK_WOLFE,
            ),
            reference=StudySolver("reference", "active-set", {"tol": 1e-12, "max_iter": 5000}),
            baseline="active-set",
        ),
        StudyFamily(
            name="semantic-graph",
            description=(
                "DM-like labeled semantic graphs over n words and L labels, the first ceil(L/2) "
                "labels unique per head (relaxation: one label per arc)"
            ),
            size_names=("n_words", "n_labels"),
            make=lambda size: dm_semantic_graph(size[1]),
            shape=lambda size: (size[0] + 1, size[0] + 1, size[1]),
            sizes=((5, 2), (5, 5), (10, 5), (10, 10), (20, 2)),
            full_sizes=tuple((n, labels) for n in (5, 10, 20, 40) for labels in (2, 5, 10, 20)),
            solvers=(
                StudySolver("relaxed", "relaxed"),
                StudySolver("closed-form (relaxation)", "closed-form", on_relaxation=True),
                StudySolver("cvxpy", "cvxpy"),
                StudySolver("active-set", "active-set"),
                *_FRANK_WOLFE,
                StudySolver("ad3", "ad3"),
                StudySolver("ad3-frank-wolfe (20 it)", "ad3-frank-wolfe", {"max_iter": 20}),
                StudySolver("ad3-frank-wolfe (100 it)", "ad3-frank-wolfe", {"max_iter": 100}),
            ),
            reference=StudySolver("reference", "cvxpy"),
            baseline="cvxpy",
        ),
    )
}


def default_solvers(polytope: Polytope) -> tuple[StudySolver, ...]:
    """Every study solver that supports ``polytope``: ``closed-form`` and ``cvxpy`` where it has the
    hooks, ``relaxed`` where its relaxation differs from it, ``active-set`` and the Frank-Wolfe
    family always (capped at 500 iterations)."""
    candidates = [
        StudySolver("closed-form", "closed-form"),
        StudySolver("relaxed", "relaxed"),
        StudySolver("cvxpy", "cvxpy"),
        StudySolver("active-set", "active-set"),
        *_FRANK_WOLFE,
    ]
    chosen = []
    for entry in candidates:
        if entry.solver == "relaxed" and polytope.relaxation() is polytope:
            continue
        if entry.solver in ("closed-form", "cvxpy", "relaxed") and not entry.build().supports(polytope):
            continue
        chosen.append(entry)
    return tuple(chosen)


def _polytope_factory(
    polytope: Polytope | type[Polytope] | Callable[[tuple[int, ...]], Polytope],
) -> Callable[[tuple[int, ...]], Polytope]:
    if isinstance(polytope, Polytope):
        return lambda size: polytope
    if isinstance(polytope, type):
        if not issubclass(polytope, Polytope):
            raise ValueError(f"polytope must be a Polytope, a Polytope subclass or a function, got {polytope!r}")
        instance = polytope()
        return lambda size: instance
    if not callable(polytope):
        raise ValueError(f"polytope must be a Polytope, a Polytope subclass or a function, got {polytope!r}")

    def make(size: tuple[int, ...]) -> Polytope:
        built = polytope(size)
        if not isinstance(built, Polytope):
            raise ValueError(f"polytope({size}) must return a Polytope, got {type(built).__name__}")
        return built

    return make


def get_family(name: str) -> StudyFamily:
    """The registered family ``name``; ValueError listing the known ones otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown polytope family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def projection_study(
    family: str | StudyFamily = "semantic-graph",
    sizes: Iterable[Sequence[int]] | None = None,
    solvers: Sequence[StudySolver] | None = None,
    n_instances: int = 2,
    target: str = "scores",
    eta: float = 1.0,
    budgets: Sequence[int] | None = None,
    seed: int = 0,
    repeats: int = 5,
) -> pd.DataFrame:
    r"""Run the projection-error study on one family; one row per (size, instance, solver, budget).

    Parameters
    ----------
    family
        A name of :data:`FAMILIES` or a :class:`StudyFamily`.
    sizes
        Sizes of the family (tuples of ``family.size_names``); its default grid when ``None``.
    solvers
        The solvers to compare; the family's when ``None``.
    n_instances
        Random instances per size.
    target
        ``"scores"``: project standard normal scores :math:`s`; ``"spigot"``: project
        :math:`\mathrm{map}(s) - \eta g` with :math:`g` standard normal, as SPIGOT's backward
        pass does.
    eta
        The step :math:`\eta` of the ``"spigot"`` target.
    budgets
        Iteration budgets (``max_iter``) at which every iterative solver is run, one row each;
        ``None`` runs each solver once with its own options.
    seed
        Seed of the random instances.
    repeats
        Most timed runs of every solver on every instance, after one untimed warm-up run (which
        absorbs compilation, caches and first-touch costs); a solver stops earlier once its
        timed runs add up to :data:`REPEAT_BUDGET_S`. ``time_s`` is their median and
        ``time_iqr_s`` their interquartile range.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`COLUMNS`; ``max_iter`` is NaN for solvers run without a budget.
    """
    family = get_family(family) if isinstance(family, str) else family
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if isinstance(n_instances, bool) or not isinstance(n_instances, int) or n_instances < 1:
        raise ValueError(f"n_instances must be a positive integer, got {n_instances!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if not np.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    budgets = _check_budgets(budgets)
    sizes = [family.check_size(size) for size in (family.sizes if sizes is None else sizes)]
    runs = _solver_runs(family.solvers if solvers is None else solvers, budgets)
    exact = family.reference.build()
    rng = np.random.default_rng(seed)
    rows = []
    for index, size in enumerate(sizes):
        poly = family.make(size)
        shape = family.shape(size)
        outside = _Infeasibility(poly, exact)
        for instance in range(n_instances):
            x = _draw_target(poly, shape, target, eta, rng)
            reference = _project(exact, poly, x, family.reference.on_relaxation)
            star = np.asarray(reference.x)
            for entry, budget, solver in runs:
                result = _project(solver, poly, x, entry.on_relaxation)  # the warm-up run
                seconds = _times(solver, poly, x, entry.on_relaxation, repeats)
                p = np.asarray(result.x)
                rows.append(
                    {
                        "family": family.name,
                        "polytope": repr(poly),
                        "size": family.size_label(size),
                        "dim": int(np.prod(shape)),
                        "instance": instance,
                        "solver": entry.label,
                        "max_iter": np.nan if budget is None else budget,
                        "distance": float(np.linalg.norm(p - star)),
                        "gap": float(result.gap),
                        "gap_against": _gap_against(entry, poly),
                        "certified_against": (
                            certified_against(poly.relaxation(), poly)
                            if entry.on_relaxation
                            else result.certified_against
                        ),
                        "feasibility": outside(p),
                        "time_s": float(np.median(seconds)),
                        "time_iqr_s": float(np.subtract(*np.percentile(seconds, [75, 25]))),
                        "repeats": len(seconds),
                        "nit": int(result.nit),
                        "success": bool(result.success),
                        "reference_gap": float(reference.gap),
                    }
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summarize_study(table: pd.DataFrame, baseline: str | Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per family, size, solver and budget: median and worst distance, worst gap and feasibility, median time, success rate.

    Parameters
    ----------
    table
        Rows of :func:`projection_study` (several families may be concatenated).
    baseline
        A solver label, or one per family (``{family: label}``): ``time_ratio`` is each row's
        median time over that solver's (its run with the largest budget), per size, in the
        same run. ``None``: no ratio.

    Returns
    -------
    pandas.DataFrame
        Columns ``family, size, solver, max_iter, distance, max_distance, max_gap,
        max_feasibility, time_s, time_iqr_s, nit, success`` (and ``time_ratio``): ``time_s`` is
        the median over instances of each instance's median time, ``time_iqr_s`` the median of
        their interquartile ranges.
    """
    keys = ["family", "size", "solver", "max_iter"]
    summary = (
        table.groupby(keys, sort=False, dropna=False)
        .agg(
            distance=("distance", "median"),
            max_distance=("distance", "max"),
            max_gap=("gap", "max"),
            max_feasibility=("feasibility", "max"),
            time_s=("time_s", "median"),
            time_iqr_s=("time_iqr_s", "median"),
            nit=("nit", "median"),
            success=("success", "mean"),
        )
        .reset_index()
    )
    if baseline is None:
        return summary
    labels = baseline if isinstance(baseline, Mapping) else {f: baseline for f in summary["family"].unique()}
    ratios = np.full(len(summary), np.nan)
    for family_name, label in labels.items():
        mine = (summary["family"] == family_name).to_numpy()
        rows = summary[mine & (summary["solver"] == label).to_numpy()]
        if rows.empty:
            raise ValueError(
                f"baseline {label!r} is not a solver of family {family_name!r} in the table: "
                f"{sorted(set(summary['solver'][mine]))}"
            )
        base = rows.sort_values("max_iter").groupby("size", sort=False)["time_s"].last()
        ratios[mine] = summary["time_s"][mine].to_numpy() / base.reindex(summary["size"][mine]).to_numpy()
    summary["time_ratio"] = ratios
    return summary


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """A few lines for a terminal: per family, its largest size, every solver by median time.

    Each solver appears once, at its largest budget, as ``label time (distance)``, fastest first.

    Parameters
    ----------
    summary
        Rows of :func:`summarize_study`.
    """
    lines = []
    for family, rows in summary.groupby("family", sort=False):
        size = rows["size"].iloc[-1]
        here = rows[rows["size"] == size].sort_values("max_iter").groupby("solver", sort=False).last()
        here = here.sort_values("time_s")
        cells = [f"{label} {_duration(row.time_s)} ({row.distance:.1e})" for label, row in here.iterrows()]
        lines.append(f"{family} [{size}]: " + ", ".join(cells))
    return lines


def _duration(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table of ``table`` (floats in ``digits`` significant figures, NaN blank)."""

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            if np.isnan(value):
                return ""
            if float(value).is_integer() and abs(value) < 1e6:
                return str(int(value))
            return f"{value:.{digits}g}"
        return str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _check_budgets(budgets: Sequence[int] | None) -> list[int] | None:
    if budgets is None:
        return None
    values = list(budgets)
    if not values or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1 for b in values):
        raise ValueError(f"budgets must be a non-empty list of positive integers, got {budgets!r}")
    return sorted({int(b) for b in values})


def _solver_runs(
    solvers: Sequence[StudySolver], budgets: list[int] | None
) -> list[tuple[StudySolver, int | None, Solver]]:
    """``(entry, budget, solver)`` for every solver, one per budget for the iterative ones.

    In a budget sweep, iterative solvers that differ only in ``max_iter`` run once, labelled by
    their registered name (``" (relaxation)"`` appended when run on the relaxation).
    """
    runs, swept = [], set()
    for entry in solvers:
        if budgets is None or not entry.iterative:
            runs.append((entry, None, entry.build()))
            continue
        options = {k: v for k, v in entry.options.items() if k != "max_iter"}
        key = (entry.solver, tuple(sorted(options.items())), entry.on_relaxation)
        if key in swept:
            continue
        swept.add(key)
        label = entry.solver + (" (relaxation)" if entry.on_relaxation else "")
        base = StudySolver(label, entry.solver, options, entry.on_relaxation)
        runs += [(base, b, base.build(max_iter=b)) for b in budgets]
    return runs


def _draw_target(
    poly: Polytope, shape: tuple[int, ...], target: str, eta: float, rng: np.random.Generator
) -> np.ndarray:
    scores = rng.standard_normal(shape)
    if target == "scores":
        return scores
    return np.asarray(poly.map(scores)) - eta * rng.standard_normal(shape)


def _project(solver: Solver, poly: Polytope, x: np.ndarray, on_relaxation: bool):
    return solver.run(poly.relaxation() if on_relaxation else poly, x)


def _times(solver: Solver, poly: Polytope, x: np.ndarray, on_relaxation: bool, repeats: int) -> np.ndarray:
    """Wall-clock seconds of up to ``repeats`` runs of ``solver`` on ``x`` (run once before, untimed),
    stopping once they add up to :data:`REPEAT_BUDGET_S`."""
    where = poly.relaxation() if on_relaxation else poly
    seconds = []
    while len(seconds) < repeats and sum(seconds) < REPEAT_BUDGET_S:
        start = time.perf_counter()
        solver.run(where, x)
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def _gap_against(entry: StudySolver, poly: Polytope) -> str:
    if entry.on_relaxation or entry.solver == "relaxed":
        return "relaxation" if poly.relaxation() is not poly else "polytope"
    return "polytope"


class _Infeasibility:
    """How far a point lies outside the polytope (0 inside).

    The largest violation of ``polytope.constraints`` when they involve only the point's own
    variable; otherwise (auxiliary variables, as in an extended formulation, or no constraints)
    the distance to the polytope, by projecting the point with ``exact``.
    """

    def __init__(self, polytope: Polytope, exact: Solver) -> None:
        self.polytope = polytope
        self.exact = exact
        self._cache: dict[tuple[int, ...], tuple[cp.Variable, list] | None] = {}

    def __call__(self, p: np.ndarray) -> float:
        if p.shape not in self._cache:
            self._cache[p.shape] = self._own_constraints(p.shape)
        cached = self._cache[p.shape]
        if cached is None:
            projected = np.asarray(self.exact.run(self.polytope, p).x)
            return float(np.linalg.norm(p - projected))
        var, constraints = cached
        var.value = p
        return max(float(np.max(c.violation(), initial=0.0)) for c in constraints)

    def _own_constraints(self, shape: tuple[int, ...]) -> tuple[cp.Variable, list] | None:
        if not self.polytope.supports("constraints"):
            return None
        var = cp.Variable(shape)
        constraints = self.polytope.constraints(var)
        if any(v.id != var.id for c in constraints for v in c.variables()):
            return None
        return var, constraints
