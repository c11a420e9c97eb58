r"""A labeled semantic graph as the latent structure: gold graphs, a graph parser and a graph reader.

The intermediate structure of both of Peng, Thomson and Smith (2018)'s pipelines is a labeled
semantic dependency graph (:class:`~spigot.polytopes.SemanticGraph`: at most one label per arc,
each head uses a *unique* label at most once). No semantic-dependency corpus ships with the
installed packages, so the graphs here come from a treebank's labeled trees, their UD relations
folded into :data:`RELATION_GROUPS` (five coarse groups; ``subject`` and ``object`` unique per
head, as DM's core roles are). A gold graph is then the tree with a label on every arc; the
parser may predict any graph of the polytope (several heads per word, no root constraint).

- :func:`relation_group` / :func:`gold_graphs`: a tree's labeled arcs as ``(B, n+1, n+1, L)``;
- :class:`LabeledArcParser`: the arc parser's BiLSTM and biaffine arc scores plus a biaffine
  label scorer, turned into the log-odds :math:`s_{hml} = \log p(h \mid m) + \log p(l \mid
  h, m) + \log 2` of a local model against probability 1/2 (an absent arc scores 0, so the
  MAP keeps an arc when its probability passes 1/2, within the polytope's constraints);
- :func:`head_label_loss`: its supervised loss, head selection plus the gold arc's label
  cross-entropy;
- :class:`LabeledGraphGCN`: a graph convolution over a labeled structure, one weight per label
  and direction, linear in the structure;
- :func:`labeled_arc_counts`: labeled-arc precision and recall counts of predicted graphs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spigot._word_graphs import arc_mask
from spigot.experiments.arc_parser import BiaffineArcScorer, BiLSTMEncoder
from spigot.polytopes import SemanticGraph

#: The coarse groups of UD relations that label the graphs (index = label), by base relation
#: (the part before ``:``); relations not listed fall in ``other``.
RELATION_GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("subject", frozenset({"nsubj", "csubj"})),
    ("object", frozenset({"obj", "iobj"})),
    (
        "modifier",
        frozenset({"obl", "nmod", "amod", "advmod", "advcl", "acl", "nummod", "appos", "xcomp", "ccomp"}),
    ),
    ("function", frozenset({"case", "det", "mark", "cop", "aux", "cc", "punct", "expl"})),
    ("other", frozenset()),
)

#: The labels each head uses at most once (``subject`` and ``object``), as DM's core roles.
UNIQUE_GROUPS = (0, 1)

#: The index of the catch-all group.
OTHER_GROUP = len(RELATION_GROUPS) - 1


def relation_group(relation: str) -> int:
    """The group index of a UD relation (``"nsubj:pass"`` -> 0, ``"root"`` -> :data:`OTHER_GROUP`)."""
    if not isinstance(relation, str) or not relation:
        raise ValueError(f"relation must be a non-empty string, got {relation!r}")
    base = relation.split(":", 1)[0]
    for index, (_, members) in enumerate(RELATION_GROUPS):
        if base in members:
            return index
    return OTHER_GROUP


def semantic_graph_polytope() -> SemanticGraph:
    """The latent structure: :class:`~spigot.polytopes.SemanticGraph` over the groups, subject and
    object unique per head."""
    return SemanticGraph(len(RELATION_GROUPS), unique_labels=UNIQUE_GROUPS)


def gold_graphs(heads: torch.Tensor, groups: torch.Tensor, n_labels: int = len(RELATION_GROUPS)) -> torch.Tensor:
    """Labeled graphs ``(B, T, T, n_labels)`` from trees ``(B, T, T)`` and per-word groups ``(B, T)``.

    Entry ``[b, h, m, l]`` is 1 when ``h -> m`` is an arc of tree ``b`` and word ``m``'s relation
    is in group ``l``.
    """
    if heads.ndim != 3 or groups.shape != heads.shape[:2]:
        raise ValueError(
            f"heads must be (B, T, T) and groups (B, T), got {tuple(heads.shape)} and {tuple(groups.shape)}"
        )
    one_hot = nn.functional.one_hot(groups.clamp(min=0), n_labels).to(heads.dtype)
    return heads[..., None] * one_hot[:, None, :, :]


class LabeledArcParser(nn.Module):
    """Token vectors -> BiLSTM -> labeled arc scores ``(B, T, T, L)``, log-odds of a local model.

    With :math:`a_{hm}` the biaffine arc score of
    :class:`~spigot.experiments.arc_parser.BiaffineArcScorer` and :math:`b_{hml} =
    \\mathbf{h}_h^\\top U_l \\mathbf{d}_m + c_l` a biaffine label score over label views of the
    states, :math:`p(h \\mid m) = \\mathrm{softmax}_h(a_{hm})` over the candidate heads,
    :math:`p(l \\mid h, m) = \\mathrm{softmax}_l(b_{hml})`, and

    .. math:: s_{hml} = \\log p(h \\mid m) + \\log p(l \\mid h, m) + \\log 2,

    positive exactly when the arc with that label has probability above 1/2. Entries outside a
    sentence (and the diagonal and column 0) are 0.

    Parameters
    ----------
    embed
        Module mapping the inputs to token vectors ``(B, T, input_dim)`` (node 0 the root token).
    input_dim, hidden_dim, arc_dim
        Vector size, BiLSTM state size per direction, arc-view size.
    label_dim
        Size of the label views.
    n_labels
        ``L``.
    dropout
        Input dropout of the BiLSTM.
    """

    def __init__(
        self,
        embed: nn.Module,
        input_dim: int,
        hidden_dim: int,
        arc_dim: int,
        label_dim: int,
        n_labels: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embed = embed
        self.encoder = BiLSTMEncoder(input_dim, hidden_dim, dropout)
        self.arcs = BiaffineArcScorer(self.encoder.output_dim, arc_dim)
        self.head_view = nn.Sequential(nn.Linear(self.encoder.output_dim, label_dim), nn.ReLU())
        self.dependent_view = nn.Sequential(nn.Linear(self.encoder.output_dim, label_dim), nn.ReLU())
        self.bilinear = nn.Parameter(torch.empty(n_labels, label_dim, label_dim))
        self.bias = nn.Parameter(torch.zeros(n_labels))
        nn.init.xavier_uniform_(self.bilinear)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Labeled arc scores ``(B, n+1, n+1, L)`` of ``inputs`` with ``lengths`` words."""
        states = self.encoder(self.embed(inputs), lengths + 1)
        arcs = self.arcs(states)
        heads, dependents = self.head_view(states), self.dependent_view(states)
        labels = torch.einsum("bhk,lkj,bmj->bhml", heads, self.bilinear, dependents) + self.bias
        valid = arc_mask(lengths, arcs.shape[1], arcs.shape[0], arcs.device)
        heads_given = torch.log_softmax(arcs.masked_fill(~valid, -1e4), dim=1)
        scores = heads_given[..., None] + torch.log_softmax(labels, dim=-1) + math.log(2.0)
        return torch.where(valid[..., None], scores, torch.zeros_like(scores))


