r"""SPIGOT-CE and SPIGOT-EG with the downstream gradient taken at the relaxed point.

Mihaylova, Niculae and Martins (2020), *Understanding the Mechanics of SPIGOT* (EMNLP),
derive SPIGOT-CE and SPIGOT-EG as one step of an intermediate optimisation that starts from
the relaxed point :math:`\mu = \mu(s)` (the softmax on the simplex, the marginals of the Gibbs
distribution on a structure) and moves along the downstream gradient **at that point**,

.. math:: \gamma = \nabla_\mu L\big(\mu\big)\Big|_{\mu = \mu(s)} ,

where :math:`L(\mu)` is the downstream loss with the structure replaced by :math:`\mu` (the
decoder reads :math:`\mu` instead of the argmax). The surrogate gradients are

- **SPIGOT-CE** (a projected gradient step, Euclidean geometry, then the cross-entropy loss's
  gradient :math:`\mu(s) - \hat\mu`):

  .. math:: \frac{\partial L}{\partial s} \leftarrow \mu(s) - \Pi_{\mathcal{M}}\big(\mu(s) - \eta_b\,\gamma\big);

- **SPIGOT-EG** (an exponentiated-gradient step, entropic geometry, whose result is the
  marginal vector of the moved scores):

  .. math:: \frac{\partial L}{\partial s} \leftarrow \mu(s) - \mu\big(s - \eta_b\,\gamma\big)

  (on the simplex :math:`\mathrm{softmax}(s) - \mathrm{softmax}(s - \eta_b \gamma)`).

The forward pass returns the argmax :math:`\hat z = \mathrm{map}(s)`, so the decoder's own
parameters learn from the hard decision as with every argmax estimator; only the gradient
that reaches the scores is computed at :math:`\mu(s)`. Today's
:func:`~spigot.autodiff.spigot_ce` and :func:`~spigot.autodiff.spigot_eg` (``spigot-ce``,
``spigot-eg``) apply the same formulas with :math:`\gamma` replaced by the gradient at the
argmax, :math:`g = \nabla L(\hat z)`, the only gradient a layer receives; the two coincide
when the decoder is linear in the structure and the loss is linear in the decoder's output.

**The second decoder pass.** A layer's backward pass only receives :math:`\nabla L(\hat z)`,
so these estimators take the downstream loss itself: ``downstream``, a callable mapping a
structure (shaped like ``scores``) to the scalar training loss, evaluated with the decoder's
current parameters. The backward pass computes :math:`\mu(s)`, calls ``downstream(mu)`` once
(a second decoder pass, under autograd) and differentiates it with respect to :math:`\mu`
only: the decoder's parameters receive nothing from this pass. The gradient arriving at the
layer's output, :math:`\nabla L(\hat z)`, is checked for NaN/inf and otherwise not used. The
loss that ``downstream`` returns should be the one training differentiates (the same
reduction over the batch); with the default ``step="normalized"`` the step has length
:math:`\eta` per instance whatever that reduction.

The step :math:`\eta_b` follows ``step`` as for :func:`~spigot.autodiff.spigot`, with norms
over the polytope's variables only; :math:`\mu(s)` is the Gibbs marginals where the polytope
has them, or, with ``marginals="sparsemap"`` (the default on structures without marginals),
the SparseMAP point :math:`\Pi_{\mathcal{M}}(s)`, as for :func:`~spigot.autodiff.spigot_ce`
(SPIGOT-EG's step then becomes :math:`\Pi_{\mathcal{M}}(s) - \Pi_{\mathcal{M}}(s - \eta_b\gamma)`).
Padded entries of the output and of the gradient are 0. Each backward pass costs one decoder
pass and one marginal computation more than ``spigot-ce`` / ``spigot-eg`` with
``output="argmax"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from spigot._batch import Array, as_batch, check_finite
from spigot.autodiff._common import (
    check_certify,
    check_gradient,
    check_on_failure,
    check_polytope,
    check_step,
    pulled_back_residual,
    take_step,
    variables_mask,
)
from spigot.autodiff.pulled_back import _RelaxedMean, resolve_marginals
from spigot.errors import UnsupportedOperation
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver
from spigot.solvers.compatibility import check_compatible
from spigot.solvers.registry import get_solver

#: ``structure -> scalar loss``: the downstream loss with the structure as its argument.
Downstream = Callable[[torch.Tensor], torch.Tensor]


def check_downstream(downstream: Any, estimator: str) -> Downstream:
    """Make sure ``downstream`` is a callable; raise :class:`~spigot.UnsupportedOperation` when absent.

    A model that does not hand its downstream loss to the layer cannot use the relaxed-point
    estimators; the error says so (experiments record it as "not supported").
    """
    if downstream is None:
        raise UnsupportedOperation(
            f"{estimator} evaluates the downstream loss at the relaxed point mu(s), so it needs "
            "downstream=<structure -> scalar loss> in the call; this model does not pass one "
            "(use the estimator at the argmax instead: spigot-ce or spigot-eg)"
        )
    if not callable(downstream):
        raise TypeError(
            f"downstream must be a callable structure -> scalar loss, got {type(downstream).__name__}"
        )
    return downstream


def gradient_at(downstream: Downstream, point: torch.Tensor) -> torch.Tensor:
    r""":math:`\nabla_\mu L(\mu)` at ``point``: one call of ``downstream``, differentiated in ``point`` only.

    Raises
    ------
    ValueError
        ``downstream`` returned something other than a finite scalar tensor, or its gradient
        has NaN or infinite entries.
    """
    with torch.enable_grad():
        leaf = point.detach().requires_grad_(True)
        loss = downstream(leaf)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"downstream must return a scalar loss tensor, got {shape}")
        check_finite(loss.detach(), "the downstream loss at the relaxed point")
        if not loss.requires_grad:
            return torch.zeros_like(leaf)
        (grad,) = torch.autograd.grad(loss.reshape(()), leaf, allow_unused=True)
    if grad is None:
        return torch.zeros_like(leaf)
    check_finite(grad, "the downstream gradient at the relaxed point")
    return grad


class _RelaxedPointFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, lengths, geometry, step, eta, threshold, mean, project, downstream):
        batch = as_batch(polytope, scores, lengths)
        values = batch.values.detach()
        with torch.no_grad():
            z = polytope.map_batch(values, batch.lengths)
        variables = variables_mask(batch)
        ctx.polytope, ctx.lengths, ctx.geometry = polytope, batch.lengths, geometry
        ctx.step, ctx.eta, ctx.threshold = step, eta, threshold
        ctx.mean, ctx.project, ctx.downstream = mean, project, downstream
        ctx.batch = replace(batch, values=values)
        ctx.variables = variables
        ctx.shape, ctx.dtype = scores.shape, scores.dtype
        ctx.save_for_backward(values)
        return z.to(scores.dtype).reshape(scores.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        check_gradient(grad_out)  # the gradient at the argmax: checked, not used
        (values,) = ctx.saved_tensors
        with torch.no_grad():
            mu = ctx.mean(values, ctx.lengths)
        gamma = gradient_at(ctx.downstream, mu.to(ctx.dtype).reshape(ctx.shape)).reshape(mu.shape).to(mu.dtype)
        name = "the downstream gradient at the relaxed point"
        rule = (ctx.step, ctx.eta, ctx.threshold)
        with torch.no_grad():
            if ctx.geometry == "euclidean":
                grad_scores = ctx.project(ctx.batch, mu, gamma, rule, ctx.variables, name=name)
            else:
                moved = take_step(values, gamma, *rule, ctx.variables, name)
                grad_scores = mu - ctx.mean(moved, ctx.lengths)
        if ctx.variables is not None:
            grad_scores = grad_scores * ctx.variables
        return grad_scores.to(ctx.dtype).reshape(ctx.shape), *([None] * 9)


def spigot_ce_relaxed(
    scores: Array,
    polytope: Polytope,
    downstream: Downstream | None,
    solver: str | Solver = "exact",
    eta: float = 1.0,
    threshold: float | None = None,
    lengths: Array | None = None,
    on_failure: str = "raise",
    certify: bool = False,
    marginals: str = "auto",
    step: str | None = None,
    **solver_options: Any,
) -> Array:
    r"""The argmax, with SPIGOT-CE's backward pass at the relaxed point (Mihaylova et al., 2020).

    Backward returns :math:`\mu(s) - \Pi_P(\mu(s) - \eta_b \gamma)` with
    :math:`\gamma = \nabla_\mu L(\mu)` at :math:`\mu = \mu(s)`, computed by one call of
    ``downstream`` (see the module docstring).

    Parameters
    ----------
    scores
        ``(*batch, *event_shape)`` tensor of scores :math:`s`.
    polytope
        A structure (with marginals, or any structure with ``marginals="sparsemap"``).
    downstream
        ``structure -> scalar loss``: the training loss as a function of the structure the
        decoder reads (a tensor shaped like ``scores``), with the decoder's current
        parameters. Called once per backward pass, at :math:`\mu(s)`.
    solver
        Projection solver name or instance (``"exact"``: onto the polytope; ``"relaxed"``:
        onto its relaxation); it also computes the SparseMAP point.
    eta, threshold, step
        The step rule of :func:`~spigot.autodiff.spigot` (``eta > 0``; ``threshold`` for
        ``step="reference"`` only); norms over the polytope's variables only.
    lengths
        Optional ``(*batch,)`` integer lengths; padded outputs and gradients are 0.
    on_failure
        ``"raise"`` a :class:`~spigot.ProjectionError` when a backward projection misses its
        tolerance, or ``"warn"``.
    certify
        Also certify closed-form projections in the backward pass.
    marginals
        ``"gibbs"``, ``"sparsemap"`` or ``"auto"`` (as for :func:`~spigot.autodiff.spigot_ce`).
    **solver_options
        Options for the solver when it is given by name.

    Returns
    -------
    :math:`\mathrm{map}(s)`, shaped, placed and typed like ``scores`` (numpy in, numpy out, no
    gradient and no call of ``downstream``).

    Raises
    ------
    spigot.UnsupportedOperation
        ``downstream`` is ``None`` (for torch input), or ``marginals="gibbs"`` on a polytope
        without marginals.
    TypeError
        ``downstream`` is not callable.
    ValueError
        Bad options (``eta``, ``step``, ``solver``, ...); in the backward pass, a non-scalar or
        non-finite downstream loss or gradient.
    """
    check_polytope(polytope)
    kind = resolve_marginals(polytope, marginals, "SPIGOT-CE (relaxed point)")
    certify = check_certify(certify)
    resolved = check_compatible(get_solver(solver, **solver_options), polytope, "SPIGOT-CE (relaxed point)")
    step, eta, threshold = check_step(step, eta, threshold)
    on_failure = check_on_failure(on_failure)
    if isinstance(scores, np.ndarray):
        return polytope.map(scores, lengths)
    downstream = check_downstream(downstream, "spigot-ce-relaxed")
    mean = _RelaxedMean(polytope, kind, resolved, on_failure, "SPIGOT-CE (relaxed point)")
    project = partial(  # (batch, mu, gamma, rule, variables, name=...) -> mu - proj(mu - eta_b gamma)
        pulled_back_residual, resolved, polytope, certify=certify, on_failure=on_failure,
        where="SPIGOT-CE (relaxed point) backward",
    )
    return _RelaxedPointFunction.apply(
        scores, polytope, lengths, "euclidean", step, eta, threshold, mean, project, downstream
    )


def spigot_eg_relaxed(
    scores: Array,
    polytope: Polytope,
    downstream: Downstream | None,
    eta: float = 1.0,
    threshold: float | None = None,
    lengths: Array | None = None,
    marginals: str = "auto",
    solver: str | Solver = "exact",
    on_failure: str = "raise",
    step: str | None = None,
    **solver_options: Any,
) -> Array:
    r"""The argmax, with SPIGOT-EG's backward pass at the relaxed point (Mihaylova et al., 2020).

    Backward returns :math:`\mu(s) - \mu(s - \eta_b \gamma)` with :math:`\gamma =
    \nabla_\mu L(\mu)` at :math:`\mu = \mu(s)`, computed by one call of ``downstream`` (see
    the module docstring). Parameters are those of :func:`spigot_ce_relaxed`; with the Gibbs
    marginals the exponentiated-gradient step needs no solver (``solver``, ``on_failure`` and
    ``solver_options`` serve the SparseMAP point).

    Raises
    ------
    spigot.UnsupportedOperation
        ``downstream`` is ``None`` (for torch input), or ``marginals="gibbs"`` on a polytope
        without marginals.
    """
    check_polytope(polytope)
    kind = resolve_marginals(polytope, marginals, "SPIGOT-EG (relaxed point)")
    step, eta, threshold = check_step(step, eta, threshold)
    on_failure = check_on_failure(on_failure)
    resolved = get_solver(solver, **solver_options)
    if isinstance(scores, np.ndarray):
        return polytope.map(scores, lengths)
    downstream = check_downstream(downstream, "spigot-eg-relaxed")
    mean = _RelaxedMean(polytope, kind, resolved, on_failure, "SPIGOT-EG (relaxed point)")
    return _RelaxedPointFunction.apply(
        scores, polytope, lengths, "entropic", step, eta, threshold, mean, None, downstream
    )


class SpigotCERelaxed(torch.nn.Module):
    """Module form of :func:`spigot_ce_relaxed`: ``module(scores, lengths=None, downstream=...)``.

    ``downstream`` (``structure -> scalar loss``) is passed at each call, since it closes over
    the batch's inputs and labels; :attr:`needs_downstream` tells callers to pass it.
    """

    #: The call takes ``downstream``: the layer runs the decoder a second time, at mu(s).
    needs_downstream: ClassVar[bool] = True

    def __init__(
        self,
        polytope: Polytope,
        solver: str | Solver = "exact",
        eta: float = 1.0,
        threshold: float | None = None,
        on_failure: str = "raise",
        certify: bool = False,
        marginals: str = "auto",
        step: str | None = None,
        **solver_options: Any,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.marginals = resolve_marginals(polytope, marginals, "SPIGOT-CE (relaxed point)")
        self.certify = check_certify(certify)
        self.solver = check_compatible(get_solver(solver, **solver_options), polytope, "SPIGOT-CE (relaxed point)")
        self.step, self.eta, self.threshold = check_step(step, eta, threshold)
        self.on_failure = check_on_failure(on_failure)

    def forward(
        self, scores: torch.Tensor, lengths: Array | None = None, downstream: Downstream | None = None
    ) -> torch.Tensor:
        return spigot_ce_relaxed(
            scores, self.polytope, downstream, self.solver, self.eta, self.threshold, lengths,
            self.on_failure, self.certify, self.marginals, self.step,
        )

    def extra_repr(self) -> str:
        return (
            f"polytope={self.polytope!r}, solver={self.solver!r}, step={self.step!r}, eta={self.eta}, "
            f"threshold={self.threshold}, marginals={self.marginals!r}"
        )


class SpigotEGRelaxed(torch.nn.Module):
    """Module form of :func:`spigot_eg_relaxed`: ``module(scores, lengths=None, downstream=...)``."""

    #: The call takes ``downstream``: the layer runs the decoder a second time, at mu(s).
    needs_downstream: ClassVar[bool] = True

    def __init__(
        self,
        polytope: Polytope,
        eta: float = 1.0,
        threshold: float | None = None,
        marginals: str = "auto",
        solver: str | Solver = "exact",
        on_failure: str = "raise",
        step: str | None = None,
        **solver_options: Any,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.marginals = resolve_marginals(polytope, marginals, "SPIGOT-EG (relaxed point)")
        self.step, self.eta, self.threshold = check_step(step, eta, threshold)
        self.on_failure = check_on_failure(on_failure)
        self.solver = get_solver(solver, **solver_options)

    def forward(
        self, scores: torch.Tensor, lengths: Array | None = None, downstream: Downstream | None = None
    ) -> torch.Tensor:
        return spigot_eg_relaxed(
            scores, self.polytope, downstream, self.eta, self.threshold, lengths, self.marginals,
            self.solver, self.on_failure, self.step,
        )

    def extra_repr(self) -> str:
        solver = f", solver={self.solver!r}" if self.marginals == "sparsemap" else ""
        return (
            f"polytope={self.polytope!r}, step={self.step!r}, eta={self.eta}, "
            f"threshold={self.threshold}, marginals={self.marginals!r}{solver}"
        )
