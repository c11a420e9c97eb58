r"""Compiled SPIGOT-family targets on the CPU: :math:`t_b = s_b - \eta_b g_b` in one pass per instance.

The step rules are those of :func:`spigot.autodiff._common.gradient_step` (``normalized``,
``reference``, ``fixed``), on the entries that ``keep`` marks (the polytope's variables; the
others get no step and do not count in the norms). The norm is computed scaled,
:math:`\|g_b\| = m_b \|g_b / m_b\|` with :math:`m_b = \max_i |g_{bi}|`, so it neither overflows
nor underflows; arithmetic is float64 whatever the input's dtype (float32 or float64), and the
target is rounded once to it.
"""

from __future__ import annotations

import math

import numba

#: Step rules, as :data:`spigot.autodiff._common.STEP_RULES` names them.
NORMALIZED, REFERENCE, FIXED = 0, 1, 2


@numba.njit(cache=True, fastmath={"nnan", "reassoc"})
def _largest(row, keep):
    """:math:`\\max_j |row_j|` over the kept entries (0 if none); the input is finite."""
    top = 0.0
    for j in range(row.shape[0]):
        magnitude = abs(row[j]) if keep[j] else 0.0
        top = max(top, magnitude)
    return top


@numba.njit(cache=True, fastmath={"reassoc"})
def _scaled_square_sum(row, keep, largest):
    """:math:`\\sum_j (row_j / m)^2` over the kept entries, ``m = largest > 0``."""
    total = 0.0
    for j in range(row.shape[0]):
        unit = row[j] / largest if keep[j] else 0.0
        total += unit * unit
    return total


@numba.njit(cache=True)
def stepped_targets(start, grad, keep, rule, eta, threshold, out):
    """``out[b] = start[b] - eta_b * grad[b]`` on the kept entries, ``start[b]`` elsewhere.

    ``start``, ``grad`` and ``out`` are ``(B, D)``; ``keep`` is ``(1, D)`` (shared by every
    instance) or ``(B, D)``; ``rule`` is :data:`NORMALIZED`, :data:`REFERENCE` or :data:`FIXED`.
    """
    shared = keep.shape[0] == 1
    for b in range(start.shape[0]):
        kept = keep[0] if shared else keep[b]
        g = grad[b]
        source = start[b]
        target = out[b]
        if rule == FIXED:
            for j in range(g.shape[0]):
                target[j] = source[j] - eta * g[j] if kept[j] else source[j]
            continue
        largest = _largest(g, kept)
        if largest == 0.0:  # no gradient on the variables: no step
            for j in range(g.shape[0]):
                target[j] = source[j]
            continue
        norm = math.sqrt(_scaled_square_sum(g, kept, largest))  # in [1, sqrt(D)]
        coefficient = eta / norm
        if rule == REFERENCE:  # min(eta, tau / (m n)) * g = min(eta m, tau / n) * (g / m)
            coefficient = min(eta * largest, threshold / norm)
        for j in range(g.shape[0]):
            target[j] = source[j] - (g[j] / largest) * coefficient if kept[j] else source[j]
