r"""SparseMAP: the Euclidean projection of the scores, differentiated through its active set.

Niculae, Martins, Blondel and Cardie (2018), *SparseMAP: Differentiable Sparse Structured
Inference*. Forward, the layer returns

.. math:: p(s) = \Pi_P(s) = \operatorname*{argmin}_{p \in P} \|p - s\|^2,

computed by a vertex-based solver as a sparse convex combination
:math:`p = \sum_{v \in S} \alpha_v v` of an active set :math:`S` of vertices. Backward, the
active set is held fixed: near :math:`s`, :math:`p` is the projection of :math:`s` onto the
affine hull of :math:`S`, whose Jacobian is the orthogonal projector onto its direction space
:math:`D_S = \mathrm{span}\{v - v_0 : v \in S\}`,

.. math:: \frac{\partial L}{\partial s} = J^\top g = \Pi_{D_S}\, g .

With :math:`M` the ``d x k`` matrix of affinely independent active vertices this is Niculae et
al.'s :math:`J = M (Z - Z \mathbf{1}\mathbf{1}^\top Z / \mathbf{1}^\top Z \mathbf{1}) M^\top`,
computed here with the *lifted* Gram matrix :math:`Z = (M^\top M + \mathbf 1 \mathbf
1^\top)^{-1}` (the Gram matrix of the points :math:`(v, 1)`): the correction term is unchanged,
and the lifted matrix stays invertible when :math:`M^\top M` is singular (the zero vector as a
vertex). Only the ``k x k`` matrix is factored (Cholesky, grown one vertex at a time; a vertex
affinely dependent on the others is left out, since it adds no direction), so one instance costs
:math:`O(dk + k^3)` and no ``d x k`` factorisation.

The exact Jacobian of :math:`\Pi_P` (wherever it exists) is the projector onto the directions
of the whole face :math:`F = \operatorname*{argmax}_{v \in P} \langle s - p, v\rangle` exposed
by the residual. An active set always lies on :math:`F` but may span less of it at special
points (:math:`s = (0.5, 0.5)` on the square is certified by the diagonal's two vertices), and
a Frank-Wolfe solver may carry stale vertices off :math:`F`. So the backward pass keeps the
active vertices on :math:`F` and completes their span with the MAP oracle (see
:func:`face_basis`; generically two extra oracle calls per instance). The result is the exact
Jacobian, and for the closed-form polytopes it agrees with the hand-written backward of
:mod:`spigot.projections`.

Solvers. ``solver="exact"`` (the default) uses its active-set method whenever the polytope's
closed form would be chosen, because closed forms return no active set; the ``relaxed``
solver differentiates through the active set of the relaxation. On a factor graph of
at-most-one factors equal to its local polytope (:class:`~spigot.polytopes.SemanticGraph`),
where ``"exact"`` chooses AD3-QP (``ad3``, which returns no active set), and with
``solver="ad3"`` there, the backward pass instead applies the Jacobian of the *constraint
face* of ADMM's point, its zero coordinates and tight factors, certified by strict KKT
conditions (:mod:`spigot.autodiff.constraint_face`); an instance whose face fails the
certificate (a kink of the projection, or an inaccurate point) is solved again by the
active-set method and differentiated as above. Other solvers that return no active set
(``closed-form``, ``cvxpy``) are refused with a clear error.

Devices: the vertex-based solvers and the face completion of the backward pass run on the CPU
(float64 numpy, the polytope's ``map_one``; for a polytope with a compiled oracle, such as the
dependency trees, both run in compiled code: :mod:`spigot.solvers._active_set_kernel` and
:mod:`spigot.autodiff._face_kernel`). For a batch on a GPU, the scores, the incoming
gradient and the active sets are copied to host memory once per batch (never once per
instance), and the output and the gradient go back to the input's device once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from spigot._lazy import LazyModule
from spigot._batch import Array, Batch, as_batch
from spigot.autodiff._common import (
    check_gradient,
    check_on_failure,
    check_polytope,
    handle_failure,
    padding_mask,
)
from spigot.errors import ProjectionError
from spigot.polytopes.base import CompiledOracle, Polytope
from spigot.solvers.active_set import _PIVOT_EPS, ActiveSet, ActiveSetState
from spigot.autodiff import constraint_face
from spigot.solvers.ad3_qp import Ad3QP
from spigot.solvers.base import InstanceSolver, Solution, Solver
from spigot.solvers.exact import Exact
from spigot.solvers.compatibility import check_compatible
from spigot.solvers.registry import get_solver
from spigot.solvers.relaxed import Relaxed

_cholesky = LazyModule("spigot.solvers._cholesky")
#: The compiled backward for polytopes with a compiled oracle, and the support conversion.
_face_kernel = LazyModule("spigot.autodiff._face_kernel")
_active_set_kernel = LazyModule("spigot.solvers._active_set_kernel")

#: Relative tolerance for a vertex to count as on the face exposed by the residual.
_FACE_TOL = 1e-8
#: A vertex leaves the affine hull found so far when it moves this far along a unit direction.
_SPAN_TOL = 1e-9
#: A probing direction this short (after removing its part in the span found so far) means the
#: span is the whole space.
_RANK_TOL = 1e-9
#: How many times the probing step may shrink (by 16) before the face oracle gives up.
_MAX_SHRINKS = 60
#: Seed of the random probing directions (fixed, so that the backward pass is deterministic).
_SEED = 20180214
#: How many probing directions are drawn and projected together, at most (the block starts
#: at one and doubles while the probes keep finding vertices).
_BLOCK = 8
#: The error of a backward pass whose face probe finds no vertex on the face.
_NO_FACE_VERTEX = (
    "SparseMAP backward: the MAP oracle returned no vertex of the face exposed by the "
    "projection's residual; the projection is probably inaccurate (tighten the solver's tol)"
)


def vertex_solver(solver: Solver, polytope: Polytope) -> tuple[Solver, Polytope]:
    """The solver and polytope whose projection carries an active set, for ``solver`` on ``polytope``.

    Raises
    ------
    ValueError
        ``solver`` returns no active set and has no vertex-based counterpart.
    """
    if isinstance(solver, Relaxed):
        return vertex_solver(solver.inner, polytope.relaxation())
    if isinstance(solver, Exact):
        chosen = solver.choose(polytope)
        if isinstance(chosen, InstanceSolver) and chosen.vertex_based:
            return solver, polytope
        if isinstance(chosen, Ad3QP) and constraint_face.applies(polytope):
            return solver, polytope
        return ActiveSet(tol=solver.tol, max_iter=solver.max_iter, max_time=solver.max_time, init=solver.init), polytope
    check_compatible(solver, polytope, "SparseMAP")
    if isinstance(solver, InstanceSolver) and solver.vertex_based:
        return solver, polytope
    if isinstance(solver, Ad3QP) and constraint_face.applies(polytope):
        return solver, polytope
    raise ValueError(
        f"SparseMAP differentiates through the active set of the projection, and solver "
        f"{solver!r} returns none; use 'exact', 'active-set', 'relaxed' or a Frank-Wolfe solver "
        "('ad3' only on factor graphs of at-most-one factors equal to their local polytope)"
    )


class FaceSpan:
    r"""The affine hull of affinely independent vertices, and the projector onto its directions.

    Holds the vertices (rows of :math:`V`, i.e. :math:`M^\top`) with the Cholesky factor of
    their lifted Gram matrix (:class:`~spigot.solvers.active_set.ActiveSetState`, updated in
    :math:`O(k^2)` per vertex); :meth:`project` applies Niculae et al.'s active-face Jacobian in
    :math:`O(dk + k^2)`.
    """

    def __init__(self, size: int) -> None:
        self._state = ActiveSetState(np.zeros(size))

    @classmethod
    def of(cls, vertices: np.ndarray, factor: np.ndarray | None = None) -> FaceSpan:
        """The span of the rows of ``vertices``.

        ``factor``, when given, is the lower Cholesky factor of their lifted Gram matrix (the
        active-set solver's own, so nothing is recomputed); otherwise one Gram product and one
        Cholesky factorisation when they are affinely independent (an active set is), one
        vertex at a time when they are not.
        """
        span = cls(vertices.shape[1])
        norms = np.einsum("ij,ij->i", vertices, vertices)
        if factor is None:
            lifted = vertices @ vertices.T + 1.0
            try:
                factor = np.linalg.cholesky(lifted)
            except np.linalg.LinAlgError:
                factor = None
            if factor is None or np.any(np.diag(factor) ** 2 <= _PIVOT_EPS * (norms + 1.0)):
                for v in vertices:
                    span.add(v)
                return span
        state, k = span._state, len(vertices)
        while len(state.weights) < k:
            state._grow()
        state.vertices[:k], state.chol[:k, :k] = vertices, factor
        state.norms[:k], state.rhs[:k], state.weights[:k] = norms, 1.0, 0.0
        state.size = k
        return span

    @property
    def size(self) -> int:
        """How many vertices span the hull."""
        return self._state.size

    @property
    def origin(self) -> np.ndarray:
        """The first vertex."""
        return self._state.active[0]

    def add(self, v: np.ndarray) -> bool:
        """Add ``v``; False (nothing changes) if it is numerically in the affine hull already."""
        return self._state.add(v)

    def add_rows(self, rows: np.ndarray) -> bool:
        """Add the rows of ``rows`` in turn (their inner products in two matrix products); whether any joined."""
        state = self._state
        old = state.products_rows(rows)  # (r, k) against the vertices already in the span
        among = rows @ rows.T
        joined: list[int] = []
        for j, v in enumerate(rows):
            products = np.concatenate([old[j], among[j, joined]])
            if state.add(v, products=products):
                joined.append(j)
        return bool(joined)

    def project_rows(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`project` applied to every row of ``rows`` ``(r, d)``."""
        state = self._state
        if state.size <= 1:
            return np.zeros_like(rows)
        vertices = state.active
        gammas = _cholesky.affine_direction_weights_rows(state.chol, state.size, vertices @ rows.T)
        return gammas.T @ vertices

    def project(self, g: np.ndarray) -> np.ndarray:
        """The orthogonal projection of the flat vector ``g`` onto the directions of the hull."""
        state = self._state
        if state.size <= 1:
            return np.zeros_like(g)
        vertices = state.active
        gamma = _cholesky.affine_direction_weights(state.chol, state.size, vertices @ g)
        return gamma @ vertices


def face_basis(
    polytope: Polytope,
    x: np.ndarray,
    p: np.ndarray,
    vertices: np.ndarray,
    weights: np.ndarray,
    factor: np.ndarray | None = None,
) -> FaceSpan:
    r"""The affine hull of the face of ``P`` exposed by ``x - p``, as a :class:`FaceSpan`.

    The face is :math:`F = \operatorname*{argmax}_{v \in P} \langle x - p, v \rangle`; the
    projection's Jacobian at ``x`` is the orthogonal projector onto these directions. The active
    vertices on :math:`F` give a first spanning set. Because an active set may span less than
    :math:`F` (``x = (0.5, 0.5)`` on the square can be certified with the two vertices of the
    diagonal alone), the span is then *completed*: for a random unit direction :math:`d`
    orthogonal to it, the vertices of :math:`F` extreme along :math:`\pm d` are found with the
    MAP oracle (:math:`\mathrm{map}(x - p + t d)`, shrinking :math:`t` until the answer lies
    on :math:`F`; it then maximises :math:`\langle d, \cdot\rangle` over :math:`F`). If one of
    them leaves the affine hull it joins the set and the test repeats; if neither does, the
    hull is :math:`\mathrm{aff}(F)` with probability one. Generically this costs two oracle
    calls.

    Parameters
    ----------
    polytope
        The polytope projected onto (its ``map_one`` is the oracle).
    x, p
        One unpadded instance and its projection (float64, same shape).
    vertices, weights
        The active set ``(m, *x.shape)`` and its convex weights ``(m,)``.
    factor
        The lower Cholesky factor ``(m, m)`` of the active vertices' lifted Gram matrix when the
        solver kept it (the active-set method does), reused when every active vertex lies on
        the face.

    Returns
    -------
    The face's span; its :meth:`FaceSpan.project` is the Jacobian (a single vertex: 0).
    """
    shape = x.shape
    residual, point = (x - p).ravel(), p.ravel()
    tolerance = _FACE_TOL * max(1.0, float(np.abs(residual).sum()))

    def on_face(v: np.ndarray) -> bool:
        return bool((v - point) @ residual >= -tolerance)

    def face_argmax(direction: np.ndarray) -> np.ndarray:
        step = 1.0
        for _ in range(_MAX_SHRINKS):
            scores = (residual + step * direction).reshape(shape)
            v = np.asarray(polytope.map_one(scores), dtype=np.float64).ravel()
            if on_face(v):
                return v
            step /= 16.0
        raise ProjectionError(_NO_FACE_VERTEX)

    flat = vertices.reshape(len(weights), -1)
    keep = np.array([w > 0 and on_face(v) for v, w in zip(flat, weights)], dtype=bool)
    if factor is not None and keep.all():  # the solver's factor spans exactly these vertices
        span = FaceSpan.of(flat, factor)
    else:  # an affinely dependent vertex adds no direction and is left out
        span = FaceSpan.of(flat[keep])
    if span.size == 0:
        span.add(face_argmax(np.zeros_like(residual)))
    rng = np.random.default_rng(_SEED)
    block = 1  # one probe when the active set already spans the face (the usual case)
    for _ in range(residual.size + 1):
        # a block of random directions orthogonal to the span, projected together (one
        # matrix-matrix product instead of one matrix-vector product per direction)
        directions = rng.standard_normal((block, residual.size))
        directions -= span.project_rows(directions)
        norms = np.linalg.norm(directions, axis=1)
        directions = directions[norms > _RANK_TOL] / norms[norms > _RANK_TOL, None]
        if not len(directions):
            break
        leaving = []
        for direction in directions:
            for sign in (1.0, -1.0):
                v = face_argmax(sign * direction)
                if abs((v - span.origin) @ direction) > _SPAN_TOL:
                    leaving.append(v)
                    break
        # with probability one, no direction orthogonal to aff(F) finds a vertex off the span
        if not leaving or not span.add_rows(np.array(leaving)):
            break
        block = min(2 * block, _BLOCK)
    return span


class _SparseMAPFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, solver, target_polytope, lengths, on_failure):
        batch = as_batch(polytope, scores, lengths)
        batch = replace(batch, values=batch.values.detach())
        solution = solver.solve(target_polytope, batch)
        handle_failure(solution, on_failure, "SparseMAP forward", solver)
        ctx.batch, ctx.solution, ctx.target_polytope = batch, solution, target_polytope
        return solution.p.to(scores.dtype).reshape(scores.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_p):
        check_gradient(grad_p)
        batch: Batch = ctx.batch
        solution = ctx.solution
        # one transfer to host memory per batch: the gradient and the inputs (the solver's
        # active sets are host arrays already)
        g = grad_p.reshape(batch.values.shape).detach().cpu().double().numpy()
        if solution.active_set is None:
            parts = _constraint_face_gradients(ctx.target_polytope, batch, solution, g)
        else:
            parts = _active_set_gradients(ctx.target_polytope, batch, solution, g)
        grad_scores = batch.embed(parts).to(device=grad_p.device, dtype=grad_p.dtype)
        mask = padding_mask(batch)
        if mask is not None:
            grad_scores = grad_scores * mask
        return grad_scores.reshape(grad_p.shape), None, None, None, None, None


