"""Pieces shared by the estimators: argument checks, warm-started projections, failure policy."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from spigot._batch import Batch, check_finite
from spigot.errors import ProjectionError, ProjectionWarning, UnsupportedOperation
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver
from spigot.solvers.result import ProjectionResult

ON_FAILURE = ("raise", "warn")


def check_eta(eta: float) -> float:
    """Validate a positive, finite step size."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating)) or not np.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta must be a positive finite number, got {eta!r}")
    return float(eta)


def check_threshold(threshold: float | None) -> float | None:
    """Validate ``None`` or a positive, finite gradient-norm threshold."""
    if threshold is None:
        return None
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.floating))
        or not np.isfinite(threshold)
        or threshold <= 0
    ):
        raise ValueError(f"threshold must be None or a positive finite number, got {threshold!r}")
    return float(threshold)


def check_on_failure(on_failure: str) -> str:
    """Validate the failure policy of projections in a backward pass."""
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
    return on_failure


def check_polytope(polytope: Any) -> Polytope:
    """Make sure ``polytope`` is a :class:`Polytope` instance."""
    if not isinstance(polytope, Polytope):
        raise TypeError(f"polytope must be a spigot Polytope instance, got {type(polytope).__name__}")
    return polytope


def check_positive(value: float, name: str) -> float:
    """Validate a positive, finite number (a step size, a noise scale, ...) named ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_count(value: int, name: str) -> int:
    """Validate a positive integer count (a number of samples, of terms, ...) named ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    """Validate that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


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


def step_sizes(grad: torch.Tensor, eta: float, threshold: float | None) -> torch.Tensor:
    r"""Per-instance :math:`\eta_b = \min(\eta, \tau / \|g_b\|)` (just :math:`\eta` without :math:`\tau`).

    ``grad`` is ``(B, *event)``; returns ``(B, 1, ..., 1)`` broadcastable against it.
    """
    shape = (grad.shape[0],) + (1,) * (grad.ndim - 1)
    eta_b = torch.full(shape, eta, dtype=grad.dtype, device=grad.device)
    if threshold is None:
        return eta_b
    norms = grad.flatten(start_dim=1).norm(dim=1).reshape(shape)
    capped = threshold / norms.clamp(min=torch.finfo(grad.dtype).tiny)
    return torch.minimum(eta_b, capped)


def project_warm(
    solver: Solver,
    polytope: Polytope,
    target: torch.Tensor,
    lengths: torch.Tensor | None,
    init: torch.Tensor | None,
) -> ProjectionResult:
    """Run ``solver``, warm-started at ``init`` when the solver accepts a warm start."""
    if init is not None and solver.warm_start:
        return solver.run(polytope, target, lengths, init=init)
    return solver.run(polytope, target, lengths)


def handle_failure(
    result: ProjectionResult, on_failure: str, where: str, solver: Solver | None = None
) -> None:
    """Raise :class:`ProjectionError` (or warn) if some projection missed its tolerance.

    The error carries, and its message states, the largest gap reached among the failed
    instances, the iterations of that instance and the solver's ``tol``.
    """
    if result.all_success:
        return
    failures = result.failures()
    success = np.asarray(_host(result.success)).reshape(-1)
    gaps = np.asarray(_host(result.gap), dtype=np.float64).reshape(-1)
    nits = np.asarray(_host(result.nit)).reshape(-1)
    failed = np.flatnonzero(~success)
    worst = int(failed[np.argmax(gaps[failed])])
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


def padding_mask(batch: Batch) -> torch.Tensor | None:
    """``(B, *event)`` mask of valid entries, or ``None`` when nothing is padded."""
    return batch.mask() if batch.lengths is not None and batch.is_padded else None
