"""``parse-then-emotion``: a parser pre-trained on PetroGold reads Portuguese tweets for a classifier.

The second pipeline of Peng, Thomson and Smith (2018) (parse, then classify the sentence) on
the data that ships with ``dante-corpora``:

- **parser data**: PetroGold's gold UD trees (:func:`~spigot.experiments.data.load_petrogold`),
  sentences of at most ``parser_max_words`` words; ``n_parser`` sentences of its train split
  (shuffled with a fixed seed) pre-train the parser and keep supervising it; fixed random
  subsets of its dev and test splits select the pre-trained parser and score it at the end;
- **classification data**: the DANTEStocks tweets labeled JOY or SAD
  (:func:`~spigot.experiments.data.dantestocks.load_dantestocks`, which documents the label:
  a majority for one side of the JOY/SAD pair and not the other; neither, and the pair's
  disagreement codes, are left out), tokenised and tagged with UPOS by the corpus (no trees),
  at most ``max_words`` tokens; the fixed hash split of that module (train / dev / test);
- **words**: trainable embeddings of lower-cased words seen at least ``min_word_count`` times
  in the parser's sentences and the training tweets, with embeddings of the corpora's UPOS
  (gold in PetroGold, the corpus's own in DANTEStocks), one table each for the parser and
  the classifier;
- **parser**: BiLSTM + biaffine arcs (:class:`~spigot.experiments.arc_parser.ArcParser`) over
  single-root non-projective trees (:class:`~spigot.polytopes.Arborescence`), or, with
  ``structure="semantic-graph"``, a labeled-arc parser over
  :class:`~spigot.polytopes.SemanticGraph` graphs labeled by coarse UD relation groups
  (:mod:`spigot.experiments.semantic_graphs`);
- **classifier**: its own embeddings and BiLSTM (the paper's classifier has a sequence encoder
  of its own), one graph-convolution layer over the structure (:class:`~spigot.experiments.tree_gcn.TreeGCN`
  on trees, :class:`~spigot.experiments.semantic_graphs.LabeledGraphGCN` on graphs), a mean
  over the words and a linear layer to two logits.

**Regime** (as ``parse-then-label``'s default, the paper's): the parser is pre-trained on the
gold trees (best dev score kept, ``pretrain_patience``), then the classifier is trained with one
batch of gold PetroGold trees interleaved with every tweet batch, the parser's supervised loss
at weight ``parser_weight``; SPIGOT and its variants take the reference code's step. The
**matched pipeline** trains the parser the same way but passes it no classification gradient.
Classification stops on dev accuracy with ``patience``. SPIGOT-CE and SPIGOT-EG run both with
the downstream gradient at the argmax (``spigot-ce``, ``spigot-eg``) and at the relaxed point as
Mihaylova et al. define them (``spigot-ce-relaxed``, ``spigot-eg-relaxed``: the classifier read
at the marginals); the tree configuration gives all five the reference step, the semantic-graph
one configures the three at the argmax (the relaxed-point pair would run with its defaults).

**What differs from the paper.** The language (Portuguese, not English); the parser's data and
the task's are different domains (oil-and-gas reports against stock-market tweets, with their
tickers, numbers and links), so the parser reads out-of-domain text, which is where a
downstream signal could help it most; the intermediate structure is a syntactic tree, or a
graph made from syntactic trees by grouping their relations, not DM semantic graphs; the label
is JOY against SAD on a few hundred tweets, not binary sentiment of the Stanford treebank;
every size is small enough for one CPU core.

Reported: test accuracy of the model with the best dev accuracy, that dev accuracy, the parser's
score on PetroGold's test subset after training (UAS for trees, labeled-arc F1 for graphs) and
the diagnostics of :mod:`spigot.experiments.diagnostics` on 64 training tweets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spigot.experiments.arc_parser import ArcParser, BiLSTMEncoder, attachment_counts
from spigot.experiments.data import (
    PAD,
    ROOT,
    UNK,
    DependencySentence,
    Vocabulary,
    dependency_batch,
    encode_sentences,
    relation_vocabulary,
)
from spigot.experiments.data.dantestocks import EmotionTweet, load_dantestocks
from spigot.experiments.diagnostics import DIAGNOSTICS, latent_diagnostics
from spigot.experiments.latent_tree import LatentTree
from spigot.experiments.methods import PIPELINE, build_latent_layer
from spigot.experiments.metrics import accuracy
from spigot.experiments.parse_then_label import (
    SPIGOT_FAMILY,
    TreebankSplit,
    _petrogold_by_split,
    parser_losses,
    reference_step_options,
)
from spigot.experiments.registry import Experiment, check_preset, config_id, register_experiment
from spigot.experiments.reproducibility import batch_order, seed_everything
from spigot.experiments.results import Metric
from spigot.experiments.semantic_graphs import (
    RELATION_GROUPS,
    LabeledArcParser,
    LabeledGraphGCN,
    gold_graphs,
    head_label_loss,
    labeled_arc_counts,
    relation_group,
    semantic_graph_polytope,
)
from spigot.experiments.sentiment import SentenceSplit
from spigot.experiments.token_features import TokenFeatures
from spigot.experiments.training import train
from spigot.experiments.tree_gcn import TreeGCN
from spigot.experiments.tuning import learning_rate_grid
from spigot.polytopes import Arborescence
from spigot.polytopes.base import Polytope

#: The latent structures the experiment can train through.
STRUCTURES = ("tree", "semantic-graph")

#: SPIGOT-CE and SPIGOT-EG with the downstream gradient taken at the relaxed point (Mihaylova et al.).
RELAXED_POINT = ("spigot-ce-relaxed", "spigot-eg-relaxed")

#: The methods compared (the paper's and Mihaylova et al.'s).
EMOTION_METHODS = (
    PIPELINE, "ste-i", "spigot", "spigot-ce", "spigot-eg", *RELAXED_POINT, "sparsemap", "marginals"
)


def graph_estimator_options(batch_size: int, exact: bool = False) -> dict[str, dict[str, Any]]:
    """Latent-layer options on semantic graphs: the reference step for the SPIGOT family.

    SPIGOT projects with the paper's procedure (``solver="relaxed"``: the polytope's
    ``relaxed_projection``, each arc's total clipped to [0, 1], then its labels projected onto
    the simplex scaled by it), or exactly onto the polytope with ``exact=True`` (its preferred
    exact solver, AD3-QP). SPIGOT-CE and SPIGOT-EG have no Gibbs marginals on these graphs
    (their unique-label constraints make the partition function an assignment sum), so they
    take the SparseMAP point, computed exactly (AD3-QP) as SparseMAP is.
    """
    options: dict[str, dict[str, Any]] = {"spigot": {"solver": "exact" if exact else "relaxed"}}
    for name in SPIGOT_FAMILY:
        options.setdefault(name, {}).update(step="reference", eta=float(batch_size), threshold=1.0)
    return options


@dataclass(frozen=True)
class EmotionSubset:
    """Which sentences and tweets the experiment uses.

    Attributes
    ----------
    max_words
        Keep tweets of at most this many tokens (and at least 2).
    parser_max_words
        Keep PetroGold sentences of at most this many words (and at least 2).
    n_parser, n_parser_dev, n_parser_test
        PetroGold sentences of the shuffled train split that train the parser, and the sizes of
        the fixed random subsets of its dev and test splits.
    n_train
        Training tweets (the first of the split, in file order); ``None`` for all.
    min_word_count
        Words seen fewer times in the parser's sentences and the training tweets are unknown.
    seed
        Seed of PetroGold's shuffles.
    """

    max_words: int = 30
    parser_max_words: int = 25
    n_parser: int = 500
    n_parser_dev: int = 100
    n_parser_test: int = 300
    n_train: int | None = None
    min_word_count: int = 2
    seed: int = 0


@dataclass(frozen=True)
class ParseThenEmotionConfig:
    """Settings of the ``parse-then-emotion`` experiment.

    Attributes
    ----------
    data
        The sentences and tweets used.
    structure
        ``"tree"`` or ``"semantic-graph"`` (:data:`STRUCTURES`).
    word_dim, tag_dim
        Word and part-of-speech embedding sizes (parser and classifier each have theirs).
    hidden_dim, arc_dim, label_dim
        The parser's BiLSTM state (per direction), arc views, and label views (graphs only).
    encoder_dim, gcn_dim
        The classifier's BiLSTM state (per direction) and graph-convolution size.
    dropout
        Input dropout of both BiLSTMs and dropout before the graph convolution.
    pretrain_epochs, pretrain_patience
        Most epochs of parser pre-training, and its patience on the PetroGold dev score.
    epochs, patience, batch_size, lr
        Classification schedule (Adam; the epoch with the best dev accuracy is kept).
    finetune_lr
        The parser's learning rate during classification (the classifier uses ``lr``).
    parser_weight
        Weight of the parser's supervised loss interleaved with every tweet batch; 0 for none
        (the pipeline then freezes the parser).
    word_losses
        ``"sum"`` or ``"mean"``: how the parser's loss reduces over a sentence's words.
    estimator_options
        Options of the latent layer, by method name.
    """

    data: EmotionSubset = EmotionSubset()
    structure: str = "tree"
    word_dim: int = 50
    tag_dim: int = 16
    hidden_dim: int = 32
    arc_dim: int = 32
    label_dim: int = 32
    encoder_dim: int = 32
    gcn_dim: int = 32
    dropout: float = 0.2
    pretrain_epochs: int = 10
    pretrain_patience: int | None = 3
    epochs: int = 6
    patience: int | None = 2
    batch_size: int = 32
    lr: float = 2e-3
    finetune_lr: float = 2e-4
    parser_weight: float = 1.0
    word_losses: str = "sum"
    estimator_options: dict[str, dict[str, Any]] = field(
        default_factory=lambda: reference_step_options(32, SPIGOT_FAMILY + RELAXED_POINT)
    )

    def __post_init__(self) -> None:
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        if not (isinstance(self.parser_weight, (int, float)) and self.parser_weight >= 0):
            raise ValueError(f"parser_weight must be a number >= 0, got {self.parser_weight!r}")
        if self.word_losses not in ("sum", "mean"):
            raise ValueError(f"word_losses must be 'sum' or 'mean', got {self.word_losses!r}")


def semantic_graph_config(config: ParseThenEmotionConfig, exact: bool = False) -> ParseThenEmotionConfig:
    """``config`` with the semantic-graph structure and its estimator options
    (:func:`graph_estimator_options`; ``exact``: SPIGOT projects exactly)."""
    return replace(
        config,
        structure="semantic-graph",
        estimator_options=graph_estimator_options(config.batch_size, exact),
    )


@dataclass(frozen=True)
class EmotionData:
    """The tweet splits (``train``, ``dev``, ``test``; a :class:`SentenceSplit` of word and tag
    indices, labels 1 JOY and 0 SAD), the PetroGold splits (``parser``, ``dev``, ``test``; a
    :class:`TreebankSplit` whose ``relations`` hold 1 + each word's relation group, 0 at the
    root and padding) and the shared vocabularies."""

    tweets: dict[str, SentenceSplit]
    treebank: dict[str, TreebankSplit]
    words: Vocabulary
    tags: Vocabulary


@lru_cache(maxsize=2)
def load_emotion_data(subset: EmotionSubset) -> EmotionData:
    """Read, filter and encode the tweets and PetroGold sentences of ``subset`` (cached)."""
    if subset.max_words < 2 or subset.parser_max_words < 2:
        raise ValueError(
            f"max_words and parser_max_words must be at least 2, got {subset.max_words} and "
            f"{subset.parser_max_words}"
        )
    rng = np.random.default_rng(subset.seed)
    by_split = _petrogold_by_split()

    def chosen(split: str, size: int) -> list[DependencySentence]:
        kept = [s for s in by_split[split] if 2 <= len(s) <= subset.parser_max_words]
        return [kept[i] for i in rng.permutation(len(kept))][:size]

    sentences = {
        "parser": chosen("train", subset.n_parser),
        "dev": chosen("dev", subset.n_parser_dev),
        "test": chosen("test", subset.n_parser_test),
    }
    tweets = {
        split: [t for t in load_dantestocks(split) if 2 <= len(t) <= subset.max_words]
        for split in ("train", "dev", "test")
    }
    if subset.n_train is not None:
        tweets["train"] = tweets["train"][: subset.n_train]
    if any(len(part) == 0 for part in (*sentences.values(), *tweets.values())):
        raise ValueError(f"{subset} leaves a split empty")
    forms = [[w.lower() for w in s.words] for s in sentences["parser"]]
    forms += [[w.lower() for w in t.words] for t in tweets["train"]]
    words = Vocabulary.build(forms, min_count=subset.min_word_count, specials=(PAD, UNK, ROOT))
    tag_lists = [s.upos for s in sentences["parser"]] + [t.upos for t in tweets["train"]]
    tags = Vocabulary.build(tag_lists, specials=(PAD, UNK, ROOT))
    treebank = {name: _treebank_split(part, words, tags) for name, part in sentences.items()}
    tweet_splits = {name: _tweet_split(part, words, tags) for name, part in tweets.items()}
    return EmotionData(tweet_splits, treebank, words, tags)


def _tokens(forms: list[list[str]], upos: list[tuple[str, ...]], words: Vocabulary, tags: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
    word_ids, lengths = encode_sentences([[w.lower() for w in f] for f in forms], words, add_root=True)
    tag_ids, _ = encode_sentences(upos, tags, add_root=True)
    return torch.stack([word_ids, tag_ids], dim=-1), lengths


def _treebank_split(sentences: list[DependencySentence], words: Vocabulary, tags: Vocabulary) -> TreebankSplit:
    tokens, lengths = _tokens([list(s.words) for s in sentences], [s.upos for s in sentences], words, tags)
    heads = dependency_batch(sentences, words, relation_vocabulary(sentences)).heads
    groups = torch.zeros(tokens.shape[:2], dtype=torch.int64)
    for i, sentence in enumerate(sentences):
        groups[i, 1 : len(sentence) + 1] = torch.tensor([1 + relation_group(r) for r in sentence.relations])
    return TreebankSplit(tokens, lengths, heads, groups, tuple(s.sent_id for s in sentences))


def _tweet_split(tweets: list[EmotionTweet], words: Vocabulary, tags: Vocabulary) -> SentenceSplit:
    tokens, lengths = _tokens([list(t.words) for t in tweets], [t.upos for t in tweets], words, tags)
    labels = torch.tensor([t.label for t in tweets], dtype=torch.int64)
    return SentenceSplit(tokens, lengths, labels)


def structure_polytope(config: ParseThenEmotionConfig) -> Polytope:
    """The latent structure of ``config``: single-root trees or the semantic graphs."""
    if config.structure == "tree":
        return Arborescence(single_root=True)
    return semantic_graph_polytope()


def gold_structures(config: ParseThenEmotionConfig, heads: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Gold trees ``(B, T, T)``, or the labeled graphs ``(B, T, T, L)`` of the relation groups
    (``groups`` as stored: 1 + the group, 0 at the root and padding)."""
    if config.structure == "tree":
        return heads
    return gold_graphs(heads, groups - 1)


