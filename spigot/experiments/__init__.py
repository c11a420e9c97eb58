"""Experiments: the methods compared on tasks with a latent structure.

- :mod:`~spigot.experiments.data`: data sets read from installed packages;
- :mod:`~spigot.experiments.methods`: the method table (``pipeline`` and every estimator);
- :func:`train`: the training loop (seeded, checkpointed, tqdm, DistributedDataParallel);
- :func:`run_experiment`: methods x seeds -> a mean ± std table, and ``docs/results.md``;
- registered experiments: ``clusters`` (:mod:`~spigot.experiments.clusters`), ``sentiment``
  (:mod:`~spigot.experiments.sentiment`), ``parse-then-label``
  (:mod:`~spigot.experiments.parse_then_label`) and ``parse-then-emotion``
  (:mod:`~spigot.experiments.parse_then_emotion`);
- :mod:`~spigot.experiments.projection_study`: distance, certificate, feasibility and time of
  every solver against the exact projection (``spigot study``).
"""

from spigot.experiments import clusters as _clusters  # noqa: F401  (registers the experiment)
from spigot.experiments import parse_then_emotion as _parse_then_emotion  # noqa: F401  (registers)
from spigot.experiments import parse_then_label as _parse_then_label  # noqa: F401  (registers)
from spigot.experiments import sentiment as _sentiment  # noqa: F401  (registers the experiment)
from spigot.experiments.methods import (
    METHOD_ORDER,
    PIPELINE,
    FrozenArgmax,
    available_methods,
    build_latent_layer,
    check_methods,
    estimator_classes,
)
from spigot.experiments.registry import (
    PRESETS,
    Experiment,
    available_experiments,
    get_experiment,
    register_experiment,
)
from spigot.experiments.results import Metric, RunRecord, results_table, update_results_file
from spigot.experiments.runner import ExperimentReport, run_experiment
from spigot.experiments.training import TrainResult, train

__all__ = [
    "METHOD_ORDER",
    "PIPELINE",
    "PRESETS",
    "Experiment",
    "ExperimentReport",
    "FrozenArgmax",
    "Metric",
    "RunRecord",
    "TrainResult",
    "available_experiments",
    "available_methods",
    "build_latent_layer",
    "check_methods",
    "estimator_classes",
    "get_experiment",
    "register_experiment",
    "results_table",
    "run_experiment",
    "train",
    "update_results_file",
]
