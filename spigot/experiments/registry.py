"""Experiments and their registry: what ``spigot experiment NAME`` can run.

An experiment is a subclass of :class:`Experiment` registered with :func:`register_experiment`.
It declares its metrics (the first is the one models are selected on), its configuration
presets (``full`` for the published tables, ``demo`` for ``spigot demo``), and how to run one
method with one seed. Everything around that (seeds, checkpoints, resuming, the table,
``docs/results.md``, ``torchrun``) is the runner's job (:mod:`spigot.experiments.runner`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from spigot.experiments.methods import available_methods
from spigot.experiments.results import Metric

#: The configuration presets every experiment provides.
PRESETS = ("full", "demo")

#: Sizes of the dev grid :func:`~spigot.experiments.run_experiment` can tune on: none, a reduced
#: grid (what fits a small machine), or the full one; each experiment defines its grids.
GRID_SIZES = ("none", "reduced", "full")

_REGISTRY: dict[str, type[Experiment]] = {}
E = TypeVar("E", bound="type[Experiment]")


class Experiment(ABC):
    """One task on which the methods are compared.

    Class attributes
    ----------------
    name
        The name on the command line (lower case, dashes).
    title
        A one-line description, shown by ``--help`` and atop the results section.
    metrics
        The table's columns.
    diagnostics
        Further values each run reports (see :mod:`spigot.experiments.diagnostics`), shown in a
        second table under the results; none by default.
    variants
        Named presets beyond :data:`PRESETS` that this experiment accepts (other regimes).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    diagnostics: ClassVar[tuple[Metric, ...]] = ()
    variants: ClassVar[tuple[str, ...]] = ()
    #: The metric key a dev grid selects settings on (a dev-set score, higher is better).
    dev_metric: ClassVar[str] = "dev_accuracy"

    @abstractmethod
    def config(self, preset: str = "full") -> Any:
        """The configuration (a frozen dataclass) of ``preset``, one of :data:`PRESETS`."""

    @abstractmethod
    def run(
        self, method: str, seed: int, config: Any, workdir: Path, progress: bool
    ) -> dict[str, float]:
        """Train and evaluate ``method`` with ``seed``; return a value for every metric key.

        ``workdir`` is this run's own folder (for its checkpoint). The run must be
        deterministic given ``(method, seed, config)``, resume from its checkpoint when there
        is one, and raise :class:`spigot.UnsupportedOperation` when the method cannot run on
        the experiment's polytope.
        """

    def grid(self, config: Any, size: str) -> dict[str, tuple[dict[str, Any], ...]]:
        """Per method, the settings a dev grid of ``size`` (see :data:`GRID_SIZES`) tries.

        A setting maps configuration fields to values, and ``"option:NAME"`` to the value of
        the method's estimator option ``NAME`` (see :meth:`with_setting`). A method absent from
        the result runs its one configured setting. Default: no grid.
        """
        return {}

    def with_setting(self, config: Any, method: str, setting: dict[str, Any]) -> Any:
        """``config`` with ``setting`` applied for ``method`` (fields replaced, estimator options set)."""
        fields = {k: v for k, v in setting.items() if not k.startswith("option:")}
        options = {k.removeprefix("option:"): v for k, v in setting.items() if k.startswith("option:")}
        if options:
            merged = {name: dict(values) for name, values in config.estimator_options.items()}
            merged.setdefault(method, {}).update(options)
            fields["estimator_options"] = merged
        return dataclasses.replace(config, **fields)

    def methods(self) -> tuple[str, ...]:
        """The methods compared by default: every one the library has."""
        return available_methods()

    def describe(self, config: Any) -> str:
        """A one-paragraph description of ``config`` for the results section."""
        fields = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(config).items())
        return f"{self.title}. Configuration: {fields}."


def config_id(config: Any, fields: Iterable[str] | None = None) -> str:
    """A short, stable digest of a dataclass configuration (names the run folder).

    With ``fields``, the digest of those fields only: what a computation depends on (a
    parser's pre-training, say), so that configurations differing elsewhere share its result.

    Raises
    ------
    ValueError
        A name in ``fields`` is not a field of ``config``.
    """
    settings = dataclasses.asdict(config)
    if fields is not None:
        names = tuple(fields)
        unknown = sorted(set(names) - set(settings))
        if unknown:
            raise ValueError(f"fields must name fields of {type(config).__name__}, got unknown {unknown}")
        settings = {name: settings[name] for name in names}
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def check_preset(preset: str, variants: tuple[str, ...] = ()) -> str:
    """Validate a preset name: one of :data:`PRESETS` or of an experiment's ``variants``."""
    known = PRESETS + tuple(variants)
    if preset not in known:
        raise ValueError(f"preset must be one of {known}, got {preset!r}")
    return preset


def all_presets() -> tuple[str, ...]:
    """:data:`PRESETS` and every registered experiment's variants."""
    variants = (v for name in sorted(_REGISTRY) for v in _REGISTRY[name].variants)
    return tuple(dict.fromkeys((*PRESETS, *variants)))


def register_experiment(cls: E) -> E:
    """Class decorator: make ``cls`` available to :func:`get_experiment` and the CLI."""
    if not (isinstance(cls, type) and issubclass(cls, Experiment)):
        raise TypeError(f"register_experiment expects an Experiment subclass, got {cls!r}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"an experiment named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available_experiments() -> tuple[str, ...]:
    """Names of the registered experiments, sorted."""
    return tuple(sorted(_REGISTRY))


def get_experiment(name: str) -> Experiment:
    """A fresh instance of the experiment called ``name``.

    Raises
    ------
    ValueError
        No experiment has that name (the message lists the known ones).
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown experiment {name!r}; known experiments: {', '.join(available_experiments())}"
        )
    return _REGISTRY[name]()
