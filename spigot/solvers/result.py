"""The batched result of a projection, with its optimality certificate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spigot._batch import Array

#: ``status`` codes shared by every solver.
CONVERGED = 0
MAX_ITER = 1
STALLED = 2
FAILED = 3
TIME_LIMIT = 4

STATUS_MESSAGES = {
    CONVERGED: "converged: certificate gap within tolerance",
    MAX_ITER: "stopped at max_iter before the certificate gap reached the tolerance",
    STALLED: "stalled: numerical precision exhausted before the tolerance was reached",
    FAILED: "the underlying solver failed",
    TIME_LIMIT: "stopped at max_time (seconds) before the certificate gap reached the tolerance",
}


@dataclass(frozen=True)
class ProjectionResult:
    r"""Result of projecting a batch of points onto a polytope.

    Every field holds one entry per instance: array fields have the caller's batch shape
    (``()`` for a single instance) and follow the caller's library (torch or numpy); tuple
    fields are flattened over the batch in C order.

    Attributes
    ----------
    x
        The projection, shaped like the input; padded entries are 0.
    gap
        The certificate :math:`\max_{v \in Z} \langle x_{in} - p, v - p \rangle`, computed with one
        MAP call on the scores :math:`x_{in} - p`. For a feasible ``p`` it is :math:`\ge 0` up to
        rounding, and it is 0 exactly at the projection; it bounds the distance to the exact
        projection: :math:`\|p - p^\star\|^2 \le \mathrm{gap}`. For the ``relaxed`` solver it is
        measured against the relaxation.
    nit
        Iterations used (MAP calls for vertex-based solvers; 0 for closed forms).
    success
        Whether the solver met its tolerance.
    status
        0 converged, 1 stopped at ``max_iter``, 2 stalled on numerical precision, 3 failed,
        4 stopped at the time budget ``max_time``.
    message
        One human-readable reason per instance.
    active_set
        For vertex-based solvers, one ``(m_b, *event_shape)`` array per instance: the vertices
        whose convex combination is ``x``; ``None`` otherwise.
    weights
        The convex weights ``(m_b,)`` of those vertices (non-negative, summing to 1).
    """

    x: Array
    gap: Array
    nit: Array
    success: Array
    status: Array
    message: tuple[str, ...]
    active_set: tuple[Array, ...] | None = None
    weights: tuple[Array, ...] | None = None

    @property
    def all_success(self) -> bool:
        """Whether every instance of the batch succeeded."""
        success = self.success
        return bool(success.all()) if isinstance(success, torch.Tensor) else bool(np.all(success))

    def failures(self) -> list[str]:
        """Messages of the instances that did not succeed, each prefixed by its flat index."""
        flags = self.success.reshape(-1)
        flags = flags.tolist() if isinstance(flags, torch.Tensor) else list(np.asarray(flags))
        return [f"instance {i}: {m}" for i, (ok, m) in enumerate(zip(flags, self.message)) if not ok]
