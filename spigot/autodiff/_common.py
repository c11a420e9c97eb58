"""Pieces shared by the estimators: argument checks, warm-started projections, failure policy."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from spigot._batch import Batch, check_finite
from spigot.errors import ProjectionError, ProjectionWarning, UnsupportedOperation
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solution, Solver, Start, check_closed_form
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


def check_certify(certify: bool) -> bool:
    """Validate the ``certify`` flag of a layer."""
    if not isinstance(certify, bool):
        raise TypeError(f"certify must be True or False, got {certify!r}")
    return certify


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
    handle_failure(solution, on_failure, where)
    return solution.p.to(device=target.device, dtype=target.dtype)


def handle_failure(result: ProjectionResult | Solution, on_failure: str, where: str) -> None:
    """Raise :class:`ProjectionError` (or warn) if some projection missed its tolerance."""
    if result.all_success:
        return
    failures = result.failures()
    text = (
        f"{where}: {len(failures)} projection(s) did not reach the solver's tolerance: "
        + "; ".join(failures[:3])
        + ("; ..." if len(failures) > 3 else "")
        + ". Loosen tol, raise max_iter, choose another solver, or pass on_failure='warn'."
    )
    if on_failure == "raise":
        raise ProjectionError(text)
    warnings.warn(text, ProjectionWarning, stacklevel=3)


def padding_mask(batch: Batch) -> torch.Tensor | None:
    """``(B, *event)`` mask of valid entries, or ``None`` when nothing is padded."""
    return batch.mask() if batch.lengths is not None and batch.is_padded else None
