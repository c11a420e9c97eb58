"""``clusters``: the synthetic latent-cluster task of Mihaylova, Niculae and Martins (2020).

Data (their generative story and sizes -- 100 features, 3 clusters, 5000 training examples --
regenerated here from a fixed seed): ``K`` cluster centres
:math:`c_k \\sim \\mathcal{N}(0, \\sigma_c^2 I_d)` and ``K`` linear rules
:math:`w_k \\sim \\mathcal{N}(0, I_d)`; each example draws a cluster :math:`z` uniformly, an input
:math:`x \\sim \\mathcal{N}(c_z, \\sigma_x^2 I_d)` and the label
:math:`y = [\\langle w_z, x\\rangle > b_z]`, where :math:`b_z` is the mean of
:math:`\\langle w_z, x\\rangle` over the training examples of cluster :math:`z` (so both labels
are about equally frequent in every cluster). The label depends on which cluster ``x`` is in, but
the cluster is never observed.

Model: an encoder :math:`s = W_s x` scores the ``K`` clusters; the latent layer picks one,
:math:`z = \\operatorname{argmax}_{z \\in \\Delta^K} \\langle s, z\\rangle` (a one-hot vertex of the
:class:`~spigot.polytopes.Simplex`); a bilinear decoder scores the two labels from :math:`z` and
:math:`[x; 1]`, so each cluster has its own linear rule and threshold. The methods differ only in
how the training loss reaches :math:`W_s` through the argmax; at test time every method takes
the argmax. The ``pipeline`` baseline instead clusters the training inputs with k-means first and
keeps that assignment fixed (cluster, then classify).

Reported: test accuracy of the model with the best dev accuracy, its dev accuracy, and the
V-measure of its test-set cluster choices against the true clusters; the diagnostics of
:mod:`spigot.experiments.diagnostics` on 256 training examples at initialisation (``start_``) and
after training (``end_``).

The preset ``mihaylova`` follows Mihaylova et al.'s protocol: full-batch training (each update
sees the whole training set), until the dev accuracy stops improving, the SPIGOT family with a
step of length 1 per example (``step="normalized"``, ``eta=1``), the learning rate of each
method from the dev grid (``spigot experiment clusters --preset mihaylova --grid reduced``),
and, as the upper bound, the same classifier given the gold clusters (``gold_accuracy``, with
the pipeline's runs).

The preset ``fixed-step`` is the demo preset with the step of the reference code of Mihaylova et
al. for SPIGOT-CE/EG, at the argmax and at the relaxed point: proportional to the gradient
(``step="fixed"``), with ``eta`` equal to the batch size, a unit step on each example's own loss
(the training loss is the batch mean). With the default normalized step the two forms of
SPIGOT-CE/EG give the same gradient here: the decoder is linear in the cluster and the label
binary, so the downstream gradient at any point is a multiple of the same vector with the same
sign; with a fixed step its length differs between the argmax and the softmax.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spigot.experiments.diagnostics import DIAGNOSTICS, latent_diagnostics
from spigot.experiments.kmeans import kmeans
from spigot.experiments.methods import PIPELINE, build_latent_layer, latent_structure
from spigot.experiments.metrics import accuracy, v_measure
from spigot.experiments.registry import Experiment, check_preset, register_experiment
from spigot.experiments.reproducibility import seed_everything
from spigot.experiments.results import Metric
from spigot.experiments.training import train
from spigot.experiments.tuning import learning_rate_grid
from spigot.polytopes import Simplex


@dataclass(frozen=True)
class ClustersConfig:
    """Settings of the ``clusters`` experiment.

    Attributes
    ----------
    n_features, n_clusters
        Input dimension ``d`` and number of latent clusters ``K``.
    n_train, n_dev, n_test
        Examples per split.
    cluster_std, data_std
        Spread of the cluster centres and of the inputs around them.
    data_seed
        Seed of the data (fixed across training seeds).
    epochs, batch_size, lr
        Adam training schedule (``epochs`` at most, with ``patience``).
    patience
        Stop after this many epochs without a better dev accuracy (``None``: every epoch).
    gold_bound
        With the pipeline's runs, also train the classifier on the gold clusters and report its
        test accuracy as ``gold_accuracy`` (the upper bound of every method).
    estimator_options
        Options passed to the latent layer of a method, by method name.
    """

    n_features: int = 100
    n_clusters: int = 3
    n_train: int = 5000
    n_dev: int = 1000
    n_test: int = 1000
    cluster_std: float = 1.0
    data_std: float = 0.1
    data_seed: int = 2020
    epochs: int = 100
    batch_size: int = 50
    lr: float = 0.01
    estimator_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    patience: int | None = None
    gold_bound: bool = False


@dataclass(frozen=True)
class ClusterSplit:
    """One split: inputs ``x`` (N, d), labels ``y`` (N,) in {0, 1}, true clusters ``z`` (N,)."""

    x: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor


def make_cluster_data(config: ClustersConfig) -> dict[str, ClusterSplit]:
    """The ``train``, ``dev`` and ``test`` splits drawn from ``config.data_seed``."""
    rng = np.random.default_rng(config.data_seed)
    k, d = config.n_clusters, config.n_features
    centres = config.cluster_std * rng.standard_normal((k, d))
    rules = rng.standard_normal((k, d))
    sizes = {"train": config.n_train, "dev": config.n_dev, "test": config.n_test}
    draws = {}
    for split, n in sizes.items():
        z = rng.integers(0, k, size=n)
        x = centres[z] + config.data_std * rng.standard_normal((n, d))
        draws[split] = (x, z, np.einsum("nd,nd->n", rules[z], x))
    _, z_train, score_train = draws["train"]
    thresholds = np.array(
        [score_train[z_train == c].mean() if np.any(z_train == c) else 0.0 for c in range(k)]
    )
    return {
        split: ClusterSplit(
            torch.as_tensor(x, dtype=torch.float32),
            torch.as_tensor(score > thresholds[z], dtype=torch.int64),
            torch.as_tensor(z, dtype=torch.int64),
        )
        for split, (x, z, score) in draws.items()
    }


class NearestCentroid(torch.nn.Module):
    """Fixed cluster scores :math:`s_k = -\\|x - c_k\\|^2` (the pipeline's k-means encoder)."""

    def __init__(self, centroids: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("centroids", centroids.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(x, self.centroids).square()


class LatentClusterClassifier(torch.nn.Module):
    """Encoder -> latent cluster on the simplex -> bilinear classifier of ``[x; 1]``.

    In training mode the latent layer (an estimator) chooses the cluster; in eval mode the plain
    argmax does, for every method alike. ``output_loss`` (the training loss as a function of
    the logits) lets a latent layer that evaluates the decoder at a second point (such as
    ``spigot-ce-relaxed``) compute the loss of any cluster assignment.
    """

    def __init__(
        self, encoder: torch.nn.Module, latent: torch.nn.Module, n_features: int, n_clusters: int
    ) -> None:
        super().__init__()
        self.polytope = Simplex()
        self.encoder = encoder
        self.latent = latent
        self.decoder = torch.nn.Bilinear(n_clusters, n_features + 1, 2)

    def forward(
        self, x: torch.Tensor, output_loss: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Label logits ``(N, 2)`` and the chosen clusters ``(N, K)`` (one-hot in eval mode)."""
        scores = self.encoder(x)
        inputs = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        if not self.training:
            z = self.polytope.map(scores)
        else:
            downstream = None if output_loss is None else (lambda c: output_loss(self.decoder(c, inputs)))
            z = latent_structure(self.latent, scores, None, downstream)
        return self.decoder(z, inputs), z


def build_model(
    method: str, config: ClustersConfig, train_x: torch.Tensor, seed: int
) -> LatentClusterClassifier:
    """The model of ``method``; the pipeline's encoder is k-means on ``train_x``, fitted with ``seed``."""
    polytope = Simplex()
    if method == PIPELINE:
        encoder: torch.nn.Module = NearestCentroid(kmeans(train_x, config.n_clusters, seed=seed))
    else:
        encoder = torch.nn.Linear(config.n_features, config.n_clusters)
    latent = build_latent_layer(method, polytope, **config.estimator_options.get(method, {}))
    return LatentClusterClassifier(encoder, latent, config.n_features, config.n_clusters)


#: The preset of Mihaylova et al.'s protocol.
MIHAYLOVA = "mihaylova"

#: The demo preset with a step proportional to the gradient for SPIGOT-CE/EG (both forms).
FIXED_STEP = "fixed-step"

#: The estimators the ``fixed-step`` preset sets the step of.
PULLED_BACK = ("spigot-ce", "spigot-eg", "spigot-ce-relaxed", "spigot-eg-relaxed")


@register_experiment
class ClustersExperiment(Experiment):
    """Latent cluster choice on the simplex (Mihaylova, Niculae and Martins, 2020)."""

    name = "clusters"
    title = "Synthetic latent clusters (Mihaylova, Niculae and Martins 2020): latent choice on the simplex"
    metrics = (
        Metric("accuracy", "test accuracy (%)"),
        Metric("dev_accuracy", "dev accuracy (%)"),
        Metric("v_measure", "cluster V-measure", percent=False, digits=3),
    )

    diagnostics = (
        Metric("gold_accuracy", "gold-cluster classifier test accuracy (%)"),
        *(
            Metric(f"{when}_{key}", f"{key} ({when})", percent=False, digits=3)
            for when in ("start", "end")
            for key in DIAGNOSTICS
        ),
    )
    variants = (MIHAYLOVA, FIXED_STEP)

    def config(self, preset: str = "full") -> ClustersConfig:
        preset = check_preset(preset, self.variants)
        if preset == "demo":
            return ClustersConfig(epochs=50)
        if preset == FIXED_STEP:
            step = {"step": "fixed", "eta": float(ClustersConfig.batch_size)}
            return ClustersConfig(epochs=50, estimator_options={name: dict(step) for name in PULLED_BACK})
        if preset == MIHAYLOVA:
            return ClustersConfig(
                epochs=400,
                batch_size=1000,
                patience=50,
                gold_bound=True,
                estimator_options={
                    name: {"step": "normalized", "eta": 1.0} for name in ("spigot", "spigot-ce", "spigot-eg")
                },
            )
        return ClustersConfig()

    def grid(self, config: ClustersConfig, size: str) -> dict[str, tuple[dict[str, Any], ...]]:
        """The learning rate times each method's own knob
        (:func:`~spigot.experiments.tuning.learning_rate_grid`)."""
        return learning_rate_grid(self.methods(), "lr", config.lr, config.estimator_options, size)

    def describe(self, config: ClustersConfig) -> str:
        return (
            f"{self.title}. {config.n_clusters} clusters in {config.n_features} dimensions "
            f"(centre std {config.cluster_std}, input std {config.data_std}, data seed "
            f"{config.data_seed}); {config.n_train} / {config.n_dev} / {config.n_test} "
            f"train / dev / test examples; Adam (lr {config.lr}), batches of {config.batch_size}"
            f"{' (full batch)' if config.batch_size >= config.n_train else ''}, "
            f"{'at most ' if config.patience else ''}{config.epochs} epochs"
            + (f", stopped after {config.patience} epochs without a better dev accuracy" if config.patience else "")
            + ", "
            f"the epoch with the best dev accuracy kept; test-time "
            f"decisions by argmax for every method; the pipeline clusters the inputs with "
            f"k-means and keeps the clusters fixed."
            + (
                f" Estimator options: {config.estimator_options}."
                if config.estimator_options
                else ""
            )
        )

    def run(
        self, method: str, seed: int, config: ClustersConfig, workdir: Path, progress: bool
    ) -> dict[str, float]:
        data = make_cluster_data(config)
        seed_everything(seed)
        model = build_model(method, config, data["train"].x, seed)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=config.lr)
        train_set, dev, test = data["train"], data["dev"], data["test"]
        loss = torch.nn.CrossEntropyLoss(reduction="none")

        def example_losses(net: torch.nn.Module, indices: torch.Tensor) -> torch.Tensor:
            labels = train_set.y[indices]

            def batch_loss(logits: torch.Tensor) -> torch.Tensor:  # the mean over the batch, as trained
                return loss(logits, labels).mean()

            logits, _ = net(train_set.x[indices], output_loss=batch_loss)
            return loss(logits, labels)

        def dev_accuracy(net: torch.nn.Module) -> float:
            logits, _ = net(dev.x)
            return accuracy(logits.argmax(dim=1), dev.y)

        start = cluster_diagnostics(model, train_set, config)
        result = train(
            model,
            optimizer,
            example_losses,
            n_examples=len(train_set.y),
            batch_size=config.batch_size,
            epochs=config.epochs,
            evaluate=dev_accuracy,
            seed=seed,
            checkpoint=workdir / "checkpoint.pt",
            progress=progress,
            description=f"clusters {method} seed {seed}",
            patience=config.patience,
        )
        end = cluster_diagnostics(model, train_set, config)
        with torch.no_grad():
            logits, z = model(test.x)
        values = {
            "accuracy": accuracy(logits.argmax(dim=1), test.y),
            "dev_accuracy": result.best_score,
            "v_measure": v_measure(test.z, z.argmax(dim=1)),
            "epochs": float(len(result.history)),
            **{f"start_{k}": v for k, v in start.items()},
            **{f"end_{k}": v for k, v in end.items()},
        }
        if config.gold_bound and method == PIPELINE:
            values["gold_accuracy"] = gold_cluster_accuracy(config, data, seed, workdir, progress)
        return values


#: Training examples the diagnostics are measured on.
DIAGNOSTIC_EXAMPLES = 256


def cluster_diagnostics(
    model: LatentClusterClassifier, split: ClusterSplit, config: ClustersConfig
) -> dict[str, float]:
    """:func:`~spigot.experiments.diagnostics.latent_diagnostics` of ``model`` on ``split``'s
    first examples, with the loss reduced as in training (a mean over the batch)."""
    x, y = split.x[:DIAGNOSTIC_EXAMPLES], split.y[:DIAGNOSTIC_EXAMPLES]
    inputs = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    with torch.no_grad():
        scores = model.encoder(x)

    def loss(z: torch.Tensor) -> torch.Tensor:
        logits = model.decoder(z, inputs)
        return torch.nn.functional.cross_entropy(logits, y, reduction="sum") / min(config.batch_size, len(y))

    return latent_diagnostics(scores, None, model.polytope, model.latent, loss)


class GoldClusterClassifier(torch.nn.Module):
    """The classifier of :class:`LatentClusterClassifier` given the true cluster (no encoder)."""

    def __init__(self, n_features: int, n_clusters: int) -> None:
        super().__init__()
        self.n_clusters = n_clusters
        self.decoder = torch.nn.Bilinear(n_clusters, n_features + 1, 2)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(z, self.n_clusters).to(x.dtype)
        return self.decoder(onehot, torch.cat([x, torch.ones_like(x[:, :1])], dim=1))


def gold_cluster_accuracy(
    config: ClustersConfig, data: dict[str, ClusterSplit], seed: int, workdir: Path, progress: bool
) -> float:
    """Test accuracy of the classifier trained on the gold clusters, with ``config``'s schedule."""
    seed_everything(seed)
    model = GoldClusterClassifier(config.n_features, config.n_clusters)
    train_set, dev, test = data["train"], data["dev"], data["test"]

    def example_losses(net: torch.nn.Module, indices: torch.Tensor) -> torch.Tensor:
        logits = net(train_set.x[indices], train_set.z[indices])
        return torch.nn.functional.cross_entropy(logits, train_set.y[indices], reduction="none")

    train(
        model,
        torch.optim.Adam(model.parameters(), lr=config.lr),
        example_losses,
        n_examples=len(train_set.y),
        batch_size=config.batch_size,
        epochs=config.epochs,
        evaluate=lambda net: accuracy(net(dev.x, dev.z).argmax(dim=1), dev.y),
        seed=seed,
        checkpoint=workdir / "gold-checkpoint.pt",
        progress=progress,
        description=f"clusters gold clusters seed {seed}",
        patience=config.patience,
    )
    with torch.no_grad():
        return accuracy(model(test.x, test.z).argmax(dim=1), test.y)
