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
returned on ``device`` with ``dtype``. Gamma variates are drawn by Marsaglia and Tsang's
rejection method from the generator's normals and uniforms, so that a seeded generator
reproduces them (``torch.distributions.Gamma`` takes no generator).
"""

from __future__ import annotations

import math

import torch

#: The noise distributions :func:`sample_noise` knows.
NOISES = ("gaussian", "gumbel", "sum-of-gamma")


def _uniform(
    shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Float64 uniforms in the open interval (0, 1)."""
    where = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=where, dtype=torch.float64)
    tiny = torch.finfo(torch.float64).tiny
    return u.clamp(min=tiny, max=1.0 - torch.finfo(torch.float64).eps / 2)


def gaussian_noise(
    shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Standard normal float64 samples of ``shape``."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=torch.float64)


def gumbel_noise(
    shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    r"""Standard Gumbel float64 samples of ``shape``: :math:`-\log(-\log U)`."""
    return -torch.log(-torch.log(_uniform(shape, device, generator)))


def standard_gamma(
    shape: tuple[int, ...],
    concentration: float,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    r"""Float64 :math:`\Gamma(\alpha, 1)` samples, :math:`\alpha` = ``concentration`` > 0.

    Marsaglia and Tsang (2000): for :math:`a = \alpha + 1 \ge 1`, with :math:`d = a - 1/3`,
    :math:`c = 1/\sqrt{9d}`, :math:`X \sim \mathcal{N}(0, 1)` and :math:`v = (1 + cX)^3`,
    accept :math:`dv` when :math:`v > 0` and :math:`\log U < X^2/2 + d - dv + d\log v`
    (over 95% of proposals are accepted); then :math:`\Gamma(\alpha) = \Gamma(\alpha + 1)\,
    U'^{1/\alpha}` (Stuart's boost, exact for every :math:`\alpha > 0`).
    """
    d = concentration + 1.0 - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    where = generator.device if generator is not None else device
    out = torch.empty(shape, dtype=torch.float64, device=where).reshape(-1)
    pending = torch.arange(out.numel(), device=where)
    while pending.numel():
        x = torch.randn(pending.numel(), generator=generator, device=where, dtype=torch.float64)
        u = _uniform((pending.numel(),), device, generator)
        v = (1.0 + c * x) ** 3
        positive = v > 0
        log_v = torch.log(torch.where(positive, v, torch.ones_like(v)))
        accept = positive & (torch.log(u) < 0.5 * x**2 + d - d * v + d * log_v)
        out[pending[accept]] = d * v[accept]
        pending = pending[~accept]
    boost = _uniform((out.numel(),), device, generator) ** (1.0 / concentration)
    return (out * boost).reshape(shape)


def sum_of_gamma_noise(
    shape: tuple[int, ...],
    k: int,
    terms: int,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    r"""Sum-of-Gamma float64 samples :math:`\mathrm{SoG}(k, s)` of ``shape``, ``s = terms``."""
    standard = standard_gamma((terms, *shape), 1.0 / k, device, generator)  # Gamma(1/k, 1)
    scales = k / torch.arange(1, terms + 1, dtype=torch.float64, device=standard.device)
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
