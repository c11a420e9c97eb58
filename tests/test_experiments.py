"""The experiment framework: methods table, metrics, k-means, training loop, results, runner."""

from __future__ import annotations

import json

import pytest
import torch

import experiment_fixtures  # noqa: F401  (registers tiny-clusters)
import spigot
from spigot import Simplex, UnsupportedOperation
from spigot.experiments import (
    PIPELINE,
    FrozenArgmax,
    Metric,
    RunRecord,
    available_experiments,
    available_methods,
    build_latent_layer,
    check_methods,
    estimator_classes,
    get_experiment,
    results_table,
    run_experiment,
    train,
    update_results_file,
)
from spigot.experiments.kmeans import assign, kmeans
from spigot.experiments.metrics import accuracy, v_measure
from spigot.experiments.reproducibility import batch_order, seed_everything
from spigot.experiments.results import format_duration
from spigot.experiments.training import batch_loss


# ---------------------------------------------------------------- methods
def test_method_table_without_the_estimator_registry(monkeypatch):
    monkeypatch.delattr(spigot.autodiff, "ESTIMATORS", raising=False)
    assert available_methods() == ("pipeline", "ste-i", "spigot")
    assert isinstance(build_latent_layer("spigot", Simplex(), eta=0.5), spigot.SPIGOT)
    assert isinstance(build_latent_layer("ste-i", Simplex()), spigot.StraightThrough)
    assert isinstance(build_latent_layer("pipeline", Simplex()), FrozenArgmax)


class _Marginal(torch.nn.Module):
    def __init__(self, polytope, temperature=1.0):
        super().__init__()
        self.polytope, self.temperature = polytope, temperature

    def forward(self, scores, lengths=None):
        return self.polytope.marginals(scores / self.temperature, lengths)


def test_method_table_follows_the_estimator_registry(monkeypatch):
    registry = {
        "spigot": spigot.SPIGOT,
        "zz-new": _Marginal,
        "marginals": _Marginal,
        "ste-i": spigot.StraightThrough,
    }
    monkeypatch.setattr(spigot.autodiff, "ESTIMATORS", registry, raising=False)
    assert available_methods() == ("pipeline", "ste-i", "spigot", "marginals", "zz-new")
    assert estimator_classes() == registry
    layer = build_latent_layer("zz-new", Simplex(), temperature=2.0)
    assert isinstance(layer, _Marginal) and layer.temperature == 2.0


def test_method_names_are_checked():
    assert check_methods(["spigot", "pipeline", "spigot"]) == ("pipeline", "spigot")
    with pytest.raises(ValueError, match="unknown method.*'nope'.*known methods: pipeline"):
        check_methods(["nope"])
    with pytest.raises(ValueError, match="at least one"):
        check_methods([])
    with pytest.raises(ValueError, match="pipeline method takes no options"):
        build_latent_layer(PIPELINE, Simplex(), eta=1.0)


def test_pipeline_layer_is_the_argmax_without_gradient():
    scores = torch.tensor([[0.1, 2.0, -1.0]], requires_grad=True)
    z = FrozenArgmax(Simplex())(scores)
    assert z.tolist() == [[0.0, 1.0, 0.0]] and not z.requires_grad
    with pytest.raises(TypeError, match="polytope must be"):
        FrozenArgmax("simplex")


# ---------------------------------------------------------------- metrics and k-means
def test_accuracy_and_v_measure_known_values():
    assert accuracy(torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 1, 0])) == 0.5
    gold = torch.tensor([0, 0, 1, 1, 2, 2])
    assert v_measure(gold, torch.tensor([5, 5, 3, 3, 9, 9])) == pytest.approx(1.0)
    assert v_measure(gold, torch.zeros(6, dtype=torch.long)) == pytest.approx(0.0)
    # two gold classes split evenly across two clusters: no information either way
    assert v_measure(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0)
    # merging two of three equal classes: h = 1 - (2/3 ln 2) / ln 3, c = 1
    h = 1 - (2 / 3 * torch.log(torch.tensor(2.0))) / torch.log(torch.tensor(3.0))
    assert v_measure(gold, torch.tensor([0, 0, 0, 0, 1, 1])) == pytest.approx(
        float(2 * h / (1 + h))
    )
    with pytest.raises(ValueError, match="same shape"):
        accuracy(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="1-d label tensors"):
        v_measure(torch.zeros(2, 2), torch.zeros(2, 2))


