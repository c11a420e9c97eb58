"""Solver base classes: one solve core, the batch loop, warm starts and result assembly.

Every solver has a public :meth:`Solver.run` that validates and flattens its input once
(:func:`~spigot._batch.as_batch`), calls the internal :meth:`Solver.solve` on the validated flat
:class:`~spigot._batch.Batch`, certifies the :class:`Solution` and restores the caller's shape
in a :class:`~spigot.solvers.result.ProjectionResult`. The autodiff layers, which hold input
they have already validated, call :meth:`Solver.solve` directly, with an explicit warm start
(:func:`vertex_starts`) and the certificate only where it pays (:func:`certify`).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from spigot._batch import Array, Batch, as_batch, check_finite, to_tensor
from spigot.polytopes.base import Polytope
from spigot.checks import check_max_iter, check_max_time, check_tol  # noqa: F401  (re-exported)
from spigot.solvers.certificate import certificate_gap
from spigot.solvers.result import CONVERGED, FAILED, STATUS_MESSAGES, ProjectionResult, certified_against

#: A warm start: per instance, ``(vertices (m, *valid_shape), weights (m,))`` on its valid region.
Start = list[tuple[np.ndarray, np.ndarray]]


def deadline(max_time: float) -> float:
    """The ``time.perf_counter()`` value after which a run that started now is over its budget."""
    return time.perf_counter() + max_time


@dataclass
class Solution:
    r"""A solver's outcome on a validated flat batch, before certification and reshaping.

    Attributes
    ----------
    p
        The projections ``(B, *event_shape)`` on the batch's device (padded entries 0).
    nit, status, message
        One entry per instance (status codes of :mod:`spigot.solvers.result`).
    active_set, weights
        For vertex-based solvers, per instance the full-shape vertices ``(m_b, *event_shape)``
        and their convex weights ``(m_b,)`` (float64 numpy); ``None`` otherwise.
    gap
        The certificate ``(B,)`` (float64, on the batch's device) when the solver already has
        it (an iterative solver stops on it); ``None`` until :func:`certify` computes it.
    against
        The polytope the certificate is measured against when it is not the one solved for
        (the ``relaxed`` solver's relaxation).
    closed_form
        Whether ``p`` came from a closed form (exact by construction, so a layer skips its
        certificate unless asked).
    factors
        Per instance, the lower Cholesky factor of the active vertices' lifted Gram matrix
        :math:`VV^\top + \mathbf 1\mathbf 1^\top` when the solver keeps one (the active-set
        method), for SparseMAP's backward; ``None`` otherwise.
    """

    p: torch.Tensor
    nit: list[int]
    status: list[int]
    message: list[str]
    active_set: list[np.ndarray] | None = None
    weights: list[np.ndarray] | None = None
    gap: torch.Tensor | None = None
    against: Polytope | None = None
    closed_form: bool = False
    factors: list[np.ndarray | None] | None = None

    @property
    def all_success(self) -> bool:
        """Whether every instance met its solver's tolerance."""
        return all(code == CONVERGED for code in self.status)

    def failures(self) -> list[str]:
        """Messages of the instances that did not succeed, each prefixed by its index."""
        return [f"instance {i}: {m}" for i, (c, m) in enumerate(zip(self.status, self.message)) if c != CONVERGED]


def certify(polytope: Polytope, batch: Batch, solution: Solution) -> Solution:
    """``solution`` with its certificate: the one it has, else one batched MAP call now."""
    if solution.gap is not None:
        return solution
    target = solution.against or polytope
    p = solution.p.to(device=batch.values.device, dtype=torch.float64)
    return replace(solution, gap=certificate_gap(target, batch.values, p, batch.lengths))


def check_closed_form(polytope: Polytope, batch: Batch, solution: Solution) -> Solution:
    r"""Certify a closed-form ``solution`` and mark the instances whose gap is too large as failed.

    A closed form is exact by construction, so its certificate only measures rounding: an
    instance fails when :math:`\mathrm{gap} > \sqrt{\epsilon}\,\max(1, \|x - p\|_1)`, with
    :math:`\epsilon` the machine epsilon of the input's dtype.
    """
    solution = certify(polytope, batch, solution)
    eps = torch.finfo(batch.values.dtype).eps if batch.values.is_floating_point() else 2.0**-52
    residual = (batch.values.double() - solution.p.to(batch.values.device).double()).abs()
    limit = math.sqrt(eps) * residual.flatten(start_dim=1).sum(dim=1).clamp(min=1.0)
    bad = (solution.gap > limit).tolist()
    if not any(bad):
        return solution
    gaps = solution.gap.tolist()
    status = [FAILED if b else c for b, c in zip(bad, solution.status)]
    message = [
        f"closed form certificate gap {g:.3e} exceeds sqrt(eps) * max(1, |x - p|_1)" if b else m
        for b, g, m in zip(bad, gaps, solution.message)
    ]
    return replace(solution, status=status, message=message)


def vertex_starts(batch: Batch, vertices: torch.Tensor) -> Start:
    """The warm start ``{z_b}`` with weight 1 for every instance, from vertices ``(B, *event)``.

    One host transfer for the batch; no MAP call (the layers hold the vertex already).
    """
    host = vertices.detach().cpu().numpy().astype(np.float64, copy=False)
    return [(np.array(host[(i, *sl)])[None], np.ones(1)) for i, sl in enumerate(batch.slices)]


class Solver(ABC):
    """A projection algorithm: options at construction, then :meth:`run` on batches.

    Subclasses set :attr:`name` (the registry key), :attr:`exact` (whether, run to its
    tolerance, it returns the Euclidean projection onto the polytope itself) and
    :attr:`warm_start` (whether :meth:`run` takes an ``init`` keyword).
    """

    name: ClassVar[str]
    exact: ClassVar[bool] = True
    warm_start: ClassVar[bool] = False

    def run(self, polytope: Polytope, x: Array, lengths: Array | None = None) -> ProjectionResult:
        """Project ``x`` (one instance or a batch) onto ``polytope``, certified.

        Checks and flattens ``x`` once, then :meth:`solve`, then restores the caller's shape.
        """
        batch = as_batch(polytope, x, lengths, name="x")
        return finish(polytope, batch, self.solve(polytope, batch))

    @abstractmethod
    def solve(self, polytope: Polytope, batch: Batch, start: Start | None = None) -> Solution:
        """Project a validated flat batch; ``start`` is a warm start that solvers with
        :attr:`warm_start` use (the others ignore it)."""

    def supports(self, polytope: Polytope) -> bool:
        """Whether this solver can run on ``polytope`` (default: always)."""
        return True

    def closed_form_for(self, polytope: Polytope) -> Polytope | None:
        """The polytope whose declared closed form :meth:`solve` applies for ``polytope`` (itself
        or its relaxation), or ``None`` when it runs an algorithm (default).

        The SPIGOT family's backward passes then use that polytope's residual form
        (:meth:`~spigot.polytopes.Polytope.residual_form`) when it declares one.
        """
        return None

    def requirement(self, polytope: Polytope) -> str:
        """Why :meth:`supports` is false for ``polytope``: what the solver needs that it lacks."""
        return f"{type(polytope).__name__} lacks what this solver needs"

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({options})"


def finish(polytope: Polytope, batch: Batch, solution: Solution) -> ProjectionResult:
    """Certify ``solution`` (unless the solver already did) and restore the caller's shape.

    The certificate is the solver loop's own when it has one, else one batched MAP call, so
    that every public result reports it the same way.
    """
    solution = certify(polytope, batch, solution)
    p = solution.p.to(device=batch.values.device, dtype=torch.float64)
    status_t = torch.tensor(solution.status, dtype=torch.int64)
    vertices = weights = None
    if solution.active_set is not None:
        vertices = _follow(batch, solution.active_set)
        weights = _follow(batch, solution.weights, event=False)
    return ProjectionResult(
        x=batch.restore(p),
        gap=batch.restore(solution.gap.to(batch.values.device), event=False),
        nit=batch.restore(torch.tensor(solution.nit, dtype=torch.int64), event=False),
        success=batch.restore(status_t == CONVERGED, event=False),
        status=batch.restore(status_t, event=False),
        message=tuple(solution.message),
        active_set=vertices,
        weights=weights,
        certified_against=certified_against(solution.against or polytope, polytope),
    )


def _follow(batch: Batch, parts: list[np.ndarray], event: bool = True) -> tuple[Array, ...]:
    """Per-instance float64 arrays ``(m_b, ...)`` in the caller's library, device and (for events) dtype.

    Torch callers get views of one tensor that is moved to their device in a single transfer
    (never one per instance).
    """
    if batch.as_numpy or not parts:
        return tuple(parts)
    flat = torch.from_numpy(np.concatenate(parts))
    flat = flat.to(device=batch.values.device, dtype=batch.caller_dtype if event else flat.dtype)
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
    #: The certificate of ``p`` when the solver computed it (the gap it stopped on).
    gap: float | None = None
    #: The lower Cholesky factor of the lifted Gram matrix of ``vertices``, when the solver keeps it.
    factor: np.ndarray | None = None


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
        return finish(polytope, batch, self.solve(polytope, batch, starts))

    def solve(self, polytope: Polytope, batch: Batch, start: Start | None = None) -> Solution:
        """Run :meth:`solve_one` on every instance of a validated flat batch."""
        starts = start if start is not None else [None] * batch.size
        outcomes = [
            self.solve_one(polytope, xi, s) for xi, s in zip(batch.instances(), starts)
        ]
        p = batch.embed([o.p for o in outcomes]).to(batch.values.device)
        active = weights = None
        if self.vertex_based:
            active = [_embed_vertices(batch, i, o.vertices) for i, o in enumerate(outcomes)]
            weights = [o.weights for o in outcomes]
        gap = None
        if all(o.gap is not None for o in outcomes):
            gap = torch.tensor([o.gap for o in outcomes], dtype=torch.float64, device=batch.values.device)
        return Solution(
            p=p,
            nit=[o.nit for o in outcomes],
            status=[o.status for o in outcomes],
            message=[o.message or STATUS_MESSAGES[o.status] for o in outcomes],
            active_set=active,
            weights=weights,
            gap=gap,
            factors=[o.factor for o in outcomes] if self.vertex_based else None,
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
        points = init_points(batch, init).to(batch.values.device)
        vertices = polytope.map_batch(2.0 * points.double() - 1.0, batch.lengths)
        vertices = vertices.detach().cpu().numpy()
        return [
            (vertices[(i, *sl)][None].astype(np.float64), np.ones(1)) for i, sl in enumerate(batch.slices)
        ]


def init_points(batch: Batch, init: Any) -> torch.Tensor:
    """A warm start given as points shaped like ``x``, checked (shape, finite) and flattened like ``batch``."""
    points, _ = to_tensor(init, "init")
    expected = (*batch.batch_shape, *batch.event_shape)
    if tuple(points.shape) != expected:
        raise ValueError(f"init must have the shape of x {expected}, got {tuple(points.shape)}")
    check_finite(points, "init")
    return points.reshape(batch.values.shape)


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
