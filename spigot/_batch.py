"""Input checking and the batch convention shared by every layer of the library.

Every public function takes a single instance or a batch (leading axes) plus an optional
``lengths`` array; numpy arrays are accepted and returned as numpy, torch tensors keep their
device and dtype. :func:`as_batch` validates all of that once and returns a :class:`Batch`
holding the flattened ``(B, *event_shape)`` tensor, and :meth:`Batch.restore` undoes the
flattening on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from spigot._lazy import LazyModule

if TYPE_CHECKING:
    from spigot.polytopes.base import Polytope

Array = torch.Tensor | np.ndarray

#: The numba-compiled centring pass, compiled (or loaded from numba's cache) at first use.
_kernel = LazyModule("spigot._batch_kernel")


@dataclass(frozen=True)
class Batch:
    """A validated, flattened batch of instances of one polytope.

    Attributes
    ----------
    values
        Floating tensor of shape ``(B, *event_shape)`` on the caller's device.
    lengths
        ``None`` or an int64 CPU tensor of shape ``(B,)``, or ``(B, k)`` for a polytope that
        takes one length per sized axis.
    batch_shape
        The caller's leading axes (``()`` for a single instance).
    event_shape
        The trailing axes that make one instance.
    as_numpy
        Whether the caller passed numpy (outputs are then converted back).
    slices
        For each instance, the index slices of its valid (unpadded) region.
    dtype
        The caller's dtype, which outputs take (``None``: that of ``values``). Half-precision
        input (float16, bfloat16) is held in ``values`` as float32.
    variables
        The polytope's :meth:`~Polytope.variable_mask` as a boolean tensor of ``event_shape`` on
        the values' device (``None``: every entry is a variable), built once at validation.
    """

    values: torch.Tensor
    lengths: torch.Tensor | None
    batch_shape: tuple[int, ...]
    event_shape: tuple[int, ...]
    as_numpy: bool
    slices: tuple[tuple[slice, ...], ...]
    dtype: torch.dtype | None = None
    variables: torch.Tensor | None = None

    @property
    def caller_dtype(self) -> torch.dtype:
        """The dtype of the caller's input, which event-shaped outputs take."""
        return self.values.dtype if self.dtype is None else self.dtype

    @property
    def size(self) -> int:
        """Number of instances ``B``."""
        return self.values.shape[0]

    @property
    def is_padded(self) -> bool:
        """Whether some instance is smaller than the event shape."""
        full = tuple(slice(0, n) for n in self.event_shape)
        return any(_normalize(s, self.event_shape) != full for s in self.slices)

    def mask(self) -> torch.Tensor:
        """Boolean tensor ``(B, *event_shape)`` on the values' device, True on every valid entry.

        Filled in host memory and moved in one transfer (not one device write per instance).
        """
        mask = np.zeros(tuple(self.values.shape), dtype=np.bool_)
        for i, sl in enumerate(self.slices):
            mask[(i, *sl)] = True
        return torch.from_numpy(mask).to(self.values.device)

    def instance(self, i: int) -> np.ndarray:
        """The valid region of instance ``i`` as a float64 numpy array (a copy)."""
        return self.values[(i, *self.slices[i])].detach().cpu().numpy().astype(np.float64)

    def instances(self) -> Iterator[np.ndarray]:
        """Float64 numpy copies of the valid region of every instance, in batch order."""
        values = self.values.detach().cpu().numpy().astype(np.float64, copy=False)
        for i, sl in enumerate(self.slices):
            yield np.array(values[(i, *sl)], dtype=np.float64)

    def embed(self, parts: list[np.ndarray], trailing: tuple[int, ...] = ()) -> torch.Tensor:
        """Place per-instance valid regions into a zero-padded float64 CPU tensor.

        ``parts[i]`` has the shape of instance ``i``'s valid region (plus ``trailing`` axes,
        placed after the event axes); the result has shape ``(B, *event_shape, *trailing)``.
        """
        out = np.zeros((self.size, *self.event_shape, *trailing), dtype=np.float64)
        for i, (sl, part) in enumerate(zip(self.slices, parts)):
            out[(i, *sl)] = part
        return torch.from_numpy(out)

    def restore(self, flat: torch.Tensor, event: bool = True) -> Array:
        """Undo the flattening: ``(B, *rest)`` -> ``(*batch_shape, *rest)``.

        The result takes the caller's device and, for event-shaped floating outputs
        (``event=True``), the caller's dtype; numpy callers get numpy back.
        """
        flat = flat.to(self.values.device)
        if event and flat.is_floating_point():
            flat = flat.to(self.caller_dtype)
        out = flat.reshape(tuple(self.batch_shape) + tuple(flat.shape[1:]))
        if self.as_numpy:
            return out.detach().cpu().numpy()
        return out


