"""``parse-then-label``: a pre-trained parser's trees feed a relation labeler on PetroGold.

The first pipeline of Peng, Thomson and Smith (2018) in brief, on real trees: a parser is
pre-trained on a small gold subset of a treebank, then a downstream model reads its trees and
its loss reaches the parser through each method's latent layer.

- **data**: PetroGold (UD Portuguese, :func:`~spigot.experiments.data.load_petrogold`),
  sentences of at most ``max_words`` words. From the train split, shuffled with a fixed seed:
  ``n_parser`` sentences with gold trees pre-train the parser, the next ``n_train`` sentences
  train the labeler with their relations only (their gold heads are never used); fixed random
  subsets of the dev split select models; the test split (under the length limit) is reported.
- **words**: only about 36% of PetroGold's word types have an (English) GloVe vector, so words
  get trainable 50d embeddings (lower-cased, seen at least ``min_word_count`` times in the
  training sentences; the rest share the unknown vector), concatenated with an embedding of
  the gold universal part of speech.
- **parser**: BiLSTM + biaffine arc scorer
  (:class:`~spigot.experiments.arc_parser.ArcParser`), pre-trained with the head-selection
  loss and the best dev UAS kept; its latent structure is a single-root non-projective tree
  (:class:`~spigot.polytopes.Arborescence`).
- **labeler** (the downstream task): each word's UD relation (``nsubj``, ``obj``, ``case``,
  ...) from its own features, its head's features and the head's relative position, the
  last two read through the structure (:class:`RelationLabeler`). The labeler has no sentence
  encoder of its own, so everything it knows about a word's context comes through the tree.

**Regimes.** By default (preset ``full``) the experiment runs in the paper's regime: the
parser's supervised loss stays in the objective during end-to-end training, one batch of gold
trees interleaved with every labeling batch at weight ``parser_weight``, both losses summed over
a sentence's words and averaged over the batch, and SPIGOT takes the reference code's step
(``step="reference"``, ``eta`` = the batch size, which makes it the step of the summed loss,
``threshold=1``). Its baseline is the **matched pipeline**: the same parser training (pre-training,
then the gold batches), but no labeling gradient into the parser. Pre-training and labeling stop
on dev with ``patience``. The preset ``no-intermediate-supervision`` is the former regime: the
parser is pre-trained for a fixed number of epochs, then trained by the labeling loss alone at a
small learning rate, and the **pipeline** freezes it.

Reported: test relation accuracy of the model with the best dev accuracy, that dev accuracy, the
test UAS of its parser (which the labeling loss may raise or lower), and the diagnostics of
:mod:`spigot.experiments.diagnostics` on 64 training sentences after pre-training (``start_``)
and after training (``end_``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spigot.experiments.arc_parser import ArcParser, attachment_counts, head_selection_loss
from spigot.experiments.data import (
    PAD,
    PETROGOLD_SPLIT,
    ROOT,
    SPLITS,
    UNK,
    DependencySentence,
    Vocabulary,
    dependency_batch,
    encode_sentences,
    load_petrogold,
    relation_vocabulary,
    word_vocabulary,
)
from spigot.experiments.diagnostics import DIAGNOSTICS, latent_diagnostics
from spigot.experiments.latent_tree import TREE_ESTIMATOR_OPTIONS, LatentTree
from spigot.experiments.methods import PIPELINE, build_latent_layer
from spigot.experiments.registry import (
    Experiment,
    check_preset,
    config_id,
    register_experiment,
)
from spigot.experiments.reproducibility import batch_order, seed_everything
from spigot.experiments.results import Metric
from spigot.experiments.token_features import TokenFeatures
from spigot.experiments.training import train
from spigot.experiments.tuning import learning_rate_grid
from spigot.polytopes import Arborescence


@dataclass(frozen=True)
class PetroGoldSubset:
    """Which PetroGold sentences the experiment uses.

    Attributes
    ----------
    max_words
        Keep sentences of at most this many words (and at least 2).
    n_parser, n_train
        Sentences of the shuffled train split with gold trees for the parser, then sentences
        with relations for the labeler (disjoint).
    n_dev
        Size of the fixed random subset of the dev split.
    n_test
        Size of the test subset; ``None`` for every test sentence under the length limit.
    min_word_count
        Words seen fewer times in the ``n_parser + n_train`` training sentences are unknown.
    seed
        Seed of the shuffles.
    """

    max_words: int = 30
    n_parser: int = 200
    n_train: int = 3000
    n_dev: int = 300
    n_test: int | None = None
    min_word_count: int = 2
    seed: int = 0


@dataclass(frozen=True)
class ParseThenLabelConfig:
    """Settings of the ``parse-then-label`` experiment.

    Attributes
    ----------
    data
        The sentences used.
    word_dim, tag_dim
        Sizes of the word and part-of-speech embeddings (parser and labeler each have theirs).
    hidden_dim, arc_dim
        The parser's BiLSTM state size (per direction) and arc-view size.
    label_dim, offset_dim, max_offset
        The labeler's hidden layer, the size of its head-position embedding, and the largest
        head distance it tells apart (farther heads share a bucket per side).
    dropout
        Dropout of the parser's inputs and of the labeler's hidden layer.
    pretrain_epochs
        Most epochs of parser pre-training on the gold trees (best dev UAS kept).
    epochs, batch_size, lr
        Adam schedule of both stages (the labeling epoch with the best dev accuracy is kept;
        ``epochs`` is the most labeling epochs).
    finetune_lr
        The parser's learning rate during labeling (the labeler uses ``lr``). Without
        intermediate supervision, at ``lr`` the first updates, driven by a still random
        labeler, undo the pre-training (STE-I took the test UAS from 75% to 13% in two epochs
        at ``lr``, and to 42% in eight epochs at 2e-4).
    parser_weight
        Weight of the parser's supervised loss, one batch of gold trees interleaved with every
        labeling batch; 0 for no intermediate supervision (the pipeline then freezes the
        parser).
    word_losses
        ``"sum"`` (the reference code's) or ``"mean"``: how both losses reduce over a
        sentence's words (sentences are averaged over the batch either way).
    patience, pretrain_patience
        Stop labeling (pre-training) after this many epochs without a better dev score;
        ``None`` runs every epoch.
    estimator_options
        Options of the latent layer, by method name.
    """

    data: PetroGoldSubset = PetroGoldSubset()
    word_dim: int = 50
    tag_dim: int = 16
    hidden_dim: int = 64
    arc_dim: int = 64
    label_dim: int = 64
    offset_dim: int = 8
    max_offset: int = 4
    dropout: float = 0.2
    pretrain_epochs: int = 80
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    finetune_lr: float = 2e-4
    parser_weight: float = 1.0
    word_losses: str = "sum"
    patience: int | None = 5
    pretrain_patience: int | None = 10
    estimator_options: dict[str, dict[str, Any]] = field(
        default_factory=lambda: reference_step_options(32)
    )

    def __post_init__(self) -> None:
        if not (isinstance(self.parser_weight, (int, float)) and self.parser_weight >= 0):
            raise ValueError(f"parser_weight must be a number >= 0, got {self.parser_weight!r}")
        if self.word_losses not in WORD_LOSSES:
            raise ValueError(f"word_losses must be one of {WORD_LOSSES}, got {self.word_losses!r}")


#: How the per-word losses of a sentence are reduced.
WORD_LOSSES = ("sum", "mean")

#: The estimators that take a SPIGOT step (``step``, ``eta``, ``threshold``).
SPIGOT_FAMILY = ("spigot", "spigot-ce", "spigot-eg")


def reference_step_options(
    batch_size: int, family: tuple[str, ...] = SPIGOT_FAMILY
) -> dict[str, dict[str, Any]]:
    r"""The tree options with the reference code's step for the SPIGOT family (``family``).

    The reference sums the loss over words and sentences and takes :math:`\eta_b = \min(1,
    1 / \|g_b\|)`; here the loss is averaged over the ``batch_size`` sentences of a batch,
    so ``eta = batch_size`` gives the same step.
    """
    options = {k: dict(v) for k, v in TREE_ESTIMATOR_OPTIONS.items()}
    for name in family:
        options.setdefault(name, {}).update(step="reference", eta=float(batch_size), threshold=1.0)
    return options


def fixed_step_options() -> dict[str, dict[str, Any]]:
    """The tree options with a fixed step ``eta=1`` for the SPIGOT family (the former regime)."""
    options = {k: dict(v) for k, v in TREE_ESTIMATOR_OPTIONS.items()}
    for name in SPIGOT_FAMILY:
        options.setdefault(name, {}).update(step="fixed", eta=1.0)
    return options


@dataclass(frozen=True)
class TreebankSplit:
    """One split as tensors, node ``i`` at position ``i`` (the root token at 0), 0-padded.

    Attributes
    ----------
    tokens
        int64 ``(N, T, 2)``: word and part-of-speech indices.
    lengths
        int64 ``(N,)`` word counts.
    heads
        float ``(N, T, T)`` gold trees, ``[h, m] = 1`` for the arc ``h -> m``.
    relations
        int64 ``(N, T)`` relation indices of the words (0 at the root and padding).
    sent_ids
        The corpus's id of each sentence.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    heads: torch.Tensor
    relations: torch.Tensor
    sent_ids: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def batch(
        self, indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens, lengths, gold trees and relations of ``indices``, cut to their longest."""
        lengths = self.lengths[indices]
        size = int(lengths.max()) + 1
        return (
            self.tokens[indices, :size],
            lengths,
            self.heads[indices, :size, :size],
            self.relations[indices, :size],
        )


@dataclass(frozen=True)
class TreebankData:
    """The splits (``parser``, ``train``, ``dev``, ``test``) and their vocabularies."""

    splits: dict[str, TreebankSplit]
    words: Vocabulary
    tags: Vocabulary
    relations: Vocabulary


@lru_cache(maxsize=1)
def _petrogold_by_split() -> dict[str, list[DependencySentence]]:
    """PetroGold's sentences by split, in file order (the file is read once per process)."""
    by_split: dict[str, list[DependencySentence]] = {split: [] for split in SPLITS}
    for sentence in load_petrogold():
        by_split[PETROGOLD_SPLIT.assign(sentence.sent_id)].append(sentence)
    return by_split


@lru_cache(maxsize=2)
def load_treebank_data(subset: PetroGoldSubset) -> TreebankData:
    """Read, filter, shuffle and encode the sentences of ``subset`` (cached per subset)."""
    if subset.max_words < 2:
        raise ValueError(f"max_words must be at least 2, got {subset.max_words}")
    rng = np.random.default_rng(subset.seed)
    by_split = _petrogold_by_split()

    def chosen(split: str) -> list[DependencySentence]:
        kept = [s for s in by_split[split] if 2 <= len(s) <= subset.max_words]
        return [kept[i] for i in rng.permutation(len(kept))]

    train_split, dev_split, test_split = chosen("train"), chosen("dev"), chosen("test")
    needed = subset.n_parser + subset.n_train
    if needed > len(train_split):
        raise ValueError(
            f"n_parser + n_train = {needed} exceeds the {len(train_split)} train sentences of "
            f"at most {subset.max_words} words"
        )
    sentences = {
        "parser": train_split[: subset.n_parser],
        "train": train_split[subset.n_parser : needed],
        "dev": dev_split[: subset.n_dev],
        "test": test_split if subset.n_test is None else test_split[: subset.n_test],
    }
    training = sentences["parser"] + sentences["train"]
    words = word_vocabulary(training, min_count=subset.min_word_count)
    tags = Vocabulary.build([s.upos for s in training], specials=(PAD, UNK, ROOT))
    relations = relation_vocabulary(training)
    splits = {}
    for name, part in sentences.items():
        batch = dependency_batch(part, words, relations)
        tag_ids, _ = encode_sentences([s.upos for s in part], tags, add_root=True)
        tokens = torch.stack([batch.word_ids, tag_ids], dim=-1)
        splits[name] = TreebankSplit(
            tokens, batch.lengths, batch.heads, batch.relation_ids, tuple(s.sent_id for s in part)
        )
    return TreebankData(splits, words, tags, relations)


class RelationLabeler(nn.Module):
    """Each word's relation from its features, its head's features and the head's position.

    With :math:`x` the token features and :math:`Z` the structure (``[h, m]`` for ``h -> m``),
    word ``m`` reads its head's features :math:`\\sum_h Z_{hm} x_h` and the embedding of the
    head's relative position, :math:`\\sum_h Z_{hm} e(h - m)` (distances beyond
    ``max_offset`` share a bucket per side; the root has its own), and an MLP scores the
    relations. Both readings are linear in :math:`Z`.

    Parameters
    ----------
    features
        The labeler's own token embeddings.
    n_relations
        Number of relation labels (index 0, the padding, is never predicted by training).
    hidden_dim, offset_dim, max_offset, dropout
        The MLP's hidden size, the position embedding and its range, dropout before the output.
    """

    def __init__(
        self,
        features: TokenFeatures,
        n_relations: int,
        hidden_dim: int,
        offset_dim: int,
        max_offset: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.features = features
        self.max_offset = max_offset
        self.offsets = nn.Embedding(2 * max_offset + 2, offset_dim)
        self.mlp = nn.Sequential(
            nn.Linear(2 * features.output_dim + offset_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, n_relations),
        )

    def offset_buckets(self, size: int, device: torch.device) -> torch.Tensor:
        """int64 ``(size, size)``: the bucket of the head position ``h`` for word ``m``."""
        positions = torch.arange(size, device=device)
        offsets = positions[:, None] - positions[None, :]
        buckets = offsets.clamp(-self.max_offset, self.max_offset) + self.max_offset + 1
        buckets[0, :] = 0
        return buckets

    def forward(self, tokens: torch.Tensor, arcs: torch.Tensor) -> torch.Tensor:
        """Relation logits ``(B, T, n_relations)`` of every position."""
        own = self.features(tokens)
        head = arcs.transpose(1, 2) @ own
        position = torch.einsum(
            "bhm,hmd->bmd", arcs, self.offsets(self.offset_buckets(tokens.shape[1], tokens.device))
        )
        return self.mlp(torch.cat([own, head, position], dim=-1))


class ParseThenLabelModel(nn.Module):
    """The latent-tree stage (parser + method) followed by the relation labeler."""

    def __init__(self, tree: LatentTree, labeler: RelationLabeler) -> None:
        super().__init__()
        self.tree = tree
        self.labeler = labeler

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        output_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Relation logits ``(B, T, R)`` and the structure ``(B, T, T)`` the labeler read.

        ``output_loss`` (the training loss as a function of the logits) lets a latent layer
        that evaluates the labeler at a second structure (``spigot-ce-relaxed``) do so.
        """
        downstream = None if output_loss is None else (lambda s: output_loss(self.labeler(tokens, s)))
        arcs = self.tree(tokens, lengths, downstream)
        return self.labeler(tokens, arcs), arcs


def build_parser(config: ParseThenLabelConfig, data: TreebankData) -> ArcParser:
    """A freshly initialised parser (seed the global generators first)."""
    features = TokenFeatures(
        [(len(data.words), config.word_dim), (len(data.tags), config.tag_dim)]
    )
    return ArcParser(
        features, features.output_dim, config.hidden_dim, config.arc_dim, config.dropout
    )


def parser_uas(parser: nn.Module, split: TreebankSplit, chunk: int = 256) -> float:
    """Unlabeled attachment score of ``parser``'s best single-root trees on ``split``."""
    polytope = Arborescence(single_root=True)
    correct, total = 0, 0
    for start in range(0, len(split), chunk):
        tokens, lengths, heads, _ = split.batch(torch.arange(start, min(start + chunk, len(split))))
        counts = attachment_counts(polytope.map(parser(tokens, lengths), lengths), heads, lengths)
        correct, total = correct + counts[0], total + counts[1]
    return correct / total


#: The settings the pre-trained parser depends on (the labeling settings are left out, so every
#: method and every setting of a dev grid share one pre-training per seed).
PRETRAINING_FIELDS = (
    "data", "word_dim", "tag_dim", "hidden_dim", "arc_dim", "dropout",
    "pretrain_epochs", "pretrain_patience", "batch_size", "lr", "word_losses",
)

#: Pre-trained parser weights by (digest of :data:`PRETRAINING_FIELDS`, seed), shared by the
#: runs of one process: every method and grid setting of a seed starts from the same parser.
_PRETRAINED: dict[tuple[str, int], dict[str, torch.Tensor]] = {}


def pretrained_parser(
    config: ParseThenLabelConfig, data: TreebankData, seed: int, progress: bool = False
) -> ArcParser:
    """The parser pre-trained with ``seed`` on the ``parser`` split (best dev UAS kept).

    Deterministic given the pre-training settings (:data:`PRETRAINING_FIELDS`) and ``seed``;
    the weights are computed once per process and reused. Leaves the global generators seeded
    by ``seed`` on return either way.
    """
    key = (config_id(config, PRETRAINING_FIELDS), seed)
    seed_everything(seed)
    parser = build_parser(config, data)
    if key not in _PRETRAINED:
        gold = data.splits["parser"]
        optimizer = torch.optim.Adam(parser.parameters(), lr=config.lr)

        def example_losses(net: nn.Module, indices: torch.Tensor) -> torch.Tensor:
            tokens, lengths, heads, _ = gold.batch(indices)
            return parser_losses(net(tokens, lengths), heads, lengths, config.word_losses)

        train(
            parser,
            optimizer,
            example_losses,
            n_examples=len(gold),
            batch_size=config.batch_size,
            epochs=config.pretrain_epochs,
            evaluate=lambda net: parser_uas(net, data.splits["dev"]),
            seed=seed,
            progress=progress,
            description=f"parse-then-label parser seed {seed}",
            patience=config.pretrain_patience,
        )
        _PRETRAINED[key] = {k: v.clone() for k, v in parser.state_dict().items()}
    parser.load_state_dict(_PRETRAINED[key])
    parser.zero_grad(set_to_none=True)
    seed_everything(seed)
    return parser


def build_model(
    method: str, config: ParseThenLabelConfig, data: TreebankData, parser: ArcParser
) -> ParseThenLabelModel:
    """The model of ``method`` around the pre-trained ``parser``.

    The pipeline's parser gets no labeling gradient; without intermediate supervision
    (``parser_weight=0``) it is frozen, otherwise its supervised loss keeps training it (the
    matched pipeline).
    """
    polytope = Arborescence(single_root=True)
    latent = build_latent_layer(method, polytope, **config.estimator_options.get(method, {}))
    frozen = method == PIPELINE and config.parser_weight == 0
    tree = LatentTree(parser, latent, polytope, frozen=frozen)
    features = TokenFeatures(
        [(len(data.words), config.word_dim), (len(data.tags), config.tag_dim)]
    )
    labeler = RelationLabeler(
        features,
        len(data.relations),
        config.label_dim,
        config.offset_dim,
        config.max_offset,
        config.dropout,
    )
    return ParseThenLabelModel(tree, labeler)


def relation_losses(
    logits: torch.Tensor, relations: torch.Tensor, lengths: torch.Tensor, word_losses: str = "mean"
) -> torch.Tensor:
    """Per-sentence cross-entropy of the words' relations, summed or averaged over the words
    (``word_losses``; root and padding ignored)."""
    losses = nn.functional.cross_entropy(
        logits.transpose(1, 2), relations, ignore_index=0, reduction="none"
    ).sum(dim=1)
    return losses if word_losses == "sum" else losses / lengths.to(losses.dtype)


def parser_losses(
    scores: torch.Tensor, heads: torch.Tensor, lengths: torch.Tensor, word_losses: str
) -> torch.Tensor:
    """Per-sentence head-selection loss, summed or averaged over the words (``word_losses``)."""
    losses = head_selection_loss(scores, heads, lengths)
    return losses if word_losses == "sum" else losses / lengths.to(losses.dtype)


#: Training sentences the diagnostics are measured on.
DIAGNOSTIC_SENTENCES = 64


def run_diagnostics(
    model: ParseThenLabelModel, split: TreebankSplit, config: ParseThenLabelConfig
) -> dict[str, float]:
    """:func:`~spigot.experiments.diagnostics.latent_diagnostics` of ``model`` on ``split``'s
    first sentences (dropout off), with the labeling loss reduced as in training."""
    tokens, lengths, _, relations = split.batch(torch.arange(min(DIAGNOSTIC_SENTENCES, len(split))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = model.tree.scorer(tokens, lengths)

        def loss(structure: torch.Tensor) -> torch.Tensor:
            logits = model.labeler(tokens, structure)
            return relation_losses(logits, relations, lengths, config.word_losses).sum() / config.batch_size

        return latent_diagnostics(scores, lengths, model.tree.polytope, model.tree.latent, loss)
    finally:
        model.train(was_training)


def _evaluate(
    model: ParseThenLabelModel, split: TreebankSplit, chunk: int = 256
) -> tuple[float, float]:
    """Relation accuracy and UAS of ``model`` (in eval mode) on ``split``."""
    right, arcs_right, words = 0, 0, 0
    for start in range(0, len(split), chunk):
        tokens, lengths, heads, relations = split.batch(
            torch.arange(start, min(start + chunk, len(split)))
        )
        logits, arcs = model(tokens, lengths)
        inside = relations > 0
        right += int(((logits.argmax(dim=-1) == relations) & inside).sum())
        arcs_right += attachment_counts(arcs, heads, lengths)[0]
        words += int(lengths.sum())
    return right / words, arcs_right / words


#: The preset of the former regime (no parser loss during labeling, frozen pipeline).
NO_SUPERVISION = "no-intermediate-supervision"


@register_experiment
class ParseThenLabelExperiment(Experiment):
    """A pre-trained parser trained on by a relation labeler's loss (Peng et al. 2018)."""

    name = "parse-then-label"
    title = (
        "Parse then label on PetroGold (UD Portuguese; Peng, Thomson and Smith 2018's first "
        "pipeline): pre-trained parser -> tree -> relation labeler"
    )
    metrics = (
        Metric("accuracy", "test relation accuracy (%)"),
        Metric("dev_accuracy", "dev relation accuracy (%)"),
        Metric("uas", "test UAS (%)"),
    )
    diagnostics = tuple(
        Metric(f"{when}_{key}", f"{key} ({when})", percent=False, digits=3)
        for when in ("start", "end")
        for key in DIAGNOSTICS
    )
    variants = (NO_SUPERVISION,)

    def config(self, preset: str = "full") -> ParseThenLabelConfig:
        preset = check_preset(preset, self.variants)
        if preset == "demo":
            return ParseThenLabelConfig(
                data=PetroGoldSubset(max_words=15, n_parser=150, n_train=300, n_dev=100, n_test=200),
                pretrain_epochs=30,
                pretrain_patience=5,
                epochs=6,
                patience=2,
            )
        if preset == NO_SUPERVISION:
            return ParseThenLabelConfig(
                pretrain_epochs=15,
                epochs=10,
                finetune_lr=2e-5,
                parser_weight=0.0,
                word_losses="mean",
                patience=None,
                pretrain_patience=None,
                estimator_options=fixed_step_options(),
            )
        return ParseThenLabelConfig(
            data=PetroGoldSubset(max_words=20, n_train=1000, n_dev=200), epochs=20, patience=3
        )

    def grid(self, config: ParseThenLabelConfig, size: str) -> dict[str, tuple[dict[str, Any], ...]]:
        """The parser's learning rate during labeling times each method's own knob
        (:func:`~spigot.experiments.tuning.learning_rate_grid`)."""
        return learning_rate_grid(self.methods(), "finetune_lr", config.finetune_lr, config.estimator_options, size)

    def describe(self, config: ParseThenLabelConfig) -> str:
        data = load_treebank_data(config.data)
        sizes = {k: len(v) for k, v in data.splits.items()}
        subset = config.data

        def stop(patience: int | None) -> str:
            return "" if patience is None else f", stopped after {patience} epochs without a better dev score"

        if config.parser_weight > 0:
            regime = (
                f"Regime: the paper's. During labeling the parser's supervised loss stays in "
                f"the objective (one batch of {config.batch_size} gold trees per labeling batch, "
                f"weight {config.parser_weight}; parser lr {config.finetune_lr}); the pipeline "
                f"is the matched pipeline (same parser training, no labeling gradient into the "
                f"parser). Losses {'summed' if config.word_losses == 'sum' else 'averaged'} over "
                f"a sentence's words, averaged over the batch."
            )
        else:
            regime = (
                f"Regime: no intermediate supervision. The labeling loss alone trains the parser "
                f"(lr {config.finetune_lr}) except in the pipeline, where it is frozen. Losses "
                f"{'summed' if config.word_losses == 'sum' else 'averaged'} over a sentence's words."
            )
        return (
            f"{self.title}. Sentences of 2 to {subset.max_words} words; {sizes['parser']} "
            f"train sentences with gold trees pre-train the parser, {sizes['train']} others "
            f"train the labeler with their relations only; {sizes['dev']} dev and "
            f"{sizes['test']} test sentences (shuffle seed {subset.seed}; test: "
            + ("every test sentence under the limit" if subset.n_test is None else "a subset")
            + f"). Words: trainable {config.word_dim}d embeddings (lower-cased, seen at least "
            f"{subset.min_word_count} times in training; {len(data.words)} entries: only about "
            f"36% of PetroGold's word types have an English GloVe vector) with {config.tag_dim}d "
            f"gold UPOS embeddings; {len(data.relations) - 2} relations. Parser: BiLSTM "
            f"({config.hidden_dim} per direction) + biaffine arcs ({config.arc_dim}), "
            f"pre-trained for at most {config.pretrain_epochs} epochs{stop(config.pretrain_patience)} "
            f"(best dev UAS kept); latent structure: single-root non-projective trees "
            f"(Arborescence). Labeler: each word's own features, its head's features and the "
            f"head's relative position (buckets up to {config.max_offset}), all read through the "
            f"structure, then an MLP ({config.label_dim}); no sentence encoder. Dropout "
            f"{config.dropout}; Adam (lr {config.lr}), batches of {config.batch_size}, at most "
            f"{config.epochs} epochs of labeling{stop(config.patience)}, the epoch with the best "
            f"dev accuracy kept; test-time trees by argmax for every method. {regime} "
            f"Estimator options: {config.estimator_options}."
        )

    def run(
        self, method: str, seed: int, config: ParseThenLabelConfig, workdir: Path, progress: bool
    ) -> dict[str, float]:
        data = load_treebank_data(config.data)
        train_set, dev, test, gold = (data.splits[s] for s in ("train", "dev", "test", "parser"))
        parser = pretrained_parser(config, data, seed, progress)
        model = build_model(method, config, data, parser)
        start = run_diagnostics(model, train_set, config)
        groups = [{"params": list(model.labeler.parameters()), "lr": config.lr}]
        if not model.tree.frozen:
            groups.append({"params": list(model.tree.parameters()), "lr": config.finetune_lr})
        optimizer = torch.optim.Adam(groups)

        def example_losses(net: nn.Module, indices: torch.Tensor) -> torch.Tensor:
            tokens, lengths, _, relations = train_set.batch(indices)

            def batch_loss(logits: torch.Tensor) -> torch.Tensor:  # the mean over the batch, as trained
                return relation_losses(logits, relations, lengths, config.word_losses).mean()

            logits, _ = net(tokens, lengths, output_loss=batch_loss)
            return relation_losses(logits, relations, lengths, config.word_losses)

        def parser_batch_loss(net: nn.Module, epoch: int, step: int) -> torch.Tensor:
            # a seeded batch of gold trees per labeling batch (the parser split is small)
            order = batch_order(len(gold), seed, 1_000 * (epoch + 1) + step)
            tokens, lengths, heads, _ = gold.batch(order[: config.batch_size])
            scores = net.tree.scorer(tokens, lengths)
            losses = parser_losses(scores, heads, lengths, config.word_losses)
            return config.parser_weight * losses.mean()

        result = train(
            model,
            optimizer,
            example_losses,
            n_examples=len(train_set),
            batch_size=config.batch_size,
            epochs=config.epochs,
            evaluate=lambda net: _evaluate(net, dev)[0],
            seed=seed,
            checkpoint=workdir / "checkpoint.pt",
            progress=progress,
            description=f"parse-then-label {method} seed {seed}",
            patience=config.patience,
            auxiliary=parser_batch_loss if config.parser_weight > 0 else None,
        )
        end = run_diagnostics(model, train_set, config)
        with torch.no_grad():
            test_accuracy, test_uas = _evaluate(model, test)
        return {
            "accuracy": test_accuracy,
            "dev_accuracy": result.best_score,
            "uas": test_uas,
            "epochs": float(len(result.history)),
            **{f"start_{k}": v for k, v in start.items()},
            **{f"end_{k}": v for k, v in end.items()},
        }
