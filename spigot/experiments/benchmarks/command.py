"""``spigot bench``: run the benchmarks against the installed peers and rewrite ``docs/benchmarks.md``.

Registered with :func:`spigot.cli.register_command`; see ``spigot bench --help``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from spigot.cli import Command, positive_int, register_command

#: Where the page is written by default (relative to the working directory: the repository root).
BENCHMARKS_FILE = "docs/benchmarks.md"


def _section_list(text: str) -> tuple[str, ...]:
    from spigot.experiments.benchmarks import section_names

    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = sorted(set(names) - set(section_names()))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown or [text]}; known: {', '.join(section_names())}")
    return names


def _configure(parser: argparse.ArgumentParser) -> None:
    from spigot.experiments.benchmarks import SECTIONS

    listing = "\n".join(f"  {s.name:<16} needs {', '.join(s.peers)}" for s in SECTIONS)
    parser.epilog = f"sections (skipped when a peer is not installed):\n{listing}"
    parser.add_argument(
        "--only",
        type=_section_list,
        metavar="S1,S2",
        help="comma-separated sections to run (default: all); the page keeps the others as they were",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: tiny sizes and repeat counts (seconds, not minutes); writes the page only "
        "when --output is given",
    )
    parser.add_argument("--rounds", type=positive_int, default=5, metavar="R", help="interleaved rounds per comparison (default 5)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="T",
        help="torch threads for both sides (default 1: head-to-head times are then thread CPU time)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument(
        "--output",
        metavar="FILE",
        help=f"the page to rewrite (default {BENCHMARKS_FILE}; with --quick, none unless given)",
    )
    parser.add_argument("--no-write", action="store_true", help="print the ratios only; write no page")
    parser.add_argument("--json", metavar="FILE", help="also write the raw measurements to this JSON file")


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from spigot.experiments.benchmarks import SECTIONS, BenchSettings, update_benchmarks_file

    if args.no_write and args.output:
        parser.error("--no-write and --output exclude each other")
    chosen = [s for s in SECTIONS if args.only is None or s.name in args.only]
    command = "spigot " + shlex.join(args._argv)
    settings = BenchSettings(quick=args.quick, rounds=1 if args.quick else args.rounds, threads=args.threads, seed=args.seed, command=command)
    started = time.perf_counter()
    results, skipped = {}, []
    for section in chosen:
        missing = section.missing_peers()
        if missing:
            skipped.append(f"{section.name} (not installed: {', '.join(missing)})")
            print(f"== {section.name}: skipped, not installed: {', '.join(missing)}", flush=True)
            continue
        print(f"== {section.name}", flush=True)
        clock = time.perf_counter()
        result = section.runner()(settings)
        results[section.name] = result
        for line in result.headline:
            print(f"   {line}")
        print(f"   ({time.perf_counter() - clock:.0f} s)", flush=True)
    if not results:
        print(f"spigot bench: error: no section could run; skipped: {'; '.join(skipped)}", file=sys.stderr)
        return 1
    output = args.output or (None if args.quick or args.no_write else BENCHMARKS_FILE)
    if output:
        order = [s.name for s in SECTIONS]
        update_benchmarks_file(output, {name: r.markdown for name, r in results.items()}, order)
        print(f"\nwrote {', '.join(results)} to {output}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({name: r.data for name, r in results.items()}, handle, indent=2, default=float)
    if skipped:
        print(f"skipped: {'; '.join(skipped)}")
    print(f"bench finished in {time.perf_counter() - started:.0f} s")
    return 0


register_command(
    Command(
        name="bench",
        help="benchmarks against the installed peers; prints the ratios, rewrites docs/benchmarks.md",
        description=(
            "Measure the library against its peers, each comparison in interleaved rounds on the\n"
            "same inputs: simplex projection vs entmax; tree MAP vs ufal.chu_liu_edmonds (and the\n"
            "slope over n), exact tree projection vs the cvxpy extended formulation, a SPIGOT step\n"
            "vs torch-struct; differentiable projections vs cvxpylayers; the semantic-graph\n"
            "projection-error study. Prints the ratios and whether each goal is met, and rewrites\n"
            "the page's sections (with the command) in --output. The full run takes several\n"
            "minutes on 2 CPU cores; --quick is a smoke test."
        ),
        configure=_configure,
        run=_run,
    )
)