def _normalize(sl: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(*s.indices(n)[:2]) for s, n in zip(sl, shape))


#: The floating dtypes of the compiled kernels' arrays, numpy's to torch's.
_HOST_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def host_buffer(like: np.ndarray, zero: bool = True) -> torch.Tensor:
    """A CPU tensor with the shape and (float32 or float64) dtype of ``like``, zeros unless ``zero`` is False.

    For compiled kernels' outputs (they write its ``.numpy()`` view): torch's allocator hands
    back a recently freed block of the same size, where a numpy array of a few hundred KB
    costs fresh pages, faulted in one by one, on every call.
    """
    dtype = _HOST_DTYPES[like.dtype]
    return torch.zeros(like.shape, dtype=dtype) if zero else torch.empty(like.shape, dtype=dtype)


def to_tensor(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    """Convert a tensor or numpy array to a floating tensor; return it and whether it was numpy."""
    if isinstance(x, torch.Tensor):
        tensor, as_numpy = x, False
    elif isinstance(x, np.ndarray):
        if any(stride < 0 for stride in x.strides):  # torch cannot view negative strides
            x = x.copy()
        tensor, as_numpy = torch.from_numpy(x), True
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}"
        )
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {tensor.dtype}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64 if as_numpy else torch.get_default_dtype())
    return tensor, as_numpy


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ValueError naming ``name`` if ``x`` holds NaN or infinite entries.

    A finite sum proves every entry finite (a NaN or an infinity would propagate into it), so
    the entry-wise test runs only when the sum is not finite (or overflowed).
    """
    if bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all()):
        return
    if bool(torch.isnan(x).any()):
        raise ValueError(f"{name} contains NaN entries; every entry must be finite")
    if bool((x == float("inf")).any()):
        raise ValueError(f"{name} contains infinite entries; every entry must be finite")
    raise ValueError(
        f"{name} contains -inf entries; every entry must be finite. To pad instances of "
        "different sizes, pass `lengths` (padded entries are then ignored and 0 in every "
        "output) instead of filling them with -inf"
    )


#: Floating dtypes too narrow to compute in; validated input of these dtypes is held as float32.
HALF_DTYPES = (torch.float16, torch.bfloat16)


def as_batch(
    polytope: Polytope,
    x: Any,
    lengths: Any = None,
    name: str = "scores",
    center: bool = True,
) -> Batch:
    """Validate ``x`` (and ``lengths``) against ``polytope`` and flatten it to a :class:`Batch`.

    Entries that are not variables of the polytope (its :meth:`~Polytope.variable_mask`: the
    diagonal and column 0 of arc scores, ...) are ignored by contract, so they are set to 0 here,
    before any oracle, solver, tolerance or scaling sees them: a masking constant such as
    ``-1e9`` placed there changes no result. For a polytope with
    :meth:`~Polytope.has_constant_vertex_sum`, each instance's largest variable is subtracted
    from its variables (a shift that changes no result but the log-partition's value:
    ``center=False`` keeps the scores as given; so do the callers that need only the MAP,
    which the shift cannot change and whose rounding could only tie scores that differ).
    Half-precision input (float16, bfloat16) is held as float32 and outputs go back to the
    caller's dtype. On float32 and float64 CPU tensors outside autograd the shift or the
    masking is one compiled pass (:mod:`spigot._batch_kernel`) that checks the entries are
    finite as it reads them.

    Raises
    ------
    TypeError
        ``x`` is not a tensor/array of real numbers, or ``lengths`` is not integer.
    ValueError
        ``x`` has too few axes, a shape the polytope rejects, NaN/inf entries, or ``lengths``
        has the wrong shape or values out of range.
    """
    tensor, as_numpy = to_tensor(x, name)
    k = polytope.event_ndim
    if tensor.ndim < k:
        raise ValueError(
            f"{name} must have at least {k} axes for {polytope!r} (event_ndim={k}), "
            f"got shape {tuple(tensor.shape)}"
        )
    batch_shape = tuple(tensor.shape[: tensor.ndim - k])
    event_shape = tuple(tensor.shape[tensor.ndim - k :])
    polytope.check_event_shape(event_shape, name)
    flat = tensor.reshape(-1, *event_shape)
    if flat.dtype in HALF_DTYPES:
        flat = flat.to(torch.float32)
    variables = polytope.variable_mask(event_shape)
    keep = None
    if variables is not None:
        keep = torch.as_tensor(np.asarray(variables, dtype=np.bool_), device=flat.device)
    shift = bool(center and flat.numel() and _shift_invariant(polytope))
    compiled = (shift or keep is not None) and _compiled_pass_applies(flat)
    if not compiled:  # the compiled pass checks the entries as it reads them
        check_finite(tensor, name)
    lens = _check_lengths(polytope, lengths, batch_shape, event_shape)
    if lens is None:
        full = polytope.valid_slices(event_shape, None)
        slices = (full,) * flat.shape[0]
    else:
        per_instance = [n if isinstance(n, int) else tuple(n) for n in lens.tolist()]  # one host read
        slices = tuple(polytope.valid_slices(event_shape, n) for n in per_instance)
    batch = Batch(flat, lens, batch_shape, event_shape, as_numpy, slices, tensor.dtype, keep)
    if compiled:
        values, finite = _compiled_pass(batch, keep, shift)
        if not finite:
            check_finite(tensor, name)  # raises, naming what is wrong
        return replace(batch, values=values)
    if shift:
        return _shifted_by_max(batch, keep)
    if keep is not None:
        return replace(batch, values=flat.masked_fill(~keep, 0.0))
    return batch


def _shift_invariant(polytope: Polytope) -> bool:
    """Whether the polytope and its relaxation (which validated values may be projected onto,
    by the ``relaxed`` solver) both ignore a constant added to every variable."""
    if not polytope.has_constant_vertex_sum():
        return False
    relaxation = polytope.relaxation()
    return relaxation is polytope or relaxation.has_constant_vertex_sum()


def _shifted_by_max(batch: Batch, keep: torch.Tensor | None) -> Batch:
    """Subtract from each instance's variables their maximum over its valid region.

    For a polytope whose vertices all have the same number of ones this changes no result
    (and no gradient: the results are invariant along that direction), and it keeps the
    differences between scores exact where an offset (``x + 1e17``) would make every residual
    ``x - p`` round ``p`` away. The entries that are not variables (``keep`` False) are set
    to 0 in the same expression. (float32 and float64 CPU tensors outside autograd take
    :func:`_compiled_pass` instead, with the same result bit for bit.)
    """
    values = batch.values
    region = None if keep is None else keep.expand(values.shape)
    if batch.lengths is not None and batch.is_padded:
        region = batch.mask() if region is None else region & batch.mask()
    valid = values.detach() if region is None else values.detach().masked_fill(~region, float("-inf"))
    top = valid.flatten(start_dim=1).amax(dim=1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    shifted = values - top.reshape((-1,) + (1,) * (values.ndim - 1))
    return replace(batch, values=shifted if keep is None else torch.where(keep, shifted, 0.0))


#: The dtypes that the compiled pass (:func:`_compiled_pass`) reads and writes.
_KERNEL_DTYPES = (torch.float32, torch.float64)


def _compiled_pass_applies(values: torch.Tensor) -> bool:
    """Whether :func:`as_batch` shifts or masks ``values`` by the compiled pass: a float32 or
    float64 CPU tensor outside autograd."""
    return (
        values.device.type == "cpu"
        and values.dtype in _KERNEL_DTYPES
        and not (values.requires_grad and torch.is_grad_enabled())
    )


def _compiled_pass(batch: Batch, keep: torch.Tensor | None, shift: bool) -> tuple[torch.Tensor, bool]:
    """The batch's values shifted by each instance's largest variable (``shift``) or only masked
    (``keep``), by one compiled pass over the CPU batch, and whether every entry is finite."""
    values = batch.values
    rows = values.detach().reshape(values.shape[0], -1).contiguous().numpy()
    variables = np.ones(rows.shape[1], dtype=np.bool_) if keep is None else keep.reshape(-1).numpy()
    out = host_buffer(rows, zero=False)
    if not shift:
        finite = _kernel.mask_variables(rows, variables, out.numpy())
        return out.reshape(values.shape), bool(finite)
    region = variables[None]
    if batch.lengths is not None and batch.is_padded:
        region = batch.mask().reshape(rows.shape).numpy() & variables
    finite = _kernel.shift_variables(rows, region, variables, out.numpy())
    return out.reshape(values.shape), bool(finite)


def instance_length(lengths: torch.Tensor | None, i: int) -> int | tuple[int, ...] | None:
    """Instance ``i``'s entry of validated ``lengths``: an int, a tuple of per-axis ints, or None."""
    if lengths is None:
        return None
    if lengths.ndim == 1:
        return int(lengths[i])
    return tuple(int(n) for n in lengths[i].tolist())


