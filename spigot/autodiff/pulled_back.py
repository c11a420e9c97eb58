r"""SPIGOT-CE and SPIGOT-EG: pulled-back targets fitted with the cross-entropy loss.

Mihaylova, Niculae and Martins (2020), *Understanding the Mechanics of SPIGOT: Surrogate
Gradients for Latent Structure Learning* (arXiv:2010.02357), read SPIGOT as two steps: pull
the downstream loss :math:`L` back to a target :math:`\hat\mu` in the polytope
:math:`\mathcal{M}`, then fit the scores to it with an intermediate loss
:math:`\ell(s, \hat\mu)` and return :math:`\nabla_s \ell`. SPIGOT itself uses the perceptron
loss :math:`\max_{z} \langle s, z\rangle - \langle s, \hat\mu\rangle`, whose gradient is
:math:`\hat z - \hat\mu`, with :math:`\hat\mu = \Pi_{\mathcal{M}}(\hat z - \eta g)`.

Both estimators here use instead the cross-entropy (CRF) loss of the Gibbs distribution,

.. math:: \ell_{CE}(s, \hat\mu) = A(s) - \langle s, \hat\mu\rangle, \qquad
          \nabla_s \ell_{CE} = \mu(s) - \hat\mu,

with :math:`A` the log-partition function and :math:`\mu(s) = \nabla A(s)` the marginals, and
take the pulled-back target by one step of size :math:`\eta` *from the marginals*:

- **SPIGOT-CE**, a projected gradient step in the Euclidean geometry,

  .. math:: \hat\mu = \Pi_{\mathcal{M}}\big(\mu(s) - \eta g\big), \qquad
            \frac{\partial L}{\partial s} \leftarrow \mu(s) - \Pi_{\mathcal{M}}\big(\mu(s) - \eta g\big);

- **SPIGOT-EG**, a mirror-descent (exponentiated gradient) step in the entropic geometry,
  :math:`\hat\mu = \operatorname*{argmin}_{\mu \in \mathcal{M}} \eta\langle g, \mu\rangle +
  D_{-H}(\mu, \mu(s))`, which is the marginal vector of the moved scores,

  .. math:: \hat\mu = \mu(s - \eta g), \qquad
            \frac{\partial L}{\partial s} \leftarrow \mu(s) - \mu(s - \eta g)

  (on the simplex: :math:`\mathrm{softmax}(s) - \mathrm{softmax}(s - \eta g)`).

**Where** :math:`g` **is taken, and what the layer outputs.** In the derivation :math:`g =
\nabla_\mu L` at the point the step starts from, :math:`\mu(s)`. The authors' experiments
(their released code, github.com/deep-spin/understanding-spigot) output the argmax
:math:`\hat z = \mathrm{map}(s)` in the forward pass and re-evaluate the downstream network at
:math:`\mu(s)` to get that gradient. A layer only receives the gradient at its own output, so
``output`` chooses between the two forms:

- ``output="argmax"`` (default): the forward pass returns :math:`\hat z = \mathrm{map}(s)` and
  :math:`g = \nabla L(\hat z)`, the gradient at the argmax, is used as the step direction;
- ``output="marginals"``: the forward pass returns :math:`\mu(s)` and :math:`g = \nabla L(\mu(s))`
  is exactly the gradient of the derivation.

In both, the per-instance step :math:`\eta_b` follows the rule ``step`` of
:func:`~spigot.autodiff.spigot` (by default :math:`\eta / \|g_b\|`, a step of length
:math:`\eta` whatever the scale of the loss; ``"reference"``: :math:`\min(\eta, \tau /
\|g_b\|)`; ``"fixed"``: :math:`\eta`), with norms over the polytope's variables only. Padded entries of the output and of the gradient are 0.

**Structures with a MAP oracle only: the SparseMAP point.** The Gibbs marginals need the
log-partition, which many structures lack (permutations and matchings: a permanent, #P-hard;
a user's structure defined by ``map_one``). ``marginals="sparsemap"`` replaces the Gibbs
distribution by the quadratic regularisation of the same argmax, whose "marginals" are the
SparseMAP point :math:`\tilde\mu(s) = \Pi_{\mathcal{M}}(s)`, computed by ``solver`` (the active
set for a MAP-only structure). The intermediate loss becomes the SparseMAP loss, the
Fenchel-Young loss of :math:`\tfrac12\|\mu\|^2` restricted to :math:`\mathcal{M}`:
:math:`\ell(s, \hat\mu) = \max_{\mu \in \mathcal{M}} \langle s, \mu\rangle - \tfrac12\|\mu\|^2
- \langle s, \hat\mu\rangle + \tfrac12\|\hat\mu\|^2`, whose gradient is
:math:`\tilde\mu(s) - \hat\mu`. What changes:

- **SPIGOT-CE**: the Euclidean step starts from the SparseMAP point,
  :math:`\partial L / \partial s \leftarrow \tilde\mu(s) - \Pi_{\mathcal{M}}(\tilde\mu(s) - \eta g)`;
- **SPIGOT-EG**: the mirror step of the quadratic regulariser moves the scores and re-projects,
  :math:`\hat\mu = \tilde\mu(s - \eta g)`, so
  :math:`\partial L / \partial s \leftarrow \Pi_{\mathcal{M}}(s) - \Pi_{\mathcal{M}}(s - \eta g)`
  (the entropic geometry of the Gibbs version becomes the Euclidean geometry of the scores);
- ``output="marginals"`` returns :math:`\tilde\mu(s)` (the SparseMAP layer's output).

Unlike the Gibbs marginals, :math:`\tilde\mu(s)` is sparse and equals :math:`\mathrm{map}(s)`
whenever the scores are far apart (``s`` lies in the normal cone of a vertex, shifted by that
vertex): there the CE step starts from the argmax itself and the EG gradient vanishes for small
steps. Each backward pass costs one projection more than with the Gibbs marginals (two for CE,
two for EG). ``marginals="auto"`` (the default) picks ``"gibbs"`` when the polytope defines
marginals and ``"sparsemap"`` otherwise; the module's repr shows the choice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from spigot._batch import Array, as_batch
from spigot.autodiff._common import (
    check_certify,
    check_choice,
    check_on_failure,
    check_polytope,
    check_step,
    handle_failure,
    pulled_back_residual,
    require_marginals,
    take_step,
    variables_mask,
)
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver
from spigot.solvers.compatibility import check_compatible
from spigot.solvers.registry import get_solver

#: What the forward pass of SPIGOT-CE/EG returns.
OUTPUTS = ("argmax", "marginals")

#: Which relaxed distribution's mean SPIGOT-CE/EG use: the Gibbs marginals or the SparseMAP point.
MARGINALS = ("auto", "gibbs", "sparsemap")


def resolve_marginals(polytope: Polytope, marginals: str, estimator: str) -> str:
    """``"gibbs"`` or ``"sparsemap"``: ``"auto"`` picks the Gibbs marginals where the polytope has them."""
    marginals = check_choice(marginals, MARGINALS, "marginals")
    if marginals == "auto":
        return "gibbs" if polytope.supports("marginals_batch") else "sparsemap"
    if marginals == "gibbs":
        require_marginals(polytope, estimator)
    return marginals


class _RelaxedMean:
    r"""The mean :math:`\mu(s)` that SPIGOT-CE/EG step from: Gibbs marginals or the SparseMAP point."""

    def __init__(self, polytope: Polytope, kind: str, solver: Solver | None, on_failure: str, where: str) -> None:
        self.polytope, self.kind, self.solver = polytope, kind, solver
        self.on_failure, self.where = on_failure, where

    def __call__(self, values: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "gibbs":
            return self.polytope.marginals_batch(values, lengths).detach()
        result = self.solver.run(self.polytope, values, lengths)
        handle_failure(result, self.on_failure, f"{self.where} (SparseMAP point)")
        return result.x.to(device=values.device, dtype=values.dtype)


def _forward_output(
    ctx, scores: torch.Tensor, polytope: Polytope, lengths: Any, output: str, mean: _RelaxedMean
) -> torch.Tensor:
    """Validate, compute the requested output ``(B, *event)`` and save what backward needs."""
    batch = as_batch(polytope, scores, lengths)
    values = batch.values.detach()
    with torch.no_grad():
        if output == "marginals":
            out = mean(values, batch.lengths)
        else:
            out = polytope.map_batch(values, batch.lengths)
    variables = variables_mask(batch)
    ctx.polytope, ctx.lengths, ctx.has_mask = polytope, batch.lengths, variables is not None
    ctx.batch = replace(batch, values=values)  # the validated shape, without the graph
    ctx.mean = mean
    ctx.output_is_marginals = output == "marginals"
    ctx.save_for_backward(values, out, variables if variables is not None else torch.empty(0))
    return out


def _saved_marginals(ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scores, mu(scores), mask)``: the marginals are the forward output or computed now."""
    values, out, mask = ctx.saved_tensors
    if ctx.output_is_marginals:
        return values, out, mask
    with torch.no_grad():
        return values, ctx.mean(values, ctx.lengths), mask


