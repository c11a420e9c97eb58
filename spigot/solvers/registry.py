"""The solver registry: names -> solver classes, with option checking."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, TypeVar

from spigot.solvers.base import Solver

S = TypeVar("S", bound=type[Solver])

_REGISTRY: dict[str, type[Solver]] = {}


def register_solver(name: str) -> Callable[[S], S]:
    """Class decorator adding a :class:`Solver` subclass to the registry under ``name``."""

    def decorate(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a solver named {name!r} is already registered: {_REGISTRY[name]}")
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_solvers() -> list[str]:
    """Names of every registered solver, sorted."""
    return sorted(_REGISTRY)


def solver_options(name: str) -> list[str]:
    """The options (constructor keywords) that solver ``name`` accepts."""
    return list(_constructor_keywords(_lookup(name)))


@functools.cache
def _constructor_keywords(cls: type[Solver]) -> tuple[str, ...]:
    params = inspect.signature(cls.__init__).parameters
    variadic = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return tuple(p for p in params if p != "self" and params[p].kind not in variadic)


def get_solver(solver: str | Solver, **options: Any) -> Solver:
    """Resolve a solver name (with options) or pass an instance through.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones), unknown option (it lists the valid
        ones), or options given together with a solver instance.
    TypeError
        ``solver`` is neither a string nor a :class:`Solver`.
    """
    if isinstance(solver, Solver):
        if options:
            raise ValueError(
                f"options {sorted(options)} were given with a solver instance {solver!r}; "
                "pass them to its constructor instead"
            )
        return solver
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a name or a Solver instance, got {type(solver).__name__}")
    cls = _lookup(solver)
    valid = solver_options(solver)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for solver {solver!r}; valid options: {valid}"
        )
    return cls(**options)


def _lookup(name: str) -> type[Solver]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown solver {name!r}; known solvers: {available_solvers()}")
    return _REGISTRY[name]
