"""The thread count of the OpenBLAS libraries loaded in this process (numpy's and scipy's).

``torch.set_num_threads`` does not reach numpy: its linear algebra (the SVD of the SparseMAP
backward pass, the solvers' Cholesky factors) runs on the OpenBLAS bundled with numpy, whose
thread pool defaults to one thread per core. On a machine shared with other jobs those threads
spin waiting for each other; with 2 threads on a loaded 2-core machine, a 1-thread SVD of 3 ms
was measured to take 106 ms. :func:`blas_threads` sets the pool size of every OpenBLAS library
mapped into the process for the duration of a ``with`` block.

The libraries are found in ``/proc/self/maps`` and driven through their C entry points
(``openblas_set_num_threads``, possibly with the ``scipy_`` prefix and ``64_`` suffix of the
wheels' builds), so this works on Linux; elsewhere :func:`loaded_openblas` finds nothing and the
block leaves the thread counts as they are.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_MAPS = Path("/proc/self/maps")
_PREFIXES = ("", "scipy_")
_SUFFIXES = ("", "64_", "_64_")


@dataclass(frozen=True)
class OpenBLAS:
    """One loaded OpenBLAS library and its thread-count functions."""

    path: str
    get_threads: ctypes._CFuncPtr
    set_threads: ctypes._CFuncPtr

    @property
    def threads(self) -> int:
        """The library's current thread-pool size."""
        return int(self.get_threads())


def loaded_openblas() -> list[OpenBLAS]:
    """Every OpenBLAS library mapped into this process that exposes its thread-count functions."""
    if not _MAPS.is_file():
        return []
    paths = sorted(
        {
            line.split(maxsplit=5)[5].strip()
            for line in _MAPS.read_text().splitlines()
            if "openblas" in line.lower() and len(line.split(maxsplit=5)) == 6
        }
    )
    found = []
    for path in paths:
        try:
            # RTLD_NOLOAD: the handle of the copy already loaded, never a new one
            library = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            continue
        functions = _thread_functions(library)
        if functions is not None:
            found.append(OpenBLAS(path, *functions))
    return found


@contextmanager
def blas_threads(threads: int) -> Iterator[list[OpenBLAS]]:
    """Run the block with ``threads`` threads in every loaded OpenBLAS; restore them afterwards.

    Yields the libraries that were set (empty where none is found).

    Raises
    ------
    ValueError
        ``threads`` is not a positive integer.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    libraries = loaded_openblas()
    previous = [library.threads for library in libraries]
    for library in libraries:
        library.set_threads(threads)
    try:
        yield libraries
    finally:
        for library, count in zip(libraries, previous):
            library.set_threads(count)


def _thread_functions(library: ctypes.CDLL) -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            try:
                get = getattr(library, f"{prefix}openblas_get_num_threads{suffix}")
                set_ = getattr(library, f"{prefix}openblas_set_num_threads{suffix}")
            except AttributeError:
                continue
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            return get, set_
    return None
