"""Dependency trees as tensors, in the library's convention.

A sentence of ``n`` words has nodes ``0..n`` (node 0 the root). Its tree is the ``(n+1, n+1)``
0/1 matrix with entry ``[h, m] = 1`` for the arc ``h -> m``; column 0 and the diagonal are 0.
Batches pad every matrix to the longest sentence and carry ``lengths`` (words, not nodes).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass

import torch

from spigot.experiments.data.petrogold import DependencySentence
from spigot.experiments.data.vocabulary import ROOT, Vocabulary, encode_sentences


def heads_to_matrix(heads: Sequence[int], size: int | None = None) -> torch.Tensor:
    """The ``(size, size)`` 0/1 arc matrix of a head sequence (``size`` defaults to ``n + 1``).

    ``heads[m - 1]`` is the head of word ``m``; ``size`` larger than ``n + 1`` pads with zeros.
    """
    n = len(heads)
    size = n + 1 if size is None else size
    if size < n + 1:
        raise ValueError(f"size must be at least len(heads) + 1 = {n + 1}, got {size}")
    if any(not 0 <= h <= n for h in heads):
        raise ValueError(f"heads must lie in 0..{n}, got {list(heads)}")
    matrix = torch.zeros(size, size)
    if n:
        matrix[torch.as_tensor(list(heads)), torch.arange(1, n + 1)] = 1.0
    return matrix


def matrix_to_heads(matrix: torch.Tensor, length: int) -> list[int]:
    """Head of each of the ``length`` words of an arc matrix (the row of each column's 1)."""
    columns = matrix[: length + 1, 1 : length + 1]
    if not torch.all(columns.sum(dim=0) == 1):
        raise ValueError("every word column of the matrix must hold exactly one arc")
    return columns.argmax(dim=0).tolist()


@dataclass(frozen=True)
class DependencyBatch:
    """Tensors of a batch of gold trees.

    Attributes
    ----------
    word_ids
        int64 ``(B, N+1)``: the root token at position 0, word ``i`` at position ``i``, 0-padded.
    heads
        float ``(B, N+1, N+1)`` 0/1 arc matrices, ``[b, h, m] = 1`` for the arc ``h -> m``.
    relation_ids
        int64 ``(B, N+1)``: the relation of word ``i`` at position ``i``; 0 (padding) at the
        root position and past the sentence.
    lengths
        int64 ``(B,)`` word counts ``n``.
    """

    word_ids: torch.Tensor
    heads: torch.Tensor
    relation_ids: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return int(self.lengths.shape[0])


def relation_vocabulary(sentences: Sequence[DependencySentence]) -> Vocabulary:
    """The relations of ``sentences`` (usually the training split), most frequent first."""
    return Vocabulary.build([s.relations for s in sentences])


def word_vocabulary(
    sentences: Sequence[DependencySentence],
    min_count: int = 1,
    lowercase: bool = True,
    keep: Container[str] | None = None,
) -> Vocabulary:
    """Word vocabulary with the root token among its specials, for :func:`dependency_batch`.

    Words are lower-cased unless ``lowercase=False``; ``min_count`` and ``keep`` (e.g. a
    :class:`~spigot.experiments.data.glove.WordVectors`, to keep words with a vector) filter
    them as in :meth:`Vocabulary.build`.
    """
    words = [[w.lower() if lowercase else w for w in s.words] for s in sentences]
    return Vocabulary.build(
        words, min_count=min_count, keep=keep, specials=("<pad>", "<unk>", ROOT)
    )


def dependency_batch(
    sentences: Sequence[DependencySentence],
    words: Vocabulary,
    relations: Vocabulary,
    lowercase: bool = True,
) -> DependencyBatch:
    """Pad a list of sentences into a :class:`DependencyBatch`.

    ``words`` must contain :data:`~spigot.experiments.data.vocabulary.ROOT`; unknown words and
    relations map to index 1.
    """
    if not sentences:
        raise ValueError("sentences must not be empty")
    forms = [[w.lower() if lowercase else w for w in s.words] for s in sentences]
    word_ids, lengths = encode_sentences(forms, words, add_root=True)
    size = word_ids.shape[1]
    heads = torch.stack([heads_to_matrix(s.heads, size) for s in sentences])
    relation_ids = torch.zeros_like(word_ids)
    for i, sentence in enumerate(sentences):
        relation_ids[i, 1 : len(sentence) + 1] = torch.as_tensor(
            relations.encode(sentence.relations)
        )
    return DependencyBatch(word_ids, heads, relation_ids, lengths)
