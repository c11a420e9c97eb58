r"""The straight-through estimator with identity backward (STE-I).

Forward :math:`z = \mathrm{map}(s)`; backward :math:`\partial L / \partial s \leftarrow
\partial L / \partial z` (Bengio et al. 2013), zero on padded entries.
"""

from __future__ import annotations

import numpy as np
import torch

from spigot._batch import Array, as_batch
from spigot.autodiff._common import check_gradient, check_polytope, padding_mask
from spigot.polytopes.base import Polytope


class _StraightThroughFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, lengths):
        batch = as_batch(polytope, scores, lengths)
        with torch.no_grad():
            z = polytope.map_batch(batch.values.detach(), batch.lengths)
        mask = padding_mask(batch)
        ctx.save_for_backward(mask if mask is not None else torch.empty(0))
        ctx.has_mask = mask is not None
        return z.reshape(scores.shape)

    @staticmethod
    def backward(ctx, grad_z):
        check_gradient(grad_z)
        if not ctx.has_mask:
            return grad_z, None, None
        (mask,) = ctx.saved_tensors
        return grad_z * mask.reshape(grad_z.shape), None, None


def ste(scores: Array, polytope: Polytope, lengths: Array | None = None) -> Array:
    """Highest-scoring structure with the identity (straight-through) backward pass."""
    check_polytope(polytope)
    if isinstance(scores, np.ndarray):
        return polytope.map(scores, lengths)
    return _StraightThroughFunction.apply(scores, polytope, lengths)


class StraightThrough(torch.nn.Module):
    """Module form of :func:`ste`."""

    def __init__(self, polytope: Polytope) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return ste(scores, self.polytope, lengths)