def test_kmeans_recovers_separated_clusters_deterministically():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.arange(3).repeat(30)
    points = centres[labels] + 0.3 * torch.randn(90, 2, generator=generator)
    found = kmeans(points, 3, seed=1)
    assert v_measure(labels, assign(points, found)) == pytest.approx(1.0)
    assert torch.equal(found, kmeans(points, 3, seed=1))
    with pytest.raises(ValueError, match="at least k=5 points"):
        kmeans(points[:4], 5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        kmeans(points, 0)


# ---------------------------------------------------------------- training loop
def _regression_task(seed):
    """A linear model on 40 random points, its loss and a dev score (negative dev MSE)."""
    generator = torch.Generator().manual_seed(123)
    x, w = torch.randn(40, 3, generator=generator), torch.tensor([1.0, -2.0, 0.5])
    y = x @ w
    seed_everything(seed)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)

    def example_losses(net, indices):
        return (net(x[indices]).squeeze(1) - y[indices]).square()

    def dev(net):
        return -float((net(x).squeeze(1) - y).square().mean())

    return model, optimizer, example_losses, dev


def _without_seconds(history):
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]


def _train(seed, epochs, checkpoint=None):
    model, optimizer, losses, dev = _regression_task(seed)
    result = train(model, optimizer, losses, 40, 8, epochs, dev, seed, checkpoint, progress=False)
    return model, result


def test_training_is_deterministic_per_seed_and_keeps_the_best_dev_model():
    model_a, result_a = _train(seed=4, epochs=5)
    model_b, result_b = _train(seed=4, epochs=5)
    model_c, _ = _train(seed=5, epochs=5)
    assert torch.equal(model_a.weight, model_b.weight)
    assert _without_seconds(result_a.history) == _without_seconds(result_b.history)
    assert not torch.equal(model_a.weight, model_c.weight)
    devs = [h["dev"] for h in result_a.history]
    assert result_a.best_score == max(devs) and result_a.best_epoch == devs.index(max(devs)) + 1
    assert result_a.history[-1]["loss"] < result_a.history[0]["loss"]
    assert not model_a.training


def test_resuming_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    straight, straight_result = _train(seed=2, epochs=6)
    _, partial = _train(seed=2, epochs=3, checkpoint=tmp_path / "ckpt.pt")
    assert partial.resumed_from is None and len(partial.history) == 3
    resumed, resumed_result = _train(seed=2, epochs=6, checkpoint=tmp_path / "ckpt.pt")
    assert resumed_result.resumed_from == 3
    assert torch.equal(straight.weight, resumed.weight) and torch.equal(straight.bias, resumed.bias)
    assert _without_seconds(straight_result.history) == _without_seconds(resumed_result.history)


