r"""SPIGOT: straight-through through a projection (Peng, Thomson and Smith, ACL 2018).

Forward, the layer returns the highest-scoring structure :math:`z = \mathrm{map}(s)`. Backward,
given :math:`g = \partial L / \partial z`, it returns

.. math:: \frac{\partial L}{\partial s} \leftarrow z - \Pi_P(z - \eta_b\, g),

with a per-instance step :math:`\eta_b` (``step``: by default :math:`\eta / \|g_b\|`, a step of
length :math:`\eta` whatever the scale of the loss; the reference code's
:math:`\min(\eta, \tau / \|g_b\|)` with ``step="reference"``), the direction from :math:`z`
to the projection of a gradient step taken from it: the "pulled-back" target :math:`\Pi_P(z - \eta g)` is the closest point of :math:`P` that the
downstream loss prefers. :math:`P` is the polytope (``solver="exact"``) or its relaxation
(``solver="relaxed"``, as in the reference implementation). The backward pass calls the
solver's internal ``solve`` on the batch the forward pass validated and flattened (no second
check, no reshaping), warm-started at the active set :math:`\{z\}` with weight 1 when the solver
takes a warm start. Where the solver applies a closed form whose polytope declares its
residual form (:meth:`~spigot.polytopes.Polytope.residual_form`: ``HeadSelection``, so trees with
``solver="relaxed"``), that form computes :math:`z - \Pi_P(z - \eta_b g)` in one call instead;
on CPU tensors one compiled pass per instance.

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
    check_gradient,
    check_on_failure,
    check_polytope,
    check_certify,
    check_step,
    pulled_back_residual,
    variables_mask,
)
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver
from spigot.solvers.compatibility import check_compatible
from spigot.solvers.registry import get_solver


class _SpigotFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, solver, step, eta, threshold, lengths, on_failure, certify):
        batch = as_batch(polytope, scores, lengths, center=False)  # only the MAP reads the values
        with torch.no_grad():
            z = polytope.map_batch(batch.values.detach(), batch.lengths)
        ctx.polytope, ctx.solver, ctx.step, ctx.eta, ctx.threshold = polytope, solver, step, eta, threshold
        ctx.batch = replace(batch, values=batch.values.detach())  # the validated shape, without the graph
        ctx.on_failure, ctx.certify = on_failure, certify
        ctx.variables = variables_mask(batch)
        ctx.save_for_backward(z)
        return z.to(scores.dtype).reshape(scores.shape)

    @staticmethod
    def backward(ctx, grad_z):
        (z,) = ctx.saved_tensors
        if grad_z.dtype != z.dtype:
            check_gradient(grad_z)  # before a conversion could round an entry to infinity
        g = grad_z.reshape(z.shape).to(z.dtype)  # only the polytope's variables count in the step's norm
        grad_scores = pulled_back_residual(  # z - proj(z - eta_b g); checks g
            ctx.solver, ctx.polytope, ctx.batch, z, g, (ctx.step, ctx.eta, ctx.threshold), ctx.variables,
            ctx.certify, ctx.on_failure, "SPIGOT backward", vertices=z,
        )
        return grad_scores.reshape(grad_z.shape), None, None, None, None, None, None, None, None


def spigot(
    scores: Array,
    polytope: Polytope,
    solver: str | Solver = "exact",
    eta: float = 1.0,
    threshold: float | None = None,
    lengths: Array | None = None,
    on_failure: str = "raise",
    certify: bool = False,
    step: str | None = None,
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
        :math:`\eta > 0`: the step's length for ``step="normalized"``, the largest multiplier
        for ``"reference"``, the multiplier for ``"fixed"`` (see ``step``).
    threshold
        :math:`\tau > 0`, for ``step="reference"`` only: the largest length of a step
        (default 1). Giving it without ``step`` selects ``"reference"``.
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
    step
        How the step :math:`\eta_b g_b` of instance :math:`b` is sized; :math:`\|g_b\|` is
        the norm of the incoming gradient over the polytope's variables only
        (:meth:`~spigot.polytopes.Polytope.variable_mask`: for trees the valid arcs, not the
        diagonal, the root column or padding), computed without overflow.

        - ``"normalized"`` (the default without ``threshold``): :math:`\eta_b = \eta /
          \|g_b\|`, a step of length :math:`\eta` per instance. It does not depend on the
          scale of the loss: a mean-reduced loss (PyTorch's default) and the summed one give
          the same gradient. ``eta=1`` is the reference code's step whenever its cap is active
          (:math:`\|g_b\| \ge \tau = 1`), the usual case on its summed losses.
        - ``"reference"`` (the default when ``threshold`` is given): the reference code's
          :math:`\eta_b = \min(\eta, \tau / \|g_b\|)`, :math:`\tau` = ``threshold``. The
          paper ran it with ``eta=1, threshold=1`` (``threshold=5/32`` on SST) on losses
          *summed* over words and sentences. For a loss that is a mean of :math:`K` terms, whose
          gradient is the summed loss's divided by :math:`K`, pass ``eta=K`` (batch size times
          mean sentence length for a word-level loss) to take the reference's step;
          ``threshold`` keeps its meaning, the largest length of the step.
        - ``"fixed"``: :math:`\eta_b = \eta`. The step scales with the loss: on a mean of
          :math:`K` terms it is :math:`K` times shorter than on their sum.

        With ``"normalized"`` (and ``"reference"`` when its cap is active) the surrogate's size
        does not follow the loss's scale: scaling the downstream loss (a weight, a mean instead
        of a sum) leaves SPIGOT's surrogate unchanged, and under
        DistributedDataParallel, which averages gradients over :math:`W` processes, the
        surrogate's contribution is :math:`1/W` of a single process's.
    **solver_options
        Options for the solver when it is given by name.

    Returns
    -------
    :math:`z = \mathrm{map}(s)`, shaped, placed and typed like ``scores`` (numpy in, numpy out,
    without gradient).
    """
    check_polytope(polytope)
    resolved = check_compatible(get_solver(solver, **solver_options), polytope, "SPIGOT")
    step, eta, threshold = check_step(step, eta, threshold)
    on_failure = check_on_failure(on_failure)
    certify = check_certify(certify)
    if isinstance(scores, np.ndarray):
        return polytope.map(scores, lengths)
    return _SpigotFunction.apply(scores, polytope, resolved, step, eta, threshold, lengths, on_failure, certify)


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
        step: str | None = None,
        **solver_options: Any,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.solver = check_compatible(get_solver(solver, **solver_options), polytope, "SPIGOT")
        self.step, self.eta, self.threshold = check_step(step, eta, threshold)
        self.on_failure = check_on_failure(on_failure)
        self.certify = check_certify(certify)

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return spigot(
            scores, self.polytope, self.solver, self.eta, self.threshold, lengths, self.on_failure,
            self.certify, self.step,
        )

    def extra_repr(self) -> str:
        return (
            f"polytope={self.polytope!r}, solver={self.solver!r}, step={self.step!r}, "
            f"eta={self.eta}, threshold={self.threshold}"
        )
