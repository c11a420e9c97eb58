"""Tiny registered experiments for fast tests of the runner and the CLI.

``tiny-clusters`` is the ``clusters`` experiment on 60 training examples for 2 epochs, and
``tiny-sentiment`` the ``sentiment`` experiment on 24 short sentences for 1 epoch: the same code
paths, in well under a second per run.
"""

from __future__ import annotations

from spigot.experiments import register_experiment
from spigot.experiments.clusters import ClustersConfig, ClustersExperiment
from spigot.experiments.registry import check_preset
from spigot.experiments.sentiment import MovieReviewSubset, SentimentConfig, SentimentExperiment

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


TINY_SENTIMENT = SentimentConfig(
    data=MovieReviewSubset(max_words=6, n_train=24, n_dev=8, n_test=8),
    hidden_dim=4,
    arc_dim=4,
    gcn_dim=4,
    gcn_layers=1,
    epochs=1,
    batch_size=12,
)


@register_experiment
class TinySentiment(SentimentExperiment):
    """``sentiment`` on a few short sentences, one epoch."""

    name = "tiny-sentiment"
    title = "Tiny sentiment through a latent tree (test fixture)"

    def config(self, preset: str = "full") -> SentimentConfig:
        check_preset(preset)
        return TINY_SENTIMENT
