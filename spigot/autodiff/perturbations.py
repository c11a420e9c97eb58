r"""Perturbed maximizers (Berthet, Blondel, Teboul, Cuturi, Vert and Bach, 2020).

*Learning with Differentiable Perturbed Optimizers*. With Gaussian noise
:math:`Z \sim \mathcal{N}(0, I)` and a scale :math:`\sigma > 0`, the perturbed maximizer

.. math:: y_\sigma(s) = \mathbb{E}_Z\big[\mathrm{map}(s + \sigma Z)\big]

is a smooth point of the polytope, and its Jacobian has the same expectation form
(their Prop. 3.1, with :math:`\nabla_z \tfrac12\|z\|^2 = z` for the Gaussian):

.. math:: J_{y_\sigma}(s) = \frac{1}{\sigma}\, \mathbb{E}_Z\big[\mathrm{map}(s + \sigma Z)\, Z^\top\big],
          \qquad
          J^\top g = \frac{1}{\sigma}\,
          \mathbb{E}_Z\big[\langle \mathrm{map}(s + \sigma Z), g\rangle\, Z\big].

Both expectations are estimated by Monte Carlo with the same :math:`M` samples
:math:`Z_1, \dots, Z_M`: the forward pass returns
:math:`\bar y = \frac1M \sum_m \mathrm{map}(s + \sigma Z_m)` and the backward pass
:math:`\frac{1}{\sigma M} \sum_m \langle \mathrm{map}(s + \sigma Z_m), g\rangle Z_m`. Both are
unbiased; the per-coordinate standard error of the gradient is at most
:math:`\max_i |g_i| \cdot \max_{z \in Z} \|z\|_1 / (\sigma \sqrt{M})`. Padded entries get no
noise, and padded outputs and gradients are 0. Pass a seeded ``torch.Generator`` for
reproducible samples. Only the MAP oracle is needed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from spigot._batch import Array, Batch, as_batch
from spigot.autodiff._common import (
    check_count,
    check_gradient,
    check_polytope,
    check_positive,
    padding_mask,
)
from spigot.autodiff.noise import check_generator, sample_noise
from spigot.polytopes.base import Polytope


def perturbed_maps(
    polytope: Polytope,
    values: torch.Tensor,
    lengths: torch.Tensor | None,
    noise: torch.Tensor,
) -> torch.Tensor:
    """``map(s + noise_m)`` for each of the ``M`` noise draws ``(M, B, *event)``, in one batched call.

    ``values`` is the validated ``(B, *event)`` batch and ``lengths`` its ``(B,)`` lengths.
    """
    samples = noise.shape[0]
    shifted = (values.detach().unsqueeze(0) + noise).reshape(-1, *values.shape[1:])
    repeated = None if lengths is None else lengths.repeat(samples)
    with torch.no_grad():
        maps = polytope.map_batch(shifted, repeated)
    return maps.reshape(noise.shape)


def draw_noise(
    batch: Batch,
    kind: str,
    samples: int,
    scale: float,
    generator: torch.Generator | None,
    **parameters: int,
) -> torch.Tensor:
    """``scale`` times ``samples`` draws of noise for the batch ``(M, B, *event)``, 0 on padding."""
    values = batch.values
    noise = scale * sample_noise(
        kind, (samples, *values.shape), values.dtype, values.device, generator, **parameters
    )
    mask = padding_mask(batch)
    return noise if mask is None else noise * mask


class _PerturbedFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, polytope, sigma, n_samples, lengths, generator):
        batch = as_batch(polytope, scores, lengths)
        noise = draw_noise(batch, "gaussian", n_samples, sigma, generator)
        maps = perturbed_maps(polytope, batch.values, batch.lengths, noise)
        ctx.sigma = sigma
        ctx.save_for_backward(noise, maps)
        return maps.mean(dim=0).to(scores.dtype).reshape(scores.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        check_gradient(grad_y)
        noise, maps = ctx.saved_tensors
        g = grad_y.reshape(maps.shape[1:])
        event_axes = tuple(range(2, maps.ndim))
        inner = (maps * g.unsqueeze(0)).sum(dim=event_axes, keepdim=True)  # (M, B, 1, ..., 1)
        # noise = sigma * Z (0 on padding): E[<y, g> Z] / sigma = E[<y, g> noise] / sigma^2
        grad_scores = (inner * noise).mean(dim=0) / ctx.sigma**2
        return grad_scores.reshape(grad_y.shape), None, None, None, None, None


def perturbed(
    scores: Array,
    polytope: Polytope,
    sigma: float = 1.0,
    n_samples: int = 100,
    lengths: Array | None = None,
    generator: torch.Generator | None = None,
) -> Array:
    r"""Monte-Carlo perturbed maximizer :math:`\bar y \approx \mathbb{E}[\mathrm{map}(s + \sigma Z)]`.

    Parameters
    ----------
    scores
        ``(*batch, *event_shape)`` tensor of scores :math:`s`.
    polytope
        Any structure (only its MAP oracle is used).
    sigma
        Noise scale :math:`\sigma > 0`.
    n_samples
        Number :math:`M` of Gaussian draws per instance, shared by the forward and backward passes.
    lengths
        Optional ``(*batch,)`` integer lengths; padded outputs and gradients are 0.
    generator
        Optional ``torch.Generator`` for the noise (samples are drawn on its device).

    Returns
    -------
    :math:`\bar y`, shaped, placed and typed like ``scores`` (numpy in, numpy out, without
    gradient).
    """
    check_polytope(polytope)
    sigma = check_positive(sigma, "sigma")
    n_samples = check_count(n_samples, "n_samples")
    generator = check_generator(generator)
    if isinstance(scores, np.ndarray):
        batch = as_batch(polytope, scores, lengths)
        noise = draw_noise(batch, "gaussian", n_samples, sigma, generator)
        return batch.restore(perturbed_maps(polytope, batch.values, batch.lengths, noise).mean(dim=0))
    return _PerturbedFunction.apply(scores, polytope, sigma, n_samples, lengths, generator)


class PerturbedMaximizer(torch.nn.Module):
    """Module form of :func:`perturbed`; the generator, if any, is shared by every call."""

    def __init__(
        self,
        polytope: Polytope,
        sigma: float = 1.0,
        n_samples: int = 100,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        self.sigma = check_positive(sigma, "sigma")
        self.n_samples = check_count(n_samples, "n_samples")
        self.generator = check_generator(generator)

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return perturbed(scores, self.polytope, self.sigma, self.n_samples, lengths, self.generator)

    def extra_repr(self) -> str:
        return f"polytope={self.polytope!r}, sigma={self.sigma}, n_samples={self.n_samples}"
