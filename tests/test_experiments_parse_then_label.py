"""The parse-then-label experiment on a small PetroGold subset: data to tree tensors, the
labeler, parser pre-training, every method, seeds."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spigot.experiments import available_methods, get_experiment
from spigot.experiments.data import PETROGOLD_SPLIT, ROOT, matrix_to_heads
from spigot.experiments.parse_then_label import (
    ParseThenLabelConfig,
    PetroGoldSubset,
    RelationLabeler,
    build_model,
    load_treebank_data,
    parser_losses,
    parser_uas,
    pretrained_parser,
    relation_losses,
)
from spigot.experiments.token_features import TokenFeatures

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.usefixtures("one_torch_thread")]

SMALL = ParseThenLabelConfig(
    data=PetroGoldSubset(max_words=10, n_parser=24, n_train=32, n_dev=12, n_test=12),
    word_dim=6,
    tag_dim=4,
    hidden_dim=6,
    arc_dim=5,
    label_dim=6,
    pretrain_epochs=2,
    epochs=1,
    batch_size=16,
)

#: SMALL in the former regime: no parser loss during labeling, the pipeline's parser frozen.
SMALL_NO_SUPERVISION = dataclasses.replace(SMALL, parser_weight=0.0, word_losses="mean")


def test_splits_hold_words_tags_gold_trees_and_relations():
    data = load_treebank_data(SMALL.data)
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes == {"parser": 24, "train": 32, "dev": 12, "test": 12}
    root_word, root_tag = data.words.index(ROOT), data.tags.index(ROOT)
    for split in data.splits.values():
        assert split.tokens.shape[2] == 2
        assert torch.all(split.tokens[:, 0, 0] == root_word)
        assert torch.all(split.tokens[:, 0, 1] == root_tag)
        assert torch.all((split.lengths >= 2) & (split.lengths <= 10))
        for b in range(len(split)):
            n = int(split.lengths[b])
            heads = matrix_to_heads(split.heads[b], n)  # one head per word
            assert sum(h == 0 for h in heads) == 1  # PetroGold's trees are single-rooted
            assert torch.all(split.relations[b, 1 : n + 1] > 0)
            assert torch.all(split.relations[b, n + 1 :] == 0) and split.relations[b, 0] == 0
    assert "nsubj" in data.relations and "NOUN" in data.tags


def test_the_parser_and_labeler_sentences_are_disjoint_and_fixed_by_the_seed():
    data = load_treebank_data(SMALL.data)
    ids = {name: set(split.sent_ids) for name, split in data.splits.items()}
    assert not ids["parser"] & ids["train"]
    assert all(PETROGOLD_SPLIT.assign(i) == "train" for i in ids["parser"] | ids["train"])
    assert all(PETROGOLD_SPLIT.assign(i) == name for name in ("dev", "test") for i in ids[name])
    other = load_treebank_data(dataclasses.replace(SMALL.data, seed=1))
    assert other.splits["train"].sent_ids != data.splits["train"].sent_ids
    with pytest.raises(ValueError, match="exceeds the"):
        load_treebank_data(dataclasses.replace(SMALL.data, n_train=10**6))


def test_labeler_reads_the_head_and_its_position_through_the_tree():
    features = TokenFeatures([(5, 2)])
    labeler = RelationLabeler(features, n_relations=3, hidden_dim=4, offset_dim=2, max_offset=1)
    buckets = labeler.offset_buckets(4, torch.device("cpu"))
    assert buckets[0].tolist() == [0, 0, 0, 0]  # the root is its own bucket
    assert buckets[1, 3].item() == 1 and buckets[3, 1].item() == 3  # clipped at -1 / +1
    assert buckets[2, 1].item() == 3 and buckets[1, 2].item() == 1
    tokens = torch.tensor([[[1], [2], [3], [4]]])
    arcs = torch.zeros(1, 4, 4)
    arcs[0, 0, 2], arcs[0, 2, 1], arcs[0, 2, 3] = 1.0, 1.0, 1.0
    logits = labeler(tokens, arcs)
    assert logits.shape == (1, 4, 3)
    own = features(tokens)[0]
    inputs = torch.cat([own[1], own[2], labeler.offsets(torch.tensor(3))])
    torch.testing.assert_close(logits[0, 1], labeler.mlp(inputs))


def test_relation_losses_average_over_each_sentences_words():
    logits = torch.randn(2, 4, 5)
    relations = torch.tensor([[0, 2, 3, 4], [0, 1, 0, 0]])
    losses = relation_losses(logits, relations, torch.tensor([3, 1]))
    first = torch.nn.functional.cross_entropy(logits[0, 1:], relations[0, 1:])
    second = torch.nn.functional.cross_entropy(logits[1, 1:2], relations[1, 1:2])
    torch.testing.assert_close(losses, torch.stack([first, second]))


def test_pretraining_is_cached_deterministic_and_leaves_the_generators_seeded():
    data = load_treebank_data(SMALL.data)
    first = pretrained_parser(SMALL, data, seed=5)
    after_first = torch.rand(3)
    again = pretrained_parser(SMALL, data, seed=5)
    assert torch.equal(torch.rand(3), after_first)
    for (name, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert 0.0 <= parser_uas(first.eval(), data.splits["dev"]) <= 1.0


@pytest.mark.parametrize("config", [SMALL, SMALL_NO_SUPERVISION], ids=["multitask", "no-supervision"])
@pytest.mark.parametrize("method", available_methods())
def test_one_training_step_of_every_method_is_finite_and_reaches_the_parser(method, config):
    data = load_treebank_data(config.data)
    model = build_model(method, config, data, pretrained_parser(config, data, seed=0)).train()
    tokens, lengths, _, relations = data.splits["train"].batch(torch.arange(4))

    def summed(logits: torch.Tensor) -> torch.Tensor:  # I-MLE's gradient is 0 unless lambda * g flips an argmax
        return relation_losses(logits, relations, lengths).sum()

    logits, arcs = model(tokens, lengths, output_loss=summed)  # the relaxed-point estimators use it
    assert logits.shape == (*tokens.shape[:2], len(data.relations))
    loss = summed(logits)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    parser_grads = [p.grad for p in model.tree.scorer.parameters() if p.grad is not None]
    if method == "pipeline":  # no labeling gradient; frozen only without the parser's own loss
        assert not parser_grads
        assert any(p.requires_grad for p in model.tree.parameters()) == (config.parser_weight > 0)
    else:
        assert sum(g.abs().sum() for g in parser_grads) > 0


def test_a_run_is_deterministic_per_seed_and_reports_uas_and_diagnostics(tmp_path):
    experiment = get_experiment("parse-then-label")
    first = experiment.run("spigot", 1, SMALL, tmp_path / "a", progress=False)
    assert {m.key for m in experiment.metrics + experiment.diagnostics} <= set(first)  # spigot has every one
    assert all(0.0 <= first[m.key] <= 1.0 for m in experiment.metrics)
    assert first["start_score_norm"] > 0 and 0.0 <= first["end_zero_share"] <= 1.0
    assert -1.0 <= first["start_cosine_ste"] <= 1.0
    assert experiment.run("spigot", 1, SMALL, tmp_path / "b", progress=False) == first
    pipeline = experiment.run("pipeline", 1, SMALL_NO_SUPERVISION, tmp_path / "c", progress=False)
    assert pipeline["start_zero_share"] == 1.0 and "start_cosine_ste" not in pipeline
    data = load_treebank_data(SMALL.data)
    frozen = pretrained_parser(SMALL_NO_SUPERVISION, data, seed=1).eval()
    with torch.no_grad():
        assert pipeline["uas"] == pytest.approx(parser_uas(frozen, data.splits["test"]))


def test_the_matched_pipeline_trains_its_parser_on_gold_trees_only():
    """parser_weight > 0: the pipeline's parser learns from its own loss, never from the labeler's."""
    data = load_treebank_data(SMALL.data)
    model = build_model("pipeline", SMALL, data, pretrained_parser(SMALL, data, seed=2)).train()
    tokens, lengths, _, relations = data.splits["train"].batch(torch.arange(8))
    logits, _ = model(tokens, lengths)
    relation_losses(logits, relations, lengths, "sum").sum().backward()
    assert all(p.grad is None for p in model.tree.scorer.parameters())
    assert any(p.grad is not None for p in model.labeler.parameters())
    gold_tokens, gold_lengths, heads, _ = data.splits["parser"].batch(torch.arange(8))
    parser_losses(model.tree.scorer(gold_tokens, gold_lengths), heads, gold_lengths, "sum").sum().backward()
    assert sum(p.grad.abs().sum() for p in model.tree.scorer.parameters() if p.grad is not None) > 0


def test_word_losses_sum_or_average_over_the_words():
    logits = torch.randn(2, 4, 5)
    relations = torch.tensor([[0, 2, 3, 4], [0, 1, 0, 0]])
    lengths = torch.tensor([3, 1])
    summed = relation_losses(logits, relations, lengths, "sum")
    torch.testing.assert_close(summed / lengths, relation_losses(logits, relations, lengths, "mean"))
    with pytest.raises(ValueError, match="word_losses must be one of"):
        ParseThenLabelConfig(word_losses="max")
    with pytest.raises(ValueError, match="parser_weight must be"):
        ParseThenLabelConfig(parser_weight=-1.0)


def test_presets_and_description():
    experiment = get_experiment("parse-then-label")
    full, demo = experiment.config("full"), experiment.config("demo")
    former = experiment.config("no-intermediate-supervision")
    assert demo.data.n_train < full.data.n_train and demo.epochs <= full.epochs
    assert full.finetune_lr < full.lr and full.parser_weight > 0 and full.patience is not None
    assert full.estimator_options["spigot"] == {
        "solver": "relaxed", "step": "reference", "eta": float(full.batch_size), "threshold": 1.0
    }
    assert former.parser_weight == 0 and former.estimator_options["spigot"]["step"] == "fixed"
    assert (former.pretrain_epochs, former.epochs, former.finetune_lr) == (15, 10, 2e-5)
    with pytest.raises(ValueError, match="preset must be one of"):
        experiment.config("nope")
    text = experiment.describe(SMALL)
    assert "24 train sentences with gold trees" in text and "36%" in text
    assert "matched pipeline" in text
    assert "no intermediate supervision" in experiment.describe(SMALL_NO_SUPERVISION)
