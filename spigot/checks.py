"""Checks of scalar options, shared by every layer: each names the argument and what was expected.

Array input (shapes, NaN/inf, ``lengths``) is checked by :mod:`spigot._batch`.
"""

from __future__ import annotations

import math

import numpy as np

#: The failure policies of projections in a backward pass.
ON_FAILURE = ("raise", "warn")


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


def check_max_time(max_time: float) -> float:
    """Validate a positive time budget in seconds (``math.inf`` allowed: no budget)."""
    if (
        isinstance(max_time, bool)
        or not isinstance(max_time, (int, float, np.integer, np.floating))
        or math.isnan(max_time)
        or max_time <= 0
    ):
        raise ValueError(f"max_time must be a positive number of seconds (or math.inf), got {max_time!r}")
    return float(max_time)


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


def check_certify(certify: bool) -> bool:
    """Validate the ``certify`` flag of a layer."""
    if not isinstance(certify, bool):
        raise TypeError(f"certify must be True or False, got {certify!r}")
    return certify


def check_flag(value: bool, name: str) -> bool:
    """Validate a boolean option named ``name`` (Python or numpy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
