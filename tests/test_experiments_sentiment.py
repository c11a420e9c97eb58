"""The sentiment experiment on a small real subset: data plumbing, model, every method, seeds."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spigot import UnsupportedOperation
from spigot.experiments import get_experiment
from spigot.experiments.arc_parser import ArcParser
from spigot.experiments.data import ROOT, matrix_to_heads
from spigot.experiments.latent_tree import ChainScores
from spigot.experiments.results import RunRecord, paired_differences, results_table
from spigot.experiments.sentiment import (
    MovieReviewSubset,
    SentimentConfig,
    build_sentiment_model,
    chain_fraction,
    load_sentiment_data,
)
from spigot.polytopes import Arborescence, ProjectiveTree

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_torch_thread")]

SMALL = SentimentConfig(
    data=MovieReviewSubset(max_words=8, n_train=48, n_dev=16, n_test=16),
    hidden_dim=6,
    arc_dim=5,
    encoder_dim=4,
    gcn_dim=6,
    epochs=1,
    batch_size=16,
)


def test_data_are_short_sentences_with_a_root_token_and_glove_vectors():
    data = load_sentiment_data(SMALL.data)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 48, "dev": 16, "test": 16}
    root = data.vocabulary.index(ROOT)
    for split in data.splits.values():
        assert split.tokens.shape[2] == 1 and torch.all(split.tokens[:, 0, 0] == root)
        assert torch.all((split.lengths >= 2) & (split.lengths <= 8))
        positions = torch.arange(split.tokens.shape[1])
        padding = positions[None, :] > split.lengths[:, None]
        assert torch.all(split.tokens[..., 0][padding] == 0)
        assert torch.all(split.tokens[..., 0][~padding] > 0)
        assert set(split.labels.tolist()) <= {0, 1}
    assert data.vectors.shape == (len(data.vocabulary), 50)
    assert load_sentiment_data(SMALL.data) is data  # cached
    tokens, lengths, labels = data.splits["train"].batch(torch.tensor([0, 5]))
    assert tokens.shape[1] == int(lengths.max()) + 1 and labels.shape == (2,)


def test_subsets_are_fixed_by_their_seed():
    a = load_sentiment_data(SMALL.data).splits["train"]
    b = load_sentiment_data(dataclasses.replace(SMALL.data, seed=1)).splits["train"]
    assert not torch.equal(a.labels, b.labels) or not torch.equal(a.lengths, b.lengths)
    with pytest.raises(ValueError, match="max_words must be at least 2"):
        load_sentiment_data(dataclasses.replace(SMALL.data, max_words=1))


def test_model_shapes_and_the_chain_baseline_reads_the_chain():
    data = load_sentiment_data(SMALL.data)
    tokens, lengths, _ = data.splits["dev"].batch(torch.arange(4))
    model = build_sentiment_model("chain", SMALL, data.vectors).eval()
    assert isinstance(model.tree.scorer, ChainScores)
    assert not any(p.requires_grad for p in model.tree.parameters())
    logits, arcs = model(tokens, lengths)
    assert logits.shape == (4, 2) and arcs.shape == tokens.shape[:2] + (tokens.shape[1],)
    for b in range(4):
        n = int(lengths[b])
        assert matrix_to_heads(arcs[b], n) == list(range(n))
    assert chain_fraction(arcs, lengths) == (int(lengths.sum()), int(lengths.sum()))
    learned = build_sentiment_model("spigot", SMALL, data.vectors)
    assert isinstance(learned.tree.scorer, ArcParser)
    assert learned.tree.scale == 1.0
    assert build_sentiment_model("sparsemap", SMALL, data.vectors).tree.scale == 50.0


@pytest.mark.parametrize("structure", ["nonprojective", "projective"])
@pytest.mark.parametrize("method", get_experiment("sentiment").methods())
def test_one_training_step_of_every_method_is_finite_and_reaches_the_parser(method, structure):
    config = dataclasses.replace(SMALL, structure=structure)
    data = load_sentiment_data(SMALL.data)
    torch.manual_seed(0)
    model = build_sentiment_model(method, config, data.vectors).train()
    tokens, lengths, labels = data.splits["train"].batch(torch.arange(8))

    def summed(logits: torch.Tensor) -> torch.Tensor:  # I-MLE's gradient is 0 unless lambda * g flips an argmax
        return torch.nn.functional.cross_entropy(logits, labels, reduction="sum")

    logits, arcs = model(tokens, lengths, output_loss=summed)  # the relaxed-point estimators use it
    loss = summed(logits)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.classify.weight.grad.abs().sum() > 0
    assert model.encoder.lstm.weight_ih_l0.grad.abs().sum() > 0  # the classifier reads BiLSTM states
    if method == "no-tree":
        assert model.tree is None and arcs is None
    else:
        polytope = ProjectiveTree if structure == "projective" else Arborescence
        assert isinstance(model.tree.polytope, polytope) and model.tree.polytope.single_root
    if method not in ("no-tree", "chain"):
        parser_grad = sum(
            p.grad.abs().sum() for p in model.tree.scorer.parameters() if p.grad is not None
        )
        assert parser_grad > 0


def test_a_run_is_deterministic_per_seed_and_resumes(tmp_path):
    experiment = get_experiment("sentiment")
    first = experiment.run("ste-i", 3, SMALL, tmp_path / "a", progress=False)
    assert set(first) == {m.key for m in experiment.metrics + experiment.diagnostics}
    assert all(0.0 <= first[m.key] <= 1.0 for m in experiment.metrics)
    assert first["start_cosine_ste"] == pytest.approx(1.0) and first["start_score_norm"] > 0  # STE-I vs itself
    assert experiment.run("ste-i", 3, SMALL, tmp_path / "b", progress=False) == first
    assert experiment.run("ste-i", 3, SMALL, tmp_path / "a", progress=False) == first


def test_presets_and_description():
    experiment = get_experiment("sentiment")
    full, demo = experiment.config("full"), experiment.config("demo")
    assert demo.data.n_train < full.data.n_train and demo.epochs < full.epochs
    assert full.estimator_options["spigot"] == {"solver": "relaxed"}
    text = experiment.describe(SMALL)
    assert "48 / 16 / 16 train / dev / test" in text and "chain" in text and "no-tree" in text
    assert "pipeline" not in text and "non-projective" in text
    projective = experiment.config("projective")
    assert projective.structure == "projective" and projective.data == full.data
    assert "single-root projective trees" in experiment.describe(dataclasses.replace(SMALL, structure="projective"))


def test_the_methods_are_the_two_baselines_and_the_estimators_and_no_pipeline(tmp_path):
    experiment = get_experiment("sentiment")
    methods = experiment.methods()
    assert methods[:3] == ("no-tree", "chain", "ste-i") and "pipeline" not in methods
    assert {"spigot-ce-relaxed", "spigot-eg-relaxed"} <= set(methods)
    with pytest.raises(UnsupportedOperation, match="sentiment has no pipeline.*'no-tree' and 'chain'"):
        build_sentiment_model("pipeline", SMALL, load_sentiment_data(SMALL.data).vectors)
    with pytest.raises(ValueError, match="structure must be one of"):
        build_sentiment_model("ste-i", dataclasses.replace(SMALL, structure="spanning"),
                              load_sentiment_data(SMALL.data).vectors)


def test_the_no_tree_baseline_has_no_chain_arcs_and_no_diagnostics(tmp_path):
    experiment = get_experiment("sentiment")
    values = experiment.run("no-tree", 0, SMALL, tmp_path, progress=False)
    assert set(values) == {"accuracy", "dev_accuracy", "chain_arcs"}
    assert values["chain_arcs"] != values["chain_arcs"]  # NaN: no trees, shown as "—" in the table
    records = [RunRecord("no-tree", seed, metrics=values) for seed in (0, 1)]
    records += [RunRecord("chain", seed, metrics={**values, "chain_arcs": 1.0, "accuracy": 0.5}) for seed in (0, 1)]
    row = next(line for line in results_table(records, experiment.metrics).splitlines() if "| no-tree |" in line)
    assert row.split(" | ")[3] == "—"
    assert "Paired differences to `no-tree`" in paired_differences(records, experiment.metrics[0])


def test_a_relaxed_point_estimator_trains_and_reports_diagnostics(tmp_path):
    experiment = get_experiment("sentiment")
    values = experiment.run("spigot-eg-relaxed", 0, SMALL, tmp_path, progress=False)
    assert 0.0 <= values["accuracy"] <= 1.0 and 0.0 <= values["chain_arcs"] <= 1.0
    assert -1.0 <= values["start_cosine_ste"] <= 1.0
