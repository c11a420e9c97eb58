"""The parse-then-emotion experiment on tiny data: the DANTEStocks loader and its JOY-vs-SAD
label, the semantic-graph pieces, one epoch of every method on trees and on semantic graphs
(through the runner), and SPIGOT's relaxed projection on the graphs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from spigot.errors import UnsupportedOperation
from spigot.experiments import get_experiment, run_experiment
from spigot.experiments.data import ROOT
from spigot.experiments.data.dantestocks import DANTESTOCKS_SPLIT, JOY, SAD, joy_sad_label, load_dantestocks
from spigot.experiments.parse_then_emotion import (
    EMOTION_METHODS,
    EmotionSubset,
    ParseThenEmotionConfig,
    ParseThenEmotionExperiment,
    build_model,
    gold_structures,
    load_emotion_data,
    parser_score,
    pretrained_parser,
    semantic_graph_config,
)
from spigot.experiments.results import OK, UNSUPPORTED
from spigot.experiments.semantic_graphs import (
    OTHER_GROUP,
    RELATION_GROUPS,
    LabeledGraphGCN,
    gold_graphs,
    head_label_loss,
    labeled_arc_counts,
    relation_group,
    semantic_graph_polytope,
)
from spigot.projections import reference_projection

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_torch_thread")]

SMALL = ParseThenEmotionConfig(
    data=EmotionSubset(max_words=12, parser_max_words=10, n_parser=24, n_parser_dev=12, n_parser_test=12, n_train=32),
    word_dim=6,
    tag_dim=4,
    hidden_dim=6,
    arc_dim=5,
    label_dim=4,
    encoder_dim=5,
    gcn_dim=6,
    pretrain_epochs=2,
    pretrain_patience=None,
    epochs=1,
    patience=None,
    batch_size=16,
)
SMALL_GRAPH = semantic_graph_config(SMALL)
SMALL_GRAPH_EXACT = semantic_graph_config(SMALL, exact=True)


# ---------------------------------------------------------------------- data and label
def test_the_label_is_a_majority_for_one_side_of_the_pair_only():
    assert joy_sad_label(1, 0) == JOY == 1 and joy_sad_label(0, 1) == SAD == 0
    assert joy_sad_label(0, 0) is None  # neither (neutral, or other emotions)
    assert joy_sad_label(-1, -1) is None and joy_sad_label(-2, -2) is None  # the disagreement codes
    assert joy_sad_label(1, 1) is None
    with pytest.raises(ValueError, match="joy must be one of the codes"):
        joy_sad_label(2, 0)


def test_the_shipped_tweets_load_with_their_labels_tokens_and_split():
    tweets = load_dantestocks()
    assert len(tweets) == 849 and sum(t.label == JOY for t in tweets) == 461
    assert len({t.tweet_id for t in tweets}) == len(tweets)
    assert all(len(t.words) == len(t.upos) >= 1 and t.label in (JOY, SAD) for t in tweets)
    assert all(0.0 <= t.agreement <= 1.5 for t in tweets)
    parts = {split: load_dantestocks(split) for split in ("train", "dev", "test")}
    assert [len(p) for p in parts.values()] == [497, 182, 170]
    assert all(DANTESTOCKS_SPLIT.assign(t.tweet_id) == split for split, p in parts.items() for t in p)
    first = tweets[0]
    assert first.words[:3] == ("Ouro", ":", "AEDU3") and first.upos[:3] == ("NOUN", "PUNCT", "PROPN")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dantestocks("validation")


def test_the_experiment_data_encode_tweets_and_petrogold_groups():
    data = load_emotion_data(SMALL.data)
    assert {k: len(v) for k, v in data.treebank.items()} == {"parser": 24, "dev": 12, "test": 12}
    assert len(data.tweets["train"]) == 32
    root = data.words.index(ROOT)
    for split in (*data.tweets.values(), *data.treebank.values()):
        assert torch.all(split.tokens[:, 0, 0] == root) and torch.all(split.lengths <= 12)
    assert set(data.tweets["dev"].labels.tolist()) == {0, 1}
    gold = data.treebank["parser"]
    for b in range(len(gold)):
        n = int(gold.lengths[b])
        assert torch.all((gold.relations[b, 1 : n + 1] >= 1) & (gold.relations[b, 1 : n + 1] <= len(RELATION_GROUPS)))
        graph = gold_structures(SMALL_GRAPH, gold.heads[b : b + 1], gold.relations[b : b + 1])[0]
        assert graph.sum() == n and torch.equal(graph.sum(-1), gold.heads[b])  # the tree, one label per arc


# ---------------------------------------------------------------------- semantic-graph pieces
def test_relation_groups_fold_ud_relations():
    assert [relation_group(r) for r in ("nsubj", "nsubj:pass", "obj", "obl:agent", "det", "root")] == [
        0, 0, 1, 2, 3, OTHER_GROUP
    ]
    assert relation_group("made-up") == OTHER_GROUP
    with pytest.raises(ValueError, match="relation must be a non-empty string"):
        relation_group("")
    polytope = semantic_graph_polytope()
    assert polytope.n_labels == len(RELATION_GROUPS) and polytope.unique_labels == (0, 1)


def test_gold_graphs_loss_and_counts():
    heads = torch.zeros(1, 4, 4)
    heads[0, 0, 2] = heads[0, 2, 1] = heads[0, 2, 3] = 1.0
    groups = torch.tensor([[0, 0, 4, 1]])
    gold = gold_graphs(heads, groups)
    assert gold[0, 2, 1, 0] == 1 and gold[0, 0, 2, 4] == 1 and gold[0, 2, 3, 1] == 1 and gold.sum() == 3
    lengths = torch.tensor([3])
    scores = torch.randn(1, 4, 4, len(RELATION_GROUPS))
    expected = -sum(float(scores[0, h, m, l]) - math.log(2.0) for h, m, l in [(2, 1, 0), (0, 2, 4), (2, 3, 1)])
    assert float(head_label_loss(scores, gold, lengths)[0]) == pytest.approx(expected)
    predicted = gold.clone()
    predicted[0, 2, 3, 1], predicted[0, 1, 3, 2] = 0.0, 1.0
    assert labeled_arc_counts(predicted, gold, lengths) == (2, 3, 3)
    with pytest.raises(ValueError, match="same shape"):
        head_label_loss(scores, gold[..., :2], lengths)


def test_the_graph_parser_scores_are_log_odds_of_a_local_model():
    data = load_emotion_data(SMALL.data)
    parser = pretrained_parser(SMALL_GRAPH, data, seed=0).eval()
    tokens, lengths, _, _ = data.treebank["dev"].batch(torch.arange(4))
    with torch.no_grad():
        scores = parser(tokens, lengths)
    for b in range(4):
        n = int(lengths[b])
        probs = torch.exp(scores[b, : n + 1, 1 : n + 1] - math.log(2.0))
        off = ~torch.eye(n + 1, dtype=torch.bool)[:, 1:]
        torch.testing.assert_close((probs * off[..., None]).sum(dim=(0, 2)), torch.ones(n), atol=1e-5, rtol=0)
        assert torch.all(scores[b, n + 1 :] == 0) and torch.all(scores[b, :, 0] == 0)
    polytope = semantic_graph_polytope()  # the exact MAP agrees with ad3's branch and bound
    torch.testing.assert_close(polytope.map(scores, lengths), polytope.map_ad3(scores, lengths))


def test_the_labeled_graph_convolution_is_linear_in_the_graph():
    torch.manual_seed(0)
    layer = LabeledGraphGCN(3, 4, 2)
    states = torch.randn(2, 5, 3)
    a, b = torch.rand(2, 5, 5, 2), torch.rand(2, 5, 5, 2)
    pre = lambda g: layer.self_loop(states) + layer.from_heads(  # noqa: E731
        torch.einsum("bhml,bhd->bmld", g, states).reshape(2, 5, -1)
    ) + layer.from_children(torch.einsum("bhml,bmd->bhld", g, states).reshape(2, 5, -1))
    torch.testing.assert_close(layer(states, a), torch.relu(pre(a)))
    torch.testing.assert_close(pre(a + b) - pre(a), pre(b) - pre(torch.zeros_like(b)))
    with pytest.raises(ValueError, match="graph must have shape"):
        layer(states, torch.rand(2, 5, 5, 3))


def test_spigot_on_graphs_projects_with_the_polytopes_relaxed_procedure():
    """The relaxed solver applies SemanticGraph's relaxed_projection: clip each arc's total to
    [0, 1], then project its labels onto the simplex scaled by it."""
    data = load_emotion_data(SMALL.data)
    model = build_model("spigot", SMALL_GRAPH, data, pretrained_parser(SMALL_GRAPH, data, seed=0)).train()
    scores = torch.randn(3, 6, 6, len(RELATION_GROUPS)) * 2
    lengths = torch.tensor([5, 3, 4])
    leaf = scores.clone().requires_grad_(True)
    z = model.latent.latent(leaf, lengths)
    g = torch.randn_like(z)
    (grad,) = torch.autograd.grad((z * g).sum(), leaf)
    mask = torch.zeros_like(g, dtype=torch.bool)
    for b, n in enumerate(lengths.tolist()):
        mask[b, : n + 1, 1 : n + 1] = ~torch.eye(n + 1, dtype=torch.bool)[:, 1:, None].expand(-1, -1, g.shape[-1])
    g = g * mask
    norms = g.flatten(1).norm(dim=1)[:, None, None, None]
    eta = torch.minimum(torch.full_like(norms, float(SMALL.batch_size)), 1.0 / norms)  # the reference step
    expected = z.detach() - reference_projection((z.detach() - eta * g).reshape(3, 6, 6, -1), lengths)
    torch.testing.assert_close(grad, expected * mask, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------- runs
@pytest.fixture
def tiny_presets(monkeypatch):
    """The experiment's ``demo`` and ``semantic-graph`` presets replaced by the tiny configurations."""
    tiny = {"demo": SMALL, "semantic-graph": SMALL_GRAPH, "semantic-graph-exact": SMALL_GRAPH_EXACT}
    monkeypatch.setattr(ParseThenEmotionExperiment, "config", lambda self, preset="full": tiny[preset])


