r"""Closed-form Euclidean projections as plain, differentiable torch functions.

Each function projects along the last axis (``project_product_of_simplices`` along the last two),
accepts a batch in its leading axes and optional ``lengths`` (valid entries per instance; padded
outputs are 0 and receive no gradient), and has a hand-written backward pass: the
Jacobian-vector product of the projection, which is symmetric, so it serves as the
vector-Jacobian product as well. numpy arrays are accepted and returned as numpy.

On CPU tensors the simplex projection is a compiled row-by-row pass (Michelot's fixed point,
no sort: :mod:`spigot._simplex_kernel`); on any other device (CUDA) it is the sort-based
threshold of Held, Wolfe and Crowder (sort, cumulative sum, count, gather), a fixed sequence of
batched operations that needs no host synchronisation. The budget threshold comes from sorted
breakpoints on every device. No fused variant (``torch.compile``, Triton) is offered: whether
one is faster has not been measured on a GPU yet (``spigot bench --device cuda``).

**Host synchronisation.** With ``validate=False`` the forward and backward passes of all four
projections are pure device work: no ``.item()``, ``bool(tensor)``, ``.tolist()``,
``torch.equal``, ``nonzero`` or Python branch on tensor values. (``lengths``, or the simplex's
``mask``, given on the host are copied to the device once, a small blocking copy; pass them on
the device to avoid it.) With ``validate=True`` (the default) every check (finite entries, the
range of ``lengths``, the budget's valid entries) is folded into one flag read back once: one
host synchronisation per call, and only that one (more only when a check fails, to word the
error).

All four polytopes are of the form :math:`\{p : 0 \le p \le u,\ \sum_i p_i \,\square\, r\}`, whose
projection is :math:`p = \mathrm{clip}(x - \tau, 0, u)` for a scalar threshold :math:`\tau`.
On the set :math:`F` of coordinates strictly between the bounds the Jacobian is
:math:`\mathrm{diag}(1_F) - 1_F 1_F^\top / |F|` when the sum constraint is active, and
:math:`\mathrm{diag}(1_F)` when it is not.
"""

from __future__ import annotations

import numpy as np
import torch

from spigot._batch import Array, check_finite, check_lengths, host_buffer, to_tensor
from spigot._lazy import LazyModule
from spigot._word_graphs import arc_mask, host_lengths, host_scores

__all__ = [
    "clip_project_labeled_arcs",
    "project_box",
    "project_budget",
    "project_head_selection",
    "project_labeled_arcs",
    "project_product_of_simplices",
    "project_simplex",
]

#: The numba-compiled simplex kernel, compiled (or loaded from numba's cache) at first use.
kernel = LazyModule("spigot._simplex_kernel")


# ----------------------------------------------------------------------------- kernels
def _working_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half-precision inputs (sums over a row need it), the input's dtype otherwise."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def simplex_threshold(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    r"""The threshold :math:`\tau` with :math:`\sum_{i \in \mathrm{mask}} (x_i - \tau)_+ = 1`, by sorting.

    Held, Wolfe and Crowder (1974): with the valid entries sorted in decreasing order
    :math:`u_1 \ge u_2 \ge \dots` and prefix sums :math:`c_j = \sum_{i \le j} u_i`, the
    support size is :math:`\rho = |\{j : j u_j > c_j - 1\}|` (those :math:`j` form a prefix) and
    :math:`\tau = (c_\rho - 1)/\rho`. Sort, cumulative sum, count, gather: a fixed sequence of
    batched torch operations with no data-dependent control flow, hence no host
    synchronisation on a GPU. Padded entries are sorted last as :math:`-\infty` and never
    counted. Returns ``(..., 1)`` in the working dtype (float32 for half-precision inputs, the
    input's dtype otherwise); rows with no valid entry get :math:`\tau = +\infty` (their
    projection is 0).
    """
    work = x.to(_working_dtype(x))
    valid = work if mask is None else work.masked_fill(~mask, float("-inf"))
    u = torch.sort(valid, dim=-1, descending=True).values
    prefix = u.cumsum(dim=-1)
    ranks = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=work.dtype)
    # Padded positions hold -inf: -inf > -inf is False, so they are never counted.
    support = (u * ranks > prefix - 1.0).sum(dim=-1, keepdim=True).clamp(min=1)
    tau = (prefix.gather(-1, support - 1) - 1.0) / support.to(work.dtype)
    return tau.masked_fill(u[..., :1] == float("-inf"), float("inf"))


def _shift_by_row_max(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` minus the maximum of each row's valid entries (rows without one are left as they are).

    The simplex and exact-budget projections are invariant to adding a constant to a row; on
    shifted rows the thresholds keep their resolution however large the entries (``x_i - 1``
    equals ``x_i`` in float64 once ``|x_i| >= 2^53``).
    """
    valid = x if mask is None else x.masked_fill(~mask, float("-inf"))
    top = valid.amax(dim=-1, keepdim=True)
    return x - torch.where(torch.isfinite(top), top, torch.zeros_like(top))


