"""Graphs over a root (node 0) and words ``1..n``: arc masks, and host copies for compiled kernels.

Shared by the dependency trees, the semantic graphs and their solvers; scores are
``(B, N, N, ...)`` with ``N = n_max + 1`` nodes and ``scores[:, h, m]`` the arc ``h -> m``.
"""

from __future__ import annotations

import numpy as np
import torch


def word_mask(lengths: torch.Tensor | None, size: int, batch: int, device: torch.device | str) -> torch.Tensor:
    """``(B, size)`` boolean: True on the words ``1..n_b`` (node 0, the root, is False)."""
    positions = torch.arange(size, device=device)
    if lengths is None:
        return (positions >= 1).expand(batch, size)
    return (positions >= 1) & (positions <= lengths.to(device)[:, None])


def arc_mask(lengths: torch.Tensor | None, size: int, batch: int, device: torch.device | str) -> torch.Tensor:
    """``(B, size, size)`` boolean: True on the arcs ``h -> m`` with ``h != m``, ``m`` a word, ``h <= n``.

    Without ``lengths`` every instance has the same mask, returned as an expanded (read-only)
    view of one ``(size, size)`` matrix.
    """
    positions = torch.arange(size, device=device)
    off_diagonal = positions[:, None] != positions[None, :]
    if lengths is None:
        return (off_diagonal & (positions >= 1)[None, :]).expand(batch, size, size)
    last = lengths.to(device)[:, None, None]
    nodes = positions[None, :, None] <= last
    words = (positions[None, None, :] >= 1) & (positions[None, None, :] <= last)
    return nodes & words & off_diagonal


def host_lengths(lengths: torch.Tensor | None, batch: int, full: int) -> np.ndarray:
    """``(B,)`` int64 word counts in host memory (``full`` for every instance without ``lengths``)."""
    if lengths is None:
        return np.full(batch, full, dtype=np.int64)
    return lengths.detach().cpu().numpy().astype(np.int64)


def host_scores(scores: torch.Tensor) -> np.ndarray:
    """The scores as a C-contiguous array in host memory (one transfer for the batch).

    float32 and float64 keep their dtype (the compiled kernels read both and compute in
    float64); any other dtype is converted to float64.
    """
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.to(torch.float64)
    return np.ascontiguousarray(scores.detach().cpu().numpy())
