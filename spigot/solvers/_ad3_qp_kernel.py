r"""Compiled AD3-QP iterations for CPU tensors, for factor graphs of at-most-one and one-of factors.

The same ADMM as :func:`spigot.solvers.ad3_qp.admm` (see that module for the steps, the
stopping rule and residual balancing), fused into one pass over the factor copies of an
instance per iteration, instance after instance: no temporary tensors, and each instance stops
as soon as it has converged. A factor's subproblem is the projection of its copy onto
:math:`\{q \ge 0, \sum q \le 1\}` (clip, else the simplex) or onto the simplex, :math:`q =
(y - \tau)_+`. The threshold is first guessed from the support of the factor's copy at the
previous iteration, :math:`\tau = (\sum_{j \in S} y_j - 1) / |S|`, and kept when it satisfies
the optimality conditions (:math:`y_j > \tau` exactly for :math:`j \in S`): near convergence
the support no longer changes, and one pass replaces the search. Otherwise Michelot's fixed
point finds it on the entries above :math:`\max_i y_i - 1` (no sort). Both work on values
shifted by the row's maximum, so that the threshold keeps its precision on huge scores.

Copies of padded entries are *pinned*: their multipliers are set to :math:`+\infty`, so that
their input :math:`y = p - \lambda / \rho` is :math:`-\infty` and their copy 0, they add
nothing to the residuals, and the :math:`+\infty` they add to the point update lands on an
entry that is itself fixed at 0; no branch on padding runs per copy.

State (point, multipliers, penalty, iteration counts) lives in arrays the caller owns, so the
run can be continued in chunks of iterations (the wall-clock budget is checked between chunks).
"""

from __future__ import annotations

import numba
import numpy as np

#: Fast-math flags: reassociation and contraction (vectorised sums), never assuming finiteness
#: (padded copies hold -inf).
_FAST = {"reassoc", "contract", "arcp", "nsz", "afn"}
#: Block kind of a one-of factor (the simplex); 0 is an at-most-one factor.
SIMPLEX = 1


@numba.njit(cache=True, fastmath=_FAST)
def admm_chunk(
    x, valid, owner, starts, counts, sizes, kinds,
    p, lam, rho, nit, done, primal, dual,
    iterations, total_iter, tol, check_every, balance, rho_step, rho_min, rho_max, alpha,
):
    """Run up to ``iterations`` more ADMM iterations on every instance not yet ``done``.

    Shapes: ``x``, ``valid``, ``p`` ``(B, D)``; ``owner`` ``(E,)``; ``lam`` ``(B, E)``; ``rho``,
    ``nit``, ``primal``, ``dual`` ``(B,)``; ``done`` ``(B,)`` booleans; block arrays ``(K,)``.
    ``nit`` counts the iterations run so far; an instance stops at ``total_iter``. The
    multipliers of pinned copies (padded entries) are set to ``+inf`` (see the module).
    """
    batch, size = x.shape
    n_copies = owner.shape[0]
    widest = 1
    for k in range(starts.shape[0]):
        widest = max(widest, sizes[k])
    y = np.empty(widest)
    q = np.zeros(n_copies)
    acc = np.empty(size)
    scale = np.empty(size)
    previous = np.empty(n_copies)
    keep = 1.0 - alpha
    for b in range(batch):
        if done[b] or nit[b] >= total_iter:
            continue
        q[:] = 0.0  # no support guess for the first iteration of an instance
        xb = x[b]
        pb = p[b]
        lb = lam[b]
        vb = valid[b]
        degree = np.zeros(size)
        live = 0
        for c in range(n_copies):
            if vb[owner[c]]:
                degree[owner[c]] += 1.0
                live += 1
            else:
                # a pinned copy: y = -inf, so q = 0; it adds +inf to an entry that is pinned at 0
                lb[c] = np.inf
        norm = np.sqrt(max(live, 1))
        r = rho[b]
        for c in range(n_copies):
            previous[c] = pb[owner[c]]
        for i in range(size):
            scale[i] = 1.0 / (1.0 + r * degree[i])
        for _ in range(iterations):
            if nit[b] >= total_iter:
                break
            nit[b] += 1
            inverse = 1.0 / r
            acc[:] = 0.0
            for k in range(starts.shape[0]):
                width = sizes[k]
                kind = kinds[k]
                for f in range(counts[k]):
                    base = starts[k] + f * width
                    top = -np.inf
                    positive = 0.0
                    for j in range(width):
                        c = base + j
                        v = previous[c] - lb[c] * inverse
                        y[j] = v
                        top = max(top, v)
                        positive += max(v, 0.0)
                    shift, tau = 0.0, 0.0
                    if kind == SIMPLEX or positive > 1.0:
                        # the threshold tau on values shifted by the row's maximum (at |y| ~ 1e30,
                        # unshifted values would round the threshold away). First guess: the
                        # support of the previous iteration's copy, kept if it satisfies the
                        # optimality conditions (entries above tau exactly on the support)
                        total, count = 0.0, 0
                        lowest_in, highest_out = np.inf, -np.inf
                        for j in range(width):
                            s = y[j] - top
                            if q[base + j] > 0.0:
                                total += s
                                count += 1
                                lowest_in = min(lowest_in, s)
                            else:
                                highest_out = max(highest_out, s)
                        tau = (total - 1.0) / count if count else 0.0
                        if not (count and lowest_in > tau and highest_out <= tau):
                            # Michelot's fixed point
                            tau = -1.0
                            while True:
                                total, count = 0.0, 0
                                for j in range(width):
                                    s = y[j] - top
                                    if s > tau:
                                        total += s
                                        count += 1
                                new_tau = (total - 1.0) / count
                                if new_tau <= tau:
                                    break
                                tau = new_tau
                        shift = top
                    for j in range(width):
                        c = base + j
                        qj = max((y[j] - shift) - tau, 0.0)
                        q[c] = qj
                        acc[owner[c]] += r * (alpha * qj + keep * previous[c]) + lb[c]
            for i in range(size):
                if not vb[i]:
                    pb[i] = 0.0
                elif degree[i] > 0.0:
                    pb[i] = (xb[i] + acc[i]) * scale[i]
                else:
                    pb[i] = min(max(xb[i], 0.0), 1.0)
            squared_primal, squared_dual = 0.0, 0.0
            for c in range(n_copies):
                point = pb[owner[c]]
                gap = q[c] - point
                lb[c] += r * (alpha * q[c] + keep * previous[c] - point)
                squared_primal += gap * gap
                step = point - previous[c]
                squared_dual += step * step
                previous[c] = point
            if nit[b] % check_every != 0 and nit[b] != total_iter:
                continue
            primal[b] = np.sqrt(squared_primal) / norm
            dual[b] = r * np.sqrt(squared_dual) / norm
            if primal[b] <= tol and dual[b] <= tol:
                done[b] = True
                break
            changed = False
            if primal[b] > balance * dual[b]:
                r = min(r * rho_step, rho_max)
                changed = True
            elif dual[b] > balance * primal[b]:
                r = max(r / rho_step, rho_min)
                changed = True
            if changed:
                for i in range(size):
                    scale[i] = 1.0 / (1.0 + r * degree[i])
        rho[b] = r
