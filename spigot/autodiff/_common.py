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


def gradient_step(
    grad: torch.Tensor, step: str, eta: float, threshold: float | None, variables: torch.Tensor | None
) -> torch.Tensor:
    r"""The per-instance step :math:`\eta_b g_b` of a rule of :data:`STEP_RULES`.

    ``grad`` is ``(B, *event)``; ``variables`` is ``None`` or a boolean ``(B, *event)`` mask of
    the polytope's variables: entries outside it are zeroed and do not count in the norms.
    Norms are computed scaled, :math:`\|g_b\| = m_b \|g_b / m_b\|` with
    :math:`m_b = \max_i |g_{bi}|`, so a gradient whose squared norm overflows still gets its
    step (and an all-zero gradient gets a zero step).
    """
    if variables is not None:
        grad = grad * variables
    if step == "fixed":
        return eta * grad
    shape = (grad.shape[0],) + (1,) * (grad.ndim - 1)
    largest = grad.flatten(start_dim=1).abs().amax(dim=1).reshape(shape)
    unit = grad / torch.where(largest > 0, largest, torch.ones_like(largest))
    scaled_norm = unit.flatten(start_dim=1).norm(dim=1).reshape(shape)  # in [1, sqrt(size)], or 0
    safe_norm = torch.where(scaled_norm > 0, scaled_norm, torch.ones_like(scaled_norm))
    if step == "normalized":
        return unit * (eta / safe_norm)
    # min(eta, tau / (m n)) * g = min(eta m, tau / n) * (g / m)
    return unit * torch.minimum(eta * largest, threshold / safe_norm)


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


def handle_failure(result: ProjectionResult, on_failure: str, where: str) -> None:
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


def variables_mask(polytope: Polytope, batch: Batch) -> torch.Tensor:
    """``(B, *event)`` boolean mask of the polytope's variables in ``batch`` (see :meth:`Polytope.variable_mask`)."""
    return polytope.variable_mask(tuple(batch.values.shape), batch.lengths, batch.values.device)


def padding_mask(batch: Batch) -> torch.Tensor | None:
    """``(B, *event)`` mask of valid entries, or ``None`` when nothing is padded."""
    return batch.mask() if batch.lengths is not None and batch.is_padded else None