def test_training_rejects_bad_arguments():
    model, optimizer, losses, dev = _regression_task(0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        train(model, optimizer, losses, 40, 0, 1, dev, 0, progress=False)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        train(model, optimizer, losses, 40, 8, 1, dev, -1, progress=False)
    with pytest.raises(ValueError, match="dev evaluation returned nan"):
        train(model, optimizer, losses, 40, 8, 1, lambda net: float("nan"), 0, progress=False)
    diverged = lambda net, indices: losses(net, indices) * float("inf")  # noqa: E731
    with pytest.raises(FloatingPointError, match="training loss is NaN or infinite"):
        train(model, optimizer, diverged, 40, 8, 1, dev, 0, progress=False)


class _NaNGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a layer whose backward pass fails numerically."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


def test_training_stops_before_an_update_with_a_nan_gradient():
    model, optimizer, losses, dev = _regression_task(0)
    before = [p.detach().clone() for p in model.parameters()]
    broken = lambda net, indices: _NaNGradient.apply(losses(net, indices))  # noqa: E731
    with pytest.raises(FloatingPointError, match="a gradient is NaN or infinite"):
        train(model, optimizer, broken, 40, 8, 1, dev, 0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_batch_loss_is_the_mean_in_one_process_and_batches_cover_every_example():
    losses = torch.tensor([1.0, 2.0, 6.0])
    assert float(batch_loss(losses, 3)) == pytest.approx(3.0)
    order = batch_order(10, seed=3, epoch=1)
    assert sorted(order.tolist()) == list(range(10))
    assert torch.equal(order, batch_order(10, seed=3, epoch=1))
    assert not torch.equal(order, batch_order(10, seed=3, epoch=2))


# ---------------------------------------------------------------- results
def test_results_table_mean_std_and_unsupported_rows():
    metrics = (Metric("accuracy", "acc (%)"), Metric("v", "V", percent=False, digits=2))
    records = [
        RunRecord("spigot", 0, metrics={"accuracy": 0.80, "v": 0.5}, seconds=2.0),
        RunRecord("spigot", 1, metrics={"accuracy": 0.90, "v": 0.7}, seconds=4.0),
        RunRecord("pipeline", 0, metrics={"accuracy": 0.75, "v": 1.0}, seconds=1.0),
        RunRecord("marginals", 0, status="unsupported", message="no marginals | here"),
    ]
    lines = results_table(records, metrics).splitlines()
    assert lines[0] == "| method | acc (%) | V | seeds | s / run |"
    assert lines[2] == "| pipeline | 75.0 | 1.00 | 1 | 1.0 |"
    assert lines[3] == "| spigot | 85.0 ± 7.1 | 0.60 ± 0.14 | 2 | 3.0 |"
    assert lines[4].startswith("| marginals | n/a: no marginals / here |")


def test_run_record_round_trips_through_json(tmp_path):
    record = RunRecord("ste-i", 3, metrics={"accuracy": 0.5}, seconds=1.5, resumed=True)
    record.save(tmp_path / "r.json")
    assert RunRecord.load(tmp_path / "r.json") == record
    assert json.loads((tmp_path / "r.json").read_text())["method"] == "ste-i"


def test_results_file_sections_are_replaced_in_place(tmp_path):
    path = tmp_path / "docs" / "results.md"
    update_results_file(path, "clusters", "table one")
    text = path.read_text()
    assert text.startswith("# Results\n") and "table one" in text
    path.write_text(text + "\nA hand-written reading.\n")
    update_results_file(path, "sentiment", "table two")
    update_results_file(path, "clusters", "table three")
    text = path.read_text()
    assert "table one" not in text and "table three" in text and "table two" in text
    assert "A hand-written reading." in text
    assert (
        text.index("table three") < text.index("A hand-written reading.") < text.index("table two")
    )
    with pytest.raises(ValueError, match="name must be"):
        update_results_file(path, "Bad Name", "x")


def test_format_duration():
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(3723) == "1 h 02 min 03 s"
    with pytest.raises(ValueError, match="seconds must be"):
        format_duration(-1)


# ---------------------------------------------------------------- runner
def test_registry_lists_and_rejects_names():
    assert {"clusters", "tiny-clusters"} <= set(available_experiments())
    with pytest.raises(
        ValueError, match="unknown experiment 'nope'; known experiments: .*clusters"
    ):
        get_experiment("nope")


def test_runner_resumes_finished_runs_and_reports_a_table(tmp_path):
    logged = []
    first = run_experiment(
        "tiny-clusters",
        seeds=2,
        methods=["spigot", "pipeline"],
        run_dir=tmp_path,
        progress=False,
        log=logged.append,
    )
    assert [(r.method, r.seed) for r in first.records] == [
        ("pipeline", 0),
        ("pipeline", 1),
        ("spigot", 0),
        ("spigot", 1),
    ]
    assert len(logged) == 4 and all(
        r.status == "ok" and 0 <= r.metrics["accuracy"] <= 1 for r in first.records
    )
    again = run_experiment(
        "tiny-clusters",
        seeds=2,
        methods=["spigot", "pipeline"],
        run_dir=tmp_path,
        progress=False,
        log=None,
    )
    assert again.records == first.records  # read back, not rerun
    assert (first.reused, again.reused) == (0, 4)
    assert "read 4 of 4 finished runs back" in again.markdown_section()
    fresh = run_experiment(
        "tiny-clusters",
        seeds=[1],
        methods=["spigot"],
        run_dir=tmp_path,
        fresh=True,
        progress=False,
        log=None,
    )
    assert fresh.records[0].metrics == first.records[3].metrics  # deterministic per seed
    section = first.markdown_section()
    assert (
        section.startswith("## tiny-clusters")
        and "| spigot |" in section
        and "Seeds 0, 1" in section
    )


def test_runner_records_methods_the_polytope_cannot_run(tmp_path, monkeypatch):
    class NeedsMarginals(torch.nn.Module):
        def __init__(self, polytope):
            super().__init__()
            raise UnsupportedOperation("this polytope has no marginals")

    monkeypatch.setattr(
        spigot.autodiff,
        "ESTIMATORS",
        {"spigot": spigot.SPIGOT, "marginals": NeedsMarginals},
        raising=False,
    )
    report = run_experiment(
        "tiny-clusters", seeds=3, methods=["marginals"], run_dir=tmp_path, progress=False, log=None
    )
    assert len(report.records) == 1 and report.records[0].status == "unsupported"
    assert "n/a: this polytope has no marginals" in report.table()


def test_runner_records_numerical_failures_and_goes_on(tmp_path, monkeypatch):
    class SingularOnOddSeeds(torch.nn.Module):
        def __init__(self, polytope):
            super().__init__()
            self.polytope = polytope

        def forward(self, scores, lengths=None):
            if torch.initial_seed() == 1:
                torch.linalg.inv(torch.zeros(2, 2))
            if torch.initial_seed() == 3:
                raise spigot.ProjectionError("SPIGOT backward: 1 projection(s) stalled")
            return self.polytope.map(scores, lengths)

    monkeypatch.setattr(
        spigot.autodiff,
        "ESTIMATORS",
        {"spigot": spigot.SPIGOT, "fragile": SingularOnOddSeeds},
        raising=False,
    )
    lines = []
    report = run_experiment(
        "tiny-clusters",
        seeds=4,
        methods=["fragile"],
        run_dir=tmp_path,
        progress=False,
        log=lines.append,
    )
    assert [r.status for r in report.records] == ["ok", "failed", "ok", "failed"]
    assert report.records[3].message == "ProjectionError: SPIGOT backward: 1 projection(s) stalled"
    assert "LinAlgError: linalg.inv" in report.records[1].message  # torch's class: _LinAlgError
    assert "seed 1: failed (" in lines[1]
    row = next(line for line in report.table().splitlines() if line.startswith("| fragile"))
    assert "| 2 (2 failed) |" in row
    assert "- fragile seed 1: _LinAlgError: linalg.inv" in report.markdown_section()
    again = run_experiment(
        "tiny-clusters", seeds=4, methods=["fragile"], run_dir=tmp_path, progress=False, log=None
    )
    assert again.records == report.records  # the failure is a finished run, read back


def test_results_table_row_of_a_method_whose_runs_all_failed():
    records = [RunRecord("spigot", s, status="failed", message="singular") for s in (0, 1)]
    row = results_table(records, (Metric("accuracy", "acc (%)"),)).splitlines()[2]
    assert row == "| spigot | failed: singular | 0 (2 failed) |  |"


def test_runner_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="seeds must be a positive count"):
        run_experiment("tiny-clusters", seeds=0, run_dir=tmp_path)
    with pytest.raises(ValueError, match="without repeats"):
        run_experiment("tiny-clusters", seeds=[1, 1], run_dir=tmp_path)
    with pytest.raises(ValueError, match="preset must be one of"):
        run_experiment("tiny-clusters", preset="huge", run_dir=tmp_path)
    with pytest.raises(ValueError, match="threads must be"):
        run_experiment("tiny-clusters", threads=0, run_dir=tmp_path)


def test_runner_restores_the_thread_count(tmp_path):
    before = torch.get_num_threads()
    run_experiment(
        "tiny-clusters",
        seeds=1,
        methods=["pipeline"],
        run_dir=tmp_path,
        progress=False,
        log=None,
        threads=1,
    )
    assert torch.get_num_threads() == before