def _check_lengths(
    polytope: Polytope,
    lengths: Any,
    batch_shape: tuple[int, ...],
    event_shape: tuple[int, ...],
) -> torch.Tensor | None:
    """``lengths`` checked against ``polytope``: one per instance, or one per sized axis."""
    if lengths is None:
        return None
    axes = polytope.length_axes()
    if polytope.per_axis_lengths and len(axes) > 1:
        lens = _integer_lengths(lengths)
        if tuple(lens.shape) == batch_shape + (len(axes),):
            return _check_axis_lengths(polytope, lens, event_shape, axes)
        if tuple(lens.shape) != batch_shape:
            raise ValueError(
                f"lengths must have the batch shape {batch_shape} of the scores (one length per "
                f"instance) or {batch_shape + (len(axes),)} (one per sized axis {axes}), "
                f"got shape {tuple(lens.shape)}"
            )
    sizes = {event_shape[axis] for axis in axes}
    if type(polytope).valid_slices is _default_valid_slices() and len(sizes) > 1:
        raise ValueError(
            f"lengths gives one length per instance, but the axes {axes} it cuts have different "
            f"sizes in event shape {event_shape} of {polytope!r}; "
            + (
                f"pass one length per sized axis, shape {batch_shape + (len(axes),)}"
                if polytope.per_axis_lengths
                else "set `sized_axes` on the class to the axes that lengths counts (e.g. (0,))"
            )
        )
    low, high = polytope.min_length(event_shape), polytope.max_length(event_shape)
    return check_lengths(lengths, batch_shape, low, high, f"event shape {event_shape} of {polytope!r}")


