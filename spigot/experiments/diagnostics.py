r"""Why an estimator learns or stalls: measurements of a latent layer on one batch.

For scores :math:`s` (one instance per row of the batch), the argmax :math:`z = \mathrm{map}(s)`
and a downstream loss :math:`L`, :func:`latent_diagnostics` reports four numbers, each averaged
over the batch's instances:

- ``score_norm``: :math:`\|s_b\|`, the norm of the scores over the polytope's variables (the
  scale the argmax and the estimators see);
- ``margin``: how far the argmax is from changing, :math:`\min_i (s_{b, z_i} - \max_{j \ne z_i}
  s_{b,j})` over the structure's choices (for dependency trees: each word's head against its
  best other head; for simplex-like structures: the best choice against the second best);
- ``zero_share``: the share of instances whose surrogate gradient :math:`\hat\nabla_{s_b} L`
  is exactly 0 (SPIGOT's is 0 whenever :math:`-g` lies in the normal cone at :math:`z`);
- ``cosine_ste``: the cosine between the method's surrogate gradient and STE-I's,
  :math:`g = \partial L / \partial z` at the argmax, over the instances where both are non-zero.

A method whose layer passes no gradient (the pipeline) has ``zero_share`` 1 and no
``cosine_ste`` (the key is left out whenever no instance has both gradients non-zero, so that
records stay comparable: NaN is not equal to itself).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from spigot._batch import as_batch
from spigot.autodiff._common import variables_mask
from spigot.experiments.methods import latent_structure
from spigot.polytopes.base import Polytope

#: The keys :func:`latent_diagnostics` returns.
DIAGNOSTICS = ("score_norm", "margin", "zero_share", "cosine_ste")


def latent_diagnostics(
    scores: torch.Tensor,
    lengths: torch.Tensor | None,
    polytope: Polytope,
    latent: torch.nn.Module,
    downstream_loss: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """Score scale, margin, share of zero surrogates and cosine with STE-I on one batch (a dict
    keyed by :data:`DIAGNOSTICS`; ``cosine_ste`` only where defined).

    Parameters
    ----------
    scores
        ``(B, *event)`` scores of the intermediate model (detached inside).
    lengths
        ``(B,)`` lengths or ``None``.
    polytope
        The latent structure.
    latent
        The method's layer, ``(scores, lengths) -> structure`` (a layer that needs the
        downstream loss, such as ``spigot-ce-relaxed``, gets ``downstream_loss``).
    downstream_loss
        ``structure -> scalar loss``, differentiable in the structure, as in training.
    """
    scores = scores.detach()
    batch = as_batch(polytope, scores, lengths)
    variables = variables_mask(batch)
    if variables is None:
        variables = torch.ones(batch.values.shape, dtype=torch.bool, device=scores.device)
    variables = variables.reshape(scores.shape)
    z = polytope.map(scores, lengths).detach()
    at_argmax = z.clone().requires_grad_(True)
    (ste,) = torch.autograd.grad(downstream_loss(at_argmax), at_argmax)
    leaf = scores.clone().requires_grad_(True)
    out = latent_structure(latent, leaf, lengths, downstream_loss)
    if out.requires_grad:
        (surrogate,) = torch.autograd.grad(downstream_loss(out), leaf, allow_unused=True)
        surrogate = torch.zeros_like(leaf) if surrogate is None else surrogate
    else:
        surrogate = torch.zeros_like(leaf)
    flat = (variables * scores).flatten(1)
    surrogate = (variables * surrogate).flatten(1)
    ste = (variables * ste).flatten(1)
    zero = surrogate.abs().amax(dim=1) == 0
    both = ~zero & (ste.abs().amax(dim=1) > 0)
    cosine = torch.nn.functional.cosine_similarity(surrogate[both], ste[both], dim=1)
    values = {
        "score_norm": float(flat.norm(dim=1).mean()),
        "margin": float(_margins(scores, z, variables).mean()),
        "zero_share": float(zero.double().mean()),
    }
    if bool(both.any()):
        values["cosine_ste"] = float(cosine.mean())
    return values


def _margins(scores: torch.Tensor, z: torch.Tensor, variables: torch.Tensor) -> torch.Tensor:
    """Per instance, the smallest gap between a chosen entry and its best competitor.

    Trees (two event axes, a column per word): each word's head against its other heads.
    Otherwise the flattened instance: the lowest chosen score against the highest unchosen one.
    """
    masked = scores.masked_fill(~variables, -math.inf)
    if scores.ndim == 3:  # (B, heads, words): one choice per column
        chosen = (z > 0.5) & variables
        words = chosen.any(dim=1)
        best = (scores * chosen).sum(dim=1)
        other = masked.masked_fill(chosen, -math.inf).amax(dim=1)
        gaps = torch.where(words & torch.isfinite(other), best - other, math.inf)
        margin = gaps.amin(dim=1)
    else:
        flat_scores, flat_mask = masked.flatten(1), variables.flatten(1)
        chosen = (z.flatten(1) > 0.5) & flat_mask
        low = flat_scores.masked_fill(~chosen, math.inf).amin(dim=1)
        high = flat_scores.masked_fill(chosen, -math.inf).amax(dim=1)
        margin = low - high
    return torch.where(torch.isfinite(margin), margin, torch.zeros_like(margin))
