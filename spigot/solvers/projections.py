r"""Closed-form Euclidean projections as plain, differentiable torch functions.

Each function projects along the last axis (``project_product_of_simplices`` along the last two),
accepts a batch in its leading axes and optional ``lengths`` (valid entries per instance; padded
outputs are 0 and receive no gradient), and has a hand-written backward pass: the
Jacobian-vector product of the projection, which is symmetric, so it serves as the
vector-Jacobian product as well. numpy arrays are accepted and returned as numpy.

On CPU tensors the simplex projection is a compiled row-by-row pass (Michelot's fixed point,
no sort: :mod:`spigot.solvers._simplex_kernel`); on any other device (CUDA) it is the sort-based
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

from spigot._batch import Array, check_finite, to_tensor
from spigot._lazy import LazyModule

__all__ = [
    "project_box",
    "project_budget",
    "project_product_of_simplices",
    "project_simplex",
]

#: The numba-compiled simplex kernel, compiled (or loaded from numba's cache) at first use.
kernel = LazyModule("spigot.solvers._simplex_kernel")


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


def _sorted_projection(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The simplex projection through :func:`simplex_threshold` (any device; used off the CPU)."""
    work = x.to(_working_dtype(x))
    p = (work - simplex_threshold(work, mask)).clamp(min=0.0)
    if mask is not None:
        p = torch.where(mask, p, 0.0)
    return p.to(x.dtype)


def _cpu_rows(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """``x`` and ``mask`` as contiguous 2-D numpy rows (float64, bool) for the compiled kernels."""
    values = x.detach().reshape(-1, x.shape[-1]).to(torch.float64).contiguous().numpy()
    if mask is None:
        return values, np.ones((1, 1), dtype=np.bool_), False
    return values, mask.expand(x.shape).reshape(-1, x.shape[-1]).contiguous().numpy(), True


def _cpu_projection(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    values, flags, masked = _cpu_rows(x, mask)
    out = np.empty_like(values)
    kernel.simplex_projections(values, flags, masked, out)
    return torch.from_numpy(out).to(x.dtype).reshape(x.shape)


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
    r"""The :math:`\tau` with :math:`\sum_{i \in \mathrm{mask}} \mathrm{clip}(x_i - \tau, 0, 1) = k`.

    :math:`s(\tau)` is piecewise linear and non-increasing with breakpoints :math:`x_i` and
    :math:`x_i - 1`; it is evaluated at every breakpoint in :math:`O(d \log d)` with sorted
    prefix sums, and :math:`\tau` is interpolated on the segment where :math:`s` crosses k.
    Requires ``k <= |mask|`` per row.
    """
    d = x.shape[-1]
    lowest = x.masked_fill(~mask, float("inf")).min(dim=-1, keepdim=True).values
    # Padded entries are pushed far enough down to contribute 0 at every breakpoint we use.
    xm = torch.where(mask, x, lowest - 2.0)
    xs = torch.sort(xm, dim=-1).values
    prefix = torch.cat([torch.zeros_like(xs[..., :1]), xs.cumsum(dim=-1)], dim=-1)
    points = torch.cat([torch.where(mask, x, lowest - 1.0), torch.where(mask, x - 1.0, lowest - 1.0)], dim=-1)
    points = torch.sort(points, dim=-1).values.contiguous()
    flat_xs = xs.reshape(-1, d).contiguous()
    flat_points = points.reshape(-1, 2 * d)
    above = torch.searchsorted(flat_xs, flat_points, right=True).reshape(points.shape)
    saturated = torch.searchsorted(flat_xs, (flat_points + 1.0).contiguous(), right=False).reshape(points.shape)
    value = (
        (d - saturated)
        + prefix.gather(-1, saturated)
        - prefix.gather(-1, above)
        - (saturated - above) * points
    )
    # last breakpoint with s >= k; s is non-increasing along the sorted breakpoints
    index = ((value >= k - 1e-12 * d).sum(dim=-1, keepdim=True) - 1).clamp(0, 2 * d - 2)
    t0, t1 = points.gather(-1, index), points.gather(-1, index + 1)
    s0, s1 = value.gather(-1, index), value.gather(-1, index + 1)
    slope = (s0 - s1).clamp(min=torch.finfo(x.dtype).tiny)
    return t0 + ((s0 - k) / slope).clamp(0.0, 1.0) * (t1 - t0)


class _BudgetProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor, k: int, at_most: bool) -> torch.Tensor:
        tau = _capped_simplex_threshold(x, mask, float(k))
        p = torch.where(mask, (x - tau).clamp(0.0, 1.0), 0.0)
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
    if m is None:
        m = torch.ones_like(tensor, dtype=torch.bool)
    return _finish(_BudgetProjection.apply(tensor, m, int(k), bool(at_most)), as_numpy)
