"""A graph-based dependency parser: BiLSTM states scored by a biaffine arc scorer.

The parser follows Kiperwasser and Goldberg (2016) and Dozat and Manning (2017) in a small
size: token vectors (node 0 is the root token) go through a bidirectional LSTM; two MLPs map
each state to a *head* and a *dependent* view; the score of the arc ``h -> m`` is

.. math:: s_{hm} = \\mathbf{h}_h^\\top U \\mathbf{d}_m + \\mathbf{u}^\\top \\mathbf{h}_h ,

an ``(n+1, n+1)`` matrix per sentence in the library's convention (entry ``[h, m]``, node 0 the
root). The structured layers of :mod:`spigot.autodiff` turn these scores into a tree.

:func:`head_selection_loss` is the usual local training loss (each word's gold head against a
softmax over its candidate heads) and :func:`attachment_counts` counts correct heads (UAS).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from spigot._word_graphs import arc_mask


class BiLSTMEncoder(nn.Module):
    """A one-layer bidirectional LSTM over padded token vectors.

    Parameters
    ----------
    input_dim
        Size of each token vector.
    hidden_dim
        Size of each direction's state; the output has ``2 * hidden_dim`` features.
    dropout
        Dropout on the inputs (training mode only).
    """

    def __init__(self, input_dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(input_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.output_dim = 2 * hidden_dim

    def forward(self, vectors: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """States ``(B, T, 2 * hidden_dim)`` of ``vectors`` ``(B, T, input_dim)``.

        ``sizes`` ``(B,)`` counts each row's tokens; padding beyond it gets zero states.
        """
        packed = pack_padded_sequence(
            self.dropout(vectors), sizes.cpu(), batch_first=True, enforce_sorted=False
        )
        states, _ = self.lstm(packed)
        unpacked, _ = pad_packed_sequence(states, batch_first=True, total_length=vectors.shape[1])
        return unpacked


class BiaffineArcScorer(nn.Module):
    """Arc scores ``(B, T, T)``, entry ``[h, m]`` for ``h -> m``, from token states ``(B, T, d)``.

    Parameters
    ----------
    input_dim
        Size of each token state.
    arc_dim
        Size of the head and dependent views.
    """

    def __init__(self, input_dim: int, arc_dim: int) -> None:
        super().__init__()
        self.head_view = nn.Sequential(nn.Linear(input_dim, arc_dim), nn.ReLU())
        self.dependent_view = nn.Sequential(nn.Linear(input_dim, arc_dim), nn.ReLU())
        self.bilinear = nn.Parameter(torch.empty(arc_dim, arc_dim))
        self.head_bias = nn.Linear(arc_dim, 1, bias=False)
        nn.init.xavier_uniform_(self.bilinear)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        heads = self.head_view(states)
        dependents = self.dependent_view(states)
        return heads @ self.bilinear @ dependents.transpose(1, 2) + self.head_bias(heads)


class ArcParser(nn.Module):
    """Token vectors -> BiLSTM -> biaffine arc scores.

    Parameters
    ----------
    embed
        Module mapping a batch's inputs to token vectors ``(B, T, input_dim)``; position 0 of
        every row is the root token, so ``T = max(n) + 1``.
    input_dim
        Size of those vectors.
    hidden_dim, arc_dim
        Sizes of the BiLSTM's states (per direction) and of the arc views.
    dropout
        Input dropout of the BiLSTM.
    """

    def __init__(
        self, embed: nn.Module, input_dim: int, hidden_dim: int, arc_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.embed = embed
        self.encoder = BiLSTMEncoder(input_dim, hidden_dim, dropout)
        self.scorer = BiaffineArcScorer(self.encoder.output_dim, arc_dim)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Arc scores ``(B, n+1, n+1)`` of ``inputs`` (whatever ``embed`` takes) with ``lengths``
        words per row; entries outside a sentence are 0."""
        states = self.encoder(self.embed(inputs), lengths + 1)
        scores = self.scorer(states)
        valid = arc_mask(lengths, scores.shape[1], scores.shape[0], scores.device)
        return scores * valid


def head_selection_loss(
    scores: torch.Tensor, gold: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Per-sentence sum over words of ``-log softmax_h(scores[:, h, m])`` at the gold head.

    Parameters
    ----------
    scores
        Arc scores ``(B, n+1, n+1)``.
    gold
        Gold trees as 0/1 arc matrices of the same shape.
    lengths
        Words per sentence ``(B,)``.
    """
    if scores.shape != gold.shape:
        raise ValueError(
            f"scores and gold must have the same shape, got {tuple(scores.shape)} and "
            f"{tuple(gold.shape)}"
        )
    valid = arc_mask(lengths, scores.shape[1], scores.shape[0], scores.device)
    log_probs = torch.log_softmax(scores.masked_fill(~valid, float("-inf")), dim=1)
    chosen = torch.where(gold.bool() & valid, log_probs, torch.zeros_like(log_probs))
    return -chosen.sum(dim=(1, 2))


def attachment_counts(
    predicted: torch.Tensor, gold: torch.Tensor, lengths: torch.Tensor
) -> tuple[int, int]:
    """``(correct heads, words)`` of predicted against gold arc matrices ``(B, n+1, n+1)``."""
    if predicted.shape != gold.shape:
        raise ValueError(
            f"predicted and gold must have the same shape, got {tuple(predicted.shape)} and "
            f"{tuple(gold.shape)}"
        )
    valid = arc_mask(lengths, gold.shape[1], gold.shape[0], gold.device)
    correct = (predicted.bool() & gold.bool() & valid).sum()
    return int(correct), int(lengths.sum())
