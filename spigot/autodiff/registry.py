"""Estimators by name, so that experiments can choose them from a configuration.

:data:`ESTIMATORS` maps each method name to its nn.Module class; every class is built as
``Cls(polytope, **options)`` and called as ``module(scores, lengths=None)``; a class whose
``needs_downstream`` attribute is true (``spigot-ce-relaxed``, ``spigot-eg-relaxed``) also takes
``downstream=`` (the loss as a function of the structure) in the call.
:func:`make_estimator` builds one with its options checked.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from spigot.autodiff.implicit_mle import IMLE
from spigot.autodiff.perturbations import PerturbedMaximizer
from spigot.autodiff.pulled_back import SpigotCE, SpigotEG
from spigot.autodiff.relaxed_point import SpigotCERelaxed, SpigotEGRelaxed
from spigot.autodiff.sparsemap_layer import SparseMAP
from spigot.autodiff.spigot_layer import SPIGOT
from spigot.autodiff.straight_through import StraightThrough, StraightThroughMarginals
from spigot.autodiff.structured_attention import Marginals
from spigot.polytopes.base import Polytope
from spigot.solvers.registry import solver_options

#: Method name -> estimator class.
ESTIMATORS: dict[str, type[torch.nn.Module]] = {
    "ste-i": StraightThrough,
    "ste-s": StraightThroughMarginals,
    "spigot": SPIGOT,
    "spigot-ce": SpigotCE,
    "spigot-eg": SpigotEG,
    "spigot-ce-relaxed": SpigotCERelaxed,
    "spigot-eg-relaxed": SpigotEGRelaxed,
    "sparsemap": SparseMAP,
    "marginals": Marginals,
    "perturbed": PerturbedMaximizer,
    "imle": IMLE,
}


def available_estimators() -> list[str]:
    """Names of every estimator in :data:`ESTIMATORS`, sorted."""
    return sorted(ESTIMATORS)


def _signature(cls: type[torch.nn.Module]) -> tuple[list[str], bool]:
    """The keyword options of ``cls`` after the polytope, and whether it forwards solver options."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, polytope
    named = [p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return named, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def estimator_options(name: str) -> list[str]:
    """The options (constructor keywords after the polytope) of estimator ``name``."""
    return _signature(_lookup(name))[0]


def make_estimator(name: str, polytope: Polytope, **options: Any) -> torch.nn.Module:
    """Build the estimator ``name`` on ``polytope`` with ``options``.

    Estimators that project (``spigot``, ``spigot-ce``, ``spigot-ce-relaxed``, ``sparsemap``) also accept the options of
    their solver when it is given by name.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones) or unknown option (it lists the valid
        ones).
    """
    cls = _lookup(name)
    named, forwards_solver_options = _signature(cls)
    unknown = set(options) - set(named)
    valid = list(named)
    if forwards_solver_options:
        solver = options.get("solver", inspect.signature(cls.__init__).parameters["solver"].default)
        if isinstance(solver, str):
            extra = solver_options(solver)
            valid += [f"{option} (solver {solver!r})" for option in extra]
            unknown -= set(extra)
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for estimator {name!r}; valid options: {valid}"
        )
    return cls(polytope, **options)


def _lookup(name: str) -> type[torch.nn.Module]:
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; known estimators: {available_estimators()}")
    return ESTIMATORS[name]
