"""k-means clustering (Lloyd's algorithm with k-means++ seeding), seeded and deterministic.

The ``clusters`` experiment's pipeline baseline clusters the inputs with it before the
downstream classifier is trained, the classic cluster-then-classify pipeline.
"""

from __future__ import annotations

import torch


def kmeans(
    points: torch.Tensor,
    k: int,
    seed: int = 0,
    restarts: int = 4,
    max_iter: int = 100,
) -> torch.Tensor:
    """Centroids ``(k, d)`` of the lowest-inertia clustering among ``restarts`` seeded runs.

    Parameters
    ----------
    points
        Float tensor ``(N, d)`` with ``N >= k``.
    k
        Number of clusters.
    seed
        Seeds the k-means++ draws.
    restarts
        Independent runs; the one with the smallest sum of squared distances wins.
    max_iter
        Lloyd iterations per run (each stops early when the assignment no longer changes).
    """
    if points.ndim != 2 or not points.is_floating_point():
        raise ValueError(
            f"points must be a floating (N, d) tensor, got shape {tuple(points.shape)}"
        )
    for name, value in (("k", k), ("restarts", restarts), ("max_iter", max_iter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if points.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} points, got {points.shape[0]}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError("points contains NaN or infinite entries")
    generator = torch.Generator().manual_seed(seed)
    best, best_inertia = None, float("inf")
    for _ in range(restarts):
        centroids = _lloyd(points, _plus_plus(points, k, generator), max_iter)
        inertia = float(torch.cdist(points, centroids).min(dim=1).values.square().sum())
        if inertia < best_inertia:
            best, best_inertia = centroids, inertia
    return best


def assign(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index ``(N,)`` of the nearest centroid of each point."""
    return torch.cdist(points, centroids).argmin(dim=1)


def _plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    first = int(torch.randint(points.shape[0], (1,), generator=generator))
    chosen = [points[first]]
    nearest = (points - chosen[0]).square().sum(dim=1)
    for _ in range(1, k):
        total = float(nearest.sum())
        if total == 0:  # fewer distinct points than k: repeat one
            index = int(torch.randint(points.shape[0], (1,), generator=generator))
        else:
            index = int(torch.multinomial(nearest / total, 1, generator=generator))
        chosen.append(points[index])
        nearest = torch.minimum(nearest, (points - points[index]).square().sum(dim=1))
    return torch.stack(chosen)


def _lloyd(points: torch.Tensor, centroids: torch.Tensor, max_iter: int) -> torch.Tensor:
    labels = assign(points, centroids)
    for _ in range(max_iter):
        sums = torch.zeros_like(centroids).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=len(centroids)).to(points.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        updated = assign(points, centroids)
        if torch.equal(updated, labels):
            break
        labels = updated
    return centroids
