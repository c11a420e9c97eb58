"""``sentiment``: latent-tree learning without a treebank, on English movie-review sentences.

A binary sentiment classifier reads a dependency tree that a parser, trained from nothing,
chooses for each sentence; the parser learns only from the sentiment loss, through the
method's latent layer. No English treebank ships with the installed data (PetroGold is
Portuguese), so no parser is ever supervised: this is latent-tree learning in the sense of
Mihaylova, Niculae and Martins (2020), not the second pipeline of Peng, Thomson and Smith
(2018), whose semantic parser is pre-trained. The setting follows Mihaylova et al.'s where it
is cheap:

- **data**: the rated movie-review sentences of :func:`~spigot.experiments.data.load_movie_reviews`
  (label: the sign of the mean rating), tokenized for GloVe, kept when at most ``max_words``
  long; fixed random subsets of the train and dev splits, the whole test split (under the
  length limit);
- **words**: frozen GloVe 6B 50d vectors (words without one share the unknown vector);
- **parser**: a BiLSTM over the word vectors and a biaffine arc scorer
  (:class:`~spigot.experiments.arc_parser.ArcParser`), randomly initialised;
- **latent structure**: single-root non-projective trees
  (:class:`~spigot.polytopes.Arborescence`), or single-root projective trees
  (:class:`~spigot.polytopes.ProjectiveTree`) with ``structure="projective"`` (the preset
  ``projective``);
- **classifier**: a BiLSTM of its own over the word vectors (as in Mihaylova et al., the
  classifier reads BiLSTM states), a graph convolution over the latent structure
  (:class:`~spigot.experiments.tree_gcn.TreeGCN`), a mean over the words and a linear layer.

**Baselines** (no parser is trained):

- ``no-tree``: the same encoder and classifier reading no structure (every arc weight 0, so the
  graph convolution only transforms each word's own state): a BiLSTM classifier;
- ``chain``: the same classifier reading a fixed, input-independent tree, the left-to-right
  chain (every word headed by the word before it;
  :class:`~spigot.experiments.latent_tree.ChainScores`).

There is no ``pipeline`` row: a pipeline needs a parser trained on gold English trees.

Reported: test accuracy of the model with the best dev accuracy, that dev accuracy, and the
fraction of the test trees' arcs that are chain arcs (``h = m - 1``), to see how far the
learned trees are from the chain (— for ``no-tree``, which reads no tree).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spigot.errors import UnsupportedOperation
from spigot.experiments.arc_parser import ArcParser, BiLSTMEncoder
from spigot.experiments.data import (
    PAD,
    ROOT,
    UNK,
    Vocabulary,
    encode_sentences,
    load_glove,
    load_movie_reviews,
    tokenize,
)
from spigot.experiments.diagnostics import DIAGNOSTICS, latent_diagnostics
from spigot.experiments.latent_tree import TREE_ESTIMATOR_OPTIONS, ChainScores, LatentTree
from spigot.experiments.methods import (
    CHAIN,
    NO_TREE,
    PIPELINE,
    available_methods,
    build_latent_layer,
    ordered_methods,
)
from spigot.experiments.metrics import accuracy
from spigot.experiments.registry import Experiment, check_preset, register_experiment
from spigot.experiments.reproducibility import seed_everything
from spigot.experiments.results import Metric
from spigot.experiments.token_features import TokenFeatures
from spigot.experiments.training import train
from spigot.experiments.tuning import learning_rate_grid
from spigot.experiments.tree_gcn import TreeGCN
from spigot.polytopes import Arborescence, ProjectiveTree
from spigot.polytopes.base import Polytope

#: Factors on the arc scores that a method's latent layer reads in training (1 for the others).
#: SparseMAP reads 50 times the scores: at the near-zero scores of a freshly initialised parser
#: the exact projection onto the trees mixes hundreds of trees, and its backward pass (the
#: span of the exposed face) took about 2 minutes per batch of 32; at 50 times the scores it
#: took 0.03 s.
TREE_SCORE_SCALES: dict[str, float] = {"sparsemap": 50.0}

#: The latent structures ``SentimentConfig.structure`` names.
STRUCTURES = ("nonprojective", "projective")


def tree_polytope(structure: str) -> Polytope:
    """The single-root tree polytope of ``structure`` (one of :data:`STRUCTURES`)."""
    if structure == "nonprojective":
        return Arborescence(single_root=True)
    if structure == "projective":
        return ProjectiveTree(single_root=True)
    raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")


@dataclass(frozen=True)
class MovieReviewSubset:
    """Which movie-review sentences an experiment uses.

    Attributes
    ----------
    max_words
        Keep sentences of at most this many tokens (and at least 2).
    n_train, n_dev
        Sizes of the fixed random subsets of the train and dev splits (all of a split when it
        has fewer).
    n_test
        Size of the test subset; ``None`` for every test sentence under the length limit.
    seed
        Seed of the subsets (and of the random vectors of the unknown and root tokens).
    """

    max_words: int = 25
    n_train: int = 5000
    n_dev: int = 500
    n_test: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class SentimentConfig:
    """Settings of the ``sentiment`` experiment.

    Attributes
    ----------
    data
        The sentences used.
    hidden_dim, arc_dim
        The parser's BiLSTM state size (per direction) and arc-view size.
    encoder_dim
        The classifier's BiLSTM state size (per direction).
    structure
        The latent trees: ``"nonprojective"`` (single-root arborescences) or ``"projective"``.
    gcn_dim, gcn_layers
        The classifier's graph convolution.
    dropout
        Dropout of the parser's inputs and before each graph-convolution layer.
    epochs, batch_size, lr
        Adam training schedule (the epoch with the best dev accuracy is kept).
    estimator_options
        Options of the latent layer, by method name (see :data:`TREE_ESTIMATOR_OPTIONS`).
    score_scales
        Factor on the scores each method's latent layer reads in training (see
        :data:`TREE_SCORE_SCALES`).
    """

    data: MovieReviewSubset = MovieReviewSubset()
    hidden_dim: int = 50
    arc_dim: int = 50
    encoder_dim: int = 50
    structure: str = "nonprojective"
    gcn_dim: int = 50
    gcn_layers: int = 2
    dropout: float = 0.2
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    estimator_options: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in TREE_ESTIMATOR_OPTIONS.items()}
    )
    score_scales: dict[str, float] = field(default_factory=lambda: dict(TREE_SCORE_SCALES))


@dataclass(frozen=True)
class SentenceSplit:
    """One split of labeled sentences as tensors: ``tokens`` ``(N, T, F)`` token feature indices
    (here the word, ``F = 1``; ``parse-then-emotion``'s tweets add the tag, ``F = 2``) with the
    root token at position 0 (0-padded), ``lengths`` ``(N,)`` word counts, ``labels`` ``(N,)``
    in {0, 1}."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens (cut to the batch's longest sentence), lengths and labels of ``indices``."""
        lengths = self.lengths[indices]
        size = int(lengths.max()) + 1
        return self.tokens[indices, :size], lengths, self.labels[indices]


@dataclass(frozen=True)
class SentimentData:
    """The splits, the word vocabulary and its (frozen) embedding matrix."""

    splits: dict[str, SentenceSplit]
    vocabulary: Vocabulary
    vectors: torch.Tensor


@lru_cache(maxsize=2)
def load_sentiment_data(subset: MovieReviewSubset) -> SentimentData:
    """Tokenize, filter, subsample and encode the sentences of ``subset`` (cached per subset).

    The vocabulary holds every word of the chosen sentences that has a GloVe vector; the rest
    map to the unknown token.
    """
    if subset.max_words < 2:
        raise ValueError(f"max_words must be at least 2, got {subset.max_words}")
    rng = np.random.default_rng(subset.seed)
    sizes = {"train": subset.n_train, "dev": subset.n_dev, "test": subset.n_test}
    chosen: dict[str, list[tuple[list[str], int]]] = {}
    for split, size in sizes.items():
        sentences = [(tokenize(s.text), s.label) for s in load_movie_reviews(split)]
        kept = [s for s in sentences if 2 <= len(s[0]) <= subset.max_words]
        if size is not None and size < len(kept):
            kept = [kept[i] for i in sorted(rng.choice(len(kept), size=size, replace=False))]
        chosen[split] = kept
    glove = load_glove()
    vocabulary = Vocabulary.build(
        [words for split in chosen.values() for words, _ in split],
        keep=glove,
        specials=(PAD, UNK, ROOT),
    )
    splits = {}
    for split, sentences in chosen.items():
        ids, lengths = encode_sentences([w for w, _ in sentences], vocabulary, add_root=True)
        labels = torch.tensor([label for _, label in sentences], dtype=torch.int64)
        splits[split] = SentenceSplit(ids.unsqueeze(-1), lengths, labels)
    return SentimentData(splits, vocabulary, vocabulary.embedding_matrix(glove, seed=subset.seed))


class TreeSentimentClassifier(nn.Module):
    """BiLSTM states, graph convolution over a latent tree (or none), mean over words, two logits.

    Parameters
    ----------
    words
        The (frozen) word embedding, shared with the parser.
    tree
        The latent-tree stage (parser or chain, and the method's layer); ``None`` for the
        ``no-tree`` baseline, which reads no structure.
    encoder_dim
        The classifier's BiLSTM state size per direction.
    gcn_dim, gcn_layers, dropout
        The graph convolution (and dropout on the BiLSTM's inputs).
    """

    def __init__(
        self,
        words: TokenFeatures,
        tree: LatentTree | None,
        encoder_dim: int,
        gcn_dim: int,
        gcn_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.words = words
        self.tree = tree
        self.encoder = BiLSTMEncoder(words.output_dim, encoder_dim, dropout)
        self.project = nn.Linear(self.encoder.output_dim, gcn_dim)
        self.gcn = TreeGCN(gcn_dim, gcn_dim, gcn_layers, dropout)
        self.classify = nn.Linear(gcn_dim, 2)

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        output_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, 2)`` and the structure ``(B, n+1, n+1)`` the classifier read (``None``
        without a tree). ``output_loss`` (the training loss as a function of the logits) lets a
        latent layer that evaluates the classifier at a second structure do so."""
        states = self.states(tokens, lengths)
        if self.tree is None:
            return self.read(states, lengths, None), None
        downstream = None if output_loss is None else (lambda a: output_loss(self.read(states, lengths, a)))
        arcs = self.tree(tokens, lengths, downstream)
        return self.read(states, lengths, arcs), arcs

    def states(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The classifier's BiLSTM states ``(B, n+1, 2 * encoder_dim)`` (node 0 the root token)."""
        return self.encoder(self.words(tokens), lengths + 1)

    def read(
        self, states: torch.Tensor, lengths: torch.Tensor, arcs: torch.Tensor | None
    ) -> torch.Tensor:
        """Logits ``(B, 2)`` of the classifier reading ``arcs`` (``None``: no structure)."""
        hidden = torch.relu(self.project(states))
        if arcs is None:
            arcs = hidden.new_zeros(hidden.shape[0], hidden.shape[1], hidden.shape[1])
        hidden = self.gcn(hidden, arcs)
        positions = torch.arange(states.shape[1], device=states.device)
        words = ((positions >= 1) & (positions[None, :] <= lengths[:, None])).to(hidden.dtype)
        pooled = (hidden * words[..., None]).sum(dim=1) / lengths[:, None].to(hidden.dtype)
        return self.classify(pooled)


def build_sentiment_model(
    method: str, config: SentimentConfig, vectors: torch.Tensor
) -> TreeSentimentClassifier:
    """The model of ``method`` (seed the global generators first for its initialisation).

    Raises
    ------
    spigot.UnsupportedOperation
        ``method`` is ``pipeline``: no parser can be trained on gold English trees here.
    """
    if method == PIPELINE:
        raise UnsupportedOperation(
            "sentiment has no pipeline: no English treebank is installed, so no parser can be "
            f"trained on gold trees; its baselines are {NO_TREE!r} and {CHAIN!r}"
        )
    polytope = tree_polytope(config.structure)
    words = TokenFeatures([vectors], frozen=[True])
    tree: LatentTree | None = None
    if method == CHAIN:
        tree = LatentTree(ChainScores(), build_latent_layer(CHAIN, polytope), polytope, frozen=True)
    elif method != NO_TREE:
        scorer = ArcParser(
            words, words.output_dim, config.hidden_dim, config.arc_dim, config.dropout
        )
        latent = build_latent_layer(method, polytope, **config.estimator_options.get(method, {}))
        tree = LatentTree(scorer, latent, polytope, scale=config.score_scales.get(method, 1.0))
    return TreeSentimentClassifier(
        words, tree, config.encoder_dim, config.gcn_dim, config.gcn_layers, config.dropout
    )


def chain_fraction(arcs: torch.Tensor, lengths: torch.Tensor) -> tuple[int, int]:
    """``(chain arcs, words)``: how many of the trees' arcs are ``m - 1 -> m``."""
    chain = torch.diagonal(arcs, offset=1, dim1=1, dim2=2)
    inside = torch.arange(1, arcs.shape[1], device=arcs.device)[None, :] <= lengths[:, None]
    return int((chain * inside).sum()), int(lengths.sum())


def _predict(
    model: TreeSentimentClassifier, split: SentenceSplit, chunk: int = 256
) -> tuple[torch.Tensor, float]:
    """Predicted labels of a split (in chunks) and the chain fraction of its trees (NaN
    without trees)."""
    predictions, chain, words = [], 0, 0
    for start in range(0, len(split), chunk):
        tokens, lengths, _ = split.batch(torch.arange(start, min(start + chunk, len(split))))
        logits, arcs = model(tokens, lengths)
        predictions.append(logits.argmax(dim=1))
        if arcs is not None:
            counts = chain_fraction(arcs, lengths)
            chain, words = chain + counts[0], words + counts[1]
    return torch.cat(predictions), chain / words if words else math.nan


#: The former ``demo`` preset (3,000 training sentences, 6 epochs).
SHORT = "short"


@register_experiment
class SentimentExperiment(Experiment):
    """Latent-tree learning without a treebank: English sentence sentiment (Mihaylova et al. 2020's setting)."""

    name = "sentiment"
    title = (
        "Latent-tree learning without a treebank (Mihaylova, Niculae and Martins 2020's setting): "
        "English movie-review sentiment, BiLSTM parser trained from nothing -> latent tree -> "
        "BiLSTM states + graph convolution -> classifier"
    )
    metrics = (
        Metric("accuracy", "test accuracy (%)"),
        Metric("dev_accuracy", "dev accuracy (%)"),
        Metric("chain_arcs", "chain arcs in test trees (%)"),
    )

    diagnostics = tuple(
        Metric(f"{when}_{key}", f"{key} ({when})", percent=False, digits=3)
        for when in ("start", "end")
        for key in DIAGNOSTICS
    )
    #: ``projective``: the full configuration with single-root projective trees; ``short``:
    #: 3,000 training sentences and 6 epochs (the ``demo`` preset before the demo was cut to
    #: about 5 minutes; the measured tables of ``docs/results.md`` use it).
    variants = ("projective", SHORT)

    def methods(self) -> tuple[str, ...]:
        """The two baselines (``no-tree``, ``chain``) and every estimator; no ``pipeline``."""
        return ordered_methods([NO_TREE, CHAIN, *(m for m in available_methods() if m != PIPELINE)])

    def grid(self, config: SentimentConfig, size: str) -> dict[str, tuple[dict[str, Any], ...]]:
        """The learning rate times each method's own knob (:func:`~spigot.experiments.tuning.learning_rate_grid`)."""
        return learning_rate_grid(self.methods(), "lr", config.lr, config.estimator_options, size)

    def config(self, preset: str = "full") -> SentimentConfig:
        preset = check_preset(preset, self.variants)
        if preset == "demo":
            return SentimentConfig(data=MovieReviewSubset(n_train=1000, n_dev=300), epochs=4)
        if preset == SHORT:
            return SentimentConfig(data=MovieReviewSubset(n_train=3000), epochs=6)
        if preset == "projective":
            return SentimentConfig(structure="projective")
        return SentimentConfig()

    def describe(self, config: SentimentConfig) -> str:
        data = config.data
        sizes = self._sizes(config)
        trees = "single-root non-projective trees (Arborescence)"
        if config.structure == "projective":
            trees = "single-root projective trees (ProjectiveTree)"
        return (
            f"{self.title}. Sentences of 2 to {data.max_words} tokens; {sizes['train']} / "
            f"{sizes['dev']} / {sizes['test']} train / dev / test sentences (fixed random "
            f"subsets, seed {data.seed}; test: "
            + ("every test sentence under the limit" if data.n_test is None else "a subset")
            + "); frozen GloVe 6B 50d words; parser: BiLSTM "
            f"({config.hidden_dim} per direction) + biaffine arcs ({config.arc_dim}), trained "
            f"from nothing by the sentiment loss alone through each method's latent layer (no "
            f"English treebank is installed, so no parser is supervised); latent structure: "
            f"{trees}; classifier: its own BiLSTM ({config.encoder_dim} per direction), "
            f"{config.gcn_layers} graph-convolution layers ({config.gcn_dim}) over the "
            f"structure, mean over words, linear; dropout {config.dropout}; Adam (lr "
            f"{config.lr}), batches of {config.batch_size}, {config.epochs} epochs, the epoch "
            f"with the best dev accuracy kept; test-time trees by argmax for every method. "
            f"Baselines: `no-tree`, the same BiLSTM classifier reading no structure, and "
            f"`chain`, the same classifier reading a fixed tree, the left-to-right chain (each "
            f"word headed by the previous one). Estimator options: {config.estimator_options}; "
            f"factors on the scores the latent layer reads in training: {config.score_scales}."
        )

    @staticmethod
    def _sizes(config: SentimentConfig) -> dict[str, int]:
        return {k: len(v) for k, v in load_sentiment_data(config.data).splits.items()}

    def run(
        self, method: str, seed: int, config: SentimentConfig, workdir: Path, progress: bool
    ) -> dict[str, float]:
        data = load_sentiment_data(config.data)
        train_set, dev, test = (data.splits[s] for s in ("train", "dev", "test"))
        seed_everything(seed)
        model = build_sentiment_model(method, config, data.vectors)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=config.lr)
        loss = nn.CrossEntropyLoss(reduction="none")

        def example_losses(net: nn.Module, indices: torch.Tensor) -> torch.Tensor:
            tokens, lengths, labels = train_set.batch(indices)

            def batch_loss(logits: torch.Tensor) -> torch.Tensor:  # the mean over the batch, as trained
                return loss(logits, labels).mean()

            logits, _ = net(tokens, lengths, output_loss=batch_loss)
            return loss(logits, labels)

        def dev_accuracy(net: nn.Module) -> float:
            return accuracy(_predict(net, dev)[0], dev.labels)

        start = sentiment_diagnostics(model, train_set, config)
        result = train(
            model,
            optimizer,
            example_losses,
            n_examples=len(train_set),
            batch_size=config.batch_size,
            epochs=config.epochs,
            evaluate=dev_accuracy,
            seed=seed,
            checkpoint=workdir / "checkpoint.pt",
            progress=progress,
            description=f"sentiment {method} seed {seed}",
        )
        end = sentiment_diagnostics(model, train_set, config)
        with torch.no_grad():
            predictions, chain = _predict(model, test)
        return {
            "accuracy": accuracy(predictions, test.labels),
            "dev_accuracy": result.best_score,
            "chain_arcs": chain,
            **{f"start_{k}": v for k, v in start.items()},
            **{f"end_{k}": v for k, v in end.items()},
        }


#: Training sentences the diagnostics are measured on.
DIAGNOSTIC_SENTENCES = 64


def sentiment_diagnostics(
    model: TreeSentimentClassifier, split: SentenceSplit, config: SentimentConfig
) -> dict[str, float]:
    """:func:`~spigot.experiments.diagnostics.latent_diagnostics` of ``model`` on ``split``'s
    first sentences (dropout off), the scores scaled as in training, the loss a batch mean;
    empty for a model without a tree (``no-tree``)."""
    if model.tree is None:
        return {}
    tokens, lengths, labels = split.batch(torch.arange(min(DIAGNOSTIC_SENTENCES, len(split))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = model.tree.scorer(tokens, lengths) * model.tree.scale
            states = model.states(tokens, lengths)

        def loss(structure: torch.Tensor) -> torch.Tensor:
            logits = model.read(states, lengths, structure)
            return nn.functional.cross_entropy(logits, labels, reduction="sum") / config.batch_size

        return latent_diagnostics(scores, lengths, model.tree.polytope, model.tree.latent, loss)
    finally:
        model.train(was_training)
