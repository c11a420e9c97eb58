"""AD3-QP on semantic graphs against lp-sparsemap and cvxpy: ``spigot bench --only ad3-qp``.

The measurement lives in ``spigot.experiments.benchmarks.ad3_qp``; this script runs that section
and rewrites its part of docs/benchmarks.md. Further options are those of ``spigot bench``
(``--quick``, ``--rounds``, ``--threads``, ``--output``, ``--no-write``, ``--json``)::

    .venv/bin/python benchmarks/bench_ad3_qp.py [OPTIONS]
"""

import sys

from spigot.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "--only", "ad3-qp", *sys.argv[1:]]))