def _finish(ctx, grad_scores: torch.Tensor, variables: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The gradient on the polytope's variables only (0 on padding and ignored entries), reshaped."""
    if ctx.has_mask:
        grad_scores = grad_scores * variables
    return grad_scores.reshape(shape)


class _SpigotCEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, solver, step, eta, threshold, lengths, on_failure, output, certify, mean):
        out = _forward_output(ctx, scores, polytope, lengths, output, mean)
        ctx.solver, ctx.on_failure = solver, on_failure
        ctx.step, ctx.eta, ctx.threshold = step, eta, threshold
        ctx.certify = certify
        return out.to(scores.dtype).reshape(scores.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        _, mu, mask = _saved_marginals(ctx)
        g = grad_out.reshape(mu.shape)
        residual = pulled_back_residual(  # mu - proj(mu - eta_b g); checks g
            ctx.solver, ctx.polytope, ctx.batch, mu, g, (ctx.step, ctx.eta, ctx.threshold),
            mask if ctx.has_mask else None, ctx.certify, ctx.on_failure, "SPIGOT-CE backward",
        )
        grad_scores = _finish(ctx, residual, mask, grad_out.shape)
        return grad_scores, None, None, None, None, None, None, None, None, None, None


class _SpigotEGFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, step, eta, threshold, lengths, output, mean):
        out = _forward_output(ctx, scores, polytope, lengths, output, mean)
        ctx.step, ctx.eta, ctx.threshold = step, eta, threshold
        return out.to(scores.dtype).reshape(scores.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        values, mu, mask = _saved_marginals(ctx)
        g = grad_out.reshape(mu.shape)
        moved = take_step(values, g, ctx.step, ctx.eta, ctx.threshold, mask if ctx.has_mask else None)  # checks g
        with torch.no_grad():
            target = ctx.mean(moved, ctx.lengths)
        grad_scores = _finish(ctx, mu - target, mask, grad_out.shape)
        return grad_scores, None, None, None, None, None, None, None


def _numpy_output(scores: np.ndarray, polytope: Polytope, lengths: Any, output: str, mean: _RelaxedMean) -> np.ndarray:
    if output != "marginals":
        return polytope.map(scores, lengths)
    batch = as_batch(polytope, scores, lengths)
    return batch.restore(mean(batch.values, batch.lengths))


def spigot_ce(
    scores: Array,
    polytope: Polytope,
    solver: str | Solver = "exact",
    eta: float = 1.0,
    threshold: float | None = None,
    lengths: Array | None = None,
    on_failure: str = "raise",
    output: str = "argmax",
    certify: bool = False,
    marginals: str = "auto",
    step: str | None = None,
    **solver_options: Any,
) -> Array:
    r"""The argmax (or the marginals), with the SPIGOT-CE backward pass.

    Backward, given :math:`g`, returns :math:`\mu(s) - \Pi_P(\mu(s) - \eta_b g)` (see the module
    docstring for the derivation, for where :math:`g` is taken, and for the SparseMAP point
    that stands in for :math:`\mu` on a structure without marginals).

    Parameters
    ----------
    scores
        ``(*batch, *event_shape)`` tensor of scores :math:`s`.
    polytope
        A structure (with marginals, or any structure with ``marginals="sparsemap"``).
    solver
        Projection solver name or instance (``"exact"``: onto the polytope; ``"relaxed"``: onto
        its relaxation); it also computes the SparseMAP point.
    eta
        :math:`\eta > 0`; its meaning depends on ``step``, as for :func:`~spigot.autodiff.spigot`.
    threshold
        :math:`\tau > 0`, for ``step="reference"`` only (as for :func:`~spigot.autodiff.spigot`).
    lengths
        Optional ``(*batch,)`` integer lengths; padded outputs and gradients are 0.
    on_failure
        ``"raise"`` a :class:`~spigot.ProjectionError` when the backward projection misses its
        tolerance, or ``"warn"``.
    output
        ``"argmax"`` (:math:`\mathrm{map}(s)`) or ``"marginals"`` (:math:`\mu(s)`).
    certify
        Also certify closed-form projections in the backward pass (see :func:`~spigot.autodiff.spigot`).
    marginals
        ``"gibbs"`` (the Gibbs marginals), ``"sparsemap"`` (the SparseMAP point
        :math:`\Pi_P(s)`, for any structure), or ``"auto"``: ``"gibbs"`` where the polytope
        defines marginals, ``"sparsemap"`` otherwise.
    step
        ``"normalized"``, ``"reference"`` or ``"fixed"``: the step rule of
        :func:`~spigot.autodiff.spigot` (default ``"normalized"``, or ``"reference"`` when
        ``threshold`` is given); norms over the polytope's variables only.
    **solver_options
        Options for the solver when it is given by name.

    Returns
    -------
    The output, shaped, placed and typed like ``scores`` (numpy in, numpy out, no gradient).

    Raises
    ------
    spigot.UnsupportedOperation
        ``marginals="gibbs"`` on a polytope without marginals.
    """
    check_polytope(polytope)
    kind = resolve_marginals(polytope, marginals, "SPIGOT-CE")
    certify = check_certify(certify)
    resolved = check_compatible(get_solver(solver, **solver_options), polytope, "SPIGOT-CE")
    step, eta, threshold = check_step(step, eta, threshold)
    on_failure = check_on_failure(on_failure)
    output = check_choice(output, OUTPUTS, "output")
    mean = _RelaxedMean(polytope, kind, resolved, on_failure, "SPIGOT-CE")
    if isinstance(scores, np.ndarray):
        return _numpy_output(scores, polytope, lengths, output, mean)
    return _SpigotCEFunction.apply(
        scores, polytope, resolved, step, eta, threshold, lengths, on_failure, output, certify, mean
    )


def spigot_eg(
    scores: Array,
    polytope: Polytope,
    eta: float = 1.0,
    threshold: float | None = None,
    lengths: Array | None = None,
    output: str = "argmax",
    marginals: str = "auto",
    solver: str | Solver = "exact",
    on_failure: str = "raise",
    step: str | None = None,
    **solver_options: Any,
) -> Array:
    r"""The argmax (or the marginals), with the SPIGOT-EG backward pass.

    Backward, given :math:`g`, returns :math:`\mu(s) - \mu(s - \eta_b g)` (see the module
    docstring for the derivation, for where :math:`g` is taken, and for the SparseMAP point
    :math:`\mu(s) = \Pi_P(s)` that stands in on a structure without marginals). Parameters are
    those of :func:`spigot_ce`; with the Gibbs marginals the exponentiated-gradient step needs
    no solver (``solver``, ``on_failure`` and ``solver_options`` serve the SparseMAP point).

    Raises
    ------
    spigot.UnsupportedOperation
        ``marginals="gibbs"`` on a polytope without marginals.
    """
    check_polytope(polytope)
    kind = resolve_marginals(polytope, marginals, "SPIGOT-EG")
    step, eta, threshold = check_step(step, eta, threshold)
    output = check_choice(output, OUTPUTS, "output")
    on_failure = check_on_failure(on_failure)
    resolved = get_solver(solver, **solver_options)
    mean = _RelaxedMean(polytope, kind, resolved, on_failure, "SPIGOT-EG")
    if isinstance(scores, np.ndarray):
        return _numpy_output(scores, polytope, lengths, output, mean)
    return _SpigotEGFunction.apply(scores, polytope, step, eta, threshold, lengths, output, mean)


class SpigotCE(torch.nn.Module):
    """Module form of :func:`spigot_ce`; parameters as there (``solver_options`` go to the solver)."""

    def __init__(
        self,
        polytope: Polytope,
        solver: str | Solver = "exact",
        eta: float = 1.0,
        threshold: float | None = None,
        on_failure: str = "raise",
        output: str = "argmax",
        certify: bool = False,
        marginals: str = "auto",
        step: str | None = None,
        **solver_options: Any,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.marginals = resolve_marginals(polytope, marginals, "SPIGOT-CE")
        self.certify = check_certify(certify)
        self.solver = check_compatible(get_solver(solver, **solver_options), polytope, "SPIGOT-CE")
        self.step, self.eta, self.threshold = check_step(step, eta, threshold)
        self.on_failure = check_on_failure(on_failure)
        self.output = check_choice(output, OUTPUTS, "output")

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return spigot_ce(
            scores, self.polytope, self.solver, self.eta, self.threshold, lengths,
            self.on_failure, self.output, self.certify, self.marginals, self.step,
        )

    def extra_repr(self) -> str:
        return (
            f"polytope={self.polytope!r}, solver={self.solver!r}, step={self.step!r}, eta={self.eta}, "
            f"threshold={self.threshold}, output={self.output!r}, marginals={self.marginals!r}"
        )


class SpigotEG(torch.nn.Module):
    """Module form of :func:`spigot_eg`."""

    def __init__(
        self,
        polytope: Polytope,
        eta: float = 1.0,
        threshold: float | None = None,
        output: str = "argmax",
        marginals: str = "auto",
        solver: str | Solver = "exact",
        on_failure: str = "raise",
        step: str | None = None,
        **solver_options: Any,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.marginals = resolve_marginals(polytope, marginals, "SPIGOT-EG")
        self.step, self.eta, self.threshold = check_step(step, eta, threshold)
        self.output = check_choice(output, OUTPUTS, "output")
        self.on_failure = check_on_failure(on_failure)
        self.solver = get_solver(solver, **solver_options)

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return spigot_eg(
            scores, self.polytope, self.eta, self.threshold, lengths, self.output, self.marginals,
            self.solver, self.on_failure, self.step,
        )

    def extra_repr(self) -> str:
        solver = f", solver={self.solver!r}" if self.marginals == "sparsemap" else ""
        return (
            f"polytope={self.polytope!r}, step={self.step!r}, eta={self.eta}, threshold={self.threshold}, "
            f"output={self.output!r}, marginals={self.marginals!r}{solver}"
        )