def _integer_lengths(lengths: Any) -> torch.Tensor:
    """``lengths`` as a CPU tensor, refused unless it holds integers."""
    if isinstance(lengths, torch.Tensor):
        lens = lengths.detach().cpu()
    else:
        lens = torch.as_tensor(np.asarray(lengths))
    if lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor, got dtype {lens.dtype}")
    return lens


def check_lengths(
    lengths: Any, batch_shape: tuple[int, ...], low: int, high: int, where: str
) -> torch.Tensor | None:
    """``lengths`` as a flat int64 CPU tensor, checked: integer, of ``batch_shape``, in ``[low, high]``.

    ``where`` names what the lengths are measured against in the error message.
    """
    if lengths is None:
        return None
    lens = _integer_lengths(lengths)
    if tuple(lens.shape) != batch_shape:
        raise ValueError(
            f"lengths must have the batch shape {batch_shape} of the scores, "
            f"got shape {tuple(lens.shape)}"
        )
    lens = lens.to(torch.int64).reshape(-1)
    if lens.numel() and (int(lens.min()) < low or int(lens.max()) > high):
        raise ValueError(
            f"lengths must lie in [{low}, {high}] for {where}, "
            f"got values in [{int(lens.min())}, {int(lens.max())}]"
        )
    return lens


def _default_valid_slices() -> Any:
    from spigot.polytopes.base import Polytope

    return Polytope.valid_slices


def _check_axis_lengths(
    polytope: Polytope, lens: torch.Tensor, event_shape: tuple[int, ...], axes: tuple[int, ...]
) -> torch.Tensor:
    """Validate per-axis ``lengths`` ``(*batch, k)``: column ``j`` within ``[min_length, size]`` of axis ``axes[j]``."""
    lens = lens.to(torch.int64).reshape(-1, len(axes))
    low = polytope.min_length(event_shape)
    for column, axis in enumerate(axes):
        values = lens[:, column]
        if values.numel() and (int(values.min()) < low or int(values.max()) > event_shape[axis]):
            raise ValueError(
                f"lengths[..., {column}] (the length of event axis {axis}) must lie in "
                f"[{low}, {event_shape[axis]}] for event shape {event_shape} of {polytope!r}, "
                f"got values in [{int(values.min())}, {int(values.max())}]"
            )
    return lens
