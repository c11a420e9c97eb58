"""Brute-force references for the estimator tests: everything from an explicit vertex list.

None of these use spigot: the Gibbs distribution is summed over enumerated vertices, the MAP is
an argmax over them, and projections come from :func:`reference.hull_projection` (cvxpy).
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, stats

from reference import hull_projection


def gibbs(scores: np.ndarray, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Marginals :math:`\mu = \mathbb{E}[z]` and covariance :math:`\mathrm{Cov}[z] = \nabla^2 A(s)`.

    ``p(z) ∝ exp<s, z>`` over the rows of ``vertices`` ``(V, *scores.shape)``; the covariance is
    the Jacobian of the marginals, flattened ``(n, n)``.
    """
    flat = vertices.reshape(len(vertices), -1)
    logits = flat @ scores.ravel()
    prob = np.exp(logits - logits.max())
    prob /= prob.sum()
    mean = prob @ flat
    covariance = (flat * prob[:, None]).T @ flat - np.outer(mean, mean)
    return mean.reshape(scores.shape), covariance


def brute_map(scores: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """The highest-scoring row of ``vertices``."""
    flat = vertices.reshape(len(vertices), -1)
    return vertices[int(np.argmax(flat @ scores.ravel()))]


def reference_step_size(g: np.ndarray, step: str, eta: float, threshold: float | None) -> float:
    """The step multiplier ``eta_b`` of one instance, written out from the rules' definitions."""
    norm = float(np.sqrt(np.sum(np.asarray(g, dtype=np.float64) ** 2)))
    if step == "fixed":
        return eta
    if step == "normalized":
        return eta / norm
    return min(eta, threshold / norm)


def spigot_gradient(z: np.ndarray, g: np.ndarray, eta_b: float, vertices: np.ndarray) -> np.ndarray:
    """SPIGOT: ``z - Proj(z - eta_b g)`` with the cvxpy projection onto the hull of ``vertices``."""
    return z - hull_projection(z - eta_b * g, vertices)


def spigot_ce_gradient(scores: np.ndarray, g: np.ndarray, eta: float, vertices: np.ndarray) -> np.ndarray:
    """SPIGOT-CE: ``mu(s) - Proj(mu(s) - eta g)``, brute-force marginals and a cvxpy projection."""
    mu, _ = gibbs(scores, vertices)
    return mu - hull_projection(mu - eta * g, vertices)


def spigot_eg_gradient(scores: np.ndarray, g: np.ndarray, eta: float, vertices: np.ndarray) -> np.ndarray:
    """SPIGOT-EG: ``mu(s) - mu(s - eta g)`` with brute-force marginals."""
    return gibbs(scores, vertices)[0] - gibbs(scores - eta * g, vertices)[0]


def gaussian_argmax_probabilities(scores: np.ndarray, sigma: float) -> np.ndarray:
    r"""``P(argmax_j (s_j + sigma Z_j) = i)`` for i.i.d. standard normal ``Z``, by quadrature.

    .. math:: P_i = \int \varphi(t) \prod_{j \ne i} \Phi\big((s_i - s_j)/\sigma + t\big)\, dt .
    """
    out = np.empty(len(scores))
    for i, si in enumerate(scores):
        others = np.delete(scores, i)

        def density(t: float) -> float:
            return stats.norm.pdf(t) * np.prod(stats.norm.cdf((si - others) / sigma + t))

        out[i] = integrate.quad(density, -12.0, 12.0, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    return out


def central_jacobian(fn, x: np.ndarray, step: float) -> np.ndarray:
    """``(n_out, n_in)`` central finite-difference Jacobian of ``fn`` at ``x`` (flattened)."""
    columns = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = step
        plus, minus = fn(x + e.reshape(x.shape)), fn(x - e.reshape(x.shape))
        columns.append((np.ravel(plus) - np.ravel(minus)) / (2 * step))
    return np.stack(columns, axis=1)
