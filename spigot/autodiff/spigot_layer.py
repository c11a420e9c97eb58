r"""SPIGOT: straight-through through a projection (Peng, Thomson and Smith, ACL 2018).

Forward, the layer returns the highest-scoring structure :math:`z = \mathrm{map}(s)`. Backward,
given :math:`g = \partial L / \partial z`, it returns

.. math:: \frac{\partial L}{\partial s} \leftarrow z - \Pi_P(z - \eta_b\, g),
          \qquad \eta_b = \min(\eta, \tau / \|g_b\|),

the direction from :math:`z` to the projection of a gradient step taken from it: the
"pulled-back" target :math:`\Pi_P(z - \eta g)` is the closest point of :math:`P` that the
downstream loss prefers. :math:`P` is the polytope (``solver="exact"``) or its relaxation
(``solver="relaxed"``, as in the reference implementation). The backward pass calls the
solver's internal ``solve`` on the batch the forward pass validated and flattened (no second
check, no reshaping), warm-started at the active set :math:`\{z\}` with weight 1 when the solver
takes a warm start.

Certificates: an iterative solver (active set, Frank-Wolfe) stops on its certificate, which
decides its success; a closed form (head selection, simplices, ...) is exact by construction
and its certificate (one more MAP call) is computed only with ``certify=True``.

On a GPU every step is batched: no work is done per sentence on the device and nothing is
copied per sentence. For dependency trees with ``solver="relaxed"`` the forward pass copies the
batch of scores to the host once for the compiled MAP and the vertices back once; the backward
pass projects onto the head-selection relaxation on the device (the closed form of
:mod:`spigot.projections`, no host synchronisation of its own). What remains are a few
host synchronisations per step whatever the batch size: the finite checks of the scores and of
the incoming gradient (and, with ``certify=True``, reading the certificate back).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from spigot._batch import Array, as_batch
from spigot.autodiff._common import (
    check_eta,
    check_gradient,
    check_on_failure,
    check_polytope,
    check_threshold,
    check_certify,
    padding_mask,
    project_in_backward,
    step_sizes,
)
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver, vertex_starts
from spigot.solvers.compatibility import check_compatible
from spigot.solvers.registry import get_solver


class _SpigotFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, solver, eta, threshold, lengths, on_failure, certify):
        batch = as_batch(polytope, scores, lengths)
        with torch.no_grad():
            z = polytope.map_batch(batch.values.detach(), batch.lengths)
        ctx.polytope, ctx.solver, ctx.eta, ctx.threshold = polytope, solver, eta, threshold
        ctx.batch = replace(batch, values=batch.values.detach())  # the validated shape, without the graph
        ctx.on_failure, ctx.certify = on_failure, certify
        ctx.mask = padding_mask(batch)
        ctx.save_for_backward(z)
        return z.to(scores.dtype).reshape(scores.shape)

    @staticmethod
    def backward(ctx, grad_z):
        (z,) = ctx.saved_tensors
        check_gradient(grad_z)
        g = grad_z.reshape(z.shape)
        if ctx.mask is not None:  # padded entries must not count in the norms of the step sizes
            g = g * ctx.mask
        eta_b = step_sizes(g, ctx.eta, ctx.threshold)
        target = z - eta_b * g
        start = vertex_starts(ctx.batch, z) if ctx.solver.warm_start else None
        p = project_in_backward(
            ctx.solver, ctx.polytope, ctx.batch, target, start, ctx.certify, ctx.on_failure, "SPIGOT backward"
        )
        grad_scores = z - p
        return grad_scores.reshape(grad_z.shape), None, None, None, None, None, None, None


def spigot(
    scores: Array,
    polytope: Polytope,
    solver: str | Solver = "exact",
    eta: float = 1.0,
    threshold: float | None = None,
    lengths: Array | None = None,
    on_failure: str = "raise",
    certify: bool = False,
    **solver_options: Any,
) -> Array:
    r"""Highest-scoring structure, with the SPIGOT backward pass.

    Parameters
    ----------
    scores
        ``(*batch, *event_shape)`` tensor of scores :math:`s`.
    polytope
        The structure (any :class:`~spigot.polytopes.Polytope`).
    solver
        Projection solver name or instance; ``"exact"`` projects onto the polytope,
        ``"relaxed"`` onto its relaxation as the paper's reference code does.
    eta
        Step size :math:`\eta > 0`.
    threshold
        If set, cap the step per instance: :math:`\eta_b = \min(\eta, \tau / \|g_b\|)` (the
        reference code uses ``eta=1, threshold=1``).
    lengths
        Optional ``(*batch,)`` integer lengths; padded outputs and gradients are 0.
    on_failure
        ``"raise"`` a :class:`~spigot.ProjectionError` when a backward projection misses its
        tolerance, or ``"warn"`` and use it anyway.
    certify
        Also certify closed-form projections in the backward pass (one MAP call per batch;
        an instance whose gap exceeds :math:`\sqrt{\epsilon}\max(1, \|x - p\|_1)` fails).
        Iterative solvers always certify: the gap they stop on decides their success; closed
        forms are exact by construction and skip it by default.
    **solver_options
        Options for the solver when it is given by name.

    Returns
    -------
    :math:`z = \mathrm{map}(s)`, shaped, placed and typed like ``scores`` (numpy in, numpy out,
    without gradient).
    """
    check_polytope(polytope)
    resolved = check_compatible(get_solver(solver, **solver_options), polytope, "SPIGOT")
    eta = check_eta(eta)
    threshold = check_threshold(threshold)
    on_failure = check_on_failure(on_failure)
    certify = check_certify(certify)
    if isinstance(scores, np.ndarray):
        return polytope.map(scores, lengths)
    return _SpigotFunction.apply(scores, polytope, resolved, eta, threshold, lengths, on_failure, certify)


class SPIGOT(torch.nn.Module):
    """Module form of :func:`spigot`: configured once, then called on batches of scores.

    Parameters are those of :func:`spigot` (``solver_options`` go to the solver).
    """

    def __init__(
        self,
        polytope: Polytope,
        solver: str | Solver = "exact",
        eta: float = 1.0,
        threshold: float | None = None,
        on_failure: str = "raise",
        certify: bool = False,
        **solver_options: Any,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.solver = check_compatible(get_solver(solver, **solver_options), polytope, "SPIGOT")
        self.eta = check_eta(eta)
        self.threshold = check_threshold(threshold)
        self.on_failure = check_on_failure(on_failure)
        self.certify = check_certify(certify)

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return spigot(
            scores, self.polytope, self.solver, self.eta, self.threshold, lengths, self.on_failure, self.certify
        )

    def extra_repr(self) -> str:
        return f"polytope={self.polytope!r}, solver={self.solver!r}, eta={self.eta}, threshold={self.threshold}"
