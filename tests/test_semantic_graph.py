"""SemanticGraph and LabeledArcs: shapes, MAP against brute force and against ad3, vertices, marginals."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spigot.polytopes import LabeledArcs, SemanticGraph

TINY = [  # (words, labels, unique labels)
    (1, 2, ()),
    (2, 2, (0,)),
    (2, 3, (0, 1)),
    (3, 2, (0,)),
    (3, 2, (0, 1)),
    (3, 3, (1,)),
    (3, 3, (0, 1, 2)),
]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def all_graphs(words: int, labels: int, unique: tuple[int, ...]) -> tuple[list, np.ndarray]:
    """Every constrained graph, as per-arc choices: 0 = no arc, 1 + l = arc with label l.

    Written from the definition, independently of the polytope: each arc h -> m (m >= 1,
    h != m) is absent or carries one label, and no head has two arcs with the same unique label.
    """
    arcs = [(h, m) for h in range(words + 1) for m in range(1, words + 1) if h != m]
    choices = np.array(list(itertools.product(range(labels + 1), repeat=len(arcs))))
    keep = np.ones(len(choices), dtype=bool)
    for head in range(words + 1):
        from_head = [i for i, (h, _) in enumerate(arcs) if h == head]
        for label in unique:
            keep &= (choices[:, from_head] == label + 1).sum(axis=1) <= 1
    return arcs, choices[keep]


def as_arrays(arcs: list, choices: np.ndarray, words: int, labels: int) -> np.ndarray:
    out = np.zeros((len(choices), words + 1, words + 1, labels))
    for i, (h, m) in enumerate(arcs):
        on = choices[:, i] > 0
        out[np.flatnonzero(on), h, m, choices[on, i] - 1] = 1.0
    return out


def brute_force_value(scores: np.ndarray, unique: tuple[int, ...]) -> float:
    words, labels = scores.shape[0] - 1, scores.shape[2]
    arcs, choices = all_graphs(words, labels, unique)
    padded = np.concatenate([np.zeros((len(arcs), 1)), np.array([scores[h, m] for h, m in arcs])], axis=1)
    return float(padded[np.arange(len(arcs)), choices].sum(axis=1).max())


def unique_heavy_scores(rng: np.random.Generator, words: int, labels: int, unique) -> np.ndarray:
    """Scores that make unique labels attractive, so that their constraint binds."""
    scores = rng.standard_normal((words + 1, words + 1, labels))
    scores[..., list(unique)] += 1.0
    return scores


# ----------------------------------------------------------------------------- construction
@pytest.mark.parametrize("n_labels", [0, -1, 2.5, True, "3"])
def test_n_labels_must_be_a_positive_integer(n_labels):
    with pytest.raises(ValueError, match="n_labels"):
        SemanticGraph(n_labels)
    with pytest.raises(ValueError, match="n_labels"):
        LabeledArcs(n_labels)


@pytest.mark.parametrize("unique", [(3,), (-1,), (0, 0), (0.5,), (True,)])
def test_unique_labels_are_checked(unique):
    with pytest.raises(ValueError, match="unique_labels"):
        SemanticGraph(3, unique_labels=unique)


def test_unique_labels_are_stored_sorted():
    assert SemanticGraph(4, unique_labels=[2, 0]).unique_labels == (0, 2)
    assert repr(SemanticGraph(4, [1])) == "SemanticGraph(n_labels=4, unique_labels=(1,))"


def test_relaxations():
    graph = SemanticGraph(3, unique_labels=(0,))
    assert isinstance(graph.relaxation(), LabeledArcs)
    assert graph.relaxation().n_labels == 3
    assert graph.relaxation() is graph.relaxation()
    arcs = LabeledArcs(3)
    assert arcs.relaxation() is arcs


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    "shape, match",
    [((3, 4, 2), "n\\+1, n\\+1"), ((1, 1, 2), "n >= 1"), ((3, 3, 3), "n_labels=2"), ((3, 3), "at least 3 axes")],
)
def test_bad_shapes_are_rejected(shape, match):
    with pytest.raises(ValueError, match=match):
        SemanticGraph(2).map(torch.zeros(shape))


def test_bad_values_and_lengths_are_rejected():
    graph = SemanticGraph(2, unique_labels=(0,))
    scores = torch.zeros(2, 4, 4, 2)
    with pytest.raises(ValueError, match="NaN"):
        graph.map(torch.full((3, 3, 2), float("nan")))
    with pytest.raises(ValueError, match="lengths must lie in \\[1, 3\\]"):
        graph.map(scores, torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="lengths must lie"):
        graph.map(scores, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="batch shape"):
        graph.map(scores, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="integer"):
        graph.map(scores, torch.tensor([1.0, 2.0]))


# ----------------------------------------------------------------------------- MAP
@pytest.mark.parametrize("words, labels, unique", TINY)
def test_map_matches_brute_force(words, labels, unique, rng):
    graph = SemanticGraph(labels, unique_labels=unique)
    arcs, choices = all_graphs(words, labels, unique)
    for _ in range(3):
        scores = unique_heavy_scores(rng, words, labels, unique)
        z = graph.map(scores)
        assert np.isin(z, (0.0, 1.0)).all()
        assert np.sum(z * scores) == pytest.approx(brute_force_value(scores, unique), abs=1e-12)
        vertices = as_arrays(arcs, choices, words, labels)
        assert np.any(np.all(vertices == z, axis=(1, 2, 3))), "the MAP must be a constrained graph"


@pytest.mark.parametrize("words, labels, unique", TINY[:5])
def test_vertices_are_the_constrained_graphs(words, labels, unique):
    arcs, choices = all_graphs(words, labels, unique)
    expected = as_arrays(arcs, choices, words, labels).reshape(len(choices), -1)
    got = SemanticGraph(labels, unique).vertices((words + 1, words + 1, labels)).reshape(len(choices), -1)
    assert sorted(map(tuple, got)) == sorted(map(tuple, expected))


def test_labeled_arcs_is_semantic_graph_without_unique_labels(rng):
    for words, labels in [(1, 3), (2, 2), (3, 2)]:
        shape = (words + 1, words + 1, labels)
        a = LabeledArcs(labels).vertices(shape).reshape(-1, np.prod(shape))
        b = SemanticGraph(labels).vertices(shape).reshape(-1, np.prod(shape))
        assert sorted(map(tuple, a)) == sorted(map(tuple, b))
        scores = rng.standard_normal(shape)
        assert np.array_equal(LabeledArcs(labels).map(scores), SemanticGraph(labels).map(scores))
        assert np.sum(LabeledArcs(labels).map(scores) * scores) == pytest.approx(brute_force_value(scores, ()))


def test_non_arcs_are_never_chosen():
    scores = np.full((4, 4, 2), -1.0)
    scores[:, 0] = 10.0  # arcs into the root
    scores[np.arange(4), np.arange(4)] = 10.0  # self-loops
    for graph in (SemanticGraph(2, (0,)), LabeledArcs(2)):
        assert not graph.map(scores).any()
        assert not graph.map_ad3(scores).any()


def test_unique_label_constraint_binds():
    graph = SemanticGraph(2, unique_labels=(0,))
    scores = np.zeros((4, 4, 2))
    scores[0, 1:, 0] = [3.0, 2.0, 1.0]  # the root wants label 0 on every word
    scores[0, 1:, 1] = [0.5, 1.5, 0.2]  # label 1 is the fallback
    z = graph.map(scores)
    assert z[0, :, 0].sum() == 1
    # best: word 1 takes label 0 (3.0), words 2 and 3 fall back to label 1 (1.5 + 0.2) = 4.7;
    # any other use of label 0 is worse (e.g. word 2: 2.0 + 0.5 + 0.2 = 2.7 + ...).
    assert np.sum(z * scores) == pytest.approx(4.7)
    assert z[0, 1, 0] == 1 and z[0, 2, 1] == 1 and z[0, 3, 1] == 1


def test_map_is_batched_padded_and_follows_the_input(rng):
    graph = SemanticGraph(3, unique_labels=(0, 2))
    scores = torch.from_numpy(unique_heavy_scores(rng, 4, 3, (0, 2))).float()
    batch = torch.stack([scores, scores.flip(0), scores * 2])
    lengths = torch.tensor([4, 2, 1])
    z = graph.map(batch, lengths)
    assert z.dtype == torch.float32 and z.shape == batch.shape
    for b, n in enumerate(lengths.tolist()):
        valid = batch[b, : n + 1, : n + 1].double().numpy()
        assert np.array_equal(z[b, : n + 1, : n + 1].numpy(), graph.map(valid))
        assert z[b, n + 1 :].abs().sum() == 0 and z[b, :, n + 1 :].abs().sum() == 0
    assert torch.equal(graph.map_ad3(batch, lengths), z)


def test_map_is_a_best_vertex_on_tied_integer_scores_with_lengths(rng):
    """The compiled assignment on ties (integer scores, as in a certificate at the projection):
    every instance of a padded batch gets a vertex of its valid region with the brute-force value."""
    for labels, unique in [(2, (0,)), (3, (0, 2)), (3, (0, 1, 2))]:
        graph = SemanticGraph(labels, unique_labels=unique)
        scores = rng.integers(-1, 3, size=(4, 4, 4, labels)).astype(np.float64)
        lengths = torch.tensor([3, 2, 1, 3])
        z = graph.map(torch.from_numpy(scores), lengths).numpy()
        for b, n in enumerate(lengths.tolist()):
            valid = scores[b, : n + 1, : n + 1]
            vertices = graph.vertices(valid.shape)
            assert any(np.array_equal(z[b, : n + 1, : n + 1], v) for v in vertices)
            assert np.sum(z[b, : n + 1, : n + 1] * valid) == pytest.approx(brute_force_value(valid, unique))
            assert z[b, n + 1 :].sum() == 0 and z[b, :, n + 1 :].sum() == 0


# ----------------------------------------------------------------------------- ad3 against the combinatorial MAP
def test_ad3_map_agrees_with_the_combinatorial_map(rng):
    disagreements = []
    for trial in range(40):
        words = int(rng.integers(1, 16))
        labels = int(rng.integers(1, 7))
        unique = tuple(np.flatnonzero(rng.random(labels) < 0.5).tolist())
        graph = SemanticGraph(labels, unique_labels=unique)
        scores = unique_heavy_scores(rng, words, labels, unique)
        if not np.array_equal(graph.map(scores), graph.map_ad3(scores)):
            disagreements.append((trial, words, labels, unique))
    assert not disagreements


@settings(max_examples=30, deadline=None)
@given(
    words=st.integers(1, 6),
    labels=st.integers(1, 4),
    unique_mask=st.integers(0, 15),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_map_oracle_agrees(words, labels, unique_mask, seed):
    unique = tuple(l for l in range(labels) if unique_mask >> l & 1)
    graph = SemanticGraph(labels, unique_labels=unique)
    scores = unique_heavy_scores(np.random.default_rng(seed), words, labels, unique)
    z = graph.map(scores)
    assert np.array_equal(z, graph.map_ad3(scores))
    # the generic factor-graph oracle (ad3 LP-MAP, exact integer program as fallback)
    assert np.array_equal(z, graph.ad3_map_one(scores))


def test_map_is_exact_on_tied_scores():
    """Degenerate scores (all ties) still give a maximiser from every oracle."""
    graph = SemanticGraph(2, unique_labels=(0,))
    scores = np.zeros((4, 4, 2))
    scores[..., 0] = 1.0  # label 0 is worth 1 on every arc, but unique per head
    best = brute_force_value(scores, (0,))
    for z in (graph.map(scores), graph.ad3_map_one(scores)):
        assert np.sum(z * scores) == pytest.approx(best)


# ----------------------------------------------------------------------------- LabeledArcs marginals
def test_labeled_arcs_marginals_match_brute_force(rng):
    labels, words = 2, 2
    graph = LabeledArcs(labels)
    shape = (words + 1, words + 1, labels)
    scores = rng.standard_normal(shape)
    vertices = graph.vertices(shape)
    weights = np.exp((vertices * scores).sum(axis=(1, 2, 3)))
    expected = (weights[:, None, None, None] * vertices).sum(axis=0) / weights.sum()
    assert np.allclose(graph.marginals(scores), expected)
    padded = graph.marginals(torch.from_numpy(np.stack([scores, scores])), torch.tensor([2, 1]))
    assert padded[1, 2:].abs().sum() == 0 and padded[1, :, 2:].abs().sum() == 0


# ----------------------------------------------------------------------------- ad3 is optional
def test_spigot_imports_and_maps_without_ad3():
    code = (
        "import sys; sys.modules['ad3'] = None\n"
        "import numpy as np, spigot\n"
        "graph = spigot.SemanticGraph(2, unique_labels=(0,))\n"
        "print(int(graph.map(np.ones((3, 3, 2))).sum()))\n"
        "try:\n"
        "    graph.map_ad3(np.ones((3, 3, 2)))\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, message = out.stdout.splitlines()
    assert count == "4"  # every arc (0->1, 0->2, 1->2, 2->1) is worth taking with some label
    assert "make install" in message and "scripts/install.sh" in message


@pytest.mark.slow
def test_ad3_map_agrees_on_many_large_instances():
    rng = np.random.default_rng(7)
    disagreements = []
    for trial in range(300):
        words = int(rng.integers(1, 41))
        labels = int(rng.integers(1, 21))
        unique = tuple(np.flatnonzero(rng.random(labels) < 0.5).tolist())
        graph = SemanticGraph(labels, unique_labels=unique)
        scores = unique_heavy_scores(rng, words, labels, unique)
        z = graph.map(scores)
        if not (np.array_equal(z, graph.map_ad3(scores)) and np.array_equal(z, graph.ad3_map_one(scores))):
            disagreements.append((trial, words, labels, unique))
    assert not disagreements
