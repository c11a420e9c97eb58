"""``import spigot`` stays light: heavy dependencies are imported at first use, not eagerly.

Checked in a fresh interpreter through ``sys.modules`` (not by timing, which the machine's load
decides).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spigot._lazy import LazyModule

ROOT = Path(__file__).resolve().parent.parent

#: Modules that ``import spigot`` must not import: solvers' and kernels' dependencies, the
#: numba-compiled kernels themselves, and the experiments' stack.
DEFERRED = (
    "cvxpy", "numba", "llvmlite", "scipy.optimize", "scipy.sparse", "scipy.stats", "ad3", "pandas",
    "matplotlib", "spigot.experiments", "spigot.polytopes._tree_kernels", "spigot.solvers._cholesky",
    "spigot.solvers._simplex_kernel", "spigot.polytopes._support_oracle", "spigot.solvers._active_set_kernel",
    "spigot.autodiff._face_kernel", "spigot.autodiff._step_kernel",
)


def _imported_after(code: str) -> list[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps([m for m in {list(DEFERRED)!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_spigot_imports_no_heavy_dependency():
    assert _imported_after("import spigot") == []


def test_the_deferred_modules_load_at_first_use():
    code = (
        "import numpy as np, spigot\n"
        "spigot.Arborescence().map(np.random.default_rng(0).normal(size=(4, 4)))\n"
        "spigot.Simplex().project(np.array([0.2, 0.5, 0.1]), solver='cvxpy')\n"
    )
    loaded = _imported_after(code)
    assert {"spigot.polytopes._tree_kernels", "numba", "cvxpy"} <= set(loaded)
    assert "spigot.experiments" not in loaded


def test_lazy_module_imports_at_first_attribute_and_not_before():
    sys.modules.pop("colorsys", None)  # a small standard-library module nothing here imports
    lazy = LazyModule("colorsys")
    assert not hasattr(lazy, "__wrapped__")  # dunder lookups (copy, pickle, inspect) do not import
    assert "colorsys" not in sys.modules and "not imported yet" in repr(lazy)
    assert lazy.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules and "(imported)" in repr(lazy)