class TweetClassifier(nn.Module):
    """The latent stage (parser + method), then an encoder of its own and a graph convolution.

    Parameters
    ----------
    latent
        The latent stage, ``(tokens, lengths) -> structure``.
    features
        The classifier's own token embeddings.
    encoder_dim, gcn_dim
        Its BiLSTM (per direction) and graph-convolution sizes.
    n_labels
        ``None`` for trees, the label count of a semantic graph.
    dropout
        Input dropout of the BiLSTM and dropout before the graph convolution.
    """

    def __init__(
        self,
        latent: LatentTree,
        features: TokenFeatures,
        encoder_dim: int,
        gcn_dim: int,
        n_labels: int | None,
        dropout: float,
    ) -> None:
        super().__init__()
        self.latent = latent
        self.features = features
        self.encoder = BiLSTMEncoder(features.output_dim, encoder_dim, dropout)
        self.dropout = nn.Dropout(dropout)
        if n_labels is None:
            self.reader: nn.Module = TreeGCN(self.encoder.output_dim, gcn_dim, 1)
        else:
            self.reader = LabeledGraphGCN(self.encoder.output_dim, gcn_dim, n_labels)
        self.classify = nn.Linear(gcn_dim, 2)

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        output_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, 2)`` and the structure the classifier read.

        ``output_loss`` (the training loss as a function of the logits) lets a latent layer that
        evaluates the classifier at a second structure (``spigot-ce-relaxed``,
        ``spigot-eg-relaxed``) do so, with the BiLSTM states of this pass: the layer calls it
        in its backward pass, after this method has returned.
        """
        encoded: list[torch.Tensor] = []

        def downstream(structure: torch.Tensor) -> torch.Tensor:
            return output_loss(self.pool(encoded[0], lengths, structure))

        structure = self.latent(tokens, lengths, None if output_loss is None else downstream)
        encoded.append(self.encode(tokens, lengths))
        return self.pool(encoded[0], lengths, structure), structure

    def read(self, tokens: torch.Tensor, lengths: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 2)`` of the classifier reading ``structure``."""
        return self.pool(self.encode(tokens, lengths), lengths, structure)

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The classifier's BiLSTM states ``(B, n+1, 2 * encoder_dim)`` (node 0 the root token)."""
        return self.encoder(self.features(tokens), lengths + 1)

    def pool(self, states: torch.Tensor, lengths: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 2)`` from the BiLSTM ``states`` read through ``structure``."""
        positions = torch.arange(states.shape[1], device=states.device)
        states = self.reader(self.dropout(states), structure)
        inside = ((positions >= 1) & (positions[None, :] <= lengths[:, None])).to(states.dtype)
        pooled = (states * inside[..., None]).sum(dim=1) / lengths[:, None].to(states.dtype)
        return self.classify(pooled)


def build_parser(config: ParseThenEmotionConfig, data: EmotionData) -> nn.Module:
    """A freshly initialised parser of ``config``'s structure (seed the generators first)."""
    features = TokenFeatures([(len(data.words), config.word_dim), (len(data.tags), config.tag_dim)])
    if config.structure == "tree":
        return ArcParser(features, features.output_dim, config.hidden_dim, config.arc_dim, config.dropout)
    return LabeledArcParser(
        features,
        features.output_dim,
        config.hidden_dim,
        config.arc_dim,
        config.label_dim,
        len(RELATION_GROUPS),
        config.dropout,
    )


