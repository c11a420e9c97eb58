r"""Implicit maximum-likelihood estimation, I-MLE (Niepert, Minervini and Franceschi, 2021).

*Implicit MLE: Backpropagating Through Discrete Exponential Family Distributions*. The layer
treats :math:`s` as the parameters :math:`\theta` of the distribution
:math:`p(z; \theta) \propto \exp\langle \theta, z\rangle` over the vertices and samples it
approximately by perturb-and-MAP: forward, it draws noise :math:`\epsilon` and returns

.. math:: z = \mathrm{map}(\theta + \epsilon)

(the exact MAP :math:`\mathrm{map}(\theta)` with ``noise="none"``). Backward, given
:math:`g = \partial L / \partial z`, it builds the *target distribution* by
perturbation-based implicit differentiation, :math:`\theta' = \theta - \lambda g`, samples it
with the **same** noise, and returns the difference of the two samples,

.. math:: \frac{\partial L}{\partial \theta} \leftarrow
          \mathrm{map}(\theta + \epsilon) - \mathrm{map}(\theta - \lambda g + \epsilon),

a single-sample estimate of :math:`\mu(\theta) - \mu(\theta')`, the gradient of the
likelihood loss :math:`-\log p(\hat z; \theta)` averaged over the target samples. For small
:math:`\lambda` it is about :math:`\lambda J_\mu(\theta)^\top g`, so :math:`\lambda` also sets
the gradient's scale. With ``n_samples`` :math:`M > 1` both passes average over :math:`M`
noise draws, and the forward output is then the mean of the :math:`M` samples.

Noise (see :mod:`spigot.autodiff.noise`): ``"sum-of-gamma"`` (the default, with ``k`` the
number of ones in a vertex, e.g. the budget of a ``k``-subset, and ``terms`` the length
:math:`s` of the sum) makes the perturbed score of every structure approximately Gumbel, as the
paper proposes; ``"gumbel"`` perturbs each score with standard Gumbel noise (exact Gibbs
sampling on the simplex); ``"gaussian"``; ``"none"``. ``temperature`` :math:`\tau` scales the
noise: :math:`\epsilon = \tau \cdot \text{noise}`. Only the MAP oracle is needed; padded
entries get no noise, and padded outputs and gradients are 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from spigot._batch import Array, Batch, as_batch
from spigot.autodiff._common import (
    check_choice,
    check_count,
    check_gradient,
    check_polytope,
    check_positive,
    padding_mask,
)
from spigot.autodiff.noise import NOISES, check_generator
from spigot.autodiff.perturbations import draw_noise, perturbed_maps
from spigot.polytopes.base import Polytope

#: The noise options of I-MLE.
IMLE_NOISES = (*NOISES, "none")


@dataclass(frozen=True)
class IMLEOptions:
    """Validated options of I-MLE (see :func:`imle`)."""

    lambda_: float
    noise: str
    temperature: float
    k: int
    terms: int
    n_samples: int
    generator: torch.Generator | None

    @classmethod
    def checked(
        cls,
        lambda_: float,
        noise: str,
        temperature: float,
        k: int,
        terms: int,
        n_samples: int,
        generator: torch.Generator | None,
    ) -> IMLEOptions:
        """Build the options, raising ValueError/TypeError that names a bad argument."""
        return cls(
            lambda_=check_positive(lambda_, "lambda_"),
            noise=check_choice(noise, IMLE_NOISES, "noise"),
            temperature=check_positive(temperature, "temperature"),
            k=check_count(k, "k"),
            terms=check_count(terms, "terms"),
            n_samples=check_count(n_samples, "n_samples"),
            generator=check_generator(generator),
        )

    def draw(self, batch: Batch) -> torch.Tensor:
        """The ``(M, B, *event)`` perturbations (zeros with ``noise="none"``, 0 on padding)."""
        if self.noise == "none":
            values = batch.values
            return torch.zeros((self.n_samples, *values.shape), dtype=values.dtype, device=values.device)
        return draw_noise(
            batch, self.noise, self.n_samples, self.temperature, self.generator, k=self.k, terms=self.terms
        )


class _IMLEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, options, lengths):
        batch = as_batch(polytope, scores, lengths)
        noise = options.draw(batch)
        values = batch.values.detach()
        maps = perturbed_maps(polytope, values, batch.lengths, noise)
        mask = padding_mask(batch)
        ctx.polytope, ctx.lengths, ctx.lambda_ = polytope, batch.lengths, options.lambda_
        ctx.has_mask = mask is not None
        ctx.save_for_backward(values, noise, maps, mask if mask is not None else torch.empty(0))
        return maps.mean(dim=0).to(scores.dtype).reshape(scores.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z):
        check_gradient(grad_z)
        values, noise, maps, mask = ctx.saved_tensors
        g = grad_z.reshape(values.shape)
        target_maps = perturbed_maps(ctx.polytope, values - ctx.lambda_ * g, ctx.lengths, noise)
        grad_scores = (maps - target_maps).mean(dim=0)
        if ctx.has_mask:
            grad_scores = grad_scores * mask
        return grad_scores.reshape(grad_z.shape), None, None, None


def _apply(scores: Array, polytope: Polytope, options: IMLEOptions, lengths: Array | None) -> Array:
    """Run I-MLE with validated options (numpy: forward only)."""
    if isinstance(scores, np.ndarray):
        batch = as_batch(polytope, scores, lengths)
        maps = perturbed_maps(polytope, batch.values, batch.lengths, options.draw(batch))
        return batch.restore(maps.mean(dim=0))
    return _IMLEFunction.apply(scores, polytope, options, lengths)


def imle(
    scores: Array,
    polytope: Polytope,
    lambda_: float = 1.0,
    noise: str = "sum-of-gamma",
    temperature: float = 1.0,
    k: int = 1,
    terms: int = 10,
    n_samples: int = 1,
    lengths: Array | None = None,
    generator: torch.Generator | None = None,
) -> Array:
    r"""A perturb-and-MAP sample :math:`\mathrm{map}(\theta + \epsilon)`, with the I-MLE backward pass.

    Parameters
    ----------
    scores
        ``(*batch, *event_shape)`` tensor of scores :math:`\theta`.
    polytope
        Any structure (only its MAP oracle is used).
    lambda_
        Step :math:`\lambda > 0` of the target distribution :math:`\theta' = \theta - \lambda g`.
    noise
        ``"sum-of-gamma"``, ``"gumbel"``, ``"gaussian"`` or ``"none"`` (exact MAP forward).
    temperature
        Noise scale :math:`\tau > 0`.
    k, terms
        Sum-of-Gamma parameters: ones per vertex, and number of Gamma terms.
    n_samples
        Number :math:`M` of noise draws (the output is their mean when :math:`M > 1`).
    lengths
        Optional ``(*batch,)`` integer lengths; padded outputs and gradients are 0.
    generator
        Optional ``torch.Generator`` for the noise (samples are drawn on its device).

    Returns
    -------
    The sample, shaped, placed and typed like ``scores`` (numpy in, numpy out, without gradient).
    """
    check_polytope(polytope)
    options = IMLEOptions.checked(lambda_, noise, temperature, k, terms, n_samples, generator)
    return _apply(scores, polytope, options, lengths)


class IMLE(torch.nn.Module):
    """Module form of :func:`imle`; the generator, if any, is shared by every call."""

    def __init__(
        self,
        polytope: Polytope,
        lambda_: float = 1.0,
        noise: str = "sum-of-gamma",
        temperature: float = 1.0,
        k: int = 1,
        terms: int = 10,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.options = IMLEOptions.checked(lambda_, noise, temperature, k, terms, n_samples, generator)

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return _apply(scores, self.polytope, self.options, lengths)

    def extra_repr(self) -> str:
        shown = {key: value for key, value in vars(self.options).items() if key != "generator"}
        return f"polytope={self.polytope!r}, " + ", ".join(f"{key}={value!r}" for key, value in shown.items())
