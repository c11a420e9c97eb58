"""The ``spigot`` command line.

- ``spigot demo``: short runs of ``clusters`` (latent choice on the simplex) and ``sentiment``
  (latent dependency tree) comparing SPIGOT with the pipeline, straight-through and a few
  other estimators (the README's main job);
- ``spigot experiment NAME --seeds N``: a registered experiment over methods and seeds, with
  checkpoints, resuming, and its table printed and written to ``RUN_DIR/results.md`` (the
  documentation's ``docs/results.md`` only when named: ``--results docs/results.md``); runs under
  ``torchrun --nproc_per_node P -m spigot experiment ...`` for data-parallel training;
- ``spigot study``: the projection-error study (:mod:`spigot.experiments.study_command`);
- ``spigot bench``: the benchmarks against the installed peers, printing the ratios (and
  rewriting a page only when named: ``--output docs/benchmarks.md``)
  (:mod:`spigot.experiments.benchmarks.command`).

No command writes into ``docs/`` unless a path there is given on its command line.

The built-in subcommands are listed in one table, :func:`builtin_commands`; each is a
:class:`Command` (its name, one line of help, a function adding its arguments to an argparse
parser, and a function running it) defined where it belongs. A further subcommand is added with
:func:`register_command`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from spigot.experiments.cli_types import Command, positive_int

#: What ``spigot demo`` runs (each experiment's ``demo`` preset): name and methods compared.
DEMO_RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("clusters", ("pipeline", "ste-i", "spigot", "marginals")),
    ("sentiment", ("no-tree", "chain", "ste-i", "spigot", "marginals")),
    ("parse-then-label", ("pipeline", "ste-i", "spigot", "marginals")),
)

#: The file, inside ``--run-dir``, where ``spigot experiment`` writes its table by default.
RESULTS_FILE = "results.md"


_COMMANDS: dict[str, Command] = {}


def register_command(command: Command) -> Command:
    """Add ``command`` to ``spigot``'s subcommands (a name may be registered once)."""
    if not isinstance(command, Command):
        raise TypeError(f"register_command expects a Command, got {type(command).__name__}")
    if command.name in _COMMANDS and _COMMANDS[command.name] is not command:
        raise ValueError(f"a command named {command.name!r} is already registered")
    _COMMANDS[command.name] = command
    return command


def builtin_commands() -> tuple[Command, ...]:
    """The built-in subcommands, in the order ``spigot --help`` lists them."""
    from spigot.experiments.benchmarks.command import BENCH
    from spigot.experiments.study_command import STUDY

    return (DEMO, EXPERIMENT, STUDY, BENCH)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the built-in subcommands and every registered one."""
    commands = {command.name: command for command in builtin_commands()}
    for name, command in _COMMANDS.items():
        if name in commands and commands[name] is not command:
            raise ValueError(f"a command named {name!r} is already a built-in command")
        commands[name] = command
    parser = argparse.ArgumentParser(
        prog="spigot",
        description="spigot-toolkit: backpropagating through structured argmax (SPIGOT and friends).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands.values():
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.configure(sub)
        sub.set_defaults(_command=command, _parser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``spigot`` with ``argv`` (default: the process's arguments); return the exit status."""
    from spigot.errors import UnsupportedOperation
    from spigot.experiments import distributed
    from spigot.experiments.data import MissingDataError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv
    status = 1
    try:
        distributed.init_from_environment()
        status = args._command.run(args, args._parser)
    except (MissingDataError, UnsupportedOperation, ValueError, FloatingPointError) as error:
        print(f"spigot {args.command}: error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print(
            f"spigot {args.command}: interrupted; run the same command again to resume "
            "from the checkpoints",
            file=sys.stderr,
        )
        status = 130
    finally:
        distributed.shutdown(wait=status == 0)
    return status


