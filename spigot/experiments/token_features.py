"""Token vectors from integer token features (word, part of speech, ...), one embedding each.

Inputs are int64 tensors ``(B, T, F)``: ``F`` features per token (a word index, a tag index),
index 0 the padding of every feature. :class:`TokenFeatures` embeds each feature with its own
table and concatenates the vectors; a table can start from pre-trained vectors and be frozen
(GloVe in ``sentiment``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class TokenFeatures(nn.Module):
    """Concatenated embeddings of the ``F`` integer features of every token.

    Parameters
    ----------
    tables
        One embedding table per feature: an ``(size, dim)`` float tensor of initial vectors, or
        a ``(size, dim)`` pair of ints for a table drawn from N(0, 1) (row 0, the padding,
        is zero).
    frozen
        One flag per feature: whether its table stays fixed (default: none does).
    """

    def __init__(
        self,
        tables: Sequence[torch.Tensor | tuple[int, int]],
        frozen: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        frozen = [False] * len(tables) if frozen is None else list(frozen)
        if not tables or len(frozen) != len(tables):
            raise ValueError(
                f"tables must be non-empty and frozen must have one flag per table, got "
                f"{len(tables)} tables and {len(frozen)} flags"
            )
        embeddings = []
        for table, fixed in zip(tables, frozen):
            if isinstance(table, torch.Tensor):
                embedding = nn.Embedding.from_pretrained(table.float(), freeze=fixed, padding_idx=0)
            else:
                embedding = nn.Embedding(*table, padding_idx=0)
                embedding.weight.requires_grad_(not fixed)
            embeddings.append(embedding)
        self.embeddings = nn.ModuleList(embeddings)
        self.output_dim = sum(e.embedding_dim for e in embeddings)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Vectors ``(B, T, output_dim)`` of ``tokens`` ``(B, T, F)``."""
        if tokens.ndim != 3 or tokens.shape[2] != len(self.embeddings):
            raise ValueError(
                f"tokens must have shape (B, T, {len(self.embeddings)}), got {tuple(tokens.shape)}"
            )
        return torch.cat([e(tokens[..., i]) for i, e in enumerate(self.embeddings)], dim=-1)
