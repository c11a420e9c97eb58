"""Solver base classes: the batch loop, warm starts and result assembly shared by all solvers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from spigot._batch import Array, Batch, as_batch, check_finite, to_tensor
from spigot.polytopes.base import Polytope
from spigot.solvers.certificate import certificate_gap
from spigot.solvers.result import CONVERGED, STATUS_MESSAGES, ProjectionResult, certified_against


def check_tol(tol: float) -> float:
    """Validate a positive, finite tolerance."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not np.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    return float(tol)


def check_max_iter(max_iter: int) -> int:
    """Validate a positive integer iteration budget."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    return int(max_iter)


class Solver(ABC):
    """A projection algorithm: options at construction, then :meth:`run` on batches.

    Subclasses set :attr:`name` (the registry key), :attr:`exact` (whether, run to its
    tolerance, it returns the Euclidean projection onto the polytope itself) and
    :attr:`warm_start` (whether :meth:`run` takes an ``init`` keyword).
    """

    name: ClassVar[str]
    exact: ClassVar[bool] = True
    warm_start: ClassVar[bool] = False

    @abstractmethod
    def run(self, polytope: Polytope, x: Array, lengths: Array | None = None) -> ProjectionResult:
        """Project ``x`` (one instance or a batch) onto ``polytope``."""

    def supports(self, polytope: Polytope) -> bool:
        """Whether this solver can run on ``polytope`` (default: always)."""
        return True

    def requirement(self, polytope: Polytope) -> str:
        """Why :meth:`supports` is false for ``polytope``: what the solver needs that it lacks."""
        return f"{type(polytope).__name__} lacks what this solver needs"

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({options})"


def assemble(
    polytope: Polytope,
    batch: Batch,
    p: torch.Tensor,
    nit: list[int],
    status: list[int],
    message: list[str],
    active_set: list[np.ndarray] | None = None,
    weights: list[np.ndarray] | None = None,
    relaxes: Polytope | None = None,
) -> ProjectionResult:
    """Build a :class:`ProjectionResult` from flat per-instance outcomes, certifying ``p``.

    The certificate is measured against ``polytope``; pass ``relaxes`` when ``polytope`` is
    the relaxation of that structure, so that the result says so.

    ``p`` is ``(B, *event_shape)`` (any device); the certificate is computed here with one
    batched MAP call so that every solver reports it the same way. ``active_set`` entries are
    full-shape ``(m_b, *event_shape)`` arrays.
    """
    values = batch.values
    p = p.to(device=values.device, dtype=torch.float64)
    gap = certificate_gap(polytope, values, p, batch.lengths)
    status_t = torch.tensor(status, dtype=torch.int64)
    vertices = None
    if active_set is not None:
        vertices = _follow(batch, active_set)
        weights = _follow(batch, weights, event=False)
    return ProjectionResult(
        x=batch.restore(p),
        gap=batch.restore(gap, event=False),
        nit=batch.restore(torch.tensor(nit, dtype=torch.int64), event=False),
        success=batch.restore(status_t == CONVERGED, event=False),
        status=batch.restore(status_t, event=False),
        message=tuple(message),
        active_set=vertices,
        weights=weights if active_set is not None else None,
        certified_against=certified_against(polytope, relaxes),
    )


def _follow(batch: Batch, parts: list[np.ndarray], event: bool = True) -> tuple[Array, ...]:
    """Per-instance float64 arrays ``(m_b, ...)`` in the caller's library, device and (for events) dtype.

    Torch callers get views of one tensor that is moved to their device in a single transfer
    (never one per instance).
    """
    if batch.as_numpy or not parts:
        return tuple(parts)
    flat = torch.from_numpy(np.concatenate(parts))
    flat = flat.to(device=batch.values.device, dtype=batch.values.dtype if event else flat.dtype)
    return torch.split(flat, [len(a) for a in parts])


@dataclass
class InstanceOutcome:
    """What a per-instance solver returns for one unpadded instance (float64 numpy)."""

    p: np.ndarray
    nit: int
    status: int
    message: str = ""
    vertices: np.ndarray | None = None
    weights: np.ndarray | None = None


class InstanceSolver(Solver):
    """A solver that handles one unpadded instance at a time, in float64 numpy.

    Subclasses implement :meth:`solve_one`; :meth:`run` validates the input, loops over the
    batch, embeds padded results and certifies them. ``init`` (a warm start) is either a
    previous :class:`ProjectionResult` on the same batch (its active sets are reused) or an
    array shaped like ``x`` whose instances are points near which to start: the first vertex
    is :math:`\\mathrm{map}(2 z - 1)`, which is ``z`` itself when ``z`` is a vertex.

    Device: these solvers run on the CPU, in float64 numpy. A batch on another device (a GPU)
    is copied to host memory once per batch, never once per instance; the projection, the
    active sets and their weights go back to the input's device in one transfer each, and the
    certificate is computed there by the polytope's batched oracle (see its docs for where
    that oracle runs).
    """

    vertex_based: ClassVar[bool] = True
    warm_start: ClassVar[bool] = True

    def __init__(self, init: Any = None) -> None:
        self.init = init

    @abstractmethod
    def solve_one(
        self,
        polytope: Polytope,
        x: np.ndarray,
        start: tuple[np.ndarray, np.ndarray] | None,
    ) -> InstanceOutcome:
        """Project one unpadded instance ``x``.

        ``start`` is ``None`` or ``(vertices (m, *x.shape), weights (m,))`` to warm-start from.
        """

    def run(
        self,
        polytope: Polytope,
        x: Array,
        lengths: Array | None = None,
        init: Any = None,
    ) -> ProjectionResult:
        """Project ``x`` onto ``polytope``; ``init`` overrides the solver's own warm start."""
        batch = as_batch(polytope, x, lengths, name="x")
        starts = self._starts(polytope, batch, self.init if init is None else init)
        outcomes = [
            self.solve_one(polytope, xi, start) for xi, start in zip(batch.instances(), starts)
        ]
        p = batch.embed([o.p for o in outcomes])
        active = weights = None
        if self.vertex_based:
            active = [_embed_vertices(batch, i, o.vertices) for i, o in enumerate(outcomes)]
            weights = [o.weights for o in outcomes]
        return assemble(
            polytope,
            batch,
            p,
            nit=[o.nit for o in outcomes],
            status=[o.status for o in outcomes],
            message=[o.message or STATUS_MESSAGES[o.status] for o in outcomes],
            active_set=active,
            weights=weights,
        )

    def _starts(self, polytope: Polytope, batch: Batch, init: Any) -> list:
        if init is None:
            return [None] * batch.size
        if isinstance(init, ProjectionResult):
            if init.active_set is None or len(init.active_set) != batch.size:
                raise ValueError(
                    "init must be a ProjectionResult with one active set per instance of x "
                    f"({batch.size}), from a vertex-based solver"
                )
            vertices, weights = host_arrays(init.active_set), host_arrays(init.weights)
            return [(v[(slice(None), *sl)], w) for v, w, sl in zip(vertices, weights, batch.slices)]
        points, _ = to_tensor(init, "init")
        expected = (*batch.batch_shape, *batch.event_shape)
        if tuple(points.shape) != expected:
            raise ValueError(f"init must have the shape of x {expected}, got {tuple(points.shape)}")
        check_finite(points, "init")
        points = points.reshape(batch.values.shape).to(batch.values.device)
        vertices = polytope.map_batch(2.0 * points.double() - 1.0, batch.lengths)
        vertices = vertices.detach().cpu().numpy()
        return [
            (vertices[(i, *sl)][None].astype(np.float64), np.ones(1)) for i, sl in enumerate(batch.slices)
        ]


