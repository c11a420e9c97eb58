"""``spigot bench``: run the benchmarks against the installed peers; print the ratios, and rewrite a
page (``--output docs/benchmarks.md`` for the documentation's) only when asked.

Listed in :func:`spigot.cli.builtin_commands`; see ``spigot bench --help``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from spigot.experiments.cli_types import Command, positive_int

#: The documentation's page, written only when named with ``--output`` (from the repository root).
BENCHMARKS_FILE = "docs/benchmarks.md"


def _section_list(text: str) -> tuple[str, ...]:
    from spigot.experiments.benchmarks import section_names

    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = sorted(set(names) - set(section_names()))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s) {unknown or [text]}; known: {', '.join(section_names())}")
    return names


def _configure(parser: argparse.ArgumentParser) -> None:
    from spigot.experiments.benchmarks import DEVICES, SECTIONS

    listing = "\n".join(f"  {s.name:<16} --device {s.device:<5} needs {', '.join(s.peers)}" for s in SECTIONS)
    parser.epilog = f"sections (skipped when a peer is not installed):\n{listing}"
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="cpu (default): the CPU sections; cuda: the GPU section, timed with CUDA events on the "
        "current CUDA device (fails at once when none is available)",
    )
    parser.add_argument(
        "--only",
        type=_section_list,
        metavar="S1,S2",
        help="comma-separated sections to run (default: all those of --device); the page keeps the others as they were",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: tiny sizes and repeat counts (seconds, not minutes)",
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
        help=f"the markdown page whose sections to rewrite, e.g. {BENCHMARKS_FILE} for the "
        "documentation (default: none; the ratios are printed)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw measurements to this JSON file")


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from spigot.experiments.benchmarks import SECTIONS, BenchSettings, update_benchmarks_file

    if args.only is not None:
        elsewhere = [s.name for s in SECTIONS if s.name in args.only and s.device != args.device]
        if elsewhere:
            devices = sorted({s.device for s in SECTIONS if s.name in elsewhere})
            parser.error(
                f"section(s) {elsewhere} run with --device {' / '.join(devices)}, not --device {args.device}"
            )
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a build without CUDA"
            print(
                f"spigot bench: error: --device cuda: no CUDA device is available "
                f"(torch {torch.__version__}, {built}); run the GPU section on a machine with a CUDA GPU",
                file=sys.stderr,
            )
            return 1
    chosen = [s for s in SECTIONS if s.device == args.device and (args.only is None or s.name in args.only)]
    command = "spigot " + shlex.join(args._argv)
    settings = BenchSettings(
        quick=args.quick,
        rounds=1 if args.quick else args.rounds,
        threads=args.threads,
        seed=args.seed,
        command=command,
        device=args.device,
    )
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
    output = args.output
    if output:
        order = [s.name for s in SECTIONS]
        devices = {s.name: s.device for s in SECTIONS}
        for name, result in results.items():  # a GPU block holds only figures measured on a GPU
            if devices[name] == "cuda" and result.data.get("device_type") != "cuda":
                raise ValueError(f"refusing to write the {name} section: it was not measured on a CUDA device")
        update_benchmarks_file(output, {name: r.markdown for name, r in results.items()}, order)
        print(f"\nwrote {', '.join(results)} to {output}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({name: r.data for name, r in results.items()}, handle, indent=2, default=float)
    if skipped:
        print(f"skipped: {'; '.join(skipped)}")
    print(f"bench finished in {time.perf_counter() - started:.0f} s")
    return 0


#: ``spigot bench``.
BENCH = Command(
    name="bench",
    help="benchmarks against the installed peers; prints the ratios (--output PAGE rewrites a page)",
    description=(
        "Measure the library against its peers, each comparison in interleaved rounds on the\n"
        "same inputs: simplex projection vs entmax; tree MAP vs ufal.chu_liu_edmonds (and the\n"
        "slope over n), exact tree projection vs the cvxpy extended formulation, a SPIGOT step\n"
        "vs torch-struct; differentiable projections vs cvxpylayers; the semantic-graph\n"
        "projection-error study. Prints the ratios and whether each goal is met; with --output\n"
        "PAGE it also rewrites that page's sections (with the command): --output\n"
        "docs/benchmarks.md updates the documentation. The full run takes several\n"
        "minutes on 2 CPU cores; --quick is a smoke test. With --device cuda it runs the GPU\n"
        "section instead: the simplex projection (B=4096, k=1000) vs entmax, a sort-based\n"
        "projection and a copy, and a SPIGOT step vs torch-struct, all on the current CUDA\n"
        "device, timed with CUDA events; it writes only that section of the page."
    ),
    configure=_configure,
    run=_run,
)
