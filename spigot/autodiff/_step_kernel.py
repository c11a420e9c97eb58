r"""The SPIGOT family's step on CPU arrays, compiled: per-instance step sizes, and the step itself.

For instance :math:`b` with incoming gradient :math:`g_b` and variables :math:`V` (the
polytope's variables within the instance's valid region), the step size is :math:`\eta_b`
of the rule (:data:`FIXED` :math:`\eta`, :data:`NORMALIZED` :math:`\eta / \|g_b\|`,
:data:`REFERENCE` :math:`\min(\eta, \tau / \|g_b\|)`; 0 for a gradient that is 0 on
:math:`V`), with :math:`\|g_b\|` over :math:`V` only, and the step from a point :math:`x` is

.. math:: y_{bj} = x_{bj} - \eta_b\, g_{bj} \quad (j \in V), \qquad y_{bj} = x_{bj}
          \quad (j \notin V).

The sum of squares is accumulated in float64 whatever the arrays' dtype (float32 or float64);
no float32 gradient can overflow it or underflow it to 0. A float64 gradient of extreme scale
(a sum of squares outside :math:`[2^{-900}, 2^{900}]`) is reported instead, and the caller
takes the torch expression, which rescales by the largest entry. The same sweep checks that
every entry of the gradient (variables or not) is finite. Each sweep is branch-free, so it
vectorizes (its sums may be reassociated); each output entry is rounded once.
"""

from __future__ import annotations

import numba
import numpy as np

#: The step rules, as the kernels' integer codes, and by name (``_common.STEP_RULES``).
FIXED, NORMALIZED, REFERENCE = 0, 1, 2
RULE_CODES = {"fixed": FIXED, "normalized": NORMALIZED, "reference": REFERENCE}

#: What :func:`step_sizes` reports: done; an entry of the gradient is NaN or infinite; some
#: instance's sum of squares may have overflowed or underflowed (float64 only).
DONE, NOT_FINITE, EXTREME = 0, 1, 2

_TINY, _HUGE = 2.0**-900, 2.0**900


@numba.njit(cache=True, fastmath={"reassoc"})
def step_sizes(grad, region, rule, eta, threshold, sizes):
    """Write each instance's step size :math:`\\eta_b` into ``sizes`` (float64, ``(B,)``); return a code.

    ``grad`` is ``(B, D)`` (float32 or float64); ``region`` is a boolean ``(1, D)`` (shared by
    every instance) or ``(B, D)`` array, the variables. Returns :data:`DONE`,
    :data:`NOT_FINITE` or :data:`EXTREME` (then ``sizes`` is partly written).
    """
    shared = region.shape[0] == 1
    for b in range(grad.shape[0]):
        valid = region[0] if shared else region[b]
        row = grad[b]
        squares = 0.0
        magnitudes = 0.0
        poison = 0.0  # 0 unless an entry is NaN or infinite
        for j in range(row.shape[0]):
            value = np.float64(row[j])
            poison += value * 0.0
            kept = value if valid[j] else 0.0
            squares += kept * kept
            magnitudes += abs(kept)
        if poison != 0.0:
            return NOT_FINITE
        if magnitudes > 0.0 and not _TINY <= squares <= _HUGE:
            return EXTREME
        if rule == FIXED:
            sizes[b] = eta
        elif squares == 0.0:
            sizes[b] = 0.0
        elif rule == NORMALIZED:
            sizes[b] = eta / np.sqrt(squares)
        else:
            sizes[b] = min(eta, threshold / np.sqrt(squares))
    return DONE


@numba.njit(cache=True)
def apply_step(point, grad, region, sizes, out):
    """``out[b] = point[b] - sizes[b] * grad[b]`` on ``region``, ``point[b]`` elsewhere.

    Arrays as in :func:`step_sizes`; ``point`` and ``out`` have ``grad``'s shape and dtype.
    """
    shared = region.shape[0] == 1
    for b in range(grad.shape[0]):
        valid = region[0] if shared else region[b]
        row = grad[b]
        start = point[b]
        written = out[b]
        size = sizes[b]
        for j in range(row.shape[0]):
            step = np.float64(row[j]) * size if valid[j] else 0.0
            written[j] = start[j] - step
