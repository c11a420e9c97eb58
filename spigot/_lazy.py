"""Deferred imports: heavy modules (cvxpy, scipy's sparse and optimize, numba-compiled kernels)
are imported the first time one of their attributes is used, so that ``import spigot`` stays fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name`` and imports it on first attribute access.

    ``cp = LazyModule("cvxpy")`` at the top of a file, then ``cp.Variable(...)`` where it is
    needed: cvxpy is imported at that first use (once), and each attribute read is kept on the
    stand-in, so later accesses are plain attribute reads of the imported module's objects.
    Nothing is added to ``sys.modules`` before then.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # copy, pickle and introspection must not trigger the import
            raise AttributeError(attribute)
        if self._module is None:
            self._module = importlib.import_module(self._name)
        value = getattr(self._module, attribute)
        setattr(self, attribute, value)  # later accesses are plain attribute reads, not this call
        return value

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"
