"""Exceptions raised by spigot."""


class ProjectionError(RuntimeError):
    """A projection inside a backward pass did not reach its tolerance.

    Raised by the SPIGOT family of estimators when the solver reports ``success=False`` for
    some instance of the batch, unless the estimator was built with ``on_failure="warn"``.
    The message states the numbers, which are also attributes.

    Attributes
    ----------
    gap
        The largest certificate gap reached among the failed instances (``None`` if unknown).
    tol
        The solver's tolerance ``tol`` (it stops when the gap is at most
        ``tol * max(1, ||x - p||_1)``; ``None`` for a solver without one).
    nit
        The iterations that failed instance used (``None`` if unknown).
    instances
        Flat indices of the failed instances in the batch.
    """

    def __init__(
        self,
        message: str,
        *,
        gap: float | None = None,
        tol: float | None = None,
        nit: int | None = None,
        instances: tuple[int, ...] = (),
    ) -> None:
        super().__init__(message)
        self.gap, self.tol, self.nit, self.instances = gap, tol, nit, tuple(instances)


class ProjectionWarning(RuntimeWarning):
    """Warning issued instead of :class:`ProjectionError` when ``on_failure="warn"``."""


class UnsupportedOperation(TypeError):
    """A polytope lacks an optional capability that the requested operation needs.

    For example, the ``cvxpy`` solver needs :meth:`Polytope.constraints`, and structured
    attention needs :meth:`Polytope.marginals`. The message names the capability and suggests
    an alternative.
    """


class IncompatibleSolver(UnsupportedOperation, ValueError):
    """A solver cannot run on a structure (``closed-form`` without a registered closed form,
    ``cvxpy`` without ``constraints``, ``ad3`` without a factor graph).

    Raised when a layer is built or :meth:`~spigot.polytopes.Polytope.project` is called, not at
    the first backward pass; the message names the solver, the structure, what the solver needs
    and what to use instead. It is an :class:`UnsupportedOperation` (a ``TypeError``) and a
    ``ValueError`` (a bad ``solver`` argument).
    """


class NumericalError(FloatingPointError, ValueError):
    """A quantity is undefined in floating point for these inputs (e.g. underflowing weights).

    Raised, for instance, by the matrix-tree marginals when the arc scores span so wide a range
    that the Kirchhoff matrix is singular in float64. It is a ``ValueError`` (the input is the
    cause) and a ``FloatingPointError`` (training loops that stop on numerical failure catch it).
    """