def _active_set_gradients(polytope: Polytope, batch: Batch, solution: Solution, g: np.ndarray) -> list[np.ndarray]:
    """Per instance, the Jacobian of the face spanned from the solver's active set applied to ``g``."""
    factors = solution.factors or [None] * batch.size
    parts = []
    instances = zip(batch.instances(), batch.slices, solution.active_set, solution.weights)
    for i, (xi, sl, active, weights) in enumerate(instances):
        vertices = active[(slice(None), *sl)]
        # the solver's float64 point, not the output, which is rounded to the input's dtype
        pi = np.tensordot(weights, vertices, axes=1)
        compiled = polytope.compiled_oracle(xi.shape)
        if compiled is not None:
            supports = _active_set_kernel.supports_of(vertices.reshape(len(weights), -1), compiled.support_size)
            if supports is not None:
                part = _compiled_face_projection(compiled, xi, pi, supports, weights, factors[i], g[(i, *sl)])
                parts.append(part.reshape(xi.shape))
                continue
        span = face_basis(polytope, xi, pi, vertices, weights, factors[i])
        parts.append(span.project(g[(i, *sl)].ravel()).reshape(xi.shape))
    return parts


def _compiled_face_projection(
    oracle: CompiledOracle,
    x: np.ndarray,
    p: np.ndarray,
    supports: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray,
    factor: np.ndarray | None,
    g: np.ndarray,
) -> np.ndarray:
    """:func:`face_basis` then :meth:`FaceSpan.project` on ``g``, compiled
    (:mod:`spigot.autodiff._face_kernel`), for 0/1 active vertices given as supports."""
    flat_p = np.ascontiguousarray(p, dtype=np.float64).ravel()
    residual = np.ascontiguousarray(x, dtype=np.float64).ravel() - flat_p
    out = np.empty_like(residual)
    code = _face_kernel.face_projection(
        _active_set_kernel.oracle_address(oracle.function), oracle.params, residual, flat_p, *supports,
        np.ascontiguousarray(weights, dtype=np.float64),
        np.zeros((0, 0)) if factor is None else np.ascontiguousarray(factor, dtype=np.float64),
        np.ascontiguousarray(g, dtype=np.float64).ravel(),
        _FACE_TOL, _SPAN_TOL, _RANK_TOL, _MAX_SHRINKS, _BLOCK, _SEED, out,
    )
    if code != _face_kernel.DONE:
        raise ProjectionError(_NO_FACE_VERTEX)
    return out