def test_one_epoch_of_every_method_on_trees_through_the_runner(tmp_path, tiny_presets):
    report = run_experiment(
        "parse-then-emotion", seeds=1, preset="demo", run_dir=tmp_path, progress=False, log=None
    )
    assert [r.method for r in report.records] == list(EMOTION_METHODS)
    assert all(r.status == OK for r in report.records)
    for record in report.records:
        assert all(0.0 <= record.metrics[m.key] <= 1.0 for m in report.experiment.metrics)
        assert record.metrics["epochs"] == 1.0 and record.metrics["start_score_norm"] > 0
    section = report.markdown_section()
    assert "## parse-then-emotion" in section and "JOY" in section and "domain shift" in section


def test_one_epoch_of_every_method_on_semantic_graphs_through_the_runner(tmp_path, tiny_presets):
    report = run_experiment(
        "parse-then-emotion", seeds=1, preset="semantic-graph", run_dir=tmp_path, progress=False, log=None
    )
    status = {r.method: r.status for r in report.records}
    assert status == {m: (UNSUPPORTED if m == "marginals" else OK) for m in EMOTION_METHODS}
    assert "marginals" in next(r.message for r in report.records if r.method == "marginals")
    exact = run_experiment(
        "parse-then-emotion", seeds=1, methods=["spigot"], preset="semantic-graph-exact",
        run_dir=tmp_path, progress=False, log=None,
    )
    assert exact.records[0].status == OK
    assert "SemanticGraph" in report.experiment.describe(SMALL_GRAPH)
    assert "exactly (AD3-QP)" in report.experiment.describe(SMALL_GRAPH_EXACT)