def _sorted_projection(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The simplex projection through :func:`simplex_threshold` (any device; used off the CPU)."""
    work = _shift_by_row_max(x.to(_working_dtype(x)), mask)
    p = (work - simplex_threshold(work, mask)).clamp(min=0.0)
    if mask is not None:
        p = torch.where(mask, p, 0.0)
    return p.to(x.dtype)


def _cpu_rows(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """``x`` and ``mask`` as contiguous 2-D numpy rows (float32 or float64, bool) for the compiled kernels."""
    values = host_scores(x.detach().reshape(-1, x.shape[-1]))
    if mask is None:
        return values, np.ones((1, 1), dtype=np.bool_), False
    return values, mask.expand(x.shape).reshape(-1, x.shape[-1]).contiguous().numpy(), True


def _cpu_projection(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    values, flags, masked = _cpu_rows(x, mask)
    out = host_buffer(values, zero=False)
    kernel.simplex_projections(values, flags, masked, out.numpy())
    return out.to(x.dtype).reshape(x.shape)


def jvp_sum_constrained(g: torch.Tensor, free: torch.Tensor, dims: int = 1) -> torch.Tensor:
    """``g -> 1_F * (g - <g, 1_F> / |F|)`` over the last ``dims`` axes."""
    free = free.to(g.dtype)
    axes = tuple(range(-dims, 0))
    count = free.sum(dim=axes, keepdim=True).clamp(min=1.0)
    return free * (g - (g * free).sum(dim=axes, keepdim=True) / count)


class _SimplexProjection(torch.autograd.Function):
    """Compiled kernel on CPU tensors, sort-based threshold elsewhere (``sort=True`` forces it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor | None, sort: bool = False) -> torch.Tensor:
        p = _sorted_projection(x, mask) if sort or x.device.type != "cpu" else _cpu_projection(x, mask)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (p,) = ctx.saved_tensors
        return jvp_sum_constrained(grad, p > 0), None, None


class _BoxProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        p = x.clamp(0.0, 1.0)
        inside = (x > 0) & (x < 1)
        if mask is not None:
            p, inside = torch.where(mask, p, 0.0), inside & mask
        ctx.save_for_backward(inside)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside, None


def _capped_simplex_threshold(x: torch.Tensor, mask: torch.Tensor, k: float) -> torch.Tensor:
    r"""The :math:`\tau` with :math:`s(\tau) = \sum_{i \in \mathrm{mask}} \mathrm{clip}(x_i - \tau, 0, 1) = k`.

    :math:`s` is piecewise linear and non-increasing with breakpoints :math:`x_i` and
    :math:`x_i - 1`. A binary search over the sorted breakpoints (a fixed
    :math:`\lceil \log_2 2d \rceil + 1` steps, no host synchronisation) finds the last one with
    :math:`s \ge k`, evaluating :math:`s` directly as a sum of clipped terms, each in
    :math:`[0, 1]` (prefix sums of the entries would cancel catastrophically once the entries
    are large: ``x * 1e17`` then selected four entries for a budget of two); :math:`\tau` is
    interpolated on the segment that follows. Requires ``k <= |mask|`` per row; every row
    with fewer valid entries gets the first breakpoint.
    """
    d = x.shape[-1]
    lowest = x.masked_fill(~mask, float("inf")).amin(dim=-1, keepdim=True)
    lowest = torch.where(torch.isfinite(lowest), lowest, torch.zeros_like(lowest))
    # Padded entries give breakpoints below every valid one, where s counts all valid entries.
    points = torch.cat([torch.where(mask, x, lowest - 1.0), torch.where(mask, x - 1.0, lowest - 1.0)], dim=-1)
    points = torch.sort(points, dim=-1).values

    def s_at(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = points.gather(-1, index)
        return t, torch.where(mask, (x - t).clamp(0.0, 1.0), 0.0).sum(dim=-1, keepdim=True)

    low = torch.zeros_like(points[..., :1], dtype=torch.int64)
    high = torch.full_like(low, 2 * d - 1)
    for _ in range(max(1, (2 * d).bit_length())):  # invariant: s(points[low]) >= k or low = 0
        middle = (low + high + 1) // 2
        above = s_at(middle)[1] >= k
        low = torch.where(above, middle, low)
        high = torch.where(above, high, middle - 1)
    t0, s0 = s_at(low)
    t1, s1 = s_at((low + 1).clamp(max=2 * d - 1))
    slope = (s0 - s1).clamp(min=torch.finfo(x.dtype).tiny)
    return t0 + ((s0 - k) / slope).clamp(0.0, 1.0) * (t1 - t0)


class _BudgetProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor, k: int, at_most: bool) -> torch.Tensor:
        shifted = _shift_by_row_max(x, mask)  # the equality-constrained projection ignores shifts
        tau = _capped_simplex_threshold(shifted, mask, float(k))
        p = torch.where(mask, (shifted - tau).clamp(0.0, 1.0), 0.0)
        active = torch.ones_like(tau, dtype=torch.bool)
        if at_most:
            clipped = torch.where(mask, x.clamp(0.0, 1.0), 0.0)
            active = clipped.sum(dim=-1, keepdim=True) > k
            p = torch.where(active, p, clipped)
        ctx.save_for_backward(p, active, mask)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p, active, mask = ctx.saved_tensors
        free = (p > 0) & (p < 1) & mask
        constrained = jvp_sum_constrained(grad, free)
        return torch.where(active, constrained, grad * free), None, None, None


# ----------------------------------------------------------------------------- public API
def _prepare(
    x: Array,
    lengths: Array | None,
    axis_len_dim: int,
    name: str,
    validate: bool,
    min_length: int = 1,
):
    """The input as a tensor, whether it was numpy, and the mask of valid entries (or None).

    With ``validate``, every check on tensor values (finite entries; ``lengths`` in
    ``[min_length, size]``) is reduced on the device to one flag that is read back once: the one
    host synchronisation of a validated call. Only when that flag says something is wrong do
    the checks run again one by one, to name the problem.
    """
    tensor, as_numpy = to_tensor(x, name)
    if tensor.ndim < -axis_len_dim:
        raise ValueError(f"{name} must have at least {-axis_len_dim} axes, got shape {tuple(tensor.shape)}")
    lens, mask = None, None
    size = tensor.shape[axis_len_dim]
    if lengths is not None:
        lens = lengths if isinstance(lengths, torch.Tensor) else torch.as_tensor(np.asarray(lengths))
        if lens.is_floating_point() or lens.dtype == torch.bool or lens.is_complex():
            raise TypeError(f"lengths must be an integer tensor, got dtype {lens.dtype}")
        batch_shape = tuple(tensor.shape[: tensor.ndim + axis_len_dim])
        if tuple(lens.shape) != batch_shape:
            raise ValueError(f"lengths must have shape {batch_shape}, got {tuple(lens.shape)}")
        lens = lens.to(tensor.device)  # a no-op when the caller keeps lengths on the device
        mask = torch.arange(size, device=tensor.device) < lens[..., None]
        if axis_len_dim == -2:
            mask = mask[..., None]
        mask = mask.expand(tensor.shape)
    if validate:
        _validate(tensor, name, lens, size, min_length)
    return tensor, as_numpy, mask


def _validate(tensor: torch.Tensor, name: str, lens: torch.Tensor | None, size: int, min_length: int) -> None:
    """Raise if ``tensor`` is not finite or ``lens`` leaves ``[min_length, size]``; one sync if all is well."""
    flags = [torch.isfinite(tensor.sum())]
    if lens is not None and lens.numel():
        flags.append(((lens >= min_length) & (lens <= size)).all())
    if bool(torch.stack(flags).all()):
        return
    check_finite(tensor, name)  # the sum may overflow for finite entries: look entry-wise
    if lens is not None and lens.numel():
        if bool((lens < 1).any()) or bool((lens > size).any()):
            raise ValueError(f"lengths must lie in [1, {size}]")
        if bool((lens < min_length).any()):
            raise ValueError(f"every row of {name} needs at least k={min_length} valid entries for an exact budget")


def _finish(p: torch.Tensor, as_numpy: bool) -> Array:
    return p.detach().cpu().numpy() if as_numpy else p


def project_simplex(
    x: Array, lengths: Array | None = None, mask: Array | None = None, validate: bool = True
) -> Array:
    r"""Euclidean projection onto the probability simplex along the last axis.

    .. math:: \Pi_\Delta(x) = \operatorname*{argmin}_{p \ge 0,\ \mathbf{1}^\top p = 1} \|p - x\|^2
              = (x - \tau \mathbf{1})_+ .

    On CPU tensors a compiled kernel (Michelot's fixed point, no sort) computes the projection;
    on other devices the sort-based threshold (:func:`simplex_threshold`) does, with no host
    synchronisation. Both are exact: they agree up to rounding in the working dtype.

    Parameters
    ----------
    x
        ``(..., k)`` tensor or array.
    lengths
        Optional ``(...)`` integer array: only the first ``lengths`` entries of each row are
        choices; the rest are output as 0.
    mask
        Optional boolean array broadcastable to ``x``: entries where it is False are not
        choices (output 0). Combines with ``lengths``.
    validate
        Check for NaN/inf and the range of ``lengths``: one host synchronisation on a GPU, and
        the only one (``validate=False`` runs forward and backward without any).
    """
    tensor, as_numpy, m = _prepare(x, lengths, -1, "x", validate)
    if mask is not None:
        extra = torch.as_tensor(np.asarray(mask)) if not isinstance(mask, torch.Tensor) else mask
        extra = extra.to(device=tensor.device, dtype=torch.bool).expand(tensor.shape)
        m = extra if m is None else m & extra
    return _finish(_SimplexProjection.apply(tensor, m), as_numpy)


def project_product_of_simplices(
    x: Array, lengths: Array | None = None, validate: bool = True
) -> Array:
    r"""Projection onto a product of simplices: each row of the last two axes ``(..., G, k)``.

    ``lengths`` (shape ``(...)``) counts the valid groups (rows); padded rows are output as 0.
    Same algorithms and synchronisation behaviour as :func:`project_simplex` (``validate``: one
    host synchronisation; none without it).
    """
    tensor, as_numpy, m = _prepare(x, lengths, -2, "x", validate)
    return _finish(_SimplexProjection.apply(tensor, m), as_numpy)


def project_box(x: Array, lengths: Array | None = None, validate: bool = True) -> Array:
    r"""Projection onto the unit cube :math:`[0, 1]^d`: :math:`\mathrm{clip}(x, 0, 1)`.

    ``validate`` checks for NaN/inf and the range of ``lengths`` (one host synchronisation on a
    GPU; none without it).
    """
    tensor, as_numpy, m = _prepare(x, lengths, -1, "x", validate)
    return _finish(_BoxProjection.apply(tensor, m), as_numpy)


def project_budget(
    x: Array,
    k: int,
    at_most: bool = False,
    lengths: Array | None = None,
    validate: bool = True,
) -> Array:
    r"""Projection onto :math:`\{p \in [0,1]^d : \sum_i p_i = k\}` (or :math:`\le k`).

    :math:`p = \mathrm{clip}(x - \tau, 0, 1)` with :math:`\tau` found exactly from the sorted
    breakpoints; with ``at_most`` the clip of :math:`x` is returned when it already fits.

    Parameters
    ----------
    k
        Positive integer budget; without ``at_most`` every row needs at least ``k`` valid entries.
    validate
        Check for NaN/inf, the range of ``lengths`` and (without ``at_most``) that every row has
        ``k`` valid entries: one host synchronisation on a GPU, and the only one (``validate=False``
        runs forward and backward without any).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    tensor, as_numpy, m = _prepare(x, lengths, -1, "x", validate, min_length=1 if at_most else int(k))
    if not at_most and tensor.shape[-1] < k:
        raise ValueError(f"every row of x needs at least k={k} valid entries for an exact budget")
    if tensor.shape[-1] == 0:  # rows without items (at_most): the projection is empty too
        return _finish(tensor * 0.0, as_numpy)
    if m is None:
        m = torch.ones_like(tensor, dtype=torch.bool)
    return _finish(_BudgetProjection.apply(tensor, m, int(k), bool(at_most)), as_numpy)


# ----------------------------------------------------------------------------- graphs over words
# Scores of graphs over a root (node 0) and words 1..n are (B, N, N, ...) with N = n_max + 1 and
# entry [h, m] the arc h -> m; the functions below take a validated flat batch and integer
# word counts ``lengths`` (B,) or None (see :mod:`spigot._word_graphs`).


class _HeadSelectionProjection(torch.autograd.Function):
    """Columns onto simplices; on CPU tensors one compiled pass over the batch, no masks built."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        batch, size, _ = x.shape
        if x.device.type == "cpu":
            values = host_scores(x)
            p = host_buffer(values)
            kernel.head_selection_projections(values, host_lengths(lengths, batch, size - 1), p.numpy())
            p = p.to(x.dtype)
        else:
            valid = arc_mask(lengths, size, batch, x.device).transpose(-1, -2)
            p = project_simplex(x.transpose(-1, -2), mask=valid, validate=False).transpose(-1, -2)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (p,) = ctx.saved_tensors
        jvp = jvp_sum_constrained(grad.transpose(-1, -2), (p > 0).transpose(-1, -2))
        return jvp.transpose(-1, -2), None


def project_head_selection(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    r"""Project every column ``x[:, m]`` onto the simplex over the heads ``h != m``, ``h <= n``.

    .. math:: p_{\cdot m} = \Pi_\Delta(x_{\cdot m}) \text{ over } \{h \le n : h \ne m\},
              \quad m = 1..n,

    the projection onto :class:`~spigot.polytopes.HeadSelection` (every word picks one head);
    column 0, the diagonal and padding are 0. ``x`` is a validated flat batch ``(B, N, N)``. The
    Jacobian is that of each column's simplex projection (see the module), taken along the
    heads axis.
    """
    return _HeadSelectionProjection.apply(x, lengths)


def head_selection_residual(
    point: torch.Tensor, direction: torch.Tensor, sizes: torch.Tensor, lengths: torch.Tensor | None
) -> torch.Tensor:
    r"""The residual of :func:`project_head_selection` at a step: :math:`x_b - \Pi(x_b - t_b d_b)`.

    ``point`` :math:`x` and ``direction`` :math:`d` are validated flat batches ``(B, N, N)`` of
    one dtype, ``sizes`` :math:`t` a float64 ``(B,)`` tensor. Entries of :math:`d` off the arcs
    (column 0, the diagonal, padding) are ignored, as the projection ignores them; the result
    is :math:`x` there. On CPU tensors one compiled pass per instance forms the stepped point,
    projects it and writes the difference, without writing either to memory as a batch (the
    SPIGOT family's surrogate gradient); elsewhere the torch expression.
    """
    batch, size, _ = point.shape
    if point.device.type != "cpu":
        stepped = point - sizes.to(device=point.device, dtype=point.dtype).reshape(-1, 1, 1) * direction
        return point - project_head_selection(stepped, lengths)
    start, moved = host_scores(point), host_scores(direction.to(point.dtype))
    out = host_buffer(start, zero=False)
    lens = host_lengths(lengths, batch, size - 1)
    kernel.head_selection_residuals(start, moved, sizes.to(torch.float64).numpy(), lens, out.numpy())
    return out.to(point.dtype)


def _arcs(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``(B, N, N, 1)`` arc mask for a flat batch ``x`` of shape ``(B, N, N, L)``."""
    return arc_mask(lengths, x.shape[1], x.shape[0], x.device)[..., None]


def labeled_arcs_projection(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Exact per-arc projection of a validated flat batch ``(B, N, N, L)``."""
    return project_budget(x, 1, at_most=True, validate=False) * _arcs(x, lengths)


def reference_projection(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """The reference implementation's clip-then-project procedure on a validated flat batch."""
    mask = _arcs(x, lengths)
    x = x * mask
    radius = x.sum(dim=-1, keepdim=True).clamp(0.0, 1.0)
    return _scaled_simplex_projection(x, radius) * mask


def _scaled_simplex_projection(x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    r"""Projection of each row onto :math:`\{y \ge 0 : \sum y = r\}` (0 where :math:`r = 0`).

    :math:`y = (x - \tau)_+` with :math:`\tau = (\sum_{i \le \rho} u_i - r) / \rho` for the
    sorted :math:`u` and the largest :math:`\rho` with :math:`\rho\, u_\rho > \sum_{i \le \rho}
    u_i - r` (Held et al. 1974).
    """
    u = torch.sort(x, dim=-1, descending=True).values
    excess = u.cumsum(dim=-1) - radius
    ranks = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    support = (u * ranks > excess).sum(dim=-1, keepdim=True)
    tau = excess.gather(-1, (support - 1).clamp(min=0)) / support.clamp(min=1)
    return torch.where(radius > 0, (x - tau).clamp(min=0.0), torch.zeros_like(x))


def _labeled_arcs_input(x: Array, lengths: Array | None):
    """``x`` as a flat ``(B, N, N, L)`` tensor, checked; its word counts, whether it was numpy, its shape."""
    tensor, as_numpy = to_tensor(x, "x")
    if tensor.ndim < 3 or tensor.shape[-3] != tensor.shape[-2] or tensor.shape[-3] < 2 or tensor.shape[-1] < 1:
        raise ValueError(
            f"x must have shape (..., n+1, n+1, L) with n >= 1 words and L >= 1, got shape {tuple(tensor.shape)}"
        )
    check_finite(tensor, "x")
    event = tuple(tensor.shape[-3:])
    lens = check_lengths(lengths, tuple(tensor.shape[:-3]), 1, event[0] - 1, f"event shape {event}")
    return tensor.reshape(-1, *event), lens, as_numpy, tensor.shape


def project_labeled_arcs(x: Array, lengths: Array | None = None) -> Array:
    r"""Euclidean projection onto :class:`~spigot.polytopes.LabeledArcs`, arc by arc.

    For every arc, the projection onto :math:`\{y \ge 0 : \sum_l y_l \le 1\}`:
    :math:`y = \mathrm{clip}(x - \tau, 0, 1)` with :math:`\tau = 0` when the clipped vector
    already sums to at most 1 (:func:`project_budget` with ``at_most``); non-arcs and padding
    are output as 0. Differentiable (the budget's backward).

    Parameters
    ----------
    x
        ``(..., n+1, n+1, L)`` tensor or array.
    lengths
        Optional ``(...)`` integer word counts; padding and non-arcs are output as 0.
    """
    flat, lens, as_numpy, shape = _labeled_arcs_input(x, lengths)
    return _finish(labeled_arcs_projection(flat, lens).reshape(shape), as_numpy)


def clip_project_labeled_arcs(x: Array, lengths: Array | None = None) -> Array:
    r"""The SPIGOT reference procedure for semantic graphs (``ProjectSDP``), arc by arc.

    The arc's unlabeled value :math:`a = \mathrm{clip}(\sum_l x_l, 0, 1)` (at a vertex, whether
    the arc is present) is fixed first, then the labels are projected onto
    :math:`\{y \in [0, 1]^L : \sum_l y_l = a\}` (all 0 when :math:`a = 0`). It lands in the
    same per-arc polytope as :func:`project_labeled_arcs` but is *not* the Euclidean projection
    onto it; it is the relaxed procedure of :class:`~spigot.polytopes.SemanticGraph`.

    Parameters are those of :func:`project_labeled_arcs`.
    """
    flat, lens, as_numpy, shape = _labeled_arcs_input(x, lengths)
    return _finish(reference_projection(flat, lens).reshape(shape), as_numpy)