def _constraint_face_gradients(polytope: Polytope, batch: Batch, solution: Solution, g: np.ndarray) -> list[np.ndarray]:
    """Per instance, the Jacobian of the certified constraint face of ADMM's point applied to ``g``
    (:mod:`spigot.autodiff.constraint_face`); where the face is not certified, that of the
    active-set method's projection instead."""
    points = solution.p.detach().cpu().double().numpy()
    parts = []
    for i, (xi, sl) in enumerate(zip(batch.instances(), batch.slices)):
        gi = g[(i, *sl)].ravel()
        face = constraint_face.constraint_face(polytope, xi, points[(i, *sl)])
        if face is not None:
            parts.append(face.project(gi).reshape(xi.shape))
            continue
        exact = ActiveSet().run(polytope, xi)
        if not bool(exact.success):
            raise ProjectionError(
                "SparseMAP backward: the constraint face of the ADMM point failed its certificate "
                f"and the active-set method did not converge either ({exact.message[0]})"
            )
        span = face_basis(polytope, xi, exact.x, exact.active_set[0], exact.weights[0])
        parts.append(span.project(gi).reshape(xi.shape))
    return parts


def sparsemap(
    scores: Array,
    polytope: Polytope,
    solver: str | Solver = "exact",
    lengths: Array | None = None,
    on_failure: str = "raise",
    **solver_options: Any,
) -> Array:
    r"""SparseMAP: the projection :math:`\Pi_P(s)`, differentiated through its active set.

    Parameters
    ----------
    scores
        ``(*batch, *event_shape)`` tensor of scores :math:`s`.
    polytope
        Any structure: a MAP oracle is enough for the default solver.
    solver
        Projection solver name or instance; it must produce an active set (``"exact"``,
        ``"active-set"``, ``"relaxed"``, the Frank-Wolfe family), or be ``"ad3"`` on a factor
        graph of at-most-one factors equal to its local polytope (see the module). ``"exact"``
        switches to its active-set method where it would use a closed form.
    lengths
        Optional ``(*batch,)`` integer lengths; padded outputs and gradients are 0.
    on_failure
        ``"raise"`` a :class:`~spigot.ProjectionError` when the forward projection misses its
        tolerance, or ``"warn"`` and use it anyway.
    **solver_options
        Options for the solver when it is given by name.

    Returns
    -------
    :math:`\Pi_P(s)`, shaped, placed and typed like ``scores`` (numpy in, numpy out, without
    gradient).
    """
    check_polytope(polytope)
    resolved, target_polytope = vertex_solver(get_solver(solver, **solver_options), polytope)
    return _apply(scores, polytope, resolved, target_polytope, lengths, check_on_failure(on_failure))


