"""Building blocks of the tree experiments: parser, graph convolution, latent-tree stage,
token features, and the OpenBLAS thread control of the runner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spigot import Arborescence
from spigot.experiments.arc_parser import (
    ArcParser,
    BiaffineArcScorer,
    attachment_counts,
    head_selection_loss,
)
from spigot.experiments.blas_threads import blas_threads, loaded_openblas
from spigot.experiments.data import heads_to_matrix
from spigot.experiments.latent_tree import ChainScores, LatentTree
from spigot.experiments.methods import build_latent_layer
from spigot.experiments.token_features import TokenFeatures
from spigot.experiments.tree_gcn import TreeGCN, TreeGCNLayer


def _tokens(lengths: list[int], vocabulary: int = 7) -> torch.Tensor:
    """(B, max+1, 1) token ids: a root id at 0, random words, 0-padding."""
    size = max(lengths) + 1
    tokens = torch.zeros(len(lengths), size, 1, dtype=torch.int64)
    for b, n in enumerate(lengths):
        tokens[b, 0, 0] = 1
        tokens[b, 1 : n + 1, 0] = torch.randint(2, vocabulary, (n,))
    return tokens


def _parser() -> ArcParser:
    features = TokenFeatures([(7, 4)])
    return ArcParser(features, features.output_dim, hidden_dim=3, arc_dim=5)


# ---------------------------------------------------------------- parser
def test_parser_scores_are_square_per_sentence_and_zero_outside():
    lengths = torch.tensor([4, 2])
    scores = _parser()(_tokens([4, 2]), lengths)
    assert scores.shape == (2, 5, 5)
    assert torch.all(scores[1, 3:, :] == 0) and torch.all(scores[1, :, 3:] == 0)
    assert torch.all(scores[:, :, 0] == 0)
    assert torch.all(torch.diagonal(scores, dim1=1, dim2=2) == 0)
    assert scores[0, 1:, 1:].abs().sum() > 0


def test_parser_scores_do_not_depend_on_padding():
    parser = _parser().eval()
    tokens = _tokens([3, 2])
    alone = parser(tokens[1:, :3], torch.tensor([2]))
    batched = parser(tokens, torch.tensor([3, 2]))
    torch.testing.assert_close(batched[1, :3, :3], alone[0])


def test_biaffine_scorer_matches_its_formula():
    scorer = BiaffineArcScorer(3, 2)
    states = torch.randn(1, 4, 3)
    heads, dependents = scorer.head_view(states)[0], scorer.dependent_view(states)[0]
    expected = heads @ scorer.bilinear @ dependents.T + scorer.head_bias(heads)
    torch.testing.assert_close(scorer(states)[0], expected)


def test_head_selection_loss_is_the_cross_entropy_of_each_gold_head():
    scores = torch.randn(1, 4, 4)
    gold = heads_to_matrix([2, 0, 2]).unsqueeze(0)
    loss = head_selection_loss(scores, gold, torch.tensor([3]))
    expected = 0.0
    for m, h in zip((1, 2, 3), (2, 0, 2)):
        candidates = [k for k in range(4) if k != m]
        expected -= torch.log_softmax(scores[0, candidates, m], dim=0)[candidates.index(h)]
    torch.testing.assert_close(loss, expected.reshape(1))
    with pytest.raises(ValueError, match="same shape"):
        head_selection_loss(scores, gold[:, :3, :3], torch.tensor([2]))


def test_attachment_counts_count_correct_heads_of_real_words():
    gold = torch.stack([heads_to_matrix([2, 0, 2]), heads_to_matrix([0, 1, 0], 4)])
    predicted = torch.stack([heads_to_matrix([0, 0, 2]), heads_to_matrix([0, 1, 0], 4)])
    predicted[1, 0, 3] = 1.0  # an arc into padding is not counted
    assert attachment_counts(predicted, gold, torch.tensor([3, 2])) == (2 + 2, 5)


# ---------------------------------------------------------------- graph convolution
def test_gcn_layer_reads_heads_and_children_through_the_arcs():
    layer = TreeGCNLayer(2, 3)
    states = torch.randn(1, 3, 2)
    arcs = heads_to_matrix([0, 1]).unsqueeze(0)  # 0 -> 1 -> 2
    out = layer(states, arcs)[0]
    h = states[0]
    head_of = {1: h[0], 2: h[1]}
    children_of = {0: h[1], 1: h[2]}
    for node in range(3):
        expected = layer.self_loop(h[node])
        expected = expected + layer.from_head(head_of.get(node, torch.zeros(2)))
        expected = expected + layer.from_children(children_of.get(node, torch.zeros(2)))
        torch.testing.assert_close(out[node], torch.relu(expected))


def test_gcn_accepts_soft_structures_and_checks_shapes():
    gcn = TreeGCN(4, 6, layers=2)
    arcs = torch.softmax(torch.randn(2, 5, 5), dim=1).requires_grad_()
    out = gcn(torch.randn(2, 5, 4), arcs)
    assert out.shape == (2, 5, 6)
    out.sum().backward()
    assert arcs.grad is not None and arcs.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="arcs must have shape"):
        gcn(torch.randn(2, 5, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="layers must be a positive integer"):
        TreeGCN(4, 6, layers=0)


# ---------------------------------------------------------------- latent-tree stage
def test_chain_scores_make_the_chain_the_best_tree():
    lengths = torch.tensor([4, 2])
    scores = ChainScores()(_tokens([4, 2]), lengths)
    trees = Arborescence(single_root=True).map(scores, lengths)
    assert torch.equal(trees[0], heads_to_matrix([0, 1, 2, 3]))
    assert torch.equal(trees[1], heads_to_matrix([0, 1], 5))


def test_latent_tree_uses_the_method_in_training_and_the_argmax_in_eval():
    polytope = Arborescence(single_root=True)
    tree = LatentTree(_parser(), build_latent_layer("marginals", polytope), polytope, scale=2.0)
    tokens, lengths = _tokens([3, 2]), torch.tensor([3, 2])
    soft = tree(tokens, lengths)
    expected = polytope.marginals(2.0 * tree.scorer(tokens, lengths), lengths)
    torch.testing.assert_close(soft, expected)
    tree.eval()
    hard = tree(tokens, lengths)
    torch.testing.assert_close(hard, polytope.map(tree.scorer(tokens, lengths), lengths))
    with pytest.raises(ValueError, match="scale must be a positive number"):
        LatentTree(_parser(), build_latent_layer("ste-i", polytope), polytope, scale=0.0)


def test_a_frozen_scorer_has_no_gradient_and_no_dropout():
    polytope = Arborescence()
    features = TokenFeatures([(7, 4)])
    parser = ArcParser(features, 4, hidden_dim=3, arc_dim=5, dropout=0.5)
    tree = LatentTree(parser, build_latent_layer("pipeline", polytope), polytope, frozen=True)
    tree.train()
    assert not tree.scorer.training and tree.training
    assert not any(p.requires_grad for p in tree.parameters())
    tokens, lengths = _tokens([3]), torch.tensor([3])
    torch.testing.assert_close(tree(tokens, lengths), tree(tokens, lengths))  # no dropout noise


# ---------------------------------------------------------------- token features
def test_token_features_concatenate_and_freeze_tables():
    vectors = torch.randn(5, 3)
    features = TokenFeatures([vectors, (4, 2)], frozen=[True, False])
    tokens = torch.tensor([[[1, 2], [4, 0]]])
    out = features(tokens)
    assert out.shape == (1, 2, 5) and features.output_dim == 5
    torch.testing.assert_close(out[0, 0, :3], vectors[1])
    assert torch.all(out[0, 1, 3:] == 0)  # padding row of a drawn table
    assert not features.embeddings[0].weight.requires_grad
    assert features.embeddings[1].weight.requires_grad
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, T, 2\)"):
        features(torch.zeros(1, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="one flag per table"):
        TokenFeatures([(4, 2)], frozen=[True, False])


# ---------------------------------------------------------------- OpenBLAS threads
def test_blas_threads_are_set_in_the_block_and_restored_after():
    np.linalg.svd(np.ones((3, 3)))  # numpy's OpenBLAS is loaded
    libraries = loaded_openblas()
    before = [library.threads for library in libraries]
    with blas_threads(1) as chosen:
        assert [library.path for library in chosen] == [library.path for library in libraries]
        assert all(library.threads == 1 for library in chosen)
    assert [library.threads for library in libraries] == before
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        with blas_threads(0):
            pass
