r"""Straight-through estimators: the argmax forward, the backward of a smooth stand-in.

Both return :math:`z = \mathrm{map}(s)` and replace its zero Jacobian:

- **STE-I** (Bengio et al. 2013) pretends the layer was the identity:
  :math:`\partial L / \partial s \leftarrow g` with :math:`g = \partial L / \partial z`;
- **STE-S** pretends it was the marginal map :math:`\mu(s) = \mathbb{E}_{p_s}[z]` of the Gibbs
  distribution :math:`p_s(z) \propto \exp\langle s, z\rangle` (softmax on the simplex):
  :math:`\partial L / \partial s \leftarrow J_\mu(s)^\top g`, the vector-Jacobian product of
  :meth:`Polytope.marginals <spigot.polytopes.Polytope.marginals>` at :math:`s`. On a
  structure without marginals (``marginals="auto"`` there, or ``marginals="sparsemap"``) the
  SparseMAP point :math:`\Pi_P(s)` stands in for :math:`\mu(s)` (as in SPIGOT-CE/EG):
  :math:`\partial L / \partial s \leftarrow J_{\Pi_P}(s)^\top g`, the exact Jacobian of the
  projection through its active set (:func:`~spigot.autodiff.sparsemap`'s backward pass),
  which is 0 where the scores lie deep in the normal cone of the argmax.

Padded entries of the output and of the gradient are 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from spigot._batch import Array, as_batch
from spigot.autodiff._common import check_gradient, check_on_failure, check_polytope, padding_mask
from spigot.autodiff.pulled_back import resolve_marginals
from spigot.autodiff.sparsemap_layer import sparsemap
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver
from spigot.solvers.registry import get_solver


class _StraightThroughFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, lengths):
        batch = as_batch(polytope, scores, lengths, center=False)  # only the MAP reads the values
        with torch.no_grad():
            z = polytope.map_batch(batch.values.detach(), batch.lengths)
        mask = padding_mask(batch)
        ctx.save_for_backward(mask if mask is not None else torch.empty(0))
        ctx.has_mask = mask is not None
        return z.to(scores.dtype).reshape(scores.shape)

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


class _StraightThroughMarginalsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, lengths, solver, on_failure):
        batch = as_batch(polytope, scores, lengths)
        values = batch.values.detach()
        with torch.no_grad():
            z = polytope.map_batch(values, batch.lengths)
        mask = padding_mask(batch)
        ctx.polytope, ctx.lengths, ctx.has_mask = polytope, batch.lengths, mask is not None
        ctx.solver, ctx.on_failure = solver, on_failure  # solver: the SparseMAP point's, or None
        ctx.save_for_backward(values, mask if mask is not None else torch.empty(0))
        return z.to(scores.dtype).reshape(scores.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z):
        check_gradient(grad_z)
        values, mask = ctx.saved_tensors
        g = grad_z.reshape(values.shape)
        with torch.enable_grad():
            leaf = values.detach().requires_grad_(True)
            if ctx.solver is None:
                mu = ctx.polytope.marginals_batch(leaf, ctx.lengths)
            else:
                mu = sparsemap(leaf, ctx.polytope, ctx.solver, ctx.lengths, ctx.on_failure)
            (grad_scores,) = torch.autograd.grad(mu, leaf, g, allow_unused=True)
        if grad_scores is None:  # marginals that do not depend on the scores
            grad_scores = torch.zeros_like(values)
        if ctx.has_mask:
            grad_scores = grad_scores * mask
        return grad_scores.reshape(grad_z.shape), None, None, None, None


def ste_marginals(
    scores: Array,
    polytope: Polytope,
    lengths: Array | None = None,
    marginals: str = "auto",
    solver: str | Solver = "exact",
    on_failure: str = "raise",
) -> Array:
    r"""Highest-scoring structure with the STE-S backward pass :math:`J_\mu(s)^\top g`.

    Parameters
    ----------
    scores
        ``(*batch, *event_shape)`` tensor of scores :math:`s`.
    polytope
        A structure (with marginals, or any structure with ``marginals="sparsemap"``).
    lengths
        Optional ``(*batch,)`` integer lengths; padded outputs and gradients are 0.
    marginals
        ``"gibbs"`` (the Gibbs marginals), ``"sparsemap"`` (the SparseMAP point
        :math:`\Pi_P(s)`), or ``"auto"``: ``"gibbs"`` where the polytope defines marginals.
    solver, on_failure
        The projection solver of the SparseMAP point (one that returns an active set) and the
        policy when it misses its tolerance (``"raise"`` or ``"warn"``); unused with ``"gibbs"``.

    Returns
    -------
    :math:`z = \mathrm{map}(s)`, shaped, placed and typed like ``scores`` (numpy in, numpy out,
    without gradient).

    Raises
    ------
    spigot.UnsupportedOperation
        ``marginals="gibbs"`` on a polytope without marginals.
    """
    check_polytope(polytope)
    kind = resolve_marginals(polytope, marginals, "STE-S")
    resolved = get_solver(solver)
    on_failure = check_on_failure(on_failure)
    if isinstance(scores, np.ndarray):
        return polytope.map(scores, lengths)
    return _StraightThroughMarginalsFunction.apply(
        scores, polytope, lengths, resolved if kind == "sparsemap" else None, on_failure
    )


class StraightThroughMarginals(torch.nn.Module):
    """Module form of :func:`ste_marginals` (STE-S)."""

    def __init__(
        self,
        polytope: Polytope,
        marginals: str = "auto",
        solver: str | Solver = "exact",
        on_failure: str = "raise",
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.marginals = resolve_marginals(polytope, marginals, "STE-S")
        self.solver = get_solver(solver)
        self.on_failure = check_on_failure(on_failure)

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return ste_marginals(scores, self.polytope, lengths, self.marginals, self.solver, self.on_failure)

    def extra_repr(self) -> str:
        solver = f", solver={self.solver!r}" if self.marginals == "sparsemap" else ""
        return f"polytope={self.polytope!r}, marginals={self.marginals!r}{solver}"
