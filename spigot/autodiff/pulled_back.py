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
\|g_b\|)`; ``"fixed"``: :math:`\eta`), with norms over the polytope's variables only. Both need a polytope with
marginals; padded entries of the output and of the gradient are 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from spigot._batch import Array, as_batch
from spigot.autodiff._common import (
    check_choice,
    check_gradient,
    check_on_failure,
    check_polytope,
    check_step,
    gradient_step,
    handle_failure,
    require_marginals,
    variables_mask,
)
from spigot.polytopes.base import Polytope
from spigot.solvers.base import Solver
from spigot.solvers.registry import get_solver

#: What the forward pass of SPIGOT-CE/EG returns.
OUTPUTS = ("argmax", "marginals")


def _forward_output(ctx, scores: torch.Tensor, polytope: Polytope, lengths: Any, output: str) -> torch.Tensor:
    """Validate, compute the requested output ``(B, *event)`` and save what backward needs."""
    batch = as_batch(polytope, scores, lengths)
    values = batch.values.detach()
    with torch.no_grad():
        if output == "marginals":
            out = polytope.marginals_batch(values, batch.lengths).detach()
        else:
            out = polytope.map_batch(values, batch.lengths)
    ctx.polytope, ctx.lengths = polytope, batch.lengths
    ctx.output_is_marginals = output == "marginals"
    ctx.save_for_backward(values, out, variables_mask(polytope, batch))
    return out


def _saved_marginals(ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scores, mu(scores), mask)``: the marginals are the forward output or computed now."""
    values, out, mask = ctx.saved_tensors
    if ctx.output_is_marginals:
        return values, out, mask
    with torch.no_grad():
        return values, ctx.polytope.marginals_batch(values, ctx.lengths).detach(), mask


def _finish(grad_scores: torch.Tensor, variables: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return (grad_scores * variables).reshape(shape)


class _SpigotCEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, solver, step, eta, threshold, lengths, on_failure, output):
        out = _forward_output(ctx, scores, polytope, lengths, output)
        ctx.solver, ctx.on_failure = solver, on_failure
        ctx.step, ctx.eta, ctx.threshold = step, eta, threshold
        return out.reshape(scores.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        check_gradient(grad_out)
        _, mu, variables = _saved_marginals(ctx)
        g = grad_out.reshape(mu.shape)
        target = mu - gradient_step(g, ctx.step, ctx.eta, ctx.threshold, variables)
        result = ctx.solver.run(ctx.polytope, target, ctx.lengths)
        handle_failure(result, ctx.on_failure, "SPIGOT-CE backward")
        grad_scores = _finish(mu - result.x, variables, grad_out.shape)
        return grad_scores, None, None, None, None, None, None, None, None


class _SpigotEGFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, step, eta, threshold, lengths, output):
        out = _forward_output(ctx, scores, polytope, lengths, output)
        ctx.step, ctx.eta, ctx.threshold = step, eta, threshold
        return out.reshape(scores.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        check_gradient(grad_out)
        values, mu, variables = _saved_marginals(ctx)
        g = grad_out.reshape(mu.shape)
        moved = values - gradient_step(g, ctx.step, ctx.eta, ctx.threshold, variables)
        target = ctx.polytope.marginals_batch(moved, ctx.lengths).detach()
        grad_scores = _finish(mu - target, variables, grad_out.shape)
        return grad_scores, None, None, None, None, None, None


def _numpy_output(scores: np.ndarray, polytope: Polytope, lengths: Any, output: str) -> np.ndarray:
    return polytope.marginals(scores, lengths) if output == "marginals" else polytope.map(scores, lengths)


def spigot_ce(
    scores: Array,
    polytope: Polytope,
    solver: str | Solver = "exact",
    eta: float = 1.0,
    threshold: float | None = None,
    lengths: Array | None = None,
    on_failure: str = "raise",
    output: str = "argmax",
    step: str | None = None,
    **solver_options: Any,
) -> Array:
    r"""The argmax (or the marginals), with the SPIGOT-CE backward pass.

    Backward, given :math:`g`, returns :math:`\mu(s) - \Pi_P(\mu(s) - \eta_b g)` (see the module
    docstring for the derivation and for where :math:`g` is taken).

    Parameters
    ----------
    scores
        ``(*batch, *event_shape)`` tensor of scores :math:`s`.
    polytope
        A structure with marginals.
    solver
        Projection solver name or instance (``"exact"``: onto the polytope; ``"relaxed"``: onto
        its relaxation).
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
        The polytope has no marginals.
    """
    check_polytope(polytope)
    require_marginals(polytope, "SPIGOT-CE")
    resolved = get_solver(solver, **solver_options)
    step, eta, threshold = check_step(step, eta, threshold)
    on_failure = check_on_failure(on_failure)
    output = check_choice(output, OUTPUTS, "output")
    if isinstance(scores, np.ndarray):
        return _numpy_output(scores, polytope, lengths, output)
    return _SpigotCEFunction.apply(
        scores, polytope, resolved, step, eta, threshold, lengths, on_failure, output
    )


def spigot_eg(
    scores: Array,
    polytope: Polytope,
    eta: float = 1.0,
    threshold: float | None = None,
    lengths: Array | None = None,
    output: str = "argmax",
    step: str | None = None,
) -> Array:
    r"""The argmax (or the marginals), with the SPIGOT-EG backward pass.

    Backward, given :math:`g`, returns :math:`\mu(s) - \mu(s - \eta_b g)` (see the module
    docstring for the derivation and for where :math:`g` is taken). Parameters are those of
    :func:`spigot_ce` without the solver: the exponentiated-gradient step needs only the
    marginals.

    Raises
    ------
    spigot.UnsupportedOperation
        The polytope has no marginals.
    """
    check_polytope(polytope)
    require_marginals(polytope, "SPIGOT-EG")
    step, eta, threshold = check_step(step, eta, threshold)
    output = check_choice(output, OUTPUTS, "output")
    if isinstance(scores, np.ndarray):
        return _numpy_output(scores, polytope, lengths, output)
    return _SpigotEGFunction.apply(scores, polytope, step, eta, threshold, lengths, output)


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
        step: str | None = None,
        **solver_options: Any,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        require_marginals(polytope, "SPIGOT-CE")
        self.solver = get_solver(solver, **solver_options)
        self.step, self.eta, self.threshold = check_step(step, eta, threshold)
        self.on_failure = check_on_failure(on_failure)
        self.output = check_choice(output, OUTPUTS, "output")

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return spigot_ce(
            scores, self.polytope, self.solver, self.eta, self.threshold, lengths,
            self.on_failure, self.output, self.step,
        )

    def extra_repr(self) -> str:
        return (
            f"polytope={self.polytope!r}, solver={self.solver!r}, step={self.step!r}, "
            f"eta={self.eta}, threshold={self.threshold}, output={self.output!r}"
        )


class SpigotEG(torch.nn.Module):
    """Module form of :func:`spigot_eg`."""

    def __init__(
        self,
        polytope: Polytope,
        eta: float = 1.0,
        threshold: float | None = None,
        output: str = "argmax",
        step: str | None = None,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        require_marginals(polytope, "SPIGOT-EG")
        self.step, self.eta, self.threshold = check_step(step, eta, threshold)
        self.output = check_choice(output, OUTPUTS, "output")

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return spigot_eg(
            scores, self.polytope, self.eta, self.threshold, lengths, self.output, self.step
        )

    def extra_repr(self) -> str:
        return (
            f"polytope={self.polytope!r}, step={self.step!r}, eta={self.eta}, "
            f"threshold={self.threshold}, output={self.output!r}"
        )
