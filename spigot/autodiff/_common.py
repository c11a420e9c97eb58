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
from spigot.solvers.base import Solution, Solver, Start, check_closed_form
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
    tensors outside autograd the check, the norms and the step take one compiled pass per
    instance (:mod:`spigot.autodiff._step_kernel`, norms in float64, each entry rounded once);
    elsewhere the torch expression ``point - gradient_step(...)``. The two agree to rounding.
    The result is a fresh tensor the caller may overwrite.
    """
    if not _compiled_step_applies(point, grad):
        check_finite(grad, name)
        return point - gradient_step(grad, step, eta, threshold, variables)
    rows = grad.detach().reshape(grad.shape[0], -1).contiguous()
    start = point.detach().reshape(rows.shape).contiguous()
    if variables is None:
        region = torch.ones((1, rows.shape[1]), dtype=torch.bool)
    else:
        region = variables.reshape(-1 if variables.ndim == grad.ndim else 1, rows.shape[1]).contiguous()
    out = torch.empty_like(start)
    finite = _step_kernel.step_from(
        start.numpy(), rows.numpy(), region.numpy(), _step_kernel.RULE_CODES[step], float(eta),
        float("nan") if threshold is None else float(threshold), out.numpy(),
    )
    if not finite:
        check_finite(grad, name)  # raises, naming what is wrong
    return out.reshape(point.shape)


def _compiled_step_applies(point: torch.Tensor, grad: torch.Tensor) -> bool:
    """Whether :func:`take_step` runs its compiled pass: float32/float64 CPU tensors of one dtype, no autograd."""
    return (
        point.device.type == "cpu"
        and grad.device.type == "cpu"
        and point.dtype == grad.dtype
        and point.dtype in (torch.float32, torch.float64)
        and point.shape == grad.shape
        and not (torch.is_grad_enabled() and (point.requires_grad or grad.requires_grad))
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
