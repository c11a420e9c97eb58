r"""Batched, differentiable marginals of Gibbs distributions over trees (torch).

For scores :math:`s` and :math:`p_s(z) \propto \exp\langle s, z\rangle` over trees :math:`z`,
the marginals are :math:`\mu = \mathbb{E}_{p_s}[z] = \nabla_s \log Z(s)`.

Non-projective trees: the matrix-tree theorem (Koo et al. 2007; Smith and Smith 2007)
---------------------------------------------------------------------------------
With arc weights :math:`w_{hm} = e^{s_{hm}}` and the Laplacian over the words,
:math:`L_{mm} = \sum_h w_{hm}`, :math:`L_{hm} = -w_{hm}` (:math:`h \ne m`, both words):

- multi-root: :math:`Z = \det L` (the root's arcs enter only the diagonal), so
  :math:`\mu_{hm} = w_{hm}\,(L^{-1}_{mm} - [h \ne 0]\, L^{-1}_{mh})`;
- single-root: the root's arcs are left out of the diagonal and replace the first row,
  :math:`\hat L_{1m} = w_{0m}`; :math:`Z = \det \hat L` and, from
  :math:`\partial \log\det A / \partial A_{ij} = A^{-1}_{ji}`,
  :math:`\mu_{hm} = w_{hm}\,([m \ne 1]\,\hat L^{-1}_{mm} - [h \ne 1]\,\hat L^{-1}_{mh})` for
  words and :math:`\mu_{0m} = w_{0m}\,\hat L^{-1}_{m1}`.

Every tree has exactly one arc entering each word, so subtracting the column maximum
:math:`\max_h s_{hm}` from column ``m`` multiplies :math:`Z` by a constant and leaves
:math:`\mu` unchanged; after it every column of :math:`w` has largest entry 1, which keeps the
Laplacian well scaled. Padded words get an identity block, which leaves the determinant and
the valid block of the inverse unchanged.

Scaling does not save every instance: when a group of words prefer each other as heads (their
best heads form a cycle) and every arc into the group scores far lower, the diagonal
:math:`L_{mm} = \sum_h w_{hm}` rounds the tiny weights away and :math:`L` becomes singular to
working precision (score gaps of about 37 in float64, 16 in float32). The inverse then gives
marginals that are silently wrong, not NaN. Every instance is therefore checked: its marginals
must lie in :math:`[0, 1]` and sum to 1 over each word's heads, to within 1e-6 in float64 (1e-3
in float32), and the 1-norm condition number of :math:`L` must leave at least one accurate digit;
an instance that fails is recomputed by the accurate path below.

Accurate path: GTH elimination (Grassmann, Taksar and Heyman 1985)
--------------------------------------------------------------------
:math:`L` is an M-matrix whose column ``j`` exceeds the sum of its off-diagonal magnitudes
by :math:`r_j = w_{0j}` (multi-root). Gaussian elimination keeps that form, and it can be run
without a single subtraction: with off-diagonal magnitudes :math:`a_{ij} = -L_{ij}`, the pivot
is :math:`p_k = r_k + \sum_{i > k} a_{ik}`, and eliminating it updates
:math:`a_{ij} \mathrel{+}= a_{ik} a_{kj} / p_k` and :math:`r_j \mathrel{+}= a_{kj} r_k / p_k`.
So :math:`\log Z = \sum_k \log p_k` holds to relative working precision for any spread of the
weights that float64 represents (score gaps up to about 350; beyond, the certified one-hot
limit of :mod:`spigot.polytopes._tree_limits` when the best tree is unique and far enough ahead,
as with scores of scale ``1e30``, else a :class:`~spigot.NumericalError`), and the marginals are its gradient (autograd through the elimination, which also
gives their own derivatives). Single-root trees have one root child ``m``:
:math:`Z = \sum_m w_{0m} T_m`, where :math:`T_m = \det L^{(m)}` weighs the trees over the
words rooted at ``m`` (:math:`L^{(m)}`: the Laplacian without the root's arcs, word ``m``'s row
and column removed, an M-matrix with excess :math:`r_j = w_{mj}`). By the Markov chain tree
theorem, :math:`T` is proportional to the stationary vector of the chain that moves from ``m``
to ``h`` at rate :math:`w_{hm}`, which GTH state reduction computes without subtraction too;
one minor, :math:`T_1`, fixes the scale. :math:`O(n^3)` per instance, like the inverse.

Spanning trees: Kirchhoff's theorem through the same code
---------------------------------------------------------
Orienting every spanning tree away from node 0 is a bijection onto the arborescences rooted at 0
of the symmetric digraph :math:`s_{ij} = s_{ji}`, each arc of which enters its child once; so the
undirected marginal of edge :math:`\{i, j\}` is :math:`\mu_{i \to j} + \mu_{j \to i}` of the
multi-root computation above.

Projective trees: inside-outside (Eisner 1996) in log space
------------------------------------------------------------
The inside pass of Eisner's algorithm with :math:`(\mathrm{logsumexp}, +)` gives
:math:`\log Z`, and autograd's backward pass through it is the outside pass. Charts are kept as
lists of diagonals stacked by start (or, reversed, by end) position so that every width is one
batched ``logsumexp``; impossible items hold a large negative finite number rather than
:math:`-\infty`, so that gradients stay finite.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import pad

from spigot.errors import NumericalError
from spigot._word_graphs import arc_mask, word_mask
from spigot.polytopes._shifted_scores import check_marginals, shift_by_max
from spigot.polytopes._tree_limits import one_hot_limit


def working_dtype(scores: torch.Tensor) -> torch.dtype:
    """Float64 on the CPU (cheap there); at least float32 elsewhere."""
    if scores.device.type == "cpu":
        return torch.float64
    return torch.promote_types(scores.dtype, torch.float32)


def matrix_tree_marginals(
    scores: torch.Tensor, lengths: torch.Tensor | None, single_root: bool
) -> torch.Tensor:
    """Arc marginals of non-projective dependency trees ``(B, N, N)``; differentiable.

    The inverse of the Laplacian gives them for the whole batch; an instance whose result fails
    the accuracy checks of the module docstring is recomputed by GTH elimination.
    """
    batch, size, _ = scores.shape
    mu, inaccurate = _inverse_marginals(scores, lengths, single_root)
    if not bool(inaccurate.any()):
        return mu.to(scores.dtype)
    bad = torch.nonzero(inaccurate).flatten()
    # Rerun the batch with the failing instances' scores replaced by constants, so that no
    # gradient flows through their ill-conditioned inverses (0 * inf would make it NaN).
    safe = torch.where(inaccurate[:, None, None], torch.zeros_like(scores).detach(), scores)
    mu, _ = _inverse_marginals(safe, lengths, single_root)
    bad_lengths = None if lengths is None else lengths.to(scores.device)[bad]
    accurate = _gth_marginals(scores[bad], bad_lengths, single_root, bad)
    fixed = torch.zeros(batch, size, size, dtype=mu.dtype, device=mu.device).index_put((bad,), accurate.to(mu.dtype))
    return torch.where(inaccurate[:, None, None], fixed, mu).to(scores.dtype)


def _inverse_marginals(
    scores: torch.Tensor, lengths: torch.Tensor | None, single_root: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Marginals from the inverse Laplacian (working dtype) and a ``(B,)`` mask of inaccurate ones."""
    batch, size, _ = scores.shape
    valid = arc_mask(lengths, size, batch, scores.device)
    s = scores.to(working_dtype(scores)).masked_fill(~valid, float("-inf"))
    top = s.amax(dim=1, keepdim=True).detach()
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    weights = torch.exp(s - top)  # exactly 0 off the arcs
    words = weights[:, 1:, 1:]
    root = weights[:, 0, 1:]
    padded = ~word_mask(lengths, size, batch, scores.device)[:, 1:]
    degree = words.sum(dim=1) + padded.to(weights.dtype)
    if single_root:
        laplacian = torch.diag_embed(degree) - words
        laplacian = torch.cat([root[:, None, :], laplacian[:, 1:, :]], dim=1)
    else:
        laplacian = torch.diag_embed(degree + root) - words
    inverse, info = torch.linalg.inv_ex(laplacian)
    diagonal = torch.diagonal(inverse, dim1=-2, dim2=-1)  # (B, n): inverse[m, m]
    transposed = inverse.transpose(-1, -2)  # [h, m] -> inverse[m, h]
    if single_root:
        first = torch.ones(size - 1, dtype=weights.dtype, device=scores.device)
        first[0] = 0.0
        mu_words = words * (diagonal * first)[:, None, :] - words * transposed * first[None, :, None]
        mu_root = root * inverse[:, :, 0]
    else:
        mu_words = words * (diagonal[:, None, :] - transposed)
        mu_root = root * diagonal
    # place the word block at [1:, 1:] and the root's arcs at [0, 1:]
    mu = pad(mu_words, (1, 0, 1, 0)) + pad(mu_root[:, None, :], (1, 0, 0, size - 1))
    return mu, _inaccurate(mu.detach(), laplacian.detach(), inverse.detach(), info, padded)


