r"""Structured attention: the marginals as the layer's output, differentiated by autograd.

Kim, Denton, Hoang and Rush (2017), *Structured Attention Networks*. The layer returns the
marginals of the Gibbs distribution :math:`p_s(z) \propto \exp\langle s, z\rangle` over the
vertices,

.. math:: \mu(s) = \mathbb{E}_{z \sim p_s}[z] = \nabla A(s), \qquad
          A(s) = \log \textstyle\sum_{z \in Z} e^{\langle s, z\rangle},

(softmax on the simplex, sigmoid on the cube) and backpropagates :math:`J_\mu(s)^\top g =
\nabla^2 A(s)\, g` by autograd through :meth:`Polytope.marginals
<spigot.polytopes.Polytope.marginals>`. It needs a polytope with marginals.
"""

from __future__ import annotations

import torch

from spigot._batch import Array
from spigot.autodiff._common import check_gradient, check_polytope, require_marginals
from spigot.polytopes.base import Polytope


def _checked(grad: torch.Tensor) -> torch.Tensor:
    check_gradient(grad)
    return grad


def marginals(scores: Array, polytope: Polytope, lengths: Array | None = None) -> Array:
    r"""The marginals :math:`\mu(s)`, differentiable (structured attention).

    Parameters
    ----------
    scores
        ``(*batch, *event_shape)`` tensor of scores :math:`s`.
    polytope
        A structure with marginals.
    lengths
        Optional ``(*batch,)`` integer lengths; padded outputs and gradients are 0.

    Returns
    -------
    :math:`\mu(s)`, shaped, placed and typed like ``scores`` (numpy in, numpy out, without
    gradient).

    Raises
    ------
    spigot.UnsupportedOperation
        The polytope has no marginals.
    """
    check_polytope(polytope)
    require_marginals(polytope, "structured attention (marginals)")
    mu = polytope.marginals(scores, lengths)
    if isinstance(mu, torch.Tensor) and mu.requires_grad:
        mu.register_hook(_checked)
    return mu


class Marginals(torch.nn.Module):
    """Module form of :func:`marginals` (structured attention)."""

    def __init__(self, polytope: Polytope) -> None:
        super().__init__()
        self.polytope = check_polytope(polytope)
        require_marginals(polytope, "structured attention (marginals)")

    def forward(self, scores: torch.Tensor, lengths: Array | None = None) -> torch.Tensor:
        return marginals(scores, self.polytope, lengths)
