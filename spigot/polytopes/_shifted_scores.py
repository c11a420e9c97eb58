r"""Scores shifted by their per-instance maximum, for log-space dynamic programs.

A log-partition DP adds scores and takes ``logsumexp`` of the sums. When the scores are large
(``s + 1e17``) their sums lose the differences that decide the distribution (``log 2`` is below
half an ulp of ``2e17``) and the marginals, the DP's gradient, come out wrong (entries up to 4
or 5). On :math:`t = s - c` with :math:`c` the instance's largest valid score, a constant for
autograd, the sums keep those differences; for structures whose vertices all have the same
size the shift changes :math:`\log Z` by a constant and the marginals not at all.

Entries so far below the maximum that they would overflow the DP's sums are raised to a finite
floor (their probability is 0 in float64 either way) with their gradient passed through, so
that an item the floor ties with another still gets its share.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from spigot.errors import NumericalError


class ShiftedScores(NamedTuple):
    """``values = max(s - shift, floor)`` (gradient as for ``s``) and the detached ``shift`` ``(B, 1, ...)``."""

    values: torch.Tensor
    shift: torch.Tensor


def shift_by_max(scores: torch.Tensor, valid: torch.Tensor | None, floor: float) -> ShiftedScores:
    """Shift each instance (leading axis) of ``scores`` by the maximum of its ``valid`` entries.

    ``valid`` is ``None`` (every entry) or a boolean mask broadcastable to ``scores``; an
    instance without a valid entry is not shifted. ``floor`` must leave the DP's sums finite.
    """
    detached = scores.detach()
    if valid is not None:
        detached = detached.masked_fill(~valid, float("-inf"))
    top = detached.flatten(start_dim=1).amax(dim=1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    shift = top.reshape((-1,) + (1,) * (scores.ndim - 1))
    shifted = scores - shift
    # below the floor: the floor's value, the score's gradient
    raised = floor + (scores - scores.detach())
    return ShiftedScores(torch.where(shifted < floor, raised, shifted), shift)


def check_marginals(mu: torch.Tensor, totals: torch.Tensor, at_most: bool, what: str) -> None:
    """Raise :class:`~spigot.NumericalError` naming the instances whose marginals are not feasible.

    ``mu`` is ``(B, d)`` (the marginals of one instance per row, 0 off its valid entries) and
    ``totals`` ``(B,)`` what each row must sum to (at most, with ``at_most``); every entry must
    lie in [0, 1]. A failure means float64 could not resolve the distribution (scores spanning
    more than about 1e16 times their smallest decisive difference, ties among the least likely
    items): an error, never a silently wrong answer. One host synchronisation.
    """
    flat = mu.detach().flatten(start_dim=1)
    tol = 1e-6 if flat.dtype == torch.float64 else 1e-3
    error = flat.sum(dim=1) - totals.to(flat.dtype)
    fits = (error <= tol) & ((error >= -tol) | at_most)
    fits &= (flat.amin(dim=1) >= -tol) & (flat.amax(dim=1) <= 1.0 + tol)  # NaN fails both
    if bool(fits.all()):
        return
    bad = torch.nonzero(~fits).flatten().tolist()
    raise NumericalError(
        f"{what} marginals could not be computed accurately in floating point for instance(s) {bad[:5]}: "
        "the scores span too widely (differences beyond about 1e16 times the ones that decide "
        "the distribution); keep the scores on a bounded scale (normalise or clip them)"
    )