# ---------------------------------------------------------------------- argument types
def method_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated method names, each known to the method table."""
    from spigot.experiments.methods import check_methods

    names = [name.strip() for name in text.split(",") if name.strip()]
    try:
        return check_methods(names)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_common_run_options(parser: argparse.ArgumentParser, seeds: int) -> None:
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=seeds,
        metavar="N",
        help=f"run seeds 0..N-1 (default {seeds})",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="T",
        help="torch threads per process (default 1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


# ---------------------------------------------------------------------- spigot demo
def _configure_demo(parser: argparse.ArgumentParser) -> None:
    _add_common_run_options(parser, seeds=3)
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        help="keep checkpoints and finished runs here (default: a temporary folder, removed afterwards)",
    )


def _run_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from spigot.experiments import distributed, get_experiment, run_experiment
    from spigot.experiments.results import format_duration

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spigot-demo-") as scratch:
        for name, methods in DEMO_RUNS:
            experiment = get_experiment(name)
            if distributed.is_main_process():
                print(f"== {name}: {experiment.title}")
                print(
                    f"   demo preset, seeds 0..{args.seeds - 1}, methods {', '.join(methods)}",
                    flush=True,
                )
            report = run_experiment(
                name,
                seeds=args.seeds,
                methods=methods,
                preset="demo",
                run_dir=args.run_dir or scratch,
                progress=not args.no_progress,
                threads=args.threads,
                log=None,
            )
            if distributed.is_main_process():
                print()
                print(report.table())
                print(f"\n({name}: {format_duration(report.seconds)})\n", flush=True)
    if distributed.is_main_process():
        print(f"demo finished in {format_duration(time.perf_counter() - started)}")
    return 0


DEMO = Command(
    name="demo",
    help="short clusters, sentiment and parse-then-label runs: SPIGOT against the pipeline and other estimators",
    description=(
        "Train three experiments' models on a short schedule (their demo presets) with the\n"
        "baselines, straight-through (STE-I), SPIGOT and structured attention (marginals),\n"
        "and print each one's table (mean ± std over seeds): clusters (latent cluster choice on the\n"
        "simplex), sentiment (latent-tree learning without a treebank on movie-review\n"
        "sentences, against a no-tree and a fixed-chain baseline) and\n"
        "parse-then-label (a supervised parser kept in the objective, the paper's regime)."
    ),
    configure=_configure_demo,
    run=_run_demo,
)


# ---------------------------------------------------------------------- spigot experiment
def _configure_experiment(parser: argparse.ArgumentParser) -> None:
    from spigot.experiments import available_experiments, available_methods
    from spigot.experiments.registry import GRID_SIZES, all_presets

    parser.add_argument(
        "name",
        choices=available_experiments(),
        metavar="NAME",
        help=f"one of: {', '.join(available_experiments())}",
    )
    _add_common_run_options(parser, seeds=5)
    parser.add_argument(
        "--methods",
        type=method_list,
        metavar="M1,M2",
        help=f"comma-separated methods (default: the experiment's own, all of "
        f"{', '.join(available_methods())} for most; sentiment's baselines are no-tree and chain)",
    )
    parser.add_argument(
        "--preset",
        choices=all_presets(),
        default="full",
        help="configuration: full (default), demo, or a variant one experiment names "
        "(clusters: mihaylova, fixed-step; sentiment: projective; parse-then-label: "
        "no-intermediate-supervision; parse-then-emotion: semantic-graph, semantic-graph-exact)",
    )
    parser.add_argument(
        "--grid",
        choices=GRID_SIZES,
        default="none",
        help="tune every method on the experiment's dev grid (learning rate x the method's own "
        "knob) and report each method's best setting: none (default), reduced or full",
    )
    parser.add_argument(
        "--run-dir",
        default="runs",
        metavar="DIR",
        help="checkpoints and finished runs (default runs/)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="discard earlier runs of this configuration instead of resuming",
    )
    parser.add_argument(
        "--results",
        metavar="FILE",
        help=f"markdown file to write the table to, e.g. docs/results.md to update the "
        f"documentation (default: {RESULTS_FILE} in --run-dir)",
    )
    parser.add_argument(
        "--no-results", action="store_true", help="print the table only; write no results file"
    )


def _run_experiment(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from spigot.experiments import distributed, run_experiment
    from spigot.experiments.results import format_duration, update_results_file

    command = "spigot " + shlex.join(args._argv)
    if distributed.is_distributed():
        command = f"torchrun --standalone --nproc_per_node {distributed.world_size()} -m {command}"
    report = run_experiment(
        args.name,
        seeds=args.seeds,
        methods=args.methods,
        preset=args.preset,
        run_dir=args.run_dir,
        fresh=args.fresh,
        progress=not args.no_progress,
        command=command,
        threads=args.threads,
        grid=args.grid,
    )
    if distributed.is_main_process():
        print()
        print(report.table())
        print(f"\n({args.name}: {format_duration(report.seconds)})")
        if not args.no_results:
            results = args.results or str(Path(args.run_dir) / RESULTS_FILE)
            update_results_file(results, report.section_name, report.markdown_section())
            print(f"table written to {results}")
    return 0


EXPERIMENT = Command(
    name="experiment",
    help="run an experiment over methods and seeds; print its table and write it to RUN_DIR/results.md",
    description=(
        "Run experiment NAME for every method and seeds 0..N-1, resuming finished and\n"
        "checkpointed runs under --run-dir, print the mean ± std table and write it to\n"
        "--results (default RUN_DIR/results.md; --results docs/results.md updates the\n"
        "documentation's page). For data-parallel training on P processes:\n"
        "  torchrun --standalone --nproc_per_node P -m spigot experiment NAME ..."
    ),
    configure=_configure_experiment,
    run=_run_experiment,
)
