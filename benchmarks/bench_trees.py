"""Tree polytopes against ufal.chu_liu_edmonds, the cvxpy extended formulation and torch-struct: ``spigot bench --only trees``.

The measurement lives in ``spigot.experiments.benchmarks``; this script runs that section and
prints its ratios (``--output docs/benchmarks.md`` rewrites its part of the page). Further options are those of ``spigot bench``
(``--quick``, ``--rounds``, ``--threads``, ``--output``, ``--json``)::

    .venv/bin/python benchmarks/bench_trees.py [OPTIONS]
"""

import sys

from spigot.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "--only", "trees", *sys.argv[1:]]))