def supervised_losses(
    config: ParseThenEmotionConfig, scores: torch.Tensor, gold: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Per-sentence supervised loss of the parser (head selection on trees, the structured
    head-and-label likelihood on graphs), summed or averaged over the words (``word_losses``)."""
    if config.structure == "tree":
        return parser_losses(scores, gold, lengths, config.word_losses)
    losses = head_label_loss(scores, gold, lengths)
    return losses if config.word_losses == "sum" else losses / lengths.to(losses.dtype)


def parser_score(parser: nn.Module, config: ParseThenEmotionConfig, split: TreebankSplit, chunk: int = 256) -> float:
    """The parser's UAS (trees) or labeled-arc F1 (graphs) on ``split``, decoding by MAP."""
    polytope = structure_polytope(config)
    counts = np.zeros(3)
    for start in range(0, len(split), chunk):
        tokens, lengths, heads, groups = split.batch(torch.arange(start, min(start + chunk, len(split))))
        predicted = polytope.map(parser(tokens, lengths), lengths)
        gold = gold_structures(config, heads, groups)
        if config.structure == "tree":
            correct, words = attachment_counts(predicted, gold, lengths)
            counts += (correct, words, words)
        else:
            counts += labeled_arc_counts(predicted, gold, lengths)
    return float(2 * counts[0] / max(counts[1] + counts[2], 1))


#: The settings the pre-trained parser depends on (the classification settings are left out,
#: so every method and every setting of a dev grid share one pre-training per seed).
PRETRAINING_FIELDS = (
    "data", "structure", "word_dim", "tag_dim", "hidden_dim", "arc_dim", "label_dim", "dropout",
    "pretrain_epochs", "pretrain_patience", "batch_size", "lr", "word_losses",
)

#: Pre-trained parser weights by (digest of :data:`PRETRAINING_FIELDS`, seed), shared by the
#: runs of one process.
_PRETRAINED: dict[tuple[str, int], dict[str, torch.Tensor]] = {}


def pretrained_parser(
    config: ParseThenEmotionConfig, data: EmotionData, seed: int, progress: bool = False
) -> nn.Module:
    """The parser pre-trained with ``seed`` on PetroGold's ``parser`` split (best dev score kept).

    Deterministic given the pre-training settings and ``seed``; computed once per process.
    Leaves the global generators seeded by ``seed`` on return.
    """
    key = (config_id(config, PRETRAINING_FIELDS), seed)
    seed_everything(seed)
    parser = build_parser(config, data)
    if key not in _PRETRAINED:
        gold = data.treebank["parser"]
        optimizer = torch.optim.Adam(parser.parameters(), lr=config.lr)

        def example_losses(net: nn.Module, indices: torch.Tensor) -> torch.Tensor:
            tokens, lengths, heads, groups = gold.batch(indices)
            return supervised_losses(config, net(tokens, lengths), gold_structures(config, heads, groups), lengths)

        train(
            parser,
            optimizer,
            example_losses,
            n_examples=len(gold),
            batch_size=config.batch_size,
            epochs=config.pretrain_epochs,
            evaluate=lambda net: parser_score(net, config, data.treebank["dev"]),
            seed=seed,
            progress=progress,
            description=f"parse-then-emotion {config.structure} parser seed {seed}",
            patience=config.pretrain_patience,
        )
        _PRETRAINED[key] = {k: v.clone() for k, v in parser.state_dict().items()}
    parser.load_state_dict(_PRETRAINED[key])
    parser.zero_grad(set_to_none=True)
    seed_everything(seed)
    return parser


def build_model(
    method: str, config: ParseThenEmotionConfig, data: EmotionData, parser: nn.Module
) -> TweetClassifier:
    """The classifier of ``method`` around the pre-trained ``parser`` (frozen only in the
    pipeline without intermediate supervision)."""
    polytope = structure_polytope(config)
    layer = build_latent_layer(method, polytope, **config.estimator_options.get(method, {}))
    frozen = method == PIPELINE and config.parser_weight == 0
    latent = LatentTree(parser, layer, polytope, frozen=frozen)
    features = TokenFeatures([(len(data.words), config.word_dim), (len(data.tags), config.tag_dim)])
    n_labels = None if config.structure == "tree" else len(RELATION_GROUPS)
    return TweetClassifier(latent, features, config.encoder_dim, config.gcn_dim, n_labels, config.dropout)


def _predict(model: TweetClassifier, split: SentenceSplit, chunk: int = 256) -> torch.Tensor:
    """Predicted labels of a split, in chunks."""
    predictions = []
    for start in range(0, len(split), chunk):
        tokens, lengths, _ = split.batch(torch.arange(start, min(start + chunk, len(split))))
        predictions.append(model(tokens, lengths)[0].argmax(dim=1))
    return torch.cat(predictions)


def build_optimizer(model: TweetClassifier, config: ParseThenEmotionConfig) -> torch.optim.Adam:
    """Adam over the classifier at ``lr`` and, unless frozen, the parser at ``finetune_lr``."""
    classifier = [p for name, p in model.named_parameters() if not name.startswith("latent.")]
    groups = [{"params": classifier, "lr": config.lr}]
    if not model.latent.frozen:
        groups.append({"params": list(model.latent.parameters()), "lr": config.finetune_lr})
    return torch.optim.Adam(groups)


def tweet_losses(net: nn.Module, split: SentenceSplit, indices: torch.Tensor) -> torch.Tensor:
    """Per-tweet cross-entropy of the classifier (``net`` may be DDP-wrapped) on ``indices``;
    a relaxed-point layer gets the batch mean, the loss training differentiates."""
    tokens, lengths, labels = split.batch(indices)

    def batch_loss(logits: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, labels)

    logits, _ = net(tokens, lengths, output_loss=batch_loss)
    return nn.functional.cross_entropy(logits, labels, reduction="none")


def gold_batch_loss(
    model: TweetClassifier, config: ParseThenEmotionConfig, gold: TreebankSplit, seed: int, epoch: int, step: int
) -> torch.Tensor:
    """The parser's supervised loss (times ``parser_weight``) on the seeded batch of gold
    PetroGold structures interleaved with update ``step`` of ``epoch``."""
    order = batch_order(len(gold), seed, 1_000 * (epoch + 1) + step)
    tokens, lengths, heads, groups = gold.batch(order[: config.batch_size])
    scores = model.latent.scorer(tokens, lengths)
    target = gold_structures(config, heads, groups)
    return config.parser_weight * supervised_losses(config, scores, target, lengths).mean()


#: Training tweets the diagnostics are measured on.
DIAGNOSTIC_TWEETS = 64


def emotion_diagnostics(model: TweetClassifier, split: SentenceSplit, config: ParseThenEmotionConfig) -> dict[str, float]:
    """:func:`~spigot.experiments.diagnostics.latent_diagnostics` of ``model`` on ``split``'s first
    tweets (dropout off), the loss a batch mean as in training."""
    tokens, lengths, labels = split.batch(torch.arange(min(DIAGNOSTIC_TWEETS, len(split))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = model.latent.scorer(tokens, lengths)

        def loss(structure: torch.Tensor) -> torch.Tensor:
            logits = model.read(tokens, lengths, structure)
            return nn.functional.cross_entropy(logits, labels, reduction="sum") / config.batch_size

        return latent_diagnostics(scores, lengths, model.latent.polytope, model.latent.latent, loss)
    finally:
        model.train(was_training)


#: The presets of the semantic-graph structure (SPIGOT's relaxed projection, or its exact one).
SEMANTIC_GRAPH = "semantic-graph"
SEMANTIC_GRAPH_EXACT = "semantic-graph-exact"


@register_experiment
class ParseThenEmotionExperiment(Experiment):
    """A PetroGold-pre-trained parser read by a JOY-vs-SAD tweet classifier (Peng et al. 2018)."""

    name = "parse-then-emotion"
    title = (
        "Parse then classify emotion (Peng, Thomson and Smith 2018's second pipeline, in "
        "Portuguese): parser pre-trained on PetroGold -> tree or semantic graph -> JOY vs SAD "
        "classifier on DANTEStocks tweets"
    )
    metrics = (
        Metric("accuracy", "test accuracy (%)"),
        Metric("dev_accuracy", "dev accuracy (%)"),
        Metric("parser", "PetroGold test UAS / labeled F1 (%)"),
    )
    diagnostics = tuple(
        Metric(f"{when}_{key}", f"{key} ({when})", percent=False, digits=3)
        for when in ("start", "end")
        for key in DIAGNOSTICS
    )
    variants = (SEMANTIC_GRAPH, SEMANTIC_GRAPH_EXACT)

    def methods(self) -> tuple[str, ...]:
        return EMOTION_METHODS

    def config(self, preset: str = "full") -> ParseThenEmotionConfig:
        preset = check_preset(preset, self.variants)
        if preset == "demo":
            return ParseThenEmotionConfig(
                data=EmotionSubset(max_words=25, n_parser=120, n_parser_dev=40, n_parser_test=40, n_train=96),
                hidden_dim=32,
                arc_dim=32,
                pretrain_epochs=8,
                pretrain_patience=None,
                epochs=2,
                patience=None,
            )
        if preset == SEMANTIC_GRAPH:
            return semantic_graph_config(ParseThenEmotionConfig())
        if preset == SEMANTIC_GRAPH_EXACT:
            return semantic_graph_config(ParseThenEmotionConfig(), exact=True)
        return ParseThenEmotionConfig()

    def grid(self, config: ParseThenEmotionConfig, size: str) -> dict[str, tuple[dict[str, Any], ...]]:
        """The parser's learning rate during classification times each method's own knob
        (:func:`~spigot.experiments.tuning.learning_rate_grid`)."""
        return learning_rate_grid(self.methods(), "finetune_lr", config.finetune_lr, config.estimator_options, size)

    def describe(self, config: ParseThenEmotionConfig) -> str:
        data = load_emotion_data(config.data)
        subset = config.data
        tweets = {k: len(v) for k, v in data.tweets.items()}
        joy = {k: int(v.labels.sum()) for k, v in data.tweets.items()}
        sentences = {k: len(v) for k, v in data.treebank.items()}

        def stop(patience: int | None) -> str:
            return "" if patience is None else f", stopped after {patience} epochs without a better dev score"

        if config.structure == "tree":
            structure = (
                f"Parser: BiLSTM ({config.hidden_dim} per direction) + biaffine arcs ({config.arc_dim}) "
                f"over single-root non-projective trees (Arborescence), pre-trained with the "
                f"head-selection loss (best PetroGold dev UAS kept)."
            )
        else:
            groups = ", ".join(name for name, _ in RELATION_GROUPS)
            solver = config.estimator_options.get("spigot", {}).get("solver", "exact")
            structure = (
                f"Latent structure: a SemanticGraph over {len(RELATION_GROUPS)} coarse UD relation "
                f"groups ({groups}; subject and object at most once per head), gold graphs = "
                f"PetroGold's labeled trees; decoded by its exact MAP. Parser: BiLSTM "
                f"({config.hidden_dim}) + biaffine arcs ({config.arc_dim}) + biaffine labels "
                f"({config.label_dim}), scores = log-odds of a local head-and-label model against 1/2, "
                f"pre-trained by its likelihood (best PetroGold dev labeled F1 kept). SPIGOT projects "
                + ("exactly (AD3-QP)." if solver == "exact" else
                   "with the paper's relaxation (each arc's total clipped to [0, 1], then its "
                   "labels projected onto the simplex scaled by it).")
                + " Structured attention (marginals) does not apply: the graphs have no "
                "marginal oracle; SPIGOT-CE and SPIGOT-EG use the SparseMAP point instead of "
                "the Gibbs marginals."
            )
        return (
            f"{self.title}. Tweets: DANTEStocks, labeled JOY when the annotators' majority marked "
            f"joy and not sadness, SAD for the reverse (neither, and the pair's disagreement "
            f"codes, left out; see `spigot.experiments.data.dantestocks`), at most "
            f"{subset.max_words} tokens: {tweets['train']} / {tweets['dev']} / {tweets['test']} "
            f"train / dev / test ({joy['train']} / {joy['dev']} / {joy['test']} JOY), the "
            f"corpus's tokens and UPOS. Parser data: PetroGold sentences of 2 to "
            f"{subset.parser_max_words} words, {sentences['parser']} with gold trees for training, "
            f"{sentences['dev']} dev and {sentences['test']} test (shuffle seed {subset.seed}). "
            f"Words: trainable {config.word_dim}d embeddings (lower-cased, seen at least "
            f"{subset.min_word_count} times in the parser's sentences and the training tweets; "
            f"{len(data.words)} entries) with {config.tag_dim}d UPOS embeddings. {structure} "
            f"Pre-training: at most {config.pretrain_epochs} epochs{stop(config.pretrain_patience)}. "
            f"Classifier: its own embeddings, BiLSTM ({config.encoder_dim} per direction), one "
            f"graph-convolution layer ({config.gcn_dim}) over the structure, mean over words, "
            f"linear. Regime: the paper's; one batch of {config.batch_size} gold PetroGold "
            f"structures per tweet batch, weight {config.parser_weight}, parser lr "
            f"{config.finetune_lr}; the pipeline is the matched pipeline (same parser training, "
            f"no classification gradient into the parser). Dropout {config.dropout}; Adam (lr "
            f"{config.lr}), batches of {config.batch_size}, at most {config.epochs} epochs"
            f"{stop(config.patience)}, the epoch with the best dev accuracy kept; test-time "
            f"structures by MAP for every method. What differs from the paper: Portuguese, not "
            f"English; the parser is trained on oil-and-gas reports and reads stock-market "
            f"tweets (a domain shift); syntactic trees or relation-group graphs, not DM semantic "
            f"graphs; JOY against SAD on a few hundred tweets, not sentence sentiment. "
            f"Estimator options: {config.estimator_options}."
        )

    def run(
        self, method: str, seed: int, config: ParseThenEmotionConfig, workdir: Path, progress: bool
    ) -> dict[str, float]:
        data = load_emotion_data(config.data)
        train_set, dev, test = (data.tweets[s] for s in ("train", "dev", "test"))
        gold = data.treebank["parser"]
        parser = pretrained_parser(config, data, seed, progress)
        model = build_model(method, config, data, parser)
        start = emotion_diagnostics(model, train_set, config)
        optimizer = build_optimizer(model, config)

        result = train(
            model,
            optimizer,
            lambda net, indices: tweet_losses(net, train_set, indices),
            n_examples=len(train_set),
            batch_size=config.batch_size,
            epochs=config.epochs,
            evaluate=lambda net: accuracy(_predict(net, dev), dev.labels),
            seed=seed,
            checkpoint=workdir / "checkpoint.pt",
            progress=progress,
            description=f"parse-then-emotion {method} seed {seed}",
            patience=config.patience,
            auxiliary=(
                (lambda net, epoch, step: gold_batch_loss(net, config, gold, seed, epoch, step))
                if config.parser_weight > 0
                else None
            ),
        )
        end = emotion_diagnostics(model, train_set, config)
        with torch.no_grad():
            test_accuracy = accuracy(_predict(model, test), test.labels)
            parsing = parser_score(model.latent.scorer, config, data.treebank["test"])
        return {
            "accuracy": test_accuracy,
            "dev_accuracy": result.best_score,
            "parser": parsing,
            "epochs": float(len(result.history)),
            **{f"start_{k}": v for k, v in start.items()},
            **{f"end_{k}": v for k, v in end.items()},
        }
