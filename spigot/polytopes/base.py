"""The :class:`Polytope` contract: geometry and MAP oracle of a structured output space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, ClassVar, NamedTuple

import numpy as np
import torch

from spigot._batch import Array, as_batch, instance_length
from spigot.errors import UnsupportedOperation

if TYPE_CHECKING:
    import cvxpy as cp

    from spigot.solvers.result import ProjectionResult

_OPTIONAL = (
    "map_batch",
    "constraints",
    "vertices",
    "marginals_batch",
    "log_partition_batch",
    "sample_batch",
)

#: A projection procedure a polytope names: ``fn(x (B, *event), lengths (B,) or None) -> p``, on
#: validated flat torch input, differentiable, on the input's device.
Projection = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


#: A closed form's residual at a step a polytope names: ``fn(x, d, sizes (B,), lengths) ->
#: x - Pi(x - sizes * d)``, on validated flat torch input, on the input's device (no autograd).
Residual = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class CompiledOracle(NamedTuple):
    """A numba-compiled MAP oracle for one unpadded instance (see :mod:`spigot.polytopes._support_oracle`).

    Attributes
    ----------
    function
        ``support = function(scores, params)``, a numba-jitted function that compiles for the
        signature ``int64[::1](float64[::1], int64[::1])``; ``scores`` is the instance
        flattened in C order, ``support`` the flat positions of the ones of its MAP vertex.
    params
        The int64 parameters ``function`` reads (sizes, options), contiguous.
    support_size
        The most ones a vertex of this instance has.
    """

    function: Any
    params: np.ndarray
    support_size: int


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

    Padding: by default ``lengths`` cuts every axis named by :attr:`sized_axes` (``None``, the
    default, names every event axis: an instance of length ``n`` occupies ``[:n, :n]`` of a
    square structure), and padded entries of every output are 0. A structure whose other axes
    have fixed sizes (``(G, k)``: ``G`` groups of ``k`` choices) sets ``sized_axes = (0,)``;
    with one length per instance, sized axes of different sizes are an error rather than a
    guess. A structure with :attr:`per_axis_lengths` also accepts ``lengths`` of shape
    ``(*batch, len(sized_axes))``, one length per sized axis (rows x columns of a bipartite
    matching).

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
    - :meth:`log_partition_batch` and :meth:`sample_batch`: the log-partition
      :math:`\log \sum_{z \in Z} e^{\langle s, z\rangle}` and exact samples of :math:`p_s`,
      behind the public :meth:`log_partition`, :meth:`entropy` (which also needs the
      marginals) and :meth:`sample`.
    - :meth:`check_event_shape`, :meth:`valid_slices`, :meth:`min_length`,
      :meth:`max_length`, :attr:`sized_axes`, :attr:`per_axis_lengths`: shape rules, when the
      defaults (any non-empty shape; ``lengths`` cuts every event axis) do not fit.

    What a structure knows about its own projections it declares in its class body (the
    solvers read it through :meth:`closed_form`, :meth:`relaxed_procedure`,
    :meth:`exact_solver` and :meth:`compiled_oracle`):

    - ``closed_form_projection(self, x, lengths)``: the exact projection onto ``P`` by a closed
      form (usually a function of :mod:`spigot.projections`), used by ``closed-form`` and
      ``exact``;
    - ``closed_form_residual(self, point, direction, sizes, lengths)``: optionally, with a closed
      form, its residual at a step, :math:`x_b - \Pi_P(x_b - t_b d_b)` (``sizes`` :math:`t`, a
      float64 ``(B,)`` tensor; entries of ``direction`` outside the variables ignored). The
      SPIGOT family's backward passes compute exactly this (read through
      :meth:`residual_form`); one fused pass saves writing the stepped point and the
      projection as batches;
    - ``relaxed_projection(self, x, lengths)``: the procedure the ``relaxed`` solver applies in
      place of the Euclidean projection onto :meth:`relaxation` (a reference implementation's
      own procedure);
    - ``preferred_exact_solver``: the name (or ``(name, options)``) of the solver ``exact``
      uses when there is no closed form (one faster than ``active-set`` on this family);
    - ``compiled_map(self, event_shape)``: a :class:`CompiledOracle`, the same MAP as
      :meth:`map_one` compiled by numba, with which ``active-set`` runs its whole loop in
      compiled code (read through :meth:`compiled_oracle`).

    These declarations are **not inherited**: a subclass may change the vertex set (a
    constructor option, a restricted ``map_one``), so a closed form that fits the parent could
    silently return a wrong projection for it. A subclass that keeps its parent's vertex set
    re-declares the hook (``closed_form_projection = Parent.closed_form_projection``).

    Devices: every public method returns its result on the input's device with its dtype.
    :meth:`map_one` runs on the CPU, so the default :meth:`map_batch` copies a batch on
    another device (a GPU) to host memory once per batch and moves the vertices back once;
    each built-in family says where its oracle and marginals run.
    """

    #: How many trailing axes make one instance.
    event_ndim: int = 1

    #: The solver that ``exact`` uses on this class when it has no closed form: a registered
    #: name, or ``(name, options)`` (declared per class, not inherited; see the class docs).
    preferred_exact_solver: ClassVar[str | tuple[str, dict[str, Any]] | None] = None

    #: The event axes that ``lengths`` cuts in the default :meth:`valid_slices` (``None``:
    #: every event axis, which is right for square structures).
    sized_axes: tuple[int, ...] | None = None

    #: Whether ``lengths`` may give one length per sized axis, shape ``(*batch, k)``.
    per_axis_lengths: bool = False

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
        return min(event_shape[axis] for axis in self.length_axes())

    def length_axes(self) -> tuple[int, ...]:
        """The event axes that ``lengths`` cuts: :attr:`sized_axes`, or every event axis."""
        if self.sized_axes is None:
            return tuple(range(self.event_ndim))
        return tuple(self.sized_axes)

    def valid_slices(
        self, event_shape: tuple[int, ...], length: int | tuple[int, ...] | None
    ) -> tuple[slice, ...]:
        """Index of the valid region of an instance of the given length (``None``: all).

        ``length`` is one integer (every sized axis is cut to it) or, with
        :attr:`per_axis_lengths`, one integer per axis of :meth:`length_axes`.
        """
        slices = [slice(0, n) for n in event_shape]
        if length is None:
            return tuple(slices)
        axes = self.length_axes()
        sizes = tuple(length) if isinstance(length, tuple) else (length,) * len(axes)
        for axis, size in zip(axes, sizes):
            slices[axis] = slice(0, size)
        return tuple(slices)

    def variable_mask(self, event_shape: tuple[int, ...]) -> np.ndarray | None:
        """Boolean array of ``event_shape``, True on the entries that are variables of the polytope.

        The other entries (the diagonal and column 0 of arc scores, ...) are 0 in every vertex
        and ignored in scores: input validation sets them to 0 before any oracle or solver sees
        them, so that masking constants placed there change no result. ``None`` (the default)
        means every entry is a variable.
        """
        return None

    def has_constant_vertex_sum(self) -> bool:
        """Whether every vertex of a valid instance has the same number of ones (default: False).

        Then adding a constant to every variable changes no MAP, projection or marginal, and
        input validation subtracts each instance's largest variable: on ``x + 1e17`` the
        solvers then see ``x`` itself rather than residuals that round away the point.
        """
        return False

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
        batch = as_batch(self, scores, lengths, center=False)  # a shift changes no argmax
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
            sl = self.valid_slices(event_shape, instance_length(lengths, i))
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

    def log_partition(self, scores: Array, lengths: Array | None = None) -> Array:
        r"""The log-partition :math:`\log Z(s) = \log \sum_{z \in Z} e^{\langle s, z\rangle}` per instance.

        Differentiable in torch (its gradient is the marginals). Returns shape ``batch`` (a
        0-d tensor for one instance), on the device and with the dtype of ``scores``.
        """
        batch = as_batch(self, scores, lengths, center=False)  # log Z moves with a shift
        log_z = self.log_partition_batch(batch.values, batch.lengths)
        return batch.restore(log_z.to(batch.values.dtype), event=False)

    def entropy(self, scores: Array, lengths: Array | None = None) -> Array:
        r"""Entropy of the Gibbs distribution, :math:`H(p_s) = \log Z(s) - \langle s, \mu(s)\rangle`.

        Needs :meth:`log_partition_batch` and :meth:`marginals_batch`; differentiable in torch.
        Returns shape ``batch``, on the device and with the dtype of ``scores``.
        """
        from spigot.polytopes._distributions import entropy_from

        batch = as_batch(self, scores, lengths)
        log_z = self.log_partition_batch(batch.values, batch.lengths)
        mu = self.marginals_batch(batch.values, batch.lengths)
        entropy = entropy_from(log_z, batch.values.to(mu.dtype), mu)
        return batch.restore(entropy.to(batch.values.dtype), event=False)

    def sample(
        self,
        scores: Array,
        lengths: Array | None = None,
        n: int = 1,
        generator: torch.Generator | None = None,
    ) -> Array:
        r"""``n`` independent exact samples of :math:`p_s(z) \propto e^{\langle s, z\rangle}`.

        Parameters
        ----------
        scores, lengths
            As for :meth:`map`.
        n
            Number of samples per instance, a positive integer.
        generator
            Optional ``torch.Generator`` on the device of ``scores``, for reproducible draws.

        Returns
        -------
        Vertices of shape ``(n, *batch, *event_shape)`` (padded entries 0), with the device
        and dtype of ``scores``; not differentiable.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        batch = as_batch(self, scores, lengths)
        with torch.no_grad():
            draws = self.sample_batch(batch.values.detach(), batch.lengths, int(n), generator)
        out = draws.transpose(0, 1).to(batch.values.dtype)  # (B, n, *event): restore the batch axes
        restored = batch.restore(out, event=False)
        if isinstance(restored, np.ndarray):
            return np.moveaxis(restored, len(batch.batch_shape), 0)
        return restored.movedim(len(batch.batch_shape), 0)

    def log_partition_batch(self, scores: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Batched, differentiable log-partition ``(B,)`` on validated input ``(B, *event_shape)``."""
        raise UnsupportedOperation(
            f"{type(self).__name__} does not define log_partition_batch; its log-partition, "
            "entropy and samples are not available"
        )

    def sample_batch(
        self,
        scores: torch.Tensor,
        lengths: torch.Tensor | None,
        n: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``n`` exact samples ``(n, B, *event_shape)`` on validated input ``(B, *event_shape)``."""
        raise UnsupportedOperation(
            f"{type(self).__name__} does not define sample_batch; it cannot be sampled from"
        )

    # ------------------------------------------------------------------ projection hooks
    def closed_form(self) -> Projection | None:
        """The closed-form projection this class declares (``closed_form_projection``), or ``None``.

        Only a declaration in the polytope's own class counts (see the class docs).
        """
        return self._declared("closed_form_projection")

    def residual_form(self) -> Residual | None:
        """The closed form's residual at a step this class declares (``closed_form_residual``), or ``None``.

        Only a declaration in the polytope's own class counts (see the class docs).
        """
        return self._declared("closed_form_residual")

    def relaxed_procedure(self) -> Projection | None:
        """The relaxed procedure this class declares (``relaxed_projection``), or ``None``.

        ``None`` means the ``relaxed`` solver projects onto :meth:`relaxation` itself.
        """
        return self._declared("relaxed_projection")

    def exact_solver(self) -> tuple[str, dict[str, Any]] | None:
        """``(name, options)`` of the solver this class declares as ``preferred_exact_solver``, or ``None``."""
        declared = self._declared("preferred_exact_solver")
        if declared is None or isinstance(declared, tuple):
            return declared
        return declared, {}

    def compiled_oracle(self, event_shape: tuple[int, ...]) -> CompiledOracle | None:
        """The compiled MAP oracle this class declares (``compiled_map``) for one unpadded
        instance of ``event_shape``, or ``None``."""
        declared = self._declared("compiled_map")
        return None if declared is None else declared(event_shape)

    def _declared(self, name: str) -> Any:
        """``name`` as declared in the body of this object's own class (bound if a method), else None."""
        value = type(self).__dict__.get(name)
        if value is None:
            return None
        return value.__get__(self, type(self)) if hasattr(value, "__get__") and callable(value) else value

    def supports(self, capability: str) -> bool:
        """Whether the optional hook ``capability`` is implemented.

        ``capability`` is one of ``"map_batch"``, ``"constraints"``, ``"vertices"``,
        ``"marginals_batch"``, ``"log_partition_batch"``, ``"sample_batch"``.
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
        """Euclidean projection of ``x`` onto this polytope; see :func:`spigot.solvers.get_solver`.

        Raises :class:`~spigot.errors.IncompatibleSolver` when the solver cannot run on this
        structure (e.g. ``"cvxpy"`` without :meth:`constraints`).
        """
        from spigot.solvers.compatibility import check_compatible
        from spigot.solvers.registry import get_solver

        return check_compatible(get_solver(solver, **options), self).run(self, x, lengths)

    def __repr__(self) -> str:
        options = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_")
        )
        return f"{type(self).__name__}({options})"
