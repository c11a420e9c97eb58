"""Pieces shared by the estimators: the polytope check, the backward projection, failure policy.

Scalar option checks live in :mod:`spigot.checks` (re-exported here).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from spigot._batch import Batch, check_finite
from spigot._lazy import LazyModule
from spigot.checks import (  # noqa: F401  (re-exported for the estimators)
    ON_FAILURE,
    check_certify,
    check_choice,
    check_count,
    check_eta,
    check_on_failure,
    check_positive,
    check_threshold,
)
from spigot.errors import ProjectionError, ProjectionWarning, UnsupportedOperation
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solution, Solver, Start, check_closed_form, vertex_starts
from spigot.solvers.result import CONVERGED, ProjectionResult

#: The compiled step (:func:`take_step`), compiled (or loaded from numba's cache) at first use.
_step_kernel = LazyModule("spigot.autodiff._step_kernel")


def check_polytope(polytope: Any) -> Polytope:
    """Make sure ``polytope`` is a :class:`Polytope` instance."""
    if not isinstance(polytope, Polytope):
        raise TypeError(f"polytope must be a spigot Polytope instance, got {type(polytope).__name__}")
    return polytope


def require_marginals(polytope: Polytope, estimator: str) -> None:
    """Raise :class:`UnsupportedOperation` if ``polytope`` has no marginals (``estimator`` needs them)."""
    if not polytope.supports("marginals_batch"):
        raise UnsupportedOperation(
            f"{estimator} needs the marginals of the polytope, but {type(polytope).__name__} does "
            "not define marginals_batch; use an estimator that needs only MAP and projections "
            "(ste-i, spigot, sparsemap, perturbed, imle)"
        )


def check_gradient(grad: torch.Tensor) -> None:
    """Raise if the incoming gradient ``dL/dz`` has NaN or infinite entries."""
    check_finite(grad, "the incoming gradient dL/dz")


#: The step rules of the SPIGOT family (see :func:`check_step` and :func:`gradient_step`).
STEP_RULES = ("normalized", "reference", "fixed")


def check_step(step: str | None, eta: float, threshold: float | None) -> tuple[str, float, float | None]:
    """Validate a step rule with its ``eta`` and ``threshold``; return ``(step, eta, threshold)``.

    ``step=None`` picks ``"reference"`` when ``threshold`` is given (the library's former
    ``eta, threshold`` arguments keep their meaning) and ``"normalized"`` otherwise; the
    reference rule's ``threshold`` defaults to 1.
    """
    eta, threshold = check_eta(eta), check_threshold(threshold)
    if step is None:
        step = "normalized" if threshold is None else "reference"
    step = check_choice(step, STEP_RULES, "step")
    if step == "reference":
        return step, eta, 1.0 if threshold is None else threshold
    if threshold is not None:
        raise ValueError(
            f"threshold={threshold} applies only to step='reference' (eta_b = min(eta, "
            f"threshold / ||g_b||)); step={step!r} takes eta alone"
        )
    return step, eta, None


def take_step(
    point: torch.Tensor,
    grad: torch.Tensor,
    step: str,
    eta: float,
    threshold: float | None,
    variables: torch.Tensor | None,
    name: str = "the incoming gradient dL/dz",
) -> torch.Tensor:
    r"""The point :math:`x_b - \eta_b g_b` reached by the step of a rule of :data:`STEP_RULES`, as a new tensor.

    ``point`` and ``grad`` are ``(B, *event)`` tensors of one shape; ``variables`` is as in
    :func:`gradient_step` (entries outside it keep the point's value). Raises ``ValueError``
    (naming ``name``) if ``grad`` has NaN or infinite entries. On float32 and float64 CPU
    tensors outside autograd the check and the step sizes take one compiled sweep and the step
    another (:mod:`spigot.autodiff._step_kernel`); elsewhere, and for a float64 gradient of
    extreme scale, the torch expression ``point - gradient_step(...)``. The two agree to
    rounding. The result is a fresh tensor the caller may overwrite.
    """
    sizes = step_sizes(grad, step, eta, threshold, variables, name) if _matches(point, grad) else None
    if sizes is None:
        check_finite(grad, name)
        return point - gradient_step(grad, step, eta, threshold, variables)
    rows, region = _kernel_rows(grad, variables)
    start = point.detach().reshape(rows.shape).contiguous()
    out = torch.empty_like(start)
    _step_kernel.apply_step(start.numpy(), rows.numpy(), region.numpy(), sizes.numpy(), out.numpy())
    return out.reshape(point.shape)


def step_sizes(
    grad: torch.Tensor,
    step: str,
    eta: float,
    threshold: float | None,
    variables: torch.Tensor | None,
    name: str = "the incoming gradient dL/dz",
) -> torch.Tensor | None:
    r"""The step size :math:`\eta_b` of each instance (a float64 CPU tensor ``(B,)``), by one compiled sweep.

    For a float32 or float64 CPU ``grad``: the step of :func:`gradient_step` is
    :math:`\eta_b g_b` on the variables. Raises ``ValueError`` (naming ``name``) if ``grad``
    has NaN or infinite entries. Returns ``None`` where the compiled sweep does not apply
    (another device or dtype, autograd) or declines (a float64 gradient whose squared norm
    leaves :math:`[2^{-900}, 2^{900}]`): the caller then takes the torch expression.
    """
    if grad.device.type != "cpu" or grad.dtype not in (torch.float32, torch.float64):
        return None
    if torch.is_grad_enabled() and grad.requires_grad:
        return None
    rows, region = _kernel_rows(grad, variables)
    sizes = torch.empty(rows.shape[0], dtype=torch.float64)
    code = _step_kernel.step_sizes(
        rows.numpy(), region.numpy(), _step_kernel.RULE_CODES[step], float(eta),
        float("nan") if threshold is None else float(threshold), sizes.numpy(),
    )
    if code == _step_kernel.NOT_FINITE:
        check_finite(grad, name)  # raises, naming what is wrong
    return None if code == _step_kernel.EXTREME else sizes


def _kernel_rows(grad: torch.Tensor, variables: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``grad`` as contiguous ``(B, D)`` rows and ``variables`` as a ``(1, D)`` or ``(B, D)`` region."""
    rows = grad.detach().reshape(grad.shape[0], -1).contiguous()
    if variables is None:
        return rows, torch.ones((1, rows.shape[1]), dtype=torch.bool)
    per_instance = variables.ndim == grad.ndim
    return rows, variables.reshape(rows.shape[0] if per_instance else 1, rows.shape[1]).contiguous()


def _matches(point: torch.Tensor, grad: torch.Tensor) -> bool:
    """Whether ``point`` can join ``grad`` in the compiled step: same device, dtype and shape, no autograd.

    (:func:`step_sizes` decides whether ``grad`` itself can.)
    """
    return (
        point.device == grad.device
        and point.dtype == grad.dtype
        and point.shape == grad.shape
        and not (torch.is_grad_enabled() and point.requires_grad)
    )


def gradient_step(
    grad: torch.Tensor, step: str, eta: float, threshold: float | None, variables: torch.Tensor | None
) -> torch.Tensor:
    r"""The per-instance step :math:`\eta_b g_b` of a rule of :data:`STEP_RULES`, as a new tensor.

    ``grad`` is ``(B, *event)``; ``variables`` is ``None`` or a boolean mask of the polytope's
    variables broadcastable to it (see :func:`variables_mask`): entries outside it are zeroed
    and do not count in the norms. Norms are computed scaled, :math:`\|g_b\| = m_b \|g_b /
    m_b\|` with :math:`m_b = \max_i |g_{bi}|`, so a gradient whose squared norm overflows still
    gets its step (and an all-zero gradient gets a zero step). The result is a fresh tensor,
    computed in place after its one allocation (the caller may overwrite it too).
    """
    scaled = grad * variables if variables is not None else grad.clone()
    scaled = scaled.contiguous()  # a strided incoming gradient gives a strided product
    if step == "fixed":
        return scaled.mul_(eta)
    rows = scaled.view(scaled.shape[0], -1)
    largest = torch.maximum(rows.amax(dim=1, keepdim=True), -rows.amin(dim=1, keepdim=True))
    rows.div_(torch.where(largest > 0, largest, 1.0))  # each row scaled to max |entry| = 1 (or all 0)
    scaled_norm = torch.linalg.vector_norm(rows, dim=1, keepdim=True)  # in [1, sqrt(size)], or 0
    safe_norm = torch.where(scaled_norm > 0, scaled_norm, 1.0)
    if step == "normalized":
        rows.mul_(eta / safe_norm)
    else:  # min(eta, tau / (m n)) * g = min(eta m, tau / n) * (g / m)
        rows.mul_(torch.minimum(eta * largest, threshold / safe_norm))
    return scaled


def pulled_back_residual(
    solver: Solver,
    polytope: Polytope,
    batch: Batch,
    point: torch.Tensor,
    grad: torch.Tensor,
    rule: tuple[str, float, float | None],
    variables: torch.Tensor | None,
    certify: bool,
    on_failure: str,
    where: str,
    vertices: torch.Tensor | None = None,
    name: str = "the incoming gradient dL/dz",
) -> torch.Tensor:
    r"""The SPIGOT family's surrogate gradient :math:`x - \Pi(x - \eta_b g)` at ``point`` :math:`x`.

    ``point`` and ``grad`` are flat, shaped like ``batch.values``; ``rule`` is ``(step, eta,
    threshold)`` (:func:`gradient_step`); ``vertices``, when given, are the warm start
    :math:`\{z\}` of a solver that takes one. Raises ``ValueError`` (naming ``name``) if
    ``grad`` has NaN or infinite entries.

    When the solver projects by a closed form (:meth:`~spigot.solvers.base.Solver.closed_form_for`)
    whose polytope declares its residual form
    (:meth:`~spigot.polytopes.Polytope.residual_form`) over the same variables, and no
    certificate is asked, that form computes the whole surrogate from the step sizes
    (:func:`step_sizes`), on CPU tensors in one compiled pass per instance. Otherwise the
    stepped point (:func:`take_step`) is projected by the solver (:func:`project_in_backward`)
    and the difference is written into the stepped point's buffer. Both give the same result
    to rounding.
    """
    step, eta, threshold = rule
    closed = None if certify else solver.closed_form_for(polytope)
    residual = None if closed is None else closed.residual_form()
    if residual is not None and _same_variables(polytope, closed, batch.event_shape):
        sizes = step_sizes(grad, step, eta, threshold, variables, name)
        if sizes is not None:
            with torch.no_grad():
                return residual(point, grad, sizes, batch.lengths)
    target = take_step(point, grad, step, eta, threshold, variables, name)
    start = vertex_starts(batch, vertices) if vertices is not None and solver.warm_start else None
    p = project_in_backward(solver, polytope, batch, target, start, certify, on_failure, where)
    return torch.sub(point, p, out=target)


def _same_variables(polytope: Polytope, other: Polytope, event_shape: tuple[int, ...]) -> bool:
    """Whether ``other`` (``polytope`` or its relaxation) has ``polytope``'s variables for ``event_shape``."""
    if other is polytope:
        return True
    mine, theirs = polytope.variable_mask(event_shape), other.variable_mask(event_shape)
    if mine is None or theirs is None:
        return mine is None and theirs is None
    return bool(np.array_equal(mine, theirs))


def project_in_backward(
    solver: Solver,
    polytope: Polytope,
    batch: Batch,
    target: torch.Tensor,
    start: Start | None,
    certify: bool,
    on_failure: str,
    where: str,
) -> torch.Tensor:
    r"""Project ``target`` (flat, shaped like ``batch.values``, already checked) and return ``p``.

    Calls the solver's internal ``solve`` on ``batch`` with its values replaced by ``target``:
    no re-validation, no reshaping, the warm start ``start`` as given (solvers without warm
    starts ignore it). Success is decided by the solver: an iterative one stops on the
    certificate it computes anyway; a closed form is exact by construction, so its certificate
    (one MAP call) is computed only with ``certify``, and an instance whose gap exceeds
    :math:`\sqrt{\epsilon}\max(1, \|x - p\|_1)` then fails. A failure raises
    :class:`ProjectionError` or warns (``on_failure``).
    """
    flat = replace(batch, values=target)
    solution = solver.solve(polytope, flat, start if solver.warm_start else None)
    if solution.closed_form and certify:
        solution = check_closed_form(polytope, flat, solution)
    handle_failure(solution, on_failure, where, solver)
    return solution.p.to(device=target.device, dtype=target.dtype)


def handle_failure(
    result: ProjectionResult | Solution, on_failure: str, where: str, solver: Solver | None = None
) -> None:
    """Raise :class:`ProjectionError` (or warn) if some projection missed its tolerance.

    The error carries, and its message states, the largest gap reached among the failed
    instances, the iterations of that instance and the solver's ``tol``.
    """
    if result.all_success:
        return
    failures = result.failures()
    if isinstance(result, Solution):  # the solve core's flat outcome
        success = np.array([code == CONVERGED for code in result.status])
        gaps = np.full(len(success), np.nan) if result.gap is None else _host(result.gap).astype(np.float64)
        nits = np.asarray(result.nit)
    else:
        success = np.asarray(_host(result.success)).reshape(-1)
        gaps = np.asarray(_host(result.gap), dtype=np.float64).reshape(-1)
        nits = np.asarray(_host(result.nit)).reshape(-1)
    failed = np.flatnonzero(~success)
    worst = int(failed[np.argmax(np.nan_to_num(gaps[failed], nan=-np.inf))])
    gap, nit, tol = float(gaps[worst]), int(nits[worst]), solver_tol(solver)
    reached = f"gap reached {gap:.3e} after {nit} iteration(s)"
    reached += f" against tol {tol:.1e} (times max(1, ||x - p||_1))" if tol is not None else ""
    text = (
        f"{where}: {len(failures)} projection(s) did not reach the solver's tolerance "
        f"(worst: instance {worst}, {reached}): "
        + "; ".join(failures[:3])
        + ("; ..." if len(failures) > 3 else "")
        + ". Loosen tol, raise max_iter, choose another solver, or pass on_failure='warn'."
    )
    if on_failure == "raise":
        raise ProjectionError(text, gap=gap, tol=tol, nit=nit, instances=tuple(int(i) for i in failed))
    warnings.warn(text, ProjectionWarning, stacklevel=3)


def solver_tol(solver: Solver | None) -> float | None:
    """The tolerance ``tol`` of ``solver`` (of its inner solver for ``relaxed``), or ``None``."""
    while solver is not None:
        tol = getattr(solver, "tol", None)
        if tol is not None:
            return float(tol)
        solver = getattr(solver, "inner", None)
    return None


def _host(values: Any) -> Any:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values


def variables_mask(batch: Batch) -> torch.Tensor | None:
    """Mask of the validated polytope's variables in ``batch``, broadcastable to ``(B, *event)``, or ``None`` when every entry counts.

    The entries of :meth:`~spigot.polytopes.Polytope.variable_mask` (for trees the arcs: no
    diagonal, no root column) within each instance's valid region (no padding): ``(B, *event)``
    when some instance is padded, else the polytope's ``event``-shaped mask itself (one mask
    for every instance, which elementwise products broadcast cheaply).
    """
    mask = padding_mask(batch)
    if batch.variables is None:  # the validated batch holds the polytope's mask already
        return mask
    return batch.variables if mask is None else mask & batch.variables


def padding_mask(batch: Batch) -> torch.Tensor | None:
    """``(B, *event)`` mask of valid entries, or ``None`` when nothing is padded."""
    return batch.mask() if batch.lengths is not None and batch.is_padded else None
