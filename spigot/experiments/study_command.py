"""``spigot study``: the projection-error study from the command line, with a CSV and plots.

Listed in :func:`spigot.cli.builtin_commands`; see ``spigot study --help``. ``--polytope``
takes built-in family names or any structure as ``module:Class`` (a module on the Python path,
or a ``.py`` file), studied with :meth:`StudyFamily.from_polytope` at the instance shapes of
``--sizes``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import warnings
from pathlib import Path

from spigot.experiments.cli_types import Command, positive_int

#: Families run when ``--polytope`` is not given.
DEFAULT_FAMILIES = ("simplex", "budget", "arborescence", "projective-tree", "semantic-graph")
#: Iteration budgets of the iterative solvers when ``--budgets`` is not given.
DEFAULT_BUDGETS = (1, 3, 10, 30, 100)
#: Where the CSV and the plots go by default.
DEFAULT_OUTPUT = "runs/study"


def size_arg(text: str) -> tuple[int, ...]:
    """argparse type: one size, its integers joined by ``x`` (``10``, ``5x2``)."""
    try:
        values = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 10 or 5x2, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"size entries must be positive, got {text!r}")
    return values


def budgets_arg(text: str) -> tuple[int, ...] | None:
    """argparse type: comma-separated positive iteration budgets, or ``none``."""
    if text.strip().lower() == "none":
        return None
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected budgets such as 1,10,100 or none, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"budgets must be positive integers, got {text!r}")
    return values


#: Timed runs per solver and instance when ``--repeats`` is not given (after one warm-up run).
DEFAULT_REPEATS = 5


def polytope_arg(text: str) -> str:
    """argparse type: a built-in family name or ``module:Class``."""
    from spigot.experiments.projection_study import FAMILIES

    if text in FAMILIES or (":" in text and all(text.rpartition(":")[::2])):
        return text
    raise argparse.ArgumentTypeError(
        f"expected a family ({', '.join(sorted(FAMILIES))}) or a structure as module:Class, got {text!r}"
    )


def load_polytope_class(spec: str) -> type:
    """The class named by ``module:Class``; ``module`` is an importable name or a ``.py`` file.

    Raises
    ------
    ValueError
        The module cannot be imported, has no such attribute, or it is not a Polytope subclass.
    """
    from spigot.polytopes.base import Polytope

    module_name, _, class_name = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ValueError(f"--polytope {spec!r}: no file {path}")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules.setdefault(path.stem, module)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"--polytope {spec!r}: cannot import {module_name!r} ({error})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Polytope)):
        raise ValueError(f"--polytope {spec!r}: {module_name} has no Polytope subclass named {class_name!r}")
    return cls


def _configure(parser: argparse.ArgumentParser) -> None:
    from spigot.experiments.projection_study import FAMILIES, TARGETS

    families = "\n".join(
        f"  {f.name:<16} {' x '.join(f.size_names):<18} {f.description}" for f in FAMILIES.values()
    )
    parser.epilog = (
        f"polytope families (name, size, what it is):\n{families}\n"
        "  module:Class     SHAPE              any Polytope subclass (built with no arguments);\n"
        "                                      --sizes gives instance shapes, e.g. 5x5 8x8"
    )
    parser.add_argument(
        "--polytope",
        nargs="+",
        type=polytope_arg,
        default=list(DEFAULT_FAMILIES),
        metavar="FAMILY",
        help=f"families to study (default: {' '.join(DEFAULT_FAMILIES)}; listed below), or one "
        "structure of your own as module:Class (e.g. mypackage.structures:Permutations or "
        "structures.py:Permutations) with --sizes",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=size_arg,
        metavar="SIZE",
        help="instance sizes, e.g. 10 20 (trees: words) or 5x2 10x5 (semantic graphs: words x "
        "labels); for module:Class the instance shapes (5x5 8x8); needs a single --polytope "
        "(default: the family's grid)",
    )
    parser.add_argument("--full", action="store_true", help="each family's larger grid instead of the default one")
    parser.add_argument(
        "--solvers",
        nargs="+",
        metavar="LABEL",
        help="solver labels to keep (default: every solver of the family, e.g. active-set, "
        "cvxpy, relaxed, pairwise-frank-wolfe)",
    )
    parser.add_argument(
        "--budgets",
        type=budgets_arg,
        default=DEFAULT_BUDGETS,
        metavar="B1,B2",
        help="iteration budgets (max_iter) of the iterative solvers, one row each; 'none' runs "
        f"each solver once at its own settings (default {','.join(map(str, DEFAULT_BUDGETS))})",
    )
    parser.add_argument("--instances", type=positive_int, default=2, metavar="N", help="random instances per size (default 2)")
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="scores",
        help="project random scores, or SPIGOT targets map(s) - eta*g (default scores)",
    )
    parser.add_argument("--eta", type=float, default=1.0, help="step of the spigot target (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random instances (default 0)")
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=DEFAULT_REPEATS,
        metavar="R",
        help=f"most timed runs per solver and instance after one warm-up run (fewer once they add "
        f"up to 50 ms); times are their median and interquartile range (default {DEFAULT_REPEATS})",
    )
    parser.add_argument("--threads", type=positive_int, default=1, metavar="T", help="torch threads (default 1)")
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help=f"folder for study.csv, summary.md (the full table) and one FAMILY.png per family "
        f"(default {DEFAULT_OUTPUT})",
    )
    parser.add_argument("--no-plots", action="store_true", help="write the CSV and summary only")


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import pandas as pd
    import torch

    from spigot.experiments.projection_study import (
        FAMILIES,
        StudyFamily,
        markdown_table,
        projection_study,
        summarize_study,
        summary_lines,
    )

    if args.sizes and len(args.polytope) != 1:
        parser.error("--sizes needs exactly one --polytope (sizes mean different things per family)")
    if args.sizes and args.full:
        parser.error("--sizes and --full exclude each other")
    custom = [name for name in args.polytope if name not in FAMILIES]
    if custom and not args.sizes:
        parser.error(f"--polytope {custom[0]} needs --sizes: the instance shapes to study, e.g. 5x5 8x8")
    families = [
        FAMILIES[name] if name in FAMILIES else StudyFamily.from_polytope(load_polytope_class(name), args.sizes)
        for name in dict.fromkeys(args.polytope)
    ]
    if args.solvers:
        known = {s.label for f in families for s in f.solvers}
        unknown = sorted(set(args.solvers) - known)
        if unknown:
            parser.error(f"unknown solver label(s) {unknown} for {args.polytope}; known: {sorted(known)}")
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tables = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The problem has an expression with dimension greater than 2")
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")  # the certificate says
        for family in families:
            solvers = [s for s in family.solvers if not args.solvers or s.label in args.solvers]
            if not solvers:
                print(f"{family.name}: none of the chosen solvers belongs to it; skipped")
                continue
            sizes = args.sizes or (family.full_sizes if args.full else family.sizes)
            clock = time.perf_counter()
            tables.append(
                projection_study(
                    family,
                    sizes=sizes,
                    solvers=solvers,
                    n_instances=args.instances,
                    target=args.target,
                    eta=args.eta,
                    budgets=args.budgets,
                    seed=args.seed,
                    repeats=args.repeats,
                )
            )
            print(f"{family.name}: {len(tables[-1])} projections in {time.perf_counter() - clock:.1f} s", flush=True)
    if not tables:
        parser.error("no family has any of the chosen solvers")
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(output / "study.csv", index=False)
    baselines = {f.name: f.baseline for f in families if f.baseline in set(table[table["family"] == f.name]["solver"])}
    summary = summarize_study(table, baseline=baselines or None)
    (output / "summary.md").write_text(markdown_table(summary) + "\n")
    print("\nlargest size per family, each solver at its largest budget: median time (distance to the exact projection)")
    for line in summary_lines(summary):
        print("  " + line)
    written = [output / "study.csv", output / "summary.md"]
    if not args.no_plots:
        from spigot.experiments.study_plots import save_family_plots

        written += save_family_plots(table, output)
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    print(f"study finished in {time.perf_counter() - started:.1f} s")
    return 0


#: ``spigot study``.
STUDY = Command(
    name="study",
    help="projection-error study: every solver against the exact projection; CSV and plots",
    description=(
        "For each polytope family and size, draw random targets x, compute the exact\n"
        "projection p* with the family's reference solver, run every solver (iterative ones\n"
        "at each --budgets) and record the distance ||p - p*||, the certificate gap, how far p\n"
        "lies outside the polytope, the wall time (median and interquartile range of --repeats\n"
        "runs after a warm-up run) and the iterations. Prints one line per family and writes\n"
        "study.csv (one row per instance, solver and budget), summary.md (the full table:\n"
        "medians, times relative to the family's baseline solver) and FAMILY.png (distance\n"
        "and gap against iterations and time) to --output. --polytope module:Class studies\n"
        "a structure of your own at the instance shapes of --sizes."
    ),
    configure=_configure,
    run=_run,
)
