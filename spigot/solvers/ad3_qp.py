r"""The ``ad3`` solver: AD3 on the quadratic problem, batched ADMM onto a factor graph's local polytope.

The Euclidean projection onto the local polytope :math:`L` of a
:class:`~spigot.polytopes.FactorGraphPolytope`'s factor graph (Martins et al. 2015, *AD3*;
Niculae and Martins 2020, *LP-SparseMAP*),

.. math:: \min_{p} \tfrac12 \|p - x\|^2 \quad \text{s.t. } p_f \in M_f \text{ for every factor } f,

where :math:`p_f` are the coordinates factor :math:`f` touches and :math:`M_f` its marginal
polytope, is split by giving every factor a copy :math:`q_f` of its coordinates, constrained by
:math:`q_f = p_f`. ADMM on the augmented Lagrangian

.. math:: \tfrac12\|p - x\|^2 + \sum_f \langle \lambda_f, q_f - p_f \rangle
          + \tfrac{\rho}{2} \|q_f - p_f\|^2, \qquad q_f \in M_f,

alternates three closed-form steps (over the whole batch at once):

1. factor copies: :math:`q_f = \Pi_{M_f}(p_f - \lambda_f / \rho)`, one small projection per
   factor (:mod:`spigot.solvers._factor_blocks`: closed forms for the logic factors, Wolfe's
   active set through the factor's MAP for pair and dense factors);
2. the point: setting the gradient in :math:`p` to zero, every coordinate :math:`i` in
   :math:`d_i \ge 1` factors gets

   .. math:: p_i = \frac{x_i + \sum_{f \ni i} (\rho\, q_{fi} + \lambda_{fi})}{1 + \rho\, d_i},

   and a coordinate in no factor gets :math:`\mathrm{clip}(x_i, 0, 1)`;
3. the multipliers: :math:`\lambda_f \leftarrow \lambda_f + \rho\,(q_f - p_f)`.

Steps 2 and 3 use the over-relaxed copy :math:`\hat q_f = \alpha q_f + (1 - \alpha) p_f`
(:math:`p_f` before step 2, :math:`\alpha = 1.5`; Boyd et al. 2011, 3.4.3) in place of
:math:`q_f`, which saves iterations.

**Stopping rule.** With :math:`m` the number of copies of an instance, its primal residual
:math:`r = \|q - E p\| / \sqrt m` (disagreement of the copies) and dual residual
:math:`s = \rho \|E (p - p_{prev})\| / \sqrt m` (change of the point) are checked every
``check_every`` iterations; an instance has converged when both are at most ``tol``. The
penalty :math:`\rho` is adapted per instance by residual balancing (Boyd et al. 2011, 3.4.1):
doubled when :math:`r > 10 s`, halved when :math:`s > 10 r` (the unscaled multipliers need no
rescaling). The run stops when every instance has converged, or at ``max_iter`` iterations, or
after ``max_time`` seconds (default 60), and then says so in ``message`` with
``success=False``.

**Certificate.** The result's ``gap`` is measured against the *local polytope*: one LP-MAP
over :math:`L`, by :class:`~spigot.polytopes.LocalPolytope`'s exact LP, or by the polytope's
own MAP where its local polytope is integral
(:attr:`~spigot.polytopes.FactorGraphPolytope.local_polytope_is_integral`, e.g.
:class:`~spigot.polytopes.SemanticGraph`, whose constraints are totally unimodular: there the
projection is the projection onto :math:`\mathrm{conv}(Z)`). ``success`` needs the residuals
within ``tol`` and the gap within ``gap_tol`` :math:`\cdot \max(1, \|x - p\|_1)`. ADMM's point
satisfies the factors only to the residual tolerance, so it may lie slightly outside :math:`L`
(the ``max_feasibility`` column of the semantic-graph study in ``docs/benchmarks.md`` measures
by how much).

**Padding and devices.** Everything runs in float64 on the input's device (the result takes
the input's dtype): on the CPU, graphs of at-most-one and one-of factors (semantic graphs) run
in a compiled kernel (:mod:`spigot.solvers._ad3_qp_kernel`), instance after instance; every
other case runs as batched torch operations, with no loop over instances except Wolfe's
active set for pair and dense factors. Where a padded instance's factor graph is the full-shape graph with its
padded entries fixed at 0 (:attr:`~spigot.polytopes.FactorGraphPolytope.pads_by_fixing`, as for
semantic graphs) the whole batch is solved at once, padded copies pinned to 0; otherwise
instances are grouped by their unpadded shape, one batched solve per shape. Entries that are
not coordinates (e.g. the diagonal and column 0 of a semantic graph) are zeroed before the solve
and never count in a residual.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spigot._lazy import LazyModule
from spigot._batch import Array, Batch, as_batch
from spigot.errors import UnsupportedOperation
from spigot.polytopes.base import Polytope
from spigot.polytopes.factor_graph import FactorGraphPolytope, LocalPolytope
from spigot.solvers._factor_blocks import FactorBlocks, HullSubproblems, factor_blocks, project_block
from spigot.checks import check_count, check_positive
from spigot.solvers.base import Solution, Solver, Start, check_max_iter, check_tol, finish, init_points
from spigot.solvers.certificate import certificate_gap
from spigot.solvers.registry import register_solver
from spigot.solvers.result import CONVERGED, FAILED, MAX_ITER, STALLED, TIME_LIMIT, ProjectionResult

_kernel = LazyModule("spigot.solvers._ad3_qp_kernel")

#: Largest score magnitude AD3-QP accepts (its squared residuals stay finite in float64).
LARGEST_SCORE = 1e150
#: Residual checks of the compiled kernel between two checks of the wall-clock budget.
_CHECKS_PER_CHUNK = 10
#: Default wall-clock budget of one run, in seconds.
DEFAULT_MAX_TIME = 60.0
#: Over-relaxation (Boyd et al. 2011, 3.4.3): the point and multiplier steps use
#: ALPHA q + (1 - ALPHA) p_f in place of q.
ALPHA = 1.5
#: Residual balancing: adapt rho when one residual exceeds the other this many times.
_BALANCE = 10.0
#: ... by this factor, within these bounds.
_RHO_STEP, _RHO_MIN, _RHO_MAX = 2.0, 1e-6, 1e6


@dataclass(frozen=True)
class AdmmOutcome:
    """The flat outcome of :func:`admm`: the point ``(B, size)`` and, per instance, iterations and status."""

    p: torch.Tensor
    nit: torch.Tensor
    converged: torch.Tensor
    primal: torch.Tensor
    dual: torch.Tensor
    reason: str


@register_solver("ad3")
class Ad3QP(Solver):
    r"""AD3 on the quadratic problem: batched ADMM projection onto a factor graph's local polytope.

    See the module for the algorithm, the stopping rule and the certificate.

    Parameters
    ----------
    tol
        Primal and dual residual (root mean square over an instance's factor copies) at which
        an instance has converged.
    gap_tol
        ``success`` also needs the certificate gap :math:`\le \mathrm{gap\_tol} \cdot
        \max(1, \|x - p\|_1)`.
    max_iter
        ADMM iterations at most.
    max_time
        Wall-clock seconds at most (checked every ``check_every`` iterations, every
        ``10 * check_every`` on the CPU kernel); default 60.
    rho
        Initial penalty :math:`\rho > 0` (adapted per instance, see the module).
    check_every
        Iterations between residual checks (each is one host synchronisation on a GPU).
    init
        Warm start: a point shaped like ``x`` (e.g. the MAP ``z`` in the SPIGOT layer) or a
        previous :class:`ProjectionResult` (its ``x``). The multipliers start at an equal split
        of the residual :math:`p - x` among a coordinate's copies (exact for a coordinate in one
        factor); ADMM's iteration count depends mostly on the multipliers, so a warm start
        changes it little.
    """

    name = "ad3"
    exact = False
    warm_start = True

    def __init__(
        self,
        tol: float = 1e-7,
        gap_tol: float = 1e-6,
        max_iter: int = 5000,
        max_time: float = DEFAULT_MAX_TIME,
        rho: float = 2.0,
        check_every: int = 2,
        init: Any = None,
    ) -> None:
        self.tol = check_tol(tol)
        self.gap_tol = check_positive(gap_tol, "gap_tol")
        self.max_iter = check_max_iter(max_iter)
        self.max_time = check_positive(max_time, "max_time")
        self.rho = check_positive(rho, "rho")
        self.check_every = check_count(check_every, "check_every")
        self.init = init

    def supports(self, polytope: Polytope) -> bool:
        return isinstance(polytope, (FactorGraphPolytope, LocalPolytope))

    def requirement(self, polytope: Polytope) -> str:
        return f"the 'ad3' solver needs a FactorGraphPolytope (or its LocalPolytope), got {type(polytope).__name__}"

    def run(
        self, polytope: Polytope, x: Array, lengths: Array | None = None, init: Any = None
    ) -> ProjectionResult:
        """Project ``x`` onto the local polytope of ``polytope``'s factor graph; ``init`` overrides the warm start."""
        if not self.supports(polytope):
            raise UnsupportedOperation(
                f"the 'ad3' solver needs a FactorGraphPolytope (or its LocalPolytope), got "
                f"{type(polytope).__name__}; use 'active-set' or 'pairwise-frank-wolfe' instead"
            )
        batch = as_batch(polytope, x, lengths, name="x")
        start = self._start(batch, self.init if init is None else init)
        return finish(polytope, batch, self.solve_from(polytope, batch, start))

    def solve(self, polytope: Polytope, batch: Batch, start: Start | None = None) -> Solution:
        """The projection of a validated batch, warm-started at the points of ``start``.

        ``start`` is the solve core's warm start (per instance, vertices of its valid region
        and their weights, e.g. ``{z}`` with weight 1 in the SPIGOT layer); ADMM starts from
        their convex combinations.
        """
        points = None
        if start is not None:
            points = torch.zeros(batch.values.shape, dtype=torch.float64)
            for i, (sl, (vertices, weights)) in enumerate(zip(batch.slices, start)):
                points[(i, *sl)] = torch.from_numpy(np.tensordot(weights, vertices, axes=1))
        return self.solve_from(polytope, batch, points)

    def solve_from(self, polytope: Polytope, batch: Batch, start: torch.Tensor | None) -> Solution:
        """The projection of a validated batch, from ``start`` (``(B, *event_shape)`` or ``None``)."""
        graph_polytope = polytope.polytope if isinstance(polytope, LocalPolytope) else polytope
        x = batch.values.detach().to(torch.float64)
        # ADMM's residuals square the scores: beyond LARGEST_SCORE they overflow, so such an
        # instance is not solved (it fails with a message) rather than returned as garbage
        largest = x.abs().flatten(start_dim=1).amax(dim=1).cpu() if x.numel() else torch.zeros(batch.size)
        too_large = (largest > LARGEST_SCORE).tolist()
        if any(too_large):
            x = torch.where(torch.tensor(too_large, device=x.device).reshape(-1, *[1] * (x.ndim - 1)), 0.0, x)
        start = None if start is None else start.to(device=x.device, dtype=torch.float64)
        p = torch.zeros_like(x)
        kept = torch.zeros_like(x)  # x on the coordinates of each instance, 0 on ignored entries
        nit = torch.zeros(batch.size, dtype=torch.int64)
        converged = torch.zeros(batch.size, dtype=torch.bool)
        reasons = [""] * batch.size
        for rows, shape, region in _groups(graph_polytope, batch):
            blocks = factor_blocks_of(graph_polytope, shape)
            xg = x[rows][region].reshape(len(rows), -1)
            valid = _valid_entries(graph_polytope, batch, rows, shape, region, blocks, x.device)
            sg = None if start is None else start[rows][region].reshape(len(rows), -1)
            outcome = admm(blocks, xg, valid, sg, self)
            part = torch.zeros((len(rows), *x.shape[1:]), dtype=x.dtype, device=x.device)
            part[region] = outcome.p.reshape(len(rows), *shape)
            p[rows] = part
            part = torch.zeros_like(part)
            part[region] = torch.where(valid, xg, 0.0).reshape(len(rows), *shape)
            kept[rows] = part
            nit[rows.cpu()] = outcome.nit.cpu()
            converged[rows.cpu()] = outcome.converged.cpu()
            for k, i in enumerate(rows.tolist()):
                reasons[i] = outcome.reason if not outcome.converged[k] else ""
        gap = certificate_gap(_certificate_polytope(graph_polytope), kept, p, batch.lengths).cpu()
        scale = (kept - p).abs().flatten(start_dim=1).sum(dim=1).clamp(min=1.0).cpu()
        certified = gap <= self.gap_tol * scale
        status, message = [], []
        for i in range(batch.size):
            if too_large[i]:
                status.append(FAILED)
                message.append(
                    f"max |x| = {float(largest[i]):.3e} exceeds {LARGEST_SCORE:g}, beyond which ADMM's "
                    "residuals overflow; rescale the scores or use 'active-set'"
                )
            elif not converged[i]:
                status.append(TIME_LIMIT if reasons[i].startswith("stopped at max_time") else MAX_ITER)
                message.append(reasons[i])
            elif not certified[i]:
                status.append(STALLED)
                message.append(
                    f"residuals within tol={self.tol:g} but the certificate gap {float(gap[i]):.3e} "
                    f"against the local polytope exceeds gap_tol={self.gap_tol:g} x max(1, |x - p|_1)"
                )
            else:
                status.append(CONVERGED)
                message.append(
                    f"converged: primal and dual residuals within tol={self.tol:g} after {int(nit[i])} "
                    "iterations; certificate gap against the local polytope within gap_tol"
                )
        against = _certificate_polytope(graph_polytope)
        return Solution(
            p,
            nit.tolist(),
            status,
            message,
            gap=gap.to(device=batch.values.device, dtype=torch.float64),
            against=None if against is polytope else against,
        )

    def _start(self, batch: Batch, init: Any) -> torch.Tensor | None:
        if init is None:
            return None
        return init_points(batch, init.x if isinstance(init, ProjectionResult) else init)


