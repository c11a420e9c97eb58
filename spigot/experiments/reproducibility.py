"""Per-seed determinism: one seed fixes initialisation, batch order and estimator noise.

Batch orders are drawn from a generator seeded by ``(seed, epoch)`` rather than from a running
stream, so a run resumed from a checkpoint at any epoch sees the same batches as one that never
stopped; the global random states (for initialisation, dropout and stochastic estimators) are
saved in checkpoints (see :mod:`spigot.experiments.checkpoint`).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

_MASK = 2**63 - 1


def check_seed(seed: int) -> int:
    """Validate a non-negative integer seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's global and torch's random number generators with ``seed``."""
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``range(n)`` that epoch ``epoch`` of seed ``seed`` visits examples in."""
    generator = torch.Generator().manual_seed((check_seed(seed) * 1_000_003 + epoch) & _MASK)
    return torch.randperm(n, generator=generator)


def random_states() -> dict[str, Any]:
    """The global random states, for a checkpoint."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def restore_random_states(states: dict[str, Any]) -> None:
    """Restore states saved by :func:`random_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
