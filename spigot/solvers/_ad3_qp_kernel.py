r"""Compiled AD3-QP iterations for CPU tensors, for factor graphs of at-most-one and one-of factors.

The same ADMM as :func:`spigot.solvers.ad3_qp.admm` (see that module for the steps, the
stopping rule and residual balancing), fused into one pass over the factor copies of an
instance per iteration, instance after instance: no temporary tensors, and each instance stops
as soon as it has converged. A factor's subproblem is the projection of its copy onto
:math:`\{q \ge 0, \sum q \le 1\}` (clip, else the simplex) or onto the simplex; the simplex
threshold comes from Michelot's fixed point on the entries above :math:`\max_i y_i - 1` (no
sort). Copies of padded entries stay at 0 and are not counted in the residuals.

State (point, multipliers, penalty, iteration counts) lives in arrays the caller owns, so the
run can be continued in chunks of iterations (the wall-clock budget is checked between chunks).
"""

from __future__ import annotations

import numba
import numpy as np

#: Fast-math flags: reassociation and contraction (vectorised sums), never assuming finiteness
#: (padded copies hold -inf).
_FAST = {"reassoc", "contract", "arcp", "nsz", "afn"}
#: Block kinds of the kernel.
AT_MOST_ONE, SIMPLEX = 0, 1


@numba.njit(cache=True, fastmath=_FAST)
def _project_row(y, out, size, kind):
    """Project ``y[:size]`` onto {q >= 0, sum q <= 1} (kind 0) or the simplex (kind 1) into ``out``."""
    if kind == AT_MOST_ONE:
        total = 0.0
        for j in range(size):
            total += max(y[j], 0.0)
        if total <= 1.0:
            for j in range(size):
                out[j] = max(y[j], 0.0)
            return
    # the threshold on values shifted by the row's maximum: at |y| ~ 1e30, y_max - 1 rounds to
    # y_max itself and the unshifted search would find no entry above it
    top = -np.inf
    for j in range(size):
        top = max(top, y[j])
    tau = -1.0
    while True:
        total, count = 0.0, 0
        for j in range(size):
            shifted = y[j] - top
            if shifted > tau:
                total += shifted
                count += 1
        new_tau = (total - 1.0) / count
        if new_tau <= tau:
            break
        tau = new_tau
    for j in range(size):
        out[j] = max(y[j] - top - tau, 0.0)


@numba.njit(cache=True, fastmath=_FAST)
def admm_chunk(
    x, valid, owner, starts, counts, sizes, kinds,
    p, lam, rho, nit, done, primal, dual,
    iterations, total_iter, tol, check_every, balance, rho_step, rho_min, rho_max, alpha,
):
    """Run up to ``iterations`` more ADMM iterations on every instance not yet ``done``.

    Shapes: ``x``, ``valid``, ``p`` ``(B, D)``; ``owner`` ``(E,)``; ``lam`` ``(B, E)``; ``rho``,
    ``nit``, ``primal``, ``dual`` ``(B,)``; ``done`` ``(B,)`` booleans; block arrays ``(K,)``.
    ``nit`` counts the iterations run so far; an instance stops at ``total_iter``.
    """
    batch, size = x.shape
    n_copies = owner.shape[0]
    widest = 1
    for k in range(starts.shape[0]):
        widest = max(widest, sizes[k])
    y = np.empty(widest)
    row = np.empty(widest)
    q = np.empty(n_copies)
    relaxed = np.empty(n_copies)
    alive = np.empty(n_copies, dtype=np.bool_)
    acc = np.empty(size)
    degree = np.empty(size)
    previous = np.empty(n_copies)
    for b in range(batch):
        if done[b] or nit[b] >= total_iter:
            continue
        degree[:] = 0.0
        live = 0
        for c in range(n_copies):
            alive[c] = valid[b, owner[c]]
            if alive[c]:
                degree[owner[c]] += 1.0
                live += 1
        norm = np.sqrt(max(live, 1))
        r = rho[b]
        for c in range(n_copies):
            previous[c] = p[b, owner[c]]
        for _ in range(iterations):
            if nit[b] >= total_iter:
                break
            nit[b] += 1
            # factor copies q_f = Proj_{M_f}(p_f - lambda_f / rho) (previous holds p_f), and
            # their over-relaxed contributions to the point update, in the same pass
            inverse = 1.0 / r
            acc[:] = 0.0
            for k in range(starts.shape[0]):
                width = sizes[k]
                for f in range(counts[k]):
                    base = starts[k] + f * width
                    for j in range(width):
                        c = base + j
                        if alive[c]:
                            y[j] = previous[c] - lam[b, c] * inverse
                        else:
                            y[j] = -np.inf
                    _project_row(y, row, width, kinds[k])
                    for j in range(width):
                        c = base + j
                        q[c] = row[j]
                        relaxed[c] = alpha * row[j] + (1.0 - alpha) * previous[c]
                        acc[owner[c]] += r * relaxed[c] + lam[b, c]
            # the point: p_i = (x_i + sum_f (rho q_fi + lambda_fi)) / (1 + rho d_i)
            for i in range(size):
                if not valid[b, i]:
                    p[b, i] = 0.0
                elif degree[i] > 0.0:
                    p[b, i] = (x[b, i] + acc[i]) / (1.0 + r * degree[i])
                else:
                    p[b, i] = min(max(x[b, i], 0.0), 1.0)
            # multipliers and residuals
            squared_primal, squared_dual = 0.0, 0.0
            for c in range(n_copies):
                if not alive[c]:
                    continue
                point = p[b, owner[c]]
                gap = q[c] - point
                lam[b, c] += r * (relaxed[c] - point)
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
            if primal[b] > balance * dual[b]:
                r = min(r * rho_step, rho_max)
            elif dual[b] > balance * primal[b]:
                r = max(r / rho_step, rho_min)
        rho[b] = r