def test_a_run_is_deterministic_and_scores_its_parser(tmp_path):
    experiment = get_experiment("parse-then-emotion")
    first = experiment.run("spigot-eg", 1, SMALL, tmp_path / "a", progress=False)
    assert experiment.run("spigot-eg", 1, SMALL, tmp_path / "b", progress=False) == first
    pipeline = experiment.run("pipeline", 1, SMALL_GRAPH, tmp_path / "c", progress=False)
    assert pipeline["start_zero_share"] == 1.0 and "start_cosine_ste" not in pipeline
    data = load_emotion_data(SMALL.data)
    parser = pretrained_parser(SMALL, data, seed=1).eval()
    assert 0.0 <= parser_score(parser, SMALL, data.treebank["test"]) <= 1.0


def test_the_matched_pipeline_passes_no_classification_gradient_to_its_parser():
    data = load_emotion_data(SMALL.data)
    for config in (SMALL, SMALL_GRAPH):
        model = build_model("pipeline", config, data, pretrained_parser(config, data, seed=2)).train()
        tokens, lengths, labels = data.tweets["train"].batch(torch.arange(8))
        logits, _ = model(tokens, lengths)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        assert all(p.grad is None for p in model.latent.scorer.parameters())
        assert any(p.requires_grad for p in model.latent.scorer.parameters())  # its own loss trains it


