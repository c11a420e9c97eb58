"""The method table: how each compared method turns latent scores into a structure.

Every experiment compares the same methods, named as in the papers:

- ``pipeline``: the intermediate model is fixed (pre-trained or fitted on its own) and only the
  downstream model learns; its argmax passes no gradient back;
- one name per estimator layer of :mod:`spigot.autodiff` (``ste-i``, ``spigot``, and, where the
  library has them, ``ste-s``, ``spigot-ce``, ``spigot-eg``, ``sparsemap``, ``marginals``,
  ``perturbed``, ``imle``), each built as ``Cls(polytope, **options)`` and called as
  ``layer(scores, lengths)``.

The estimator names come from ``spigot.autodiff.ESTIMATORS`` when the library defines that
dict, and otherwise from the two layers every version has (:class:`~spigot.autodiff.StraightThrough`
and :class:`~spigot.autodiff.SPIGOT`), so that new estimators show up here with no change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from spigot import autodiff
from spigot._batch import Array
from spigot.autodiff import SPIGOT, StraightThrough
from spigot.polytopes.base import Polytope

#: The baseline whose intermediate model is not trained by the downstream loss.
PIPELINE = "pipeline"

#: The order methods take in every table; names the library adds later go after these.
METHOD_ORDER = (
    PIPELINE,
    "ste-i",
    "ste-s",
    "spigot",
    "spigot-ce",
    "spigot-eg",
    "sparsemap",
    "marginals",
    "perturbed",
    "imle",
)

#: Estimators of every library version, used when ``spigot.autodiff.ESTIMATORS`` is absent.
_BUILTIN_ESTIMATORS: dict[str, type[torch.nn.Module]] = {"ste-i": StraightThrough, "spigot": SPIGOT}


class FrozenArgmax(torch.nn.Module):
    """The pipeline's latent layer: the highest-scoring structure, with no gradient at all."""

    def __init__(self, polytope: Polytope) -> None:
        super().__init__()
        if not isinstance(polytope, Polytope):
            raise TypeError(
                f"polytope must be a spigot Polytope instance, got {type(polytope).__name__}"
            )
        self.polytope = polytope

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return self.polytope.map(scores.detach(), lengths)


def estimator_classes() -> dict[str, type[torch.nn.Module]]:
    """Estimator name -> layer class: ``spigot.autodiff.ESTIMATORS`` if defined, else the built-ins."""
    registry = getattr(autodiff, "ESTIMATORS", None)
    return dict(registry) if registry is not None else dict(_BUILTIN_ESTIMATORS)


def available_methods() -> tuple[str, ...]:
    """Every method an experiment can compare, in table order (``pipeline`` first)."""
    return ordered_methods([PIPELINE, *estimator_classes()])


def check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """Validate method names and return them in table order, without repeats.

    Raises
    ------
    ValueError
        A name is unknown (the message lists the known ones), or none is given.
    """
    methods = list(methods)
    known = available_methods()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known methods: {', '.join(known)}")
    if not methods:
        raise ValueError(f"methods must name at least one of: {', '.join(known)}")
    return ordered_methods(methods)


def trains_intermediate(method: str) -> bool:
    """Whether the downstream loss trains the intermediate model (every method but ``pipeline``)."""
    return method != PIPELINE


def build_latent_layer(method: str, polytope: Polytope, **options: Any) -> torch.nn.Module:
    """The latent layer of ``method`` on ``polytope``.

    Parameters
    ----------
    method
        A name from :func:`available_methods`.
    polytope
        The structure the layer chooses from.
    **options
        Options of the estimator (``eta=...``, ``solver=...``); ``pipeline`` takes none.

    Raises
    ------
    ValueError
        Unknown method, or options given to ``pipeline``.
    spigot.UnsupportedOperation
        The estimator needs a capability the polytope lacks (raised by the estimator).
    """
    check_methods([method])
    if method == PIPELINE:
        if options:
            raise ValueError(f"the pipeline method takes no options, got {sorted(options)}")
        return FrozenArgmax(polytope)
    return estimator_classes()[method](polytope, **options)


def ordered_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """``methods`` without repeats, in table order (:data:`METHOD_ORDER`, then by name)."""
    unique = dict.fromkeys(methods)
    rank = {name: i for i, name in enumerate(METHOD_ORDER)}
    return tuple(sorted(unique, key=lambda m: (rank.get(m, len(rank)), m)))
