"""The training regime's pieces: early stopping, interleaved auxiliary losses, diagnostics,
paired differences to the pipeline, experiment variants."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from spigot import SPIGOT, Simplex, StraightThrough
from spigot.experiments.diagnostics import DIAGNOSTICS, latent_diagnostics
from spigot.experiments.methods import FrozenArgmax
from spigot.experiments.registry import all_presets, check_preset
from spigot.experiments.results import OK, Metric, RunRecord, diagnostics_table, paired_differences
from spigot.experiments.training import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_problem():
    torch.manual_seed(0)
    x, y = torch.randn(24, 3), torch.randn(24)
    model = torch.nn.Linear(3, 1)

    def losses(net, indices):
        return (net(x[indices]).squeeze(-1) - y[indices]) ** 2

    return model, losses


def test_patience_stops_when_the_dev_score_stops_improving():
    model, losses = _tiny_problem()
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.6, 0.9, 0.9])
    result = train(
        model, torch.optim.SGD(model.parameters(), lr=0.01), losses, 24, 8, epochs=7,
        evaluate=lambda net: next(scores), seed=0, progress=False, patience=2,
    )
    assert result.stopped_early and len(result.history) == 4 and result.best_epoch == 2
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        train(model, torch.optim.SGD(model.parameters(), lr=0.01), losses, 24, 8, 1, lambda n: 0.0, 0, patience=0)


def test_the_auxiliary_loss_is_added_to_every_update():
    model, losses = _tiny_problem()
    calls = []

    def auxiliary(net, epoch, batch):
        calls.append((epoch, batch))
        return 0.0 * net.weight.sum()

    reference, _ = _tiny_problem()
    train(model, torch.optim.SGD(model.parameters(), lr=0.1), losses, 24, 8, 2, lambda n: 0.0, 0,
          progress=False, auxiliary=auxiliary)
    train(reference, torch.optim.SGD(reference.parameters(), lr=0.1), losses, 24, 8, 2, lambda n: 0.0, 0,
          progress=False)
    assert calls == [(e, b) for e in range(2) for b in range(3)]
    torch.testing.assert_close(model.weight, reference.weight)  # a zero auxiliary loss changes nothing
    pulled, _ = _tiny_problem()
    train(pulled, torch.optim.SGD(pulled.parameters(), lr=0.1), losses, 24, 8, 2, lambda n: 0.0, 0,
          progress=False, auxiliary=lambda net, e, b: (net.weight ** 2).sum())
    assert pulled.weight.norm() < reference.weight.norm()


def test_diagnostics_on_the_simplex():
    scores = torch.tensor([[2.0, 1.5, -1.0], [0.0, 3.0, 0.5]], dtype=torch.float64)
    target = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)

    def loss(z):
        return ((z - target) ** 2).sum()

    ste = latent_diagnostics(scores, None, Simplex(), StraightThrough(Simplex()), loss)
    assert set(ste) == set(DIAGNOSTICS)
    assert ste["score_norm"] == pytest.approx((scores.norm(dim=1)).mean().item())
    assert ste["margin"] == pytest.approx((0.5 + 2.5) / 2)
    # instance 1 already picks the target: g = 0 there, so its surrogate is 0
    assert ste["zero_share"] == 0.5 and ste["cosine_ste"] == pytest.approx(1.0)
    spigot = latent_diagnostics(scores, None, Simplex(), SPIGOT(Simplex(), step="fixed", eta=0.1), loss)
    assert spigot["zero_share"] == 0.5 and 0.0 < spigot["cosine_ste"] <= 1.0
    frozen = latent_diagnostics(scores, None, Simplex(), FrozenArgmax(Simplex()), loss)
    assert frozen["zero_share"] == 1.0 and "cosine_ste" not in frozen


def _records(values):
    return [
        RunRecord(method, seed, OK, {"accuracy": v, "diag": v * 2, "none": math.nan})
        for method, per_seed in values.items()
        for seed, v in enumerate(per_seed)
    ]


def test_paired_differences_give_per_seed_deltas_and_paired_tests():
    values = {"pipeline": [0.80, 0.81, 0.79, 0.80], "spigot": [0.82, 0.82, 0.80, 0.84], "ste-i": [0.80, 0.81, 0.79, 0.80]}
    table = paired_differences(_records(values), Metric("accuracy", "accuracy (%)"))
    spigot_row = next(line for line in table.splitlines() if line.startswith("| spigot"))
    diffs = [2.0, 1.0, 1.0, 4.0]
    assert "0: +2.0, 1: +1.0, 2: +1.0, 3: +4.0" in spigot_row and "| +2.0 |" in spigot_row
    assert f"{stats.ttest_rel([0.82, 0.82, 0.80, 0.84], [0.80, 0.81, 0.79, 0.80]).pvalue:.3f}" in spigot_row
    assert f"{stats.wilcoxon(diffs).pvalue:.3f}" in spigot_row and "4/4" in spigot_row
    assert "n/a" in next(line for line in table.splitlines() if line.startswith("| ste-i"))
    assert paired_differences(_records({"spigot": [0.8]}), Metric("accuracy", "a")) == ""


def test_diagnostics_table_skips_missing_values():
    table = diagnostics_table(_records({"spigot": [0.5, 0.7]}), [Metric("diag", "d", False, 2), Metric("none", "n", False)])
    assert table.splitlines()[-1] == "| spigot | 1.20 | — |"


def test_variants_are_presets_of_their_experiment_only():
    assert "no-intermediate-supervision" in all_presets()
    assert check_preset("no-intermediate-supervision", ("no-intermediate-supervision",))
    with pytest.raises(ValueError, match="preset must be one of"):
        check_preset("no-intermediate-supervision")


def test_the_runner_tunes_each_method_on_the_dev_grid_and_reports_the_best_setting(tmp_path, monkeypatch):
    import experiment_fixtures  # noqa: F401  (registers the tiny experiments)

    from spigot.experiments import get_experiment, run_experiment
    from spigot.experiments.registry import _REGISTRY

    cls = _REGISTRY["tiny-clusters"]
    monkeypatch.setattr(
        cls, "grid", lambda self, config, size: {"spigot": ({"lr": 0.01}, {"lr": 0.05, "option:eta": 2.0})}
    )
    report = run_experiment(
        "tiny-clusters", seeds=2, methods=["pipeline", "spigot"], run_dir=tmp_path, progress=False,
        log=None, grid="reduced",
    )
    spigot_points = [p for p in report.tuning if p.method == "spigot"]
    assert [p.setting for p in spigot_points] == [{"lr": 0.01}, {"lr": 0.05, "option:eta": 2.0}]
    assert sum(p.chosen for p in spigot_points) == 1 and all(p.seeds == 2 for p in spigot_points)
    best = max(spigot_points, key=lambda p: p.dev)
    assert best.chosen
    chosen = [r for r in report.records if r.method == "spigot"]
    assert len(chosen) == 2 and pytest.approx(best.dev) == sum(r.metrics["dev_accuracy"] for r in chosen) / 2
    assert [p.setting for p in report.tuning if p.method == "pipeline"] == [{}]
    assert len(report.tried) == 6 and len(report.records) == 4  # pipeline 2 + spigot 2 x 2 settings
    section = report.markdown_section()
    assert "Dev grid (reduced)" in section and "**lr=" in section
    config = get_experiment("tiny-clusters").config("full")
    tuned = get_experiment("tiny-clusters").with_setting(config, "spigot", {"lr": 0.05, "option:eta": 2.0})
    assert tuned.lr == 0.05 and tuned.estimator_options["spigot"] == {"eta": 2.0}
    with pytest.raises(ValueError, match="grid must be one of"):
        run_experiment("tiny-clusters", seeds=1, run_dir=tmp_path, grid="huge", log=None)


def test_parse_then_label_grids_contain_the_configured_setting():
    from spigot.experiments import get_experiment
    from spigot.experiments.registry import config_id

    experiment = get_experiment("parse-then-label")
    config = experiment.config("full")
    reduced, full = experiment.grid(config, "reduced"), experiment.grid(config, "full")
    assert len(reduced["spigot"]) == 4 and len(full["spigot"]) == 9 and len(full["ste-i"]) == 3
    for method in ("pipeline", "ste-i", "spigot", "marginals"):
        ids = {config_id(experiment.with_setting(config, method, s)) for s in reduced[method]}
        assert config_id(config) in ids
    assert experiment.grid(config, "none") == {}


def test_the_pretraining_digest_ignores_the_settings_a_grid_varies():
    from dataclasses import replace

    from spigot.experiments import get_experiment
    from spigot.experiments.parse_then_label import PRETRAINING_FIELDS
    from spigot.experiments.registry import config_id

    experiment = get_experiment("parse-then-label")
    config = experiment.config("demo")
    settings = [
        experiment.with_setting(config, method, s)
        for method, grid in experiment.grid(config, "reduced").items()
        for s in grid
    ]
    assert len({config_id(c) for c in settings}) > 1  # the run folders differ
    assert len({config_id(c, PRETRAINING_FIELDS) for c in settings}) == 1  # one pre-training
    assert config_id(config, PRETRAINING_FIELDS) != config_id(replace(config, lr=config.lr / 2), PRETRAINING_FIELDS)
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
        config_id(config, ("lr", "nope"))
