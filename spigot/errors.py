"""Exceptions raised by spigot."""


class ProjectionError(RuntimeError):
    """A projection inside a backward pass did not reach its tolerance.

    Raised by the SPIGOT family of estimators when the solver reports ``success=False`` for
    some instance of the batch, unless the estimator was built with ``on_failure="warn"``.
    """


class ProjectionWarning(RuntimeWarning):
    """Warning issued instead of :class:`ProjectionError` when ``on_failure="warn"``."""


class UnsupportedOperation(TypeError):
    """A polytope lacks an optional capability that the requested operation needs.

    For example, the ``cvxpy`` solver needs :meth:`Polytope.constraints`, and structured
    attention needs :meth:`Polytope.marginals`. The message names the capability and suggests
    an alternative.
    """


class NumericalError(FloatingPointError, ValueError):
    """A quantity is undefined in floating point for these inputs (e.g. underflowing weights).

    Raised, for instance, by the matrix-tree marginals when the arc scores span so wide a range
    that the Kirchhoff matrix is singular in float64. It is a ``ValueError`` (the input is the
    cause) and a ``FloatingPointError`` (training loops that stop on numerical failure catch it).
    """