def flat_oracle(polytope: Polytope, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """``map_one`` on flattened float64 vectors of one unpadded instance of ``shape``."""

    def oracle(scores: np.ndarray) -> np.ndarray:
        return np.asarray(polytope.map_one(scores.reshape(shape)), dtype=np.float64).ravel()

    return oracle


def flat_start(start: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A warm start as flat vertex rows ``(m, d)`` with positive weights summing to 1."""
    vertices, weights = start
    keep = weights > 0
    return vertices.reshape(len(weights), -1)[keep], weights[keep] / weights[keep].sum()


def host_arrays(parts: tuple[Array, ...]) -> list[np.ndarray]:
    """Per-instance arrays (an active set or its weights, on any device) as float64 numpy copies.

    Tensors are gathered and moved to host memory in one transfer, not one per instance.
    """
    if parts and all(isinstance(a, torch.Tensor) for a in parts):
        sizes = [len(a) for a in parts]
        flat = torch.cat([a.detach() for a in parts]).cpu().numpy().astype(np.float64)
        return np.split(flat, np.cumsum(sizes)[:-1])
    return [np.array(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a, dtype=np.float64) for a in parts]


def _embed_vertices(batch: Batch, i: int, vertices: np.ndarray) -> np.ndarray:
    out = np.zeros((vertices.shape[0], *batch.event_shape), dtype=np.float64)
    out[(slice(None), *batch.slices[i])] = vertices
    return out
