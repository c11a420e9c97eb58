"""The GPU section: ``spigot bench --device cuda --only gpu``.

The measurement lives in ``spigot.experiments.benchmarks.gpu``: the batched simplex projection
(B=4096, k=1000) against entmax, a plain sort-based projection and a copy of the data, and a
SPIGOT step on arborescences (B=32, n=50) against torch-struct, every side on the current CUDA
device, timed with CUDA events. This script runs that section and prints its figures
(``--output docs/benchmarks.md`` rewrites its part of the page); without a CUDA device it stops with a one-line error. Further options are
those of ``spigot bench`` (``--quick``, ``--rounds``, ``--output``, ``--json``)::

    .venv/bin/python benchmarks/bench_gpu.py [OPTIONS]
"""

import sys

from spigot.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "--device", "cuda", "--only", "gpu", *sys.argv[1:]]))
