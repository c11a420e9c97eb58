"""The benchmarks against the peer libraries, behind ``spigot bench``.

Each section module measures one comparison and writes its part of ``docs/benchmarks.md``:

- :mod:`~spigot.experiments.benchmarks.simplex`: ``project_simplex`` against ``entmax``;
- :mod:`~spigot.experiments.benchmarks.trees`: tree MAP against ``ufal.chu_liu_edmonds``,
  exact projection against the ``cvxpy`` extended formulation and lp-sparsemap, a SPIGOT step
  against ``torch-struct`` (float32 and float64);
- :mod:`~spigot.experiments.benchmarks.sparsemap`: the SparseMAP layer's backward against its
  own forward (no peer);
- :mod:`~spigot.experiments.benchmarks.differentiable`: differentiable projections against
  ``cvxpylayers`` (when installed);
- :mod:`~spigot.experiments.benchmarks.semantic_graphs`: the semantic-graph projection-error
  study;
- :mod:`~spigot.experiments.benchmarks.ad3_qp`: the batched AD3-QP projection on semantic graphs
  against ``lpsmap`` (lp-sparsemap) and ``cvxpy``;
- :mod:`~spigot.experiments.benchmarks.gpu` (``spigot bench --device cuda``): the simplex
  projection and a SPIGOT step timed on a GPU against the same peers.

:data:`SECTIONS` lists them in page order, with the peer packages each needs and the device it
measures on (``spigot bench`` runs the CPU sections, ``spigot bench --device cuda`` the GPU one);
``spigot bench`` (:mod:`~spigot.experiments.benchmarks.command`) runs a selection and
:mod:`~spigot.experiments.benchmarks.report` rewrites the page.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from spigot.experiments.benchmarks.report import read_sections, update_benchmarks_file
from spigot.experiments.benchmarks.settings import BenchSettings, SectionResult


@dataclass(frozen=True)
class Section:
    """One section of the benchmarks page.

    Attributes
    ----------
    name
        Its key (``spigot bench --only NAME``).
    module
        The module whose ``run(settings)`` measures it.
    peers
        Import names of the packages it compares against; it is skipped when one is missing.
    device
        ``"cpu"`` or ``"cuda"``: the ``spigot bench --device`` under which it runs.
    """

    name: str
    module: str
    peers: tuple[str, ...]
    device: str = "cpu"

    def missing_peers(self) -> list[str]:
        """The peers that do not import here."""
        return [peer for peer in self.peers if not _imports(peer)]

    def runner(self) -> Callable[[BenchSettings], SectionResult]:
        """The section's ``run`` function."""
        return importlib.import_module(self.module).run


SECTIONS: tuple[Section, ...] = (
    Section("simplex", "spigot.experiments.benchmarks.simplex", ("entmax",)),
    Section("trees", "spigot.experiments.benchmarks.trees", ("ufal.chu_liu_edmonds", "torch_struct")),
    Section("sparsemap", "spigot.experiments.benchmarks.sparsemap", ()),
    Section("cvxpylayers", "spigot.experiments.benchmarks.differentiable", ("cvxpylayers.torch",)),
    Section("semantic-graphs", "spigot.experiments.benchmarks.semantic_graphs", ("ad3",)),
    Section("ad3-qp", "spigot.experiments.benchmarks.ad3_qp", ("lpsmap",)),
    Section("gpu", "spigot.experiments.benchmarks.gpu", ("entmax", "torch_struct"), device="cuda"),
)

#: The values of ``spigot bench --device``.
DEVICES: tuple[str, ...] = ("cpu", "cuda")


def section_names() -> list[str]:
    """Names of every section, in page order."""
    return [s.name for s in SECTIONS]


def _imports(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


__all__ = [
    "BenchSettings",
    "DEVICES",
    "SECTIONS",
    "Section",
    "SectionResult",
    "read_sections",
    "section_names",
    "update_benchmarks_file",
]
