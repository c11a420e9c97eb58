r"""The Gibbs distribution of a structure: sampling and entropy, shared by the families.

For scores :math:`s`, :math:`p_s(z) = \exp(\langle s, z\rangle - \log Z(s))` over the vertices
:math:`z \in Z`. Its entropy is :math:`H(p_s) = \log Z(s) - \langle s, \mu(s)\rangle` with
:math:`\mu = \mathbb{E}_{p_s}[z] = \nabla \log Z`, so it comes from the log-partition and the
marginals that a family already computes. The samplers here are exact:

- one choice per group (simplex, product of simplices, head selection): independent
  categorical draws;
- subsets of at most/exactly ``k`` items: backward sampling through the elementary symmetric
  polynomials' dynamic program;
- dependency trees (and spanning trees, oriented from node 0): sequential conditioning on the
  marginals. Every tree has exactly one arc entering each word, so
  :math:`p(z) = \prod_m p(h_m \mid h_1, \dots, h_{m-1})`, and conditioning on
  :math:`h_m = h` restricts column ``m`` of the scores to that arc; each factor is therefore a
  column of the marginals of the scores restricted so far. Cost: ``n`` marginal computations
  for ``n`` words, each batched over the samples.
"""

from __future__ import annotations

from typing import Callable

import torch

from spigot._word_graphs import arc_mask, word_mask

#: Gap below the smallest score given to excluded arcs: exp(-gap) is exactly 0 in every dtype.
EXCLUDED_GAP = 1e4


def entropy_from(
    log_z: torch.Tensor, scores: torch.Tensor, marginals: torch.Tensor
) -> torch.Tensor:
    r""":math:`\log Z - \langle s, \mu \rangle` per instance ``(B,)``; ``marginals`` are 0 off the valid parts."""
    weighted = torch.where(marginals != 0, scores * marginals, torch.zeros_like(marginals))
    return log_z - weighted.flatten(1).sum(dim=1).to(log_z.dtype)


def one_hot_samples(
    probs: torch.Tensor, n: int, generator: torch.Generator | None
) -> torch.Tensor:
    """``n`` independent one-hot draws ``(n, *probs.shape)`` from the categoricals of ``probs``' last axis.

    Rows of ``probs`` that are all 0 (padding) give all-zero draws.
    """
    flat = probs.detach().reshape(-1, probs.shape[-1]).to(torch.float64)
    empty = flat.sum(dim=1) <= 0
    flat = torch.where(empty[:, None], torch.ones_like(flat), flat.clamp(min=0))
    index = torch.multinomial(flat, n, replacement=True, generator=generator)  # (R, n)
    out = torch.zeros(n, *flat.shape, dtype=probs.dtype, device=probs.device)
    out.scatter_(2, index.T[:, :, None], 1.0)
    out = out * (~empty)[None, :, None].to(probs.dtype)
    return out.reshape(n, *probs.shape)


def repeat_samples(
    scores: torch.Tensor, lengths: torch.Tensor | None, n: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch repeated ``n`` times, sample-major: ``(n * B, ...)`` and its lengths."""
    repeated = scores.detach().repeat(n, *([1] * (scores.ndim - 1)))
    return repeated, None if lengths is None else lengths.repeat(n)


def dependency_samples(
    marginals: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    scores: torch.Tensor,
    lengths: torch.Tensor | None,
    n: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``n`` exact samples ``(n, B, N, N)`` of dependency trees by sequential conditioning.

    ``marginals(scores, lengths)`` gives the arc marginals of the family (one head per word).
    """
    batch, size, _ = scores.shape
    values, lens = repeat_samples(scores, lengths, n)
    count = values.shape[0]
    valid = arc_mask(lens, size, count, values.device)
    words = word_mask(lens, size, count, values.device)
    excluded = values.min() - EXCLUDED_GAP
    rows = torch.arange(size, device=values.device)
    heads = torch.zeros(count, size, dtype=torch.int64, device=values.device)
    with torch.no_grad():
        for m in range(1, size):
            column = marginals(values, lens)[:, :, m]
            column = torch.where(words[:, m : m + 1], column, torch.zeros_like(column))
            draw = one_hot_samples(column, 1, generator)[0]  # (count, N); 0 for a padded word
            heads[:, m] = draw.argmax(dim=1)
            keep = (rows[None, :] == heads[:, m : m + 1]) | ~words[:, m : m + 1]
            values[:, :, m] = torch.where(keep, values[:, :, m], excluded)
    out = torch.zeros(count, size, size, dtype=scores.dtype, device=scores.device)
    out.scatter_(1, heads[:, None, :], 1.0)
    out = out * valid.to(scores.dtype)
    return out.reshape(n, batch, size, size)


def subset_samples(
    scores: torch.Tensor,
    valid: torch.Tensor | None,
    k: int,
    at_most: bool,
    n: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    r"""``n`` exact samples ``(n, B, d)`` of subsets of exactly (or at most) ``k`` valid items.

    Suffix tables :math:`T_i(j) = \log e_j(e^{s_i}, \dots, e^{s_d})` (elementary symmetric
    polynomials over the valid items from ``i`` on); the size is drawn first (at most ``k``:
    :math:`p(j) \propto e^{T_1(j)}`), then item ``i`` is taken with probability
    :math:`e^{s_i + T_{i+1}(r - 1) - T_i(r)}` when ``r`` items remain to be taken.
    """
    batch, d = scores.shape
    s = scores.detach().to(torch.float64)
    log_zero = torch.finfo(torch.float64).min / 8
    if valid is None:
        valid = torch.ones(batch, d, dtype=torch.bool, device=s.device)
    empty = torch.full((batch, 1), log_zero, dtype=s.dtype, device=s.device)
    table = torch.cat([torch.zeros_like(empty), empty.expand(batch, k)], dim=1)  # T_{d+1}
    tables = [table]
    for i in range(d - 1, -1, -1):
        take = torch.cat([empty, table[:, :-1] + s[:, i : i + 1]], dim=1)
        updated = torch.stack([table, take]).logsumexp(dim=0)
        table = torch.where(valid[:, i : i + 1], updated, table)
        tables.append(table)
    tables.reverse()  # tables[i] = T_i, tables[d] = T_{d+1}
    if at_most:
        size_probs = torch.softmax(tables[0], dim=1)
        remaining = one_hot_samples(size_probs, n, generator).argmax(dim=-1).reshape(-1)  # (n * B,)
    else:
        remaining = torch.full((n * batch,), k, dtype=torch.int64, device=s.device)
    out = torch.zeros(n * batch, d, dtype=scores.dtype, device=scores.device)
    rows = torch.arange(n * batch, device=s.device)
    left = valid.flip(1).cumsum(dim=1).flip(1).repeat(n, 1)  # valid items from i on
    for i in range(d):
        here = tables[i].repeat(n, 1)
        after = tables[i + 1].repeat(n, 1)
        r = remaining.clamp(min=1)
        log_p = s[:, i].repeat(n) + after[rows, r - 1] - here[rows, r]
        prob = torch.exp(log_p.clamp(max=0.0))
        prob = torch.where((remaining > 0) & valid[:, i].repeat(n), prob, torch.zeros_like(prob))
        taken = torch.rand(n * batch, generator=generator, dtype=torch.float64, device=s.device) < prob
        taken = taken | ((remaining >= left[:, i]) & (remaining > 0))  # no choice left: rounding-proof
        out[:, i] = taken.to(scores.dtype)
        remaining = remaining - taken.to(torch.int64)
    return out.reshape(n, batch, d)
