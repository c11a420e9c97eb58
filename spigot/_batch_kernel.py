"""Compiled preparation of validated scores on the CPU (see :func:`spigot._batch.as_batch`).

Both passes also check, over every entry, that the scores are finite (a running sum of
``0 * x`` stays 0 unless an entry is NaN or infinite), so :func:`~spigot._batch.as_batch` reads
the batch once instead of once for the check and once for the pass; on a False return it
reports the offending entries itself.

- :func:`shift_variables` finds each instance's largest variable within its valid region and
  writes the variables shifted by it and 0 on every other entry. Arithmetic stays in the
  input's dtype (float32 or float64), so the result is bit for bit that of the torch expression
  it replaces, ``torch.where(keep, values - top, 0)``.
- :func:`mask_variables` writes the variables as they are and 0 on every other entry, as
  ``values.masked_fill(~keep, 0)``.
"""

from __future__ import annotations

import numba


@numba.njit(cache=True)
def shift_variables(values, region, keep, out):
    """``out[b, j] = values[b, j] - top_b`` where ``keep[j]``, else 0; False if an entry is not finite.

    ``values`` and ``out`` are ``(B, D)``; ``keep`` is ``(D,)``; ``region`` is ``(1, D)``
    (shared by every instance) or ``(B, D)``: ``top_b`` is the largest ``values[b, j]`` over
    ``region``'s True entries, 0 when there is none.
    """
    shared = region.shape[0] == 1
    poison = 0.0
    for b in range(values.shape[0]):
        valid = region[0] if shared else region[b]
        row = values[b]
        best = -1
        for j in range(row.shape[0]):
            poison += row[j] * 0
            if valid[j] and (best < 0 or row[j] > row[best]):
                best = j
        top = row[best] if best >= 0 else row[0] - row[0]  # +0 in the input's dtype (finite input)
        written = out[b]
        for j in range(row.shape[0]):
            written[j] = row[j] - top if keep[j] else 0
    return poison == 0


@numba.njit(cache=True, fastmath={"reassoc"})
def mask_variables(values, keep, out):
    """``out[b, j] = values[b, j]`` where ``keep[j]``, else 0; False if an entry is not finite.

    ``values`` and ``out`` are ``(B, D)``, ``keep`` is ``(D,)``. Branch-free, so it vectorizes.
    """
    poison = 0.0
    for b in range(values.shape[0]):
        row = values[b]
        written = out[b]
        for j in range(row.shape[0]):
            poison += row[j] * 0.0
            written[j] = row[j] if keep[j] else 0.0
    return poison == 0.0
