r"""The SPIGOT family's step from a point, in one compiled pass per instance on CPU arrays.

For instance :math:`b` with incoming gradient :math:`g_b` and variables :math:`V` (the
polytope's variables within the instance's valid region), the result is

.. math:: y_{bj} = x_{bj} - \eta_b\, g_{bj} \quad (j \in V), \qquad y_{bj} = x_{bj}
          \quad (j \notin V),

with :math:`\eta_b` of the rule (see :func:`spigot.autodiff._common.take_step`). The norm
:math:`\|g_b\|` over :math:`V` is summed in float64 whatever the arrays' dtype (float32 or
float64), rescaled by the largest entry only where a float64 gradient's squares would overflow
or underflow; each output entry is rounded once, to the arrays' dtype. The same sweep reports
whether every entry of the gradient (variables or not) is finite, which the caller turns into
its error.
"""

from __future__ import annotations

import numba
import numpy as np

#: The step rules, as the kernel's integer codes, and by name (``_common.STEP_RULES``).
FIXED, NORMALIZED, REFERENCE = 0, 1, 2
RULE_CODES = {"fixed": FIXED, "normalized": NORMALIZED, "reference": REFERENCE}


#: Sums of squares outside ``[_TINY, _HUGE]`` may have underflowed or overflowed: the instance's
#: norm is then recomputed scaled by its largest entry.
_TINY, _HUGE = 2.0**-900, 2.0**900


@numba.njit(cache=True, fastmath={"reassoc"})
def step_from(point, grad, region, rule, eta, threshold, out):
    r"""Write ``out[b] = point[b] - eta_b * grad[b]`` on ``region``, ``point[b]`` elsewhere.

    ``point``, ``grad`` and ``out`` are ``(B, D)`` arrays of one dtype; ``region`` is a boolean
    ``(1, D)`` (shared by every instance) or ``(B, D)`` array. ``rule`` is :data:`FIXED`
    (:math:`\eta_b = \eta`), :data:`NORMALIZED` (:math:`\eta / \|g_b\|`) or :data:`REFERENCE`
    (:math:`\min(\eta, \tau / \|g_b\|)`, :math:`\tau` = ``threshold``); an instance whose
    gradient is 0 on ``region`` keeps its point. Returns False, leaving ``out`` partly written,
    if an entry of ``grad`` is not finite; True otherwise.

    One sweep sums the squares on ``region`` in float64 (which no float32 gradient can
    overflow or underflow to 0) and, over every entry, ``0 * g``, which stays 0 unless an entry
    is NaN or infinite; it is branch-free, so it vectorizes (the sums may be reassociated).
    Only when the sum of squares leaves ``[2^-900, 2^900]`` (a float64 gradient of extreme
    scale) is the norm recomputed scaled, :math:`m_b \|g_b / m_b\|`.
    """
    shared = region.shape[0] == 1
    for b in range(grad.shape[0]):
        valid = region[0] if shared else region[b]
        row = grad[b]
        squares = 0.0
        poison = 0.0
        for j in range(row.shape[0]):
            value = np.float64(row[j])
            poison += value * 0.0
            kept = value if valid[j] else 0.0
            squares += kept * kept
        if poison != 0.0:  # NaN: some entry is NaN or infinite
            return False
        scale = eta
        if rule != FIXED:
            norm = np.sqrt(squares)
            if not _TINY <= squares <= _HUGE:  # underflowed (or 0), or overflowed
                norm = _scaled_norm(row, valid)
            scale = 0.0
            if norm > 0.0:
                scale = eta / norm if rule == NORMALIZED else min(eta, threshold / norm)
        start = point[b]
        written = out[b]
        for j in range(row.shape[0]):
            step = np.float64(row[j]) * scale if valid[j] else 0.0
            written[j] = start[j] - step
    return True


@numba.njit(cache=True)
def _scaled_norm(row, valid):
    r""":math:`m \|g / m\|` over ``valid``, :math:`m = \max |g_j|` (0 if ``g`` is 0 there).

    Neither overflows nor underflows to 0: the scaled entries lie in :math:`[-1, 1]`.
    """
    largest = 0.0
    for j in range(row.shape[0]):
        if valid[j]:
            largest = max(largest, abs(np.float64(row[j])))
    if largest == 0.0:
        return 0.0
    squares = 0.0
    for j in range(row.shape[0]):
        if valid[j]:
            scaled = np.float64(row[j]) / largest
            squares += scaled * scaled
    return largest * np.sqrt(squares)
