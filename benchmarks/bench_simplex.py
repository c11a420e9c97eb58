"""Simplex projection against entmax: ``spigot bench --only simplex``.

The measurement lives in ``spigot.experiments.benchmarks``; this script runs that section and
prints its ratios (``--output docs/benchmarks.md`` rewrites its part of the page). Further options are those of ``spigot bench``
(``--quick``, ``--rounds``, ``--threads``, ``--output``, ``--json``)::

    .venv/bin/python benchmarks/bench_simplex.py [OPTIONS]
"""

import sys

from spigot.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "--only", "simplex", *sys.argv[1:]]))
