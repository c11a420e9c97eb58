"""Evaluation measures: accuracy, and the V-measure of a predicted clustering."""

from __future__ import annotations

import torch


def accuracy(predicted: torch.Tensor, gold: torch.Tensor) -> float:
    """Fraction of positions where ``predicted`` equals ``gold`` (tensors of equal shape)."""
    if predicted.shape != gold.shape:
        raise ValueError(
            f"predicted and gold must have the same shape, got {tuple(predicted.shape)} "
            f"and {tuple(gold.shape)}"
        )
    if gold.numel() == 0:
        raise ValueError("accuracy of an empty set is undefined; gold has no entries")
    return float((predicted == gold).double().mean())


def v_measure(gold: torch.Tensor, predicted: torch.Tensor) -> float:
    r"""V-measure (Rosenberg and Hirschberg, 2007) of a clustering against gold classes.

    The harmonic mean of homogeneity :math:`h = 1 - H(C \mid K) / H(C)` (each predicted cluster
    holds one class) and completeness :math:`c = 1 - H(K \mid C) / H(K)` (each class lies in one
    cluster); 1 for a perfect clustering up to renaming, near 0 for an unrelated one. By
    convention :math:`h = 1` when :math:`H(C) = 0` and :math:`c = 1` when :math:`H(K) = 0`.

    Parameters
    ----------
    gold, predicted
        Integer label tensors of shape ``(N,)``.
    """
    if gold.ndim != 1 or predicted.shape != gold.shape:
        raise ValueError(
            f"gold and predicted must be 1-d label tensors of equal length, got shapes "
            f"{tuple(gold.shape)} and {tuple(predicted.shape)}"
        )
    if gold.numel() == 0:
        raise ValueError("v_measure of an empty set is undefined; gold has no entries")
    _, classes = torch.unique(gold, return_inverse=True)
    _, clusters = torch.unique(predicted, return_inverse=True)
    joint = torch.zeros(int(classes.max()) + 1, int(clusters.max()) + 1, dtype=torch.float64)
    joint.index_put_(
        (classes, clusters), torch.ones(len(gold), dtype=torch.float64), accumulate=True
    )
    joint /= len(gold)
    h_class = _entropy(joint.sum(dim=1))
    h_cluster = _entropy(joint.sum(dim=0))
    h_joint = _entropy(joint.flatten())
    homogeneity = 1.0 if h_class == 0 else 1.0 - (h_joint - h_cluster) / h_class
    completeness = 1.0 if h_cluster == 0 else 1.0 - (h_joint - h_class) / h_cluster
    if homogeneity + completeness == 0:
        return 0.0
    return 2 * homogeneity * completeness / (homogeneity + completeness)


def _entropy(p: torch.Tensor) -> float:
    p = p[p > 0]
    return float(-(p * p.log()).sum())