#: Accepted error of the marginals from the inverse, by working dtype: the largest deviation of a
#: word's head marginals from summing to 1, and of an entry from [0, 1].
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3}


def _inaccurate(
    mu: torch.Tensor, laplacian: torch.Tensor, inverse: torch.Tensor, info: torch.Tensor, padded: torch.Tensor
) -> torch.Tensor:
    """``(B,)``: the instances whose marginals fail a necessary condition or may have lost precision.

    Each word's head marginals must sum to 1 and each entry lie in [0, 1], within
    :data:`TOLERANCE`: measured on random arc scores (scales 5 to 30, 25 words), the largest error
    of an entry stayed within a factor of 2 of the largest error of those sums, from 1e-12 to
    O(1). As a backstop the 1-norm condition number must leave at least one accurate digit. Every
    comparison is written so that NaN fails it; a NaN or infinite inverse also fails the last one.
    """
    eps = torch.finfo(mu.dtype).eps
    tol = TOLERANCE.get(mu.dtype, 1e-3)
    flat = mu.flatten(1)
    condition = _norm_1(laplacian) * _norm_1(inverse)
    return (
        (info != 0)
        | ~_one_head_each(mu, padded, tol)
        | ~(flat.amin(dim=1) >= -tol)
        | ~(flat.amax(dim=1) <= 1.0 + tol)
        | ~(condition * eps <= 0.1)
    )