def admm(
    blocks: FactorBlocks,
    x: torch.Tensor,
    valid: torch.Tensor,
    start: torch.Tensor | None,
    options: Ad3QP,
) -> AdmmOutcome:
    r"""Batched AD3-QP on flat, validated float64 input (see the module).

    Parameters
    ----------
    blocks
        The factor copies of the (unpadded or full) instance shape.
    x
        ``(B, size)`` points to project.
    valid
        ``(B, size)`` booleans: the coordinates of each instance (padding and non-coordinates
        False; they stay 0).
    start
        ``None`` or ``(B, size)`` starting points.
    options
        The solver (``tol``, ``max_iter``, ``max_time``, ``rho``, ``check_every``).
    """
    x = torch.where(valid, x, 0.0)
    if x.device.type == "cpu" and blocks.plain_at_most_one:
        return _admm_compiled(blocks, x, valid, start, options)
    return _admm_torch(blocks, x, valid, start, options)


def _admm_torch(
    blocks: FactorBlocks, x: torch.Tensor, valid: torch.Tensor, start: torch.Tensor | None, options: Ad3QP
) -> AdmmOutcome:
    """:func:`admm` in batched torch operations, on any device and for every factor kind."""
    began = time.perf_counter()
    device, batch = x.device, x.shape[0]
    owner = torch.as_tensor(blocks.owner, device=device)
    copy_valid = valid[:, owner]
    weight = copy_valid.to(x.dtype)
    degree = torch.zeros_like(x).index_add_(1, owner, weight)
    in_factor = degree > 0
    alone = torch.where(valid & ~in_factor, x.clamp(0.0, 1.0), 0.0)
    copies = copy_valid.sum(dim=1).clamp(min=1).to(x.dtype).sqrt()
    flips = [None if b.flip is None else torch.as_tensor(b.flip, device=device) for b in blocks.blocks]
    hulls = {i: HullSubproblems(b, batch) for i, b in enumerate(blocks.blocks) if b.kind == "hull"}
    pinned = None if bool(copy_valid.all()) else ~copy_valid

    p = alone if start is None else torch.where(valid, start.clamp(0.0, 1.0), 0.0)
    lam = torch.zeros((batch, blocks.n_copies), dtype=x.dtype, device=device)
    if start is not None:
        lam = _start_multipliers(p, x, degree, owner, copy_valid)
    rho = torch.full((batch, 1), options.rho, dtype=x.dtype, device=device)
    nit = torch.zeros(batch, dtype=torch.int64, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    primal = dual = torch.full((batch,), math.inf, dtype=x.dtype, device=device)
    p_copies = p[:, owner]
    reason = ""
    for it in range(1, options.max_iter + 1):
        y = p_copies - lam / rho
        if pinned is not None:
            y = y.masked_fill(pinned, -math.inf)
        q = torch.empty_like(y)
        for i, block in enumerate(blocks.blocks):
            yb = y[:, block.start : block.stop].reshape(batch, block.count, block.size)
            if block.kind == "hull":
                qb = hulls[i].project(yb)
            else:
                qb = project_block(block, yb, flips[i])
            q[:, block.start : block.stop] = qb.reshape(batch, -1)
        if pinned is not None:
            q = q.masked_fill(pinned, 0.0)
        relaxed = ALPHA * q + (1.0 - ALPHA) * p_copies
        total = torch.zeros_like(x).index_add_(1, owner, rho * relaxed + lam)
        p = torch.where(in_factor, (x + total) / (1.0 + rho * degree), alone)
        previous, p_copies = p_copies, p[:, owner]
        lam = lam + rho * (relaxed - p_copies)
        if it % options.check_every and it != options.max_iter:
            continue
        primal = (q - p_copies).norm(dim=1) / copies
        dual = rho[:, 0] * (p_copies - previous).norm(dim=1) / copies
        now = (primal <= options.tol) & (dual <= options.tol)
        nit = torch.where(now & ~done, it, nit)
        done = done | now
        if bool(done.all()):
            break
        grow = primal > _BALANCE * dual
        shrink = dual > _BALANCE * primal
        factor = torch.where(grow, _RHO_STEP, torch.where(shrink, 1.0 / _RHO_STEP, 1.0))
        rho = (rho * factor[:, None]).clamp(_RHO_MIN, _RHO_MAX)
        if time.perf_counter() - began > options.max_time:
            reason = (
                f"stopped at max_time={options.max_time:g} s after {it} iterations before the primal "
                f"and dual residuals reached tol={options.tol:g}"
            )
            break
    else:
        reason = (
            f"stopped at max_iter={options.max_iter} before the primal and dual residuals reached "
            f"tol={options.tol:g}"
        )
    nit = torch.where(done, nit, it)
    if not bool(done.all()):
        pending = ~done
        reason += (
            f" (largest residuals: primal {float(primal[pending].max()):.2e}, "
            f"dual {float(dual[pending].max()):.2e})"
        )
    return AdmmOutcome(p=p, nit=nit, converged=done, primal=primal, dual=dual, reason=reason)


def _admm_compiled(
    blocks: FactorBlocks, x: torch.Tensor, valid: torch.Tensor, start: torch.Tensor | None, options: Ad3QP
) -> AdmmOutcome:
    """:func:`admm` by the compiled kernel (CPU, at-most-one and one-of factors), in chunks of iterations."""
    began = time.perf_counter()
    batch = x.shape[0]
    xs = np.ascontiguousarray(x.numpy())
    valid_np = np.ascontiguousarray(valid.expand(x.shape).numpy())
    if start is None:
        p = np.zeros_like(xs)
    else:
        p = np.where(valid_np, np.clip(start.numpy(), 0.0, 1.0), 0.0)
    lam = np.zeros((batch, blocks.n_copies))
    if start is not None:
        owner = torch.as_tensor(blocks.owner)
        degree = torch.zeros_like(x).index_add_(1, owner, valid[:, owner].expand(batch, -1).to(x.dtype))
        lam = _start_multipliers(torch.from_numpy(p), x, degree, owner, valid[:, owner]).numpy().copy()
    rho = np.full(batch, options.rho)
    nit = np.zeros(batch, dtype=np.int64)
    done = np.zeros(batch, dtype=np.bool_)
    primal, dual = np.full(batch, np.inf), np.full(batch, np.inf)
    layout = blocks.kernel_layout()
    reason = ""
    while True:
        _kernel.admm_chunk(
            xs, valid_np, blocks.owner, *layout, p, lam, rho, nit, done, primal, dual,
            _CHECKS_PER_CHUNK * options.check_every, options.max_iter, options.tol, options.check_every,
            _BALANCE, _RHO_STEP, _RHO_MIN, _RHO_MAX, ALPHA,
        )
        if done.all():
            break
        if (nit[~done] >= options.max_iter).all():
            reason = (
                f"stopped at max_iter={options.max_iter} before the primal and dual residuals "
                f"reached tol={options.tol:g}"
            )
            break
        if time.perf_counter() - began > options.max_time:
            reason = (
                f"stopped at max_time={options.max_time:g} s after {int(nit.max())} iterations "
                f"before the primal and dual residuals reached tol={options.tol:g}"
            )
            break
    if reason:
        reason += f" (largest residuals: primal {primal[~done].max():.2e}, dual {dual[~done].max():.2e})"
    return AdmmOutcome(
        p=torch.from_numpy(p),
        nit=torch.from_numpy(nit),
        converged=torch.from_numpy(done),
        primal=torch.from_numpy(primal),
        dual=torch.from_numpy(dual),
        reason=reason,
    )


def _start_multipliers(
    p: torch.Tensor, x: torch.Tensor, degree: torch.Tensor, owner: torch.Tensor, copy_valid: torch.Tensor
) -> torch.Tensor:
    r"""Multipliers that make a starting point ``p`` a fixed point of the point update.

    At a solution, :math:`p_i - x_i = \sum_{f \ni i} \lambda_{fi}`; the residual is shared
    equally among the copies of a coordinate, :math:`\lambda_{fi} = (p_i - x_i) / d_i`.
    """
    share = (p - x) / degree.clamp(min=1.0)
    return torch.where(copy_valid, share[:, owner], 0.0)


# ----------------------------------------------------------------------------- layout helpers
def _groups(polytope: FactorGraphPolytope, batch: Batch):
    """``(rows, unpadded shape, region)`` for every batched solve: one for the whole batch where
    padding is solved by fixing entries at 0, else one per distinct unpadded shape."""
    device = batch.values.device
    full = tuple(slice(0, n) for n in batch.event_shape)
    if polytope.pads_by_fixing and factor_blocks_of(polytope, batch.event_shape).plain_at_most_one:
        yield torch.arange(batch.size, device=device), batch.event_shape, (slice(None), *full)
        return
    bounds: dict[tuple[tuple[int, int], ...], list[int]] = {}
    for i, sl in enumerate(batch.slices):
        bounds.setdefault(tuple(s.indices(n)[:2] for s, n in zip(sl, batch.event_shape)), []).append(i)
    for region, members in bounds.items():
        shape = tuple(stop - start for start, stop in region)
        slices = tuple(slice(start, stop) for start, stop in region)
        yield torch.tensor(members, device=device), shape, (slice(None), *slices)


def factor_blocks_of(polytope: FactorGraphPolytope, shape: tuple[int, ...]) -> FactorBlocks:
    """The factor blocks of ``polytope``'s graph for an instance ``shape`` (cached on the polytope)."""
    cache = polytope.__dict__.setdefault("_ad3_qp_blocks", {})
    shape = tuple(int(n) for n in shape)
    if shape not in cache:
        cache[shape] = factor_blocks(polytope.factor_graph(shape))
    return cache[shape]


def _valid_entries(
    polytope: FactorGraphPolytope,
    batch: Batch,
    rows: torch.Tensor,
    shape: tuple[int, ...],
    region: tuple[slice, ...],
    blocks: FactorBlocks,
    device: torch.device,
) -> torch.Tensor:
    """``(len(rows), size)``: the coordinates inside each instance's valid region."""
    coordinates = torch.as_tensor(blocks.coordinates, device=device)
    if tuple(shape) != tuple(batch.event_shape) or batch.lengths is None:
        return coordinates.expand(len(rows), -1)
    mask = batch.mask()[rows][region].reshape(len(rows), -1)
    return mask & coordinates


def _certificate_polytope(polytope: FactorGraphPolytope) -> Polytope:
    """The polytope whose MAP certifies a local-polytope projection: itself where that is integral."""
    return polytope if polytope.local_polytope_is_integral else polytope.local_polytope()
