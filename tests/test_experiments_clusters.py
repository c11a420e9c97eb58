"""The clusters experiment: its data, its model, and short runs of each method."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spigot.experiments import get_experiment
from spigot.experiments.clusters import (
    ClustersConfig,
    LatentClusterClassifier,
    NearestCentroid,
    build_model,
    make_cluster_data,
)
from spigot.experiments.metrics import v_measure

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = ClustersConfig(
    n_features=10,
    n_clusters=3,
    n_train=300,
    n_dev=100,
    n_test=100,
    epochs=2,
    batch_size=25,
    lr=0.05,
)


def test_data_is_fixed_by_its_seed_and_follows_the_generative_story():
    data = make_cluster_data(SMALL)
    again = make_cluster_data(SMALL)
    other = make_cluster_data(dataclasses.replace(SMALL, data_seed=SMALL.data_seed + 1))
    assert torch.equal(data["train"].x, again["train"].x) and torch.equal(
        data["test"].y, again["test"].y
    )
    assert not torch.equal(data["train"].x, other["train"].x)
    for split, n in (("train", 300), ("dev", 100), ("test", 100)):
        part = data[split]
        assert part.x.shape == (n, 10) and part.y.shape == part.z.shape == (n,)
        assert set(part.y.tolist()) <= {0, 1} and set(part.z.tolist()) <= {0, 1, 2}
    train = data["train"]
    for cluster in range(3):
        members = train.z == cluster
        # thresholds are the per-cluster mean score: both labels occur in every cluster
        assert 0.2 < float(train.y[members].double().mean()) < 0.8
        # inputs sit near their cluster's centre (input std 0.1, centre std 1)
        spread = (train.x[members] - train.x[members].mean(0)).norm(dim=1).mean()
        assert spread < 0.5


def test_model_uses_the_estimator_in_training_and_the_argmax_in_eval():
    data = make_cluster_data(SMALL)
    torch.manual_seed(0)
    model = build_model("spigot", SMALL, data["train"].x, seed=0)
    assert isinstance(model, LatentClusterClassifier)
    model.train()
    logits, z = model(data["train"].x[:20])
    assert logits.shape == (20, 2) and torch.all(z.sum(1) == 1)
    torch.nn.functional.cross_entropy(logits, data["train"].y[:20]).backward()
    assert model.encoder.weight.grad is not None and model.encoder.weight.grad.abs().sum() > 0
    model.eval()
    _, z_eval = model(data["dev"].x)
    scores = model.encoder(data["dev"].x)
    assert torch.equal(z_eval.argmax(1), scores.argmax(1))


def test_pipeline_clusters_the_inputs_with_kmeans_and_trains_only_the_classifier():
    data = make_cluster_data(SMALL)
    model = build_model("pipeline", SMALL, data["train"].x, seed=0)
    assert isinstance(model.encoder, NearestCentroid)
    assert [name for name, _ in model.named_parameters()] == ["decoder.weight", "decoder.bias"]
    model.eval()
    _, z = model(data["test"].x)
    assert v_measure(data["test"].z, z.argmax(1)) == pytest.approx(1.0)  # well-separated clusters


@pytest.mark.parametrize("method", ["pipeline", "ste-i", "spigot"])
def test_a_short_run_reports_every_metric_and_resumes(method, tmp_path):
    experiment = get_experiment("clusters")
    metrics = experiment.run(method, 0, SMALL, tmp_path, progress=False)
    diagnostics = {m.key for m in experiment.diagnostics if m.key != "gold_accuracy"}
    if method == "pipeline":  # no gradient: no cosine with STE-I's
        diagnostics -= {"start_cosine_ste", "end_cosine_ste"}
    assert set(metrics) == {m.key for m in experiment.metrics} | diagnostics | {"epochs"}
    assert all(0.0 <= metrics[m.key] <= 1.0 for m in experiment.metrics)
    assert (metrics["start_zero_share"] == 1.0) == (method == "pipeline")
    assert (tmp_path / "checkpoint.pt").is_file()
    assert experiment.run(method, 0, SMALL, tmp_path, progress=False) == metrics


def test_training_learns_the_rules_and_straight_through_finds_the_clusters(tmp_path):
    config = dataclasses.replace(SMALL, epochs=30)
    experiment = get_experiment("clusters")
    pipeline = experiment.run("pipeline", 0, config, tmp_path / "pipeline", progress=False)
    assert pipeline["accuracy"] > 0.65 and pipeline["dev_accuracy"] > 0.65  # chance is about 0.5
    straight_through = experiment.run("ste-i", 0, config, tmp_path / "ste-i", progress=False)
    assert (
        straight_through["v_measure"] > 0.9
    )  # the latent clusters are learned from the labels alone


def test_the_gold_cluster_classifier_is_the_upper_bound(tmp_path):
    config = dataclasses.replace(SMALL, epochs=30, gold_bound=True, patience=5)
    result = get_experiment("clusters").run("pipeline", 0, config, tmp_path, progress=False)
    assert result["gold_accuracy"] > 0.6 and result["gold_accuracy"] >= result["accuracy"] - 0.1  # chance: 0.5
    assert result["epochs"] <= 30


def test_presets_and_description():
    experiment = get_experiment("clusters")
    full, demo = experiment.config("full"), experiment.config("demo")
    assert (full.n_features, full.n_clusters, full.n_train) == (100, 3, 5000)
    assert demo.epochs < full.epochs
    protocol = experiment.config("mihaylova")
    assert protocol.batch_size >= 1000 and protocol.patience and protocol.gold_bound
    assert protocol.estimator_options["spigot"] == {"step": "normalized", "eta": 1.0}
    assert "batches of 1000" in experiment.describe(protocol)
    assert "(full batch)" in experiment.describe(dataclasses.replace(protocol, batch_size=protocol.n_train))
    assert "k-means" in experiment.describe(
        full
    ) and "3 clusters in 100 dimensions" in experiment.describe(full)


def test_the_fixed_step_preset_sets_the_step_of_both_forms_of_spigot_ce_and_eg():
    experiment = get_experiment("clusters")
    fixed, demo = experiment.config("fixed-step"), experiment.config("demo")
    assert dataclasses.replace(fixed, estimator_options={}) == demo
    for name in ("spigot-ce", "spigot-eg", "spigot-ce-relaxed", "spigot-eg-relaxed"):
        assert fixed.estimator_options[name] == {"step": "fixed", "eta": 50.0}
    assert "'step': 'fixed'" in experiment.describe(fixed)


@pytest.mark.parametrize("kind", ["ce", "eg"])
def test_the_relaxed_point_gets_the_decoders_loss_and_matches_the_argmax_form_under_the_normalized_step(
    kind, tmp_path
):
    # a decoder linear in the cluster with a binary label: the gradient at any point has the same
    # direction, so the normalized step makes the two forms equal; a fixed step separates them
    experiment = get_experiment("clusters")
    at_argmax = experiment.run(f"spigot-{kind}", 0, SMALL, tmp_path / "argmax", progress=False)
    relaxed = experiment.run(f"spigot-{kind}-relaxed", 0, SMALL, tmp_path / "relaxed", progress=False)
    assert relaxed == pytest.approx(at_argmax, abs=1e-6)
    options = {"step": "fixed", "eta": 25.0}
    fixed = dataclasses.replace(
        SMALL, estimator_options={f"spigot-{kind}": options, f"spigot-{kind}-relaxed": options}
    )
    data = make_cluster_data(fixed)
    x, y = data["train"].x[:25], data["train"].y[:25]
    grads = []
    for method in (f"spigot-{kind}", f"spigot-{kind}-relaxed"):
        torch.manual_seed(0)
        model = build_model(method, fixed, data["train"].x, seed=0).train()

        def mean_loss(logits: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(logits, y)

        logits, _ = model(x, output_loss=mean_loss)
        mean_loss(logits).backward()
        grads.append(model.encoder.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