def test_presets_configuration_checks_and_methods():
    experiment = get_experiment("parse-then-emotion")
    full, demo = experiment.config("full"), experiment.config("demo")
    graph, exact = experiment.config("semantic-graph"), experiment.config("semantic-graph-exact")
    assert experiment.methods() == EMOTION_METHODS
    assert full.structure == "tree" and graph.structure == exact.structure == "semantic-graph"
    assert demo.epochs < full.epochs and full.parser_weight > 0 and full.patience is not None
    assert full.estimator_options["spigot"] == {
        "solver": "relaxed", "step": "reference", "eta": float(full.batch_size), "threshold": 1.0
    }
    for method in ("spigot-ce-relaxed", "spigot-eg-relaxed"):
        assert full.estimator_options[method] | {"solver": None} == full.estimator_options["spigot-ce"] | {"solver": None}
    assert graph.estimator_options["spigot"]["solver"] == "relaxed" and exact.estimator_options["spigot"]["solver"] == "exact"
    assert dataclasses.replace(graph, structure="tree", estimator_options=full.estimator_options) == full
    with pytest.raises(ValueError, match="structure must be one of"):
        ParseThenEmotionConfig(structure="forest")
    with pytest.raises(ValueError, match="parser_weight must be"):
        ParseThenEmotionConfig(parser_weight=-1.0)
    with pytest.raises(ValueError, match="preset must be one of"):
        experiment.config("nope")
    with pytest.raises(UnsupportedOperation):
        build_model("marginals", SMALL_GRAPH, load_emotion_data(SMALL.data), torch.nn.Identity())


def test_the_command_line_lists_the_experiment_and_its_presets(capsys):
    from spigot import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "parse-then-emotion" in out and "semantic-graph-exact" in out
    args = cli.build_parser().parse_args(["experiment", "parse-then-emotion", "--preset", "semantic-graph"])
    assert (args.name, args.preset) == ("parse-then-emotion", "semantic-graph")


@pytest.mark.parametrize("method", ["spigot-ce-relaxed", "spigot-eg-relaxed"])
def test_a_relaxed_point_layer_reads_the_classifier_at_the_relaxed_point(method):
    """Training sends the parser the layer's gradient for the batch-mean loss of this pass's
    classifier (its BiLSTM states) evaluated at the relaxed point."""
    from spigot.autodiff.registry import make_estimator
    from spigot.experiments.parse_then_emotion import tweet_losses

    data = load_emotion_data(SMALL.data)
    model = build_model(method, SMALL, data, pretrained_parser(SMALL, data, seed=3)).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    seen: list[torch.Tensor] = []

    def capture(_module, _inputs, scores: torch.Tensor) -> None:
        scores.register_hook(seen.append)

    handle = model.latent.scorer.register_forward_hook(capture)
    indices = torch.arange(8)
    tweet_losses(model, data.tweets["train"], indices).mean().backward()
    handle.remove()

    tokens, lengths, labels = data.tweets["train"].batch(indices)
    with torch.no_grad():
        scores = model.latent.scorer(tokens, lengths)
        states = model.encode(tokens, lengths)
    leaf = scores.clone().requires_grad_(True)
    layer = make_estimator(method, model.latent.polytope, **SMALL.estimator_options[method])

    def downstream(structure: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model.pool(states, lengths, structure), labels)

    (expected,) = torch.autograd.grad(downstream(layer(leaf, lengths, downstream=downstream)), leaf)
    assert float(expected.abs().sum()) > 0
    torch.testing.assert_close(seen[0], expected, atol=1e-6, rtol=1e-5)