def _apply(
    scores: Array,
    polytope: Polytope,
    solver: Solver,
    target_polytope: Polytope,
    lengths: Array | None,
    on_failure: str,
) -> Array:
    """Run SparseMAP with a resolved vertex-based solver (numpy: forward only)."""
    if isinstance(scores, np.ndarray):
        batch = as_batch(polytope, scores, lengths)
        solution = solver.solve(target_polytope, batch)
        handle_failure(solution, on_failure, "SparseMAP forward", solver)
        return batch.restore(solution.p)
    return _SparseMAPFunction.apply(scores, polytope, solver, target_polytope, lengths, on_failure)


class SparseMAP(torch.nn.Module):
    """Module form of :func:`sparsemap`; parameters as there (``solver_options`` go to the solver)."""

    def __init__(
        self,
        polytope: Polytope,
        solver: str | Solver = "exact",
        on_failure: str = "raise",
        **solver_options: Any,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.solver, self.target_polytope = vertex_solver(get_solver(solver, **solver_options), polytope)
        self.on_failure = check_on_failure(on_failure)

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return _apply(scores, self.polytope, self.solver, self.target_polytope, lengths, self.on_failure)

    def extra_repr(self) -> str:
        return f"polytope={self.polytope!r}, solver={self.solver!r}"
