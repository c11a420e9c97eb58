r"""The optimality certificate of a projection, computed with one MAP call.

For a point :math:`p \in P = \mathrm{conv}(Z)`, :math:`p` is the Euclidean projection of
:math:`x` onto :math:`P` iff :math:`\langle x - p, v - p \rangle \le 0` for every
:math:`v \in P`; the maximum over :math:`P` is attained at a vertex, found by the MAP oracle
with scores :math:`x - p`. This is also the Frank-Wolfe duality gap of
:math:`f(p) = \tfrac12 \|p - x\|^2`, so :math:`f(p) - f(p^\star) \le \mathrm{gap}` and, by
optimality of :math:`p^\star` gives the sharper
:math:`\|p - p^\star\|^2 \le \langle x - p, p^\star - p \rangle \le \mathrm{gap}`.

Solvers stop when :math:`\mathrm{gap} \le \mathrm{tol} \cdot \max(1, \|x - p\|_1) + 16 \epsilon
\|x - p\|_2^2`, capped at :data:`MAX_CERTIFIED_GAP`: rounding in the inner product grows with the
size of the residual, so a purely absolute tolerance could never be met on huge inputs, and the
cap keeps a huge residual from certifying any point (see :func:`gap_threshold`).
"""

from __future__ import annotations

import numpy as np
import torch

from spigot.polytopes.base import Polytope


def certificate_gap(
    polytope: Polytope,
    x: torch.Tensor,
    p: torch.Tensor,
    lengths: torch.Tensor | None,
) -> torch.Tensor:
    r"""Batched certificate :math:`\max_{v \in Z} \langle x - p, v - p \rangle`.

    Parameters
    ----------
    x, p
        Validated tensors ``(B, *event_shape)``; padded entries of ``p`` are 0 and those of
        ``x`` are ignored.
    lengths
        ``None`` or ``(B,)`` lengths.

    Returns
    -------
    Float64 tensor ``(B,)`` on the device of ``x``.
    """
    x64, p64 = x.detach().double(), p.detach().double().to(x.device)
    residual = x64 - p64
    v = polytope.map_batch(residual, lengths).double()
    # Padded entries: v and p are 0 there, so they add nothing to the inner product.
    return ((v - p64) * residual).flatten(start_dim=1).sum(dim=1)


#: Largest gap any solver accepts: a gap bounds :math:`\|p - p^\star\|^2`, so this one still
#: certifies every coordinate of ``p`` to within 0.032 however large the residual.
MAX_CERTIFIED_GAP = 1e-3


def gap_threshold(residual: np.ndarray, tol: float) -> float:
    r"""The gap a solver accepts for one instance.

    .. math:: \min\big(\mathrm{tol} \max(1, \|r\|_1) + 16 \epsilon \|r\|_2^2,\ \texttt{MAX\_CERTIFIED\_GAP}\big)

    The second term is the rounding floor: the objective :math:`\tfrac12\|p - x\|^2` and the
    point itself carry relative errors of order :math:`\epsilon` (machine epsilon), so no
    solver can certify a gap below a few :math:`\epsilon \|r\|_2^2`; without it, inputs far
    from the polytope (``x + 1e6``) stalled above the tolerance. The cap
    :data:`MAX_CERTIFIED_GAP` keeps the certificate meaningful when the residual is huge
    (``x + 1e17``, where both terms would accept any point of the polytope): there a solver
    ends with ``success=False`` unless its point is certified in absolute terms. The residual
    is scaled by its largest entry before squaring, so that the norm cannot overflow.
    """
    peak = float(np.abs(residual).max(initial=0.0))
    floor = 0.0
    if peak > 0.0:
        scaled = 16.0 * np.finfo(np.float64).eps * float(np.linalg.norm(residual / peak)) ** 2 * peak
        # the floor only matters below the cap; past it (and past float64's range, from about
        # 1e154) it is the cap itself
        floor = MAX_CERTIFIED_GAP if scaled > MAX_CERTIFIED_GAP / peak else scaled * peak
    relative = tol * max(1.0, float(np.abs(residual).sum()))
    return min(relative + floor, MAX_CERTIFIED_GAP)
