r"""Noise distributions for perturb-and-MAP estimators, reproducible with a ``torch.Generator``.

- ``"gaussian"``: standard normal :math:`\mathcal{N}(0, 1)` entries (perturbed maximizers,
  Berthet et al. 2020);
- ``"gumbel"``: standard Gumbel :math:`G = -\log(-\log U)`, :math:`U \sim \mathcal{U}(0, 1)`;
  perturbing every score with i.i.d. Gumbel noise samples the Gibbs distribution on the
  simplex exactly (the Gumbel-max trick);
- ``"sum-of-gamma"``: the Sum-of-Gamma noise of Niepert, Minervini and Franceschi (2021),

  .. math:: \mathrm{SoG}(k, s) = \frac{1}{k}\Big(\sum_{i=1}^{s} \Gamma\big(\tfrac1k, \tfrac{k}{i}\big)
            - \log s\Big)

  (:math:`\Gamma(\text{shape}, \text{scale})`). A sum of ``k`` independent copies tends to a
  standard Gumbel as :math:`s \to \infty`, so perturbing every score of a structure whose
  vertices have ``k`` ones (a ``k``-subset) with it perturbs the score of every structure with
  approximately Gumbel noise. Its mean is :math:`(H_s - \log s)/k` and its variance
  :math:`\sum_{i \le s} i^{-2} / k`.

Samples are drawn on the generator's device (the target device without one) in float64 and
returned on ``device`` with ``dtype``. Gamma variates use the inverse CDF of uniforms from the
generator, so that a seeded generator reproduces them.
"""

from __future__ import annotations

import math

import torch
from scipy.special import gammaincinv

#: The noise distributions :func:`sample_noise` knows.
NOISES = ("gaussian", "gumbel", "sum-of-gamma")


def _uniform(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Float64 uniforms in the open interval (0, 1)."""
    where = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=where, dtype=torch.float64)
    tiny = torch.finfo(torch.float64).tiny
    return u.clamp(min=tiny, max=1.0 - torch.finfo(torch.float64).eps / 2)


def gaussian_noise(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal float64 samples of ``shape``."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=torch.float64)


def gumbel_noise(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel float64 samples of ``shape``: :math:`-\\log(-\\log U)`."""
    return -torch.log(-torch.log(_uniform(shape, device, generator)))


def sum_of_gamma_noise(
    shape: tuple[int, ...],
    k: int,
    terms: int,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    r"""Sum-of-Gamma float64 samples :math:`\mathrm{SoG}(k, s)` of ``shape``, ``s = terms``."""
    u = _uniform((terms, *shape), device, generator)
    # Gamma(1/k, scale k/i) by inversion: scale * P^{-1}(1/k, u), P the regularised lower gamma.
    standard = torch.from_numpy(gammaincinv(1.0 / k, u.cpu().numpy())).to(u.device)
    scales = k / torch.arange(1, terms + 1, dtype=torch.float64, device=u.device)
    total = (standard * scales.reshape(-1, *([1] * len(shape)))).sum(dim=0)
    return (total - math.log(terms)) / k


def sample_noise(
    kind: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | None = None,
    k: int = 1,
    terms: int = 10,
) -> torch.Tensor:
    """Samples of the noise ``kind`` (one of :data:`NOISES`), on ``device`` with ``dtype``.

    ``k`` and ``terms`` are the parameters of the Sum-of-Gamma noise and are ignored otherwise.
    """
    if kind == "gaussian":
        noise = gaussian_noise(shape, device, generator)
    elif kind == "gumbel":
        noise = gumbel_noise(shape, device, generator)
    elif kind == "sum-of-gamma":
        noise = sum_of_gamma_noise(shape, k, terms, device, generator)
    else:
        raise ValueError(f"noise must be one of {NOISES}, got {kind!r}")
    return noise.to(device=device, dtype=dtype)


def check_generator(generator: object) -> torch.Generator | None:
    """Validate ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be None or a torch.Generator, got {type(generator).__name__}")
    return generator