def _one_head_each(mu: torch.Tensor, padded: torch.Tensor, tol: float) -> torch.Tensor:
    """``(B,)``: every word's head marginals ``mu[:, :, m]`` sum to 1 within ``tol`` (NaN fails)."""
    heads = mu.sum(dim=1)[:, 1:].masked_fill(padded, 1.0)
    return ((heads - 1.0).abs() <= tol).all(dim=1)


def _norm_1(matrices: torch.Tensor) -> torch.Tensor:
    """Induced 1-norms (largest absolute column sum) of ``(B, n, n)`` matrices (0 when n is 0)."""
    if matrices.shape[-1] == 0:
        return matrices.new_zeros(matrices.shape[:-2])
    return matrices.abs().sum(dim=-2).amax(dim=-1)


def _gth_log_det(a: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``log det`` of M-matrices ``(K, n, n)`` given their off-diagonal magnitudes ``a`` (its
    diagonal is ignored) and column excesses ``r`` ``(K, n)``, by GTH elimination (no subtraction).

    A pivot that underflows to 0 gives ``-inf``.
    """
    log_det = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
    for _ in range(a.shape[-1]):  # the diagonal of ``a`` is carried along but never read
        below = a[:, 1:, 0]  # a_ik, i > k
        right = a[:, 0, 1:]  # a_kj, j > k
        pivot = r[:, 0] + below.sum(dim=-1)
        log_det = log_det + torch.log(pivot)
        a = a[:, 1:, 1:] + below[:, :, None] * right[:, None, :] / pivot[:, None, None]
        r = r[:, 1:] + right * (r[:, :1] / pivot[:, None])
    return log_det


def _gth_log_partition(scores: torch.Tensor, lengths: torch.Tensor | None, single_root: bool) -> torch.Tensor:
    """``log Z`` ``(K,)`` of arborescences by GTH elimination; scores ``(K, N, N)`` (float64).

    Padded words get an excess of 1 and no arcs, so they add pivots of 1 (and, single-root, are
    transient states of the chain).
    """
    count, size, _ = scores.shape
    n = size - 1
    device = scores.device
    valid = arc_mask(lengths, size, count, device)
    masked = scores.masked_fill(~valid, float("-inf"))
    top = masked.amax(dim=1, keepdim=True).detach()
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    log_weights = masked - top  # column maximum 0, -inf off the arcs
    weights = torch.exp(log_weights)
    offset = top[:, 0, 1:].sum(dim=-1)
    words = weights[:, 1:, 1:]  # [h, m] between words
    padded = (~word_mask(lengths, size, count, device)[:, 1:]).to(scores.dtype)
    if not single_root:
        return offset + _gth_log_det(words, weights[:, 0, 1:] + padded)
    if n == 1:
        return offset + log_weights[:, 0, 1]
    # the chain moves from word m to word h at rate w_{hm}; a padded word leaves for word 1 at
    # rate 1 and is never entered, so it is transient and leaves the others' vector unchanged
    rates = words.transpose(-1, -2) + padded[:, :, None] * (torch.arange(n, device=device) == 0).to(scores.dtype)
    stationary = _gth_stationary(rates)  # proportional to T_m, first entry 1
    log_first = _gth_log_det(words[:, 1:, 1:], words[:, 0, 1:] + padded[:, 1:])  # log T_1
    return offset + log_first + torch.log((weights[:, 0, 1:] * stationary).sum(dim=-1))


def _gth_stationary(rates: torch.Tensor) -> torch.Tensor:
    r"""Stationary vectors ``(K, n)``, scaled so that the first entry is 1, of the Markov chains
    with off-diagonal transition rates ``rates[:, i, j]`` (``i -> j``; the diagonal is ignored).

    GTH state reduction (Grassmann, Taksar and Heyman 1985): eliminate the last state, sending
    its rates on in proportion, :math:`q_{ij} \mathrel{+}= q_{ik} q_{kj} / s_k` with
    :math:`s_k = \sum_{j < k} q_{kj}`; then :math:`\pi_k = \sum_{i < k} \pi_i q_{ik} / s_k`.
    No subtraction anywhere.
    """
    q = rates
    into: list[torch.Tensor] = []  # q_{ik}, i < k, when state k is eliminated (last first)
    out: list[torch.Tensor] = []  # s_k
    for k in range(rates.shape[-1] - 1, 0, -1):
        leaving = q[:, k, :k]
        total = leaving.sum(dim=-1)
        entering = q[:, :k, k]
        into.append(entering)
        out.append(total)
        q = q[:, :k, :k] + entering[:, :, None] * leaving[:, None, :] / total[:, None, None]
    pi = [torch.ones(rates.shape[0], dtype=rates.dtype, device=rates.device)]
    for entering, total in zip(reversed(into), reversed(out)):
        pi.append((torch.stack(pi, dim=1) * entering).sum(dim=-1) / total)
    return torch.stack(pi, dim=1)


def _gth_marginals(
    scores: torch.Tensor, lengths: torch.Tensor | None, single_root: bool, indices: torch.Tensor
) -> torch.Tensor:
    """Marginals ``(K, N, N)`` as the gradient of the GTH ``log Z``, in float64 on any device.

    Differentiable (the gradient is taken with ``create_graph``) when ``scores`` requires grad.
    Raises :class:`~spigot.NumericalError` naming the instances (``indices``: their places in
    the caller's batch) whose result even
    float64 cannot hold: tree weights that underflow to 0, or pivots below about 1e-154 (score
    gaps beyond about 350) that overflow the squares in the gradient.
    """
    s = scores.to(torch.float64)
    mu = _gth_gradient(s, lengths, single_root)
    padded = ~word_mask(lengths, s.shape[-1], s.shape[0], s.device)[:, 1:]
    failed = ~torch.isfinite(mu.detach()).flatten(1).all(dim=1) | ~_one_head_each(mu.detach(), padded, 1e-8)
    if bool(failed.any()):
        limits, limited = _limits(s, lengths, single_root, failed)
        if bool(limited.any()):
            # rerun with the limited instances' scores replaced by constants, so that no NaN of
            # their elimination reaches the gradient (0 * NaN through torch.where)
            safe = torch.where(limited[:, None, None], torch.zeros_like(s).detach(), s)
            mu = torch.where(limited[:, None, None], limits + 0.0 * s, _gth_gradient(safe, lengths, single_root))
            failed = failed & ~limited
    if bool(failed.any()):
        raise NumericalError(
            "matrix-tree marginals are undefined in floating point for instance(s) "
            f"{indices[failed].tolist()[:5]}: the arc scores span too widely for float64 (tree "
            "weights below about 1e-154 of the best, score gaps beyond about 350, or underflowing "
            "to 0 beyond about 700); keep the scores on a bounded scale (normalise or clip them)"
        )
    return mu


def _gth_gradient(s: torch.Tensor, lengths: torch.Tensor | None, single_root: bool) -> torch.Tensor:
    """The gradient of the GTH ``log Z`` (with ``create_graph`` when ``s`` requires grad)."""
    with torch.enable_grad():
        leaf = s if s.requires_grad else s.detach().requires_grad_(True)
        log_z = _gth_log_partition(leaf, lengths, single_root)
        (mu,) = torch.autograd.grad(log_z.sum(), leaf, create_graph=s.requires_grad)
    return mu


def _limits(
    scores: torch.Tensor, lengths: torch.Tensor | None, single_root: bool, failed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The certified one-hot limits of the failed instances, and which of them have one.

    See :mod:`spigot.polytopes._tree_limits`. The limit is constant in the scores (its true
    derivative is below float64's resolution).
    """
    size = scores.shape[-1]
    host = scores.detach().cpu().numpy()
    limits = torch.zeros_like(scores).detach()
    limited = torch.zeros_like(failed)
    for b in torch.nonzero(failed).flatten().tolist():
        nodes = size if lengths is None else int(lengths[b]) + 1
        vertex = one_hot_limit(np.ascontiguousarray(host[b, :nodes, :nodes]), single_root)
        if vertex is not None:
            limits[b, :nodes, :nodes] = torch.from_numpy(vertex).to(limits)
            limited[b] = True
    return limits, limited


def spanning_tree_marginals(scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Edge marginals of undirected spanning trees over ``lengths`` nodes, upper triangle ``(B, n, n)``."""
    upper = torch.triu(scores, diagonal=1)
    symmetric = upper + upper.transpose(-1, -2)
    words = None if lengths is None else lengths - 1  # node 0 plays the root
    directed = matrix_tree_marginals(symmetric, words, single_root=False)
    return torch.triu(directed + directed.transpose(-1, -2), diagonal=1)


def eisner_log_partition(
    scores: torch.Tensor, lengths: torch.Tensor | None, single_root: bool
) -> torch.Tensor:
    r"""``log Z`` of projective dependency trees, ``(B,)``; differentiable.

    Arc ``h -> m`` has score ``scores[:, h, m]``; instance ``b`` covers nodes ``0..n_b``
    (spans inside a prefix never read scores outside it).
    """
    batch, size, _ = scores.shape
    s = scores.to(working_dtype(scores))
    neg = torch.finfo(s.dtype).min / (8 * size)  # stays finite through every sum of the charts
    # Every tree has n_b arcs, so shifting an instance's arc scores by a constant (its largest
    # arc score) changes log Z by n_b times it and the marginals not at all; on shifted scores
    # the charts' sums keep the differences that huge scores (s + 1e17) would absorb.
    valid = arc_mask(lengths, size, batch, s.device)
    shifted = shift_by_max(s, valid, floor=neg)
    s = shifted.values
    device = s.device
    ends = torch.full((batch,), size - 1, dtype=torch.int64, device=device)
    if lengths is not None:
        ends = lengths.to(device)
    zero = torch.zeros(batch, size, 1, dtype=s.dtype, device=device)
    # by start: X_start[:, s, k] = X[s, s + k]; by end, reversed: X_end[:, t, j] = X[t - (w - j), t]
    cr_start, cl_start = zero, zero
    ir_start = torch.full_like(zero, neg)  # width-0 placeholder
    cr_end, cl_end = zero, zero  # widths w-1 .. 0 when width w is being computed
    il_end = s.new_zeros(batch, size, 0)  # widths w .. 1 once width w is added
    for width in range(1, size):
        count = size - width
        pad_start = torch.full((batch, width), neg, dtype=s.dtype, device=device)
        inner = torch.logsumexp(cr_start[:, :count, :width] + cl_end[:, width:, :width], dim=-1)
        arc_right = inner + torch.diagonal(s, offset=width, dim1=-2, dim2=-1)
        arc_left = inner + torch.diagonal(s, offset=-width, dim1=-2, dim2=-1)
        arc_left = torch.cat([arc_left.new_full((batch, 1), neg), arc_left[:, 1:]], dim=1)  # root is no modifier
        ir_start = torch.cat([ir_start, torch.cat([arc_right, pad_start], dim=1)[:, :, None]], dim=2)
        il_end = torch.cat([torch.cat([pad_start, arc_left], dim=1)[:, :, None], il_end], dim=2)
        complete_right = torch.logsumexp(ir_start[:, :count, 1 : width + 1] + cr_end[:, width:, :width], dim=-1)
        complete_left = torch.logsumexp(cl_start[:, :count, :width] + il_end[:, width:, :width], dim=-1)
        cr_start = torch.cat([cr_start, torch.cat([complete_right, pad_start], dim=1)[:, :, None]], dim=2)
        cl_start = torch.cat([cl_start, torch.cat([complete_left, pad_start], dim=1)[:, :, None]], dim=2)
        cr_end = torch.cat([torch.cat([pad_start, complete_right], dim=1)[:, :, None], cr_end], dim=2)
        cl_end = torch.cat([torch.cat([pad_start, complete_left], dim=1)[:, :, None], cl_end], dim=2)
    rows = torch.arange(batch, device=device)
    restored = ends.to(s.dtype) * shifted.shift.reshape(-1)  # n_b arcs, each shifted; no gradient
    if not single_root:
        return cr_start[rows, 0, ends] + restored
    heads = torch.arange(size, device=device)
    widths = (ends[:, None] - heads[None, :]).clamp(min=0)
    right = cr_start.gather(2, widths[:, :, None]).squeeze(2)  # Cr[m, n_b]
    left = cl_start[:, 1, :].roll(1, dims=1)  # Cl[1, m] at index m
    total = s[:, 0, :] + left + right
    child = (heads >= 1)[None, :] & (heads[None, :] <= ends[:, None])
    return torch.logsumexp(total.masked_fill(~child, neg), dim=1) + restored


def eisner_marginals(scores: torch.Tensor, lengths: torch.Tensor | None, single_root: bool) -> torch.Tensor:
    """Arc marginals of projective dependency trees ``(B, N, N)``: the gradient of ``log Z``."""
    with torch.enable_grad():
        leaf = scores if scores.requires_grad else scores.detach().requires_grad_(True)
        log_z = eisner_log_partition(leaf, lengths, single_root)
        (mu,) = torch.autograd.grad(log_z.sum(), leaf, create_graph=scores.requires_grad)
    batch, size, _ = scores.shape
    valid = arc_mask(lengths, size, batch, scores.device)
    mu = mu * valid
    words = torch.full((batch,), size - 1) if lengths is None else lengths
    check_marginals(mu, words.to(scores.device), False, "projective-tree")
    return mu
