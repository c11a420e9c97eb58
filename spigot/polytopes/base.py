"""The :class:`Polytope` contract: geometry and MAP oracle of a structured output space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from spigot._batch import Array, as_batch
from spigot.errors import UnsupportedOperation

if TYPE_CHECKING:
    import cvxpy as cp

    from spigot.solvers.result import ProjectionResult

_OPTIONAL = ("map_batch", "constraints", "vertices", "marginals_batch")


class Polytope(ABC):
    r"""The convex hull :math:`P = \mathrm{conv}(Z)` of a finite set of 0/1 vertices.

    A polytope knows its geometry and its MAP oracle

    .. math:: \mathrm{map}(s) = \operatorname*{argmax}_{z \in Z} \langle s, z \rangle,

    and nothing about projection algorithms: those live in :mod:`spigot.solvers` and use only
    the hooks below.

    Sizes come from the scores: one instance is an array whose last :attr:`event_ndim` axes
    form its *event shape*; any axes before them are batch axes. ``lengths`` (one integer per
    instance) marks padding, and the region an instance of length ``n`` occupies is given by
    :meth:`valid_slices`.

    Subclassing
    -----------
    Implementing :meth:`map_one` (one instance, numpy in and out) is all that is required: the
    batched :meth:`map`, every MAP-only solver (``active-set``, the Frank-Wolfe family), the
    certificate and the SPIGOT layer then work. Optional hooks add capabilities:

    - :meth:`map_batch`: a fast batched oracle (torch in and out);
    - :meth:`constraints`: cvxpy constraints of ``P`` (or of the relaxation it documents), for
      the ``cvxpy`` solver;
    - :meth:`vertices`: enumeration of ``Z`` for tiny instances, used by tests;
    - :meth:`relaxation`: a cheap outer polytope (defaults to ``self``), for the ``relaxed``
      solver;
    - :meth:`marginals_batch`: the marginals :math:`\mathbb{E}_{z \sim p_s}[z]` of the Gibbs
      distribution :math:`p_s(z) \propto \exp\langle s, z \rangle`, for structured attention.
    - :meth:`check_event_shape`, :meth:`valid_slices`, :meth:`min_length`,
      :meth:`max_length`, :meth:`variable_mask`: shape rules, when the defaults (any non-empty shape; ``lengths``
      counts entries of the first event axis) do not fit.

    Devices: every public method returns its result on the input's device with its dtype.
    :meth:`map_one` runs on the CPU, so the default :meth:`map_batch` copies a batch on
    another device (a GPU) to host memory once per batch and moves the vertices back once;
    each built-in family says where its oracle and marginals run.
    """

    #: How many trailing axes make one instance.
    event_ndim: int = 1

    # ------------------------------------------------------------------ shape rules
    def check_event_shape(self, event_shape: tuple[int, ...], name: str = "scores") -> None:
        """Raise ValueError if ``event_shape`` is not a valid instance shape."""
        if any(n < 1 for n in event_shape):
            raise ValueError(
                f"{name} has an empty event shape {event_shape} for {self!r}; "
                "every event axis needs at least one entry"
            )

    def min_length(self, event_shape: tuple[int, ...]) -> int:
        """Smallest valid entry of ``lengths``."""
        return 1

    def max_length(self, event_shape: tuple[int, ...]) -> int:
        """Largest valid entry of ``lengths`` for instances of ``event_shape``."""
        return event_shape[0]

    def valid_slices(self, event_shape: tuple[int, ...], length: int | None) -> tuple[slice, ...]:
        """Index of the valid region of an instance of the given length (``None``: all)."""
        first = slice(0, event_shape[0] if length is None else length)
        return (first,) + tuple(slice(0, n) for n in event_shape[1:])

    def variable_mask(
        self, shape: tuple[int, ...], lengths: torch.Tensor | None, device: torch.device | str
    ) -> torch.Tensor:
        """Boolean ``shape = (B, *event_shape)`` mask, True on the entries that are variables of ``P``.

        The step sizes of the SPIGOT family take their norms over these entries only. The
        default is every entry of each instance's valid region (:meth:`valid_slices`; filled in
        host memory and moved once when ``lengths`` is given, as for a padded batch);
        structures with entries that are not variables (the diagonal and the root column of
        dependency trees) override it.
        """
        if lengths is None:  # every entry of every instance: built on the device, no transfer
            return torch.ones(shape, dtype=torch.bool, device=device)
        event_shape = tuple(shape[1:])
        mask = np.zeros(shape, dtype=np.bool_)
        for i in range(shape[0]):
            mask[(i, *self.valid_slices(event_shape, None if lengths is None else int(lengths[i])))] = True
        return torch.from_numpy(mask).to(device)

    # ------------------------------------------------------------------ MAP oracle
    def map(self, scores: Array, lengths: Array | None = None) -> Array:
        r"""The highest-scoring vertex :math:`\operatorname*{argmax}_{z \in Z}\langle s, z\rangle`.

        Parameters
        ----------
        scores
            Tensor or array of shape ``(*batch, *event_shape)``.
        lengths
            Optional integer array of shape ``batch``; padded entries of the output are 0.

        Returns
        -------
        The vertex, with the shape, device and dtype of ``scores`` (numpy in, numpy out).
        """
        batch = as_batch(self, scores, lengths)
        with torch.no_grad():
            z = self.map_batch(batch.values, batch.lengths)
        return batch.restore(z)

    @abstractmethod
    def map_one(self, scores: np.ndarray) -> np.ndarray:
        """MAP oracle for one unpadded instance (float64 numpy in, 0/1 numpy out, same shape)."""

    def map_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Batched MAP oracle on validated input.

        Parameters
        ----------
        scores
            Finite tensor ``(B, *event_shape)``.
        lengths
            ``None`` or an int64 CPU tensor ``(B,)`` of valid lengths.

        Returns
        -------
        Tensor ``(B, *event_shape)`` on the device and with the dtype of ``scores``, padded
        entries 0. The default calls :meth:`map_one` on each instance, on the CPU: the batch is
        copied to host memory once and the vertices are moved back to the device of ``scores``
        once (never once per instance). Override it for speed.
        """
        event_shape = tuple(scores.shape[1:])
        values = scores.detach().cpu().numpy().astype(np.float64, copy=False)
        out = np.zeros(values.shape, dtype=np.float64)
        for i in range(values.shape[0]):
            sl = self.valid_slices(event_shape, None if lengths is None else int(lengths[i]))
            part = values[(i, *sl)]
            vertex = np.asarray(self.map_one(np.ascontiguousarray(part)), dtype=np.float64)
            if vertex.shape != part.shape:
                raise ValueError(
                    f"{type(self).__name__}.map_one returned shape {vertex.shape} for scores "
                    f"of shape {part.shape}; it must return a vertex of the same shape"
                )
            out[(i, *sl)] = vertex
        return torch.from_numpy(out).to(device=scores.device, dtype=scores.dtype)

    # ------------------------------------------------------------------ optional hooks
    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        """cvxpy constraints describing ``P`` for a variable of one unpadded instance's shape."""
        raise UnsupportedOperation(
            f"{type(self).__name__} does not define constraints(var), which the 'cvxpy' "
            "solver needs; use a MAP-only solver such as 'active-set' instead"
        )

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        """All vertices ``Z`` for an instance of ``event_shape``, as an array ``(V, *event_shape)``."""
        raise UnsupportedOperation(
            f"{type(self).__name__} does not define vertices(event_shape)"
        )

    def relaxation(self) -> Polytope:
        """The outer polytope that the ``relaxed`` solver projects onto (default: ``self``)."""
        return self

    def marginals(self, scores: Array, lengths: Array | None = None) -> Array:
        r"""Marginals :math:`\mu(s) = \mathbb{E}_{p_s}[z]`, :math:`p_s(z) \propto e^{\langle s, z\rangle}`.

        Differentiable in torch; same shape, device and dtype as ``scores``.
        """
        batch = as_batch(self, scores, lengths)
        return batch.restore(self.marginals_batch(batch.values, batch.lengths))

    def marginals_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Batched, differentiable marginals on validated input ``(B, *event_shape)``."""
        raise UnsupportedOperation(
            f"{type(self).__name__} does not define marginals; estimators that need them "
            "(marginals, STE-S, SPIGOT-CE/EG) cannot run on it"
        )

    def supports(self, capability: str) -> bool:
        """Whether the optional hook ``capability`` is implemented.

        ``capability`` is one of ``"map_batch"``, ``"constraints"``, ``"vertices"``,
        ``"marginals_batch"``.
        """
        if capability not in _OPTIONAL:
            raise ValueError(f"capability must be one of {_OPTIONAL}, got {capability!r}")
        return getattr(type(self), capability) is not getattr(Polytope, capability)

    # ------------------------------------------------------------------ convenience
    def project(
        self,
        x: Array,
        solver: Any = "exact",
        lengths: Array | None = None,
        **options: Any,
    ) -> ProjectionResult:
        """Euclidean projection of ``x`` onto this polytope; see :func:`spigot.solvers.get_solver`."""
        from spigot.solvers.registry import get_solver

        return get_solver(solver, **options).run(self, x, lengths)

    def __repr__(self) -> str:
        options = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_")
        )
        return f"{type(self).__name__}({options})"