def head_label_loss(scores: torch.Tensor, gold: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    r"""Per-sentence negative log-likelihood of the gold arcs under :class:`LabeledArcParser`'s
    local model: :math:`-\sum_{hml} y_{hml} (s_{hml} - \log 2) = -\sum_{(h, m, l) \in y}
    \big(\log p(h \mid m) + \log p(l \mid h, m)\big)`, head selection plus the label's
    cross-entropy at the gold arc.

    Parameters
    ----------
    scores
        ``(B, n+1, n+1, L)`` scores of :class:`LabeledArcParser`.
    gold
        Gold graphs of the same shape.
    lengths
        Words per sentence ``(B,)``.
    """
    if scores.shape != gold.shape:
        raise ValueError(
            f"scores and gold must have the same shape, got {tuple(scores.shape)} and {tuple(gold.shape)}"
        )
    valid = arc_mask(lengths, scores.shape[1], scores.shape[0], scores.device)[..., None]
    chosen = torch.where(valid & (gold > 0), scores - math.log(2.0), torch.zeros_like(scores))
    return -chosen.sum(dim=(1, 2, 3))


def labeled_arc_counts(predicted: torch.Tensor, gold: torch.Tensor, lengths: torch.Tensor) -> tuple[int, int, int]:
    """``(correct, predicted, gold)`` labeled arcs of 0/1 graphs ``(B, n+1, n+1, L)``."""
    if predicted.shape != gold.shape:
        raise ValueError(
            f"predicted and gold must have the same shape, got {tuple(predicted.shape)} and {tuple(gold.shape)}"
        )
    valid = arc_mask(lengths, gold.shape[1], gold.shape[0], gold.device)[..., None]
    guess, truth = (predicted > 0.5) & valid, (gold > 0.5) & valid
    return int((guess & truth).sum()), int(guess.sum()), int(truth.sum())


class LabeledGraphGCN(nn.Module):
    r"""One graph-convolution layer over a labeled structure ``(B, T, T, L)``.

    .. math:: H' = \mathrm{ReLU}\Big(H W_{\text{self}} + \sum_l (Z_l^\top H) W^{\text{head}}_l
              + \sum_l (Z_l H) W^{\text{child}}_l + b\Big)

    with :math:`Z_l` the ``(T, T)`` slice of label ``l``: each node hears its heads and its
    children through one weight per label and direction. Linear in :math:`Z`, so it reads any
    point of the polytope (a graph, a SparseMAP mixture, a relaxed projection).

    Parameters
    ----------
    input_dim, output_dim
        Node-state sizes.
    n_labels
        ``L``.
    """

    def __init__(self, input_dim: int, output_dim: int, n_labels: int) -> None:
        super().__init__()
        self.n_labels = n_labels
        self.self_loop = nn.Linear(input_dim, output_dim)
        self.from_heads = nn.Linear(n_labels * input_dim, output_dim, bias=False)
        self.from_children = nn.Linear(n_labels * input_dim, output_dim, bias=False)
        self.output_dim = output_dim

    def forward(self, states: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        """New states ``(B, T, output_dim)`` of ``states`` ``(B, T, input_dim)`` over ``graph``."""
        batch, size = states.shape[:2]
        if graph.shape != (batch, size, size, self.n_labels):
            raise ValueError(
                f"graph must have shape (B, T, T, L) = {(batch, size, size, self.n_labels)} to "
                f"match states {tuple(states.shape)}, got {tuple(graph.shape)}"
            )
        heads = torch.einsum("bhml,bhd->bmld", graph, states).reshape(batch, size, -1)
        children = torch.einsum("bhml,bmd->bhld", graph, states).reshape(batch, size, -1)
        return torch.relu(self.self_loop(states) + self.from_heads(heads) + self.from_children(children))
