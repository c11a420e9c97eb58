"""The method table: how each compared method turns latent scores into a structure.

Every experiment compares the same methods, named as in the papers:

- ``pipeline``: the intermediate model is fixed (pre-trained or fitted on its own) and only the
  downstream model learns; its argmax passes no gradient back;
- baselines that only some experiments define, listed in their ``methods()`` (no experiment
  runs them by default): ``no-tree`` (the same encoder and classifier reading no structure) and
  ``chain`` (a fixed, input-independent structure: the left-to-right chain);
- one name per estimator layer of :mod:`spigot.autodiff` (``ste-i``, ``spigot``, and, where the
  library has them, ``ste-s``, ``spigot-ce``, ``spigot-eg``, ``sparsemap``, ``marginals``,
  ``perturbed``, ``imle``), each built as ``Cls(polytope, **options)`` and called as
  ``layer(scores, lengths)`` (:func:`latent_structure` also hands a layer that asks for it, such as
  ``spigot-ce-relaxed``, the downstream loss as a function of the structure).

The estimator names come from ``spigot.autodiff.ESTIMATORS`` when the library defines that
dict, and otherwise from the two layers every version has (:class:`~spigot.autodiff.StraightThrough`
and :class:`~spigot.autodiff.SPIGOT`), so that new estimators show up here with no change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from spigot import autodiff
from spigot._batch import Array
from spigot.autodiff import SPIGOT, StraightThrough
from spigot.polytopes.base import Polytope

#: The baseline whose intermediate model is not trained by the downstream loss.
PIPELINE = "pipeline"

#: The baseline that reads no structure at all (the same encoder and classifier without it).
NO_TREE = "no-tree"

#: The baseline that reads a fixed, input-independent structure (the left-to-right chain).
CHAIN = "chain"

#: Baselines only some experiments define: valid method names, not in :func:`available_methods`.
EXPERIMENT_BASELINES = (NO_TREE, CHAIN)

#: Every baseline, in the order the paired differences look for the one to compare against.
BASELINES = (PIPELINE, *EXPERIMENT_BASELINES)

#: The order methods take in every table; names the library adds later go after these.
METHOD_ORDER = (
    PIPELINE,
    NO_TREE,
    CHAIN,
    "ste-i",
    "ste-s",
    "spigot",
    "spigot-ce",
    "spigot-eg",
    "spigot-ce-relaxed",
    "spigot-eg-relaxed",
    "sparsemap",
    "marginals",
    "perturbed",
    "imle",
)

#: Estimators of every library version, used when ``spigot.autodiff.ESTIMATORS`` is absent.
_BUILTIN_ESTIMATORS: dict[str, type[torch.nn.Module]] = {"ste-i": StraightThrough, "spigot": SPIGOT}


class FrozenArgmax(torch.nn.Module):
    """The latent layer of a fixed structure (``pipeline``, ``chain``): the highest-scoring
    structure, with no gradient at all."""

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
    """The methods every experiment compares by default, in table order (``pipeline`` first):
    the pipeline and every estimator (not the :data:`EXPERIMENT_BASELINES`)."""
    return ordered_methods([PIPELINE, *estimator_classes()])


def known_methods() -> tuple[str, ...]:
    """Every valid method name: :func:`available_methods` and the :data:`EXPERIMENT_BASELINES`."""
    return ordered_methods([*available_methods(), *EXPERIMENT_BASELINES])


def check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """Validate method names (see :func:`known_methods`) and return them in table order, without repeats.

    Raises
    ------
    ValueError
        A name is unknown (the message lists the known ones), or none is given.
    """
    methods = list(methods)
    known = known_methods()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known methods: {', '.join(known)}")
    if not methods:
        raise ValueError(f"methods must name at least one of: {', '.join(known)}")
    return ordered_methods(methods)


def trains_intermediate(method: str) -> bool:
    """Whether the downstream loss trains the intermediate model (every method but the
    :data:`BASELINES`)."""
    return method not in BASELINES


def build_latent_layer(method: str, polytope: Polytope, **options: Any) -> torch.nn.Module:
    """The latent layer of ``method`` on ``polytope``.

    Parameters
    ----------
    method
        A name from :func:`available_methods`.
    polytope
        The structure the layer chooses from.
    **options
        Options of the estimator (``eta=...``, ``solver=...``); ``pipeline`` and ``chain``
        take none.

    Raises
    ------
    ValueError
        Unknown method, options given to ``pipeline`` or ``chain``, or ``no-tree`` (which reads
        no structure, so has no latent layer).
    spigot.UnsupportedOperation
        The estimator needs a capability the polytope lacks (raised by the estimator).
    """
    check_methods([method])
    if method == NO_TREE:
        raise ValueError(f"the {NO_TREE} baseline reads no structure, so it has no latent layer")
    if method in (PIPELINE, CHAIN):
        if options:
            raise ValueError(f"the {method} method takes no options, got {sorted(options)}")
        return FrozenArgmax(polytope)
    return estimator_classes()[method](polytope, **options)


def latent_structure(
    layer: torch.nn.Module,
    scores: torch.Tensor,
    lengths: torch.Tensor | None = None,
    downstream: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``layer(scores, lengths)``, handing ``downstream`` to a layer that asks for it.

    A layer whose ``needs_downstream`` attribute is true (``spigot-ce-relaxed``,
    ``spigot-eg-relaxed``) evaluates the downstream loss at a second point, so it takes
    ``downstream``: the training loss as a function of the structure (``structure -> scalar``,
    the structure shaped like ``scores``). Other layers ignore it.

    Raises
    ------
    spigot.UnsupportedOperation
        The layer needs ``downstream`` and none is given (raised by the layer).
    """
    if getattr(layer, "needs_downstream", False):
        return layer(scores, lengths, downstream=downstream)
    return layer(scores, lengths)


def ordered_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """``methods`` without repeats, in table order (:data:`METHOD_ORDER`, then by name)."""
    unique = dict.fromkeys(methods)
    rank = {name: i for i, name in enumerate(METHOD_ORDER)}
    return tuple(sorted(unique, key=lambda m: (rank.get(m, len(rank)), m)))
