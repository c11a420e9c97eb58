"""The semantic-graph projection-error study: ``spigot bench --only semantic-graphs``.

The measurement lives in ``spigot.experiments.benchmarks``; this script runs that section and
prints its ratios (``--output docs/benchmarks.md`` rewrites its part of the page). Further options are those of ``spigot bench``
(``--quick``, ``--rounds``, ``--threads``, ``--output``, ``--json``)::

    .venv/bin/python benchmarks/semantic_graph_study.py [OPTIONS]
"""

import sys

from spigot.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "--only", "semantic-graphs", *sys.argv[1:]]))
