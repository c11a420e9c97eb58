"""A tiny registered experiment for fast tests of the runner and the CLI.

``tiny-clusters`` is the ``clusters`` experiment on 60 training examples for 2 epochs: the same
code path, in well under a second per run.
"""

from __future__ import annotations

from spigot.experiments import register_experiment
from spigot.experiments.clusters import ClustersConfig, ClustersExperiment
from spigot.experiments.registry import check_preset

TINY = ClustersConfig(
    n_features=6, n_clusters=3, n_train=60, n_dev=20, n_test=20, epochs=2, batch_size=16
)


@register_experiment
class TinyClusters(ClustersExperiment):
    """``clusters`` shrunk to a toy size."""

    name = "tiny-clusters"
    title = "Tiny latent clusters (test fixture)"

    def config(self, preset: str = "full") -> ClustersConfig:
        check_preset(preset)
        return TINY if preset == "full" else ClustersConfig(**{**TINY.__dict__, "epochs": 1})
