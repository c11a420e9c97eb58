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


#: Marks a relaxation in :attr:`ProjectionResult.certified_against`.
RELAXATION_OF = " (relaxation of "


def certified_against(polytope: object, relaxes: object | None = None) -> str:
    """``"Arborescence"``, or ``"HeadSelection (relaxation of Arborescence)"`` when ``polytope`` relaxes ``relaxes``."""
    name = type(polytope).__name__
    if relaxes is None or relaxes is polytope:
        return name
    return f"{name}{RELAXATION_OF}{type(relaxes).__name__})"


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
        projection: :math:`\|p - p^\star\|^2 \le \mathrm{gap}`. It is measured against the
        polytope named by ``certified_against``: for the ``relaxed`` solver that is the
        relaxation, and a small gap there says nothing about the distance to the projection
        onto the polytope itself.
    nit
        Iterations used (MAP calls for vertex-based solvers; 0 for closed forms).
    success
        Whether the solver met its own stopping test, per instance: the certificate within
        ``tol`` for ``active-set``, the Frank-Wolfe family and ``ad3``; the QP solver's
        "optimal" status for ``cvxpy``; always for ``closed-form``; the inner solver's (or a
        reference procedure's, always) for ``relaxed``, against the relaxation. The solver
        guide tabulates it per solver.
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
    certified_against
        What ``gap`` (and ``x``'s feasibility) is measured against: the polytope's class name
        (``"Arborescence"``), or a relaxation's with the polytope it relaxes
        (``"HeadSelection (relaxation of Arborescence)"``).
    """

    x: Array
    gap: Array
    nit: Array
    success: Array
    status: Array
    message: tuple[str, ...]
    active_set: tuple[Array, ...] | None = None
    weights: tuple[Array, ...] | None = None
    certified_against: str = ""

    @property
    def on_relaxation(self) -> bool:
        """Whether the certificate is measured against a relaxation rather than the polytope."""
        return RELAXATION_OF in self.certified_against

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
