r"""Structures defined by a factor graph, solved with ad3: :class:`FactorGraphPolytope` and its local polytope.

A subclass says which entries of an instance are binary variables and which factors constrain
them, by filling a :class:`~spigot.polytopes.factors.FactorGraph` in :meth:`FactorGraphPolytope.build`;
it then gets, with no other code,

- the exact MAP oracle :math:`\operatorname*{argmax}_{z \in Z} \langle s, z \rangle`
  (:meth:`~FactorGraphPolytope.ad3_map_one`): ad3's LP-MAP (``solve_lp_map_ad3``), whose
  integral solutions are MAPs, with HiGHS deciding exactly (the LP by dual simplex, then the
  integer program on the same constraints if the LP optimum is fractional) when ad3 ends
  fractional or unconverged, as it does on degenerate scores such as a projection's residual;
  :meth:`~FactorGraphPolytope.map_ad3` is ad3's own exact MAP (``solve_exact_map_ad3``, branch
  and bound over AD3);
- :meth:`~FactorGraphPolytope.relaxation`: the :class:`LocalPolytope`, whose MAP is an exact
  LP-MAP (HiGHS dual simplex) and whose :meth:`~LocalPolytope.ad3_map_one` is ad3's LP-MAP
  (with the same LP as fallback where ADMM stalls);
- :meth:`~FactorGraphPolytope.constraints`: the local-polytope inequalities for cvxpy;
- :meth:`~FactorGraphPolytope.vertices`: brute-force enumeration for tiny instances;
- every projection solver (``active-set`` and the Frank-Wolfe family through the MAP oracle,
  ``cvxpy`` through the constraints, ``ad3``) and the SPIGOT layer.

ad3 is imported only when a MAP is solved; without it, the error names the install command.

Devices: ad3 and HiGHS run on the CPU. :meth:`~FactorGraphPolytope.map`,
:meth:`~FactorGraphPolytope.map_ad3` and the certificates copy a batch on a GPU to host memory
once per batch (never once per instance) and move the vertices back to its device once.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from spigot._batch import Array, as_batch
from spigot._lazy import LazyModule
from spigot.polytopes import _ad3
from spigot.polytopes._ad3 import Ad3Options
from spigot.polytopes.base import Polytope
from spigot.polytopes.factors import FactorGraph

if TYPE_CHECKING:
    import cvxpy as cp

optimize = LazyModule("scipy.optimize")

#: Largest absolute score HiGHS sees (its tolerances are absolute; scaling is argmax-invariant).
_HIGHS_SCALE = 1e6
#: An LP vertex this close to 0/1 everywhere is taken as integral.
_HIGHS_INTEGRALITY_TOL = 1e-9


class FactorGraphPolytope(Polytope):
    r""":math:`\mathrm{conv}(Z)` for the vertices :math:`Z` of a factor graph over an instance's entries.

    Subclass it and implement :meth:`build`; set :attr:`event_ndim` (and the shape hooks of
    :class:`~spigot.polytopes.Polytope`) as the structure needs. The factor graph is built once
    per (unpadded) instance shape and cached.

    Example: a sequence of ``T`` one-of-``K`` choices whose neighbours are rewarded for
    agreeing, one instance of shape ``(T, 2K)`` (row ``t``: the choice scores, then the
    agreement scores of ``t`` and ``t + 1``)::

        class AgreeingSequence(FactorGraphPolytope):
            event_ndim = 2

            def build(self, graph):
                steps, k = graph.event_shape[0], graph.event_shape[1] // 2
                for t in range(steps):
                    graph.one_of([(t, j) for j in range(k)])
                for t in range(steps - 1):
                    for j in range(k):
                        graph.pair((t, j), (t + 1, j), output=(t, k + j))

    Two flags tell the ``ad3`` solver (AD3-QP) what it may rely on; both are ``False`` unless a
    subclass knows better.
    """

    #: ``lengths`` counts entries of the first event axis unless a subclass says otherwise.
    sized_axes = (0,)

    #: Whether the local polytope of every instance equals :math:`\mathrm{conv}(Z)` (integral,
    #: e.g. totally unimodular constraints): the polytope's own MAP then certifies a projection
    #: onto the local polytope.
    local_polytope_is_integral: bool = False
    #: Whether the factor graph of a padded instance is the full-shape graph with the padded
    #: entries fixed at 0 (factors restricted to the others), so that a padded batch can be
    #: solved at the full shape.
    pads_by_fixing: bool = False

    @abstractmethod
    def build(self, graph: FactorGraph) -> None:
        """Declare the variables and factors of one instance of shape ``graph.event_shape``."""

    # ------------------------------------------------------------------ the factor graph
    def factor_graph(self, event_shape: tuple[int, ...]) -> FactorGraph:
        """The (frozen, cached) factor graph of an unpadded instance of ``event_shape``."""
        event_shape = tuple(int(n) for n in event_shape)
        cache = self.__dict__.setdefault("_graphs", {})
        if event_shape not in cache:
            graph = FactorGraph(event_shape)
            self.build(graph)
            cache[event_shape] = graph.freeze()
        return cache[event_shape]

    # ------------------------------------------------------------------ MAP
    def map_one(self, scores: np.ndarray) -> np.ndarray:
        """Exact MAP of one instance (see :meth:`ad3_map_one`)."""
        return self.ad3_map_one(scores)

    def ad3_map_one(self, scores: np.ndarray, options: Ad3Options | None = None) -> np.ndarray:
        """Exact MAP of one unpadded instance with ad3 as the engine.

        ad3's LP-MAP first: when it converges to an integral point, that point maximises the
        LP over the local polytope, which contains every vertex, so it is a MAP. Otherwise
        (a fractional LP optimum, or ADMM stopped at its iteration limit on degenerate scores)
        HiGHS decides exactly: the same LP by dual simplex, and the integer program over the
        local-polytope constraints if that LP's optimal vertex is fractional.

        Parameters
        ----------
        scores
            Float64 scores of the instance's shape.
        options
            ad3's ADMM settings (:class:`~spigot.polytopes.Ad3Options`).

        Raises
        ------
        ImportError
            ad3 is missing (the message names the install command).
        ValueError
            No assignment satisfies the factors.
        """
        graph = self.factor_graph(scores.shape)
        flat = np.ascontiguousarray(scores, dtype=np.float64).ravel()
        point, status = _ad3.solve_lp(graph, flat, options or Ad3Options())
        if status != _ad3.INTEGRAL:
            point = _exact_map(graph, flat)
        return point.reshape(scores.shape)

    def map_ad3(self, scores: Array, lengths: Array | None = None) -> Array:
        """Batched MAP by ad3's own exact MAP, ``solve_exact_map_ad3`` (same contract as :meth:`map`).

        Branch and bound over AD3, whatever oracle :meth:`map` uses. It may be slow on
        degenerate (tied) scores, where :meth:`map` is the robust choice. ad3 runs on the CPU:
        the batch is copied to host memory once and the vertices go back to its device once.

        Raises
        ------
        ImportError
            ad3 is missing (the message names the install command).
        RuntimeError
            ad3 stopped without an integral solution.
        """
        batch = as_batch(self, scores, lengths)
        parts = []
        for x in batch.instances():
            graph = self.factor_graph(x.shape)
            parts.append(_ad3.solve_exact(graph, x.ravel()).reshape(x.shape))
        return batch.restore(batch.embed(parts))

    # ------------------------------------------------------------------ geometry
    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        r"""The local polytope of :meth:`build`'s factors.

        It equals the polytope when it is integral (trees of factors, totally unimodular
        constraints such as :class:`~spigot.polytopes.SemanticGraph`'s); otherwise the
        ``cvxpy`` solver projects onto this outer relaxation, not onto :math:`\mathrm{conv}(Z)`.
        """
        return local_polytope_constraints(self.factor_graph(var.shape), var)

    def vertices(self, event_shape: tuple[int, ...]) -> np.ndarray:
        """Every vertex, by brute force over the variables (tiny instances only)."""
        return self.factor_graph(event_shape).vertices()

    def relaxation(self) -> LocalPolytope:
        """The local polytope of the factor graph (what ad3's LP-MAP optimises over); one per polytope."""
        return self.local_polytope()

    def local_polytope(self) -> LocalPolytope:
        """The :class:`LocalPolytope` of the factor graph, whatever :meth:`relaxation` a subclass names."""
        if "_local" not in self.__dict__:
            self._local = LocalPolytope(self)
        return self._local


class LocalPolytope(Polytope):
    r"""The local polytope of a :class:`FactorGraphPolytope`'s factor graph: an outer relaxation.

    Every factor's own marginal polytope, glued on shared variables (see
    :mod:`spigot.polytopes.factors`); its vertices may be fractional. Two LP-MAP oracles:

    - :meth:`map_one` (used by :meth:`map`, the certificates and the MAP-only solvers) solves
      the LP exactly with HiGHS' dual simplex on :meth:`FactorGraph.local_polytope`, and
      returns a vertex;
    - :meth:`ad3_map_one` is ad3's ``solve_lp_map_ad3`` (ADMM, exact to its residual
      threshold), with the exact LP deciding where ad3 stops at its iteration limit; the
      ``ad3`` solver uses it.

    Shapes follow the wrapped polytope. Both oracles run on the CPU: a batch on a GPU is copied
    to host memory once per batch and the vertices moved back once.

    Parameters
    ----------
    polytope
        The factor-graph polytope whose local polytope this is.
    """

    #: AD3-QP (batched ADMM onto exactly this polytope) at a tight tolerance.
    preferred_exact_solver = ("ad3", {"tol": 1e-9})

    def __init__(self, polytope: FactorGraphPolytope) -> None:
        if not isinstance(polytope, FactorGraphPolytope):
            raise TypeError(f"polytope must be a FactorGraphPolytope, got {type(polytope).__name__}")
        self.polytope = polytope

    @property
    def event_ndim(self) -> int:  # type: ignore[override]
        return self.polytope.event_ndim

    def check_event_shape(self, event_shape: tuple[int, ...], name: str = "scores") -> None:
        self.polytope.check_event_shape(event_shape, name)

    def min_length(self, event_shape: tuple[int, ...]) -> int:
        return self.polytope.min_length(event_shape)

    def max_length(self, event_shape: tuple[int, ...]) -> int:
        return self.polytope.max_length(event_shape)

    def valid_slices(self, event_shape: tuple[int, ...], length: int | None) -> tuple[slice, ...]:
        return self.polytope.valid_slices(event_shape, length)

    def map_one(self, scores: np.ndarray) -> np.ndarray:
        """Exact LP-MAP of one instance: a maximising vertex of the local polytope (HiGHS)."""
        graph = self.polytope.factor_graph(scores.shape)
        flat = np.ascontiguousarray(scores, dtype=np.float64).ravel()
        return _highs_map(graph, flat, integral=False).reshape(scores.shape)

    def ad3_map_one(self, scores: np.ndarray, options: Ad3Options | None = None) -> np.ndarray:
        """LP-MAP of one unpadded instance with ad3's ``solve_lp_map_ad3`` as the engine.

        ad3's solution when its ADMM converges; when it stops at its iteration limit (on
        degenerate scores) the exact LP (HiGHS) decides.
        """
        graph = self.polytope.factor_graph(scores.shape)
        flat = np.ascontiguousarray(scores, dtype=np.float64).ravel()
        point, status = _ad3.solve_lp(graph, flat, options or Ad3Options())
        if status == _ad3.UNSOLVED:
            point = _highs_map(graph, flat, integral=False)
        return point.reshape(scores.shape)

    def constraints(self, var: cp.Variable) -> list[cp.Constraint]:
        return local_polytope_constraints(self.polytope.factor_graph(var.shape), var)

    def relaxation(self) -> LocalPolytope:
        return self


def _exact_map(graph: FactorGraph, scores: np.ndarray) -> np.ndarray:
    """Exact MAP with HiGHS: an integral LP optimum is a MAP; else the integer program."""
    point = _highs_map(graph, scores, integral=False)
    rounded = np.round(point)
    if np.max(np.abs(point - rounded), initial=0.0) <= _HIGHS_INTEGRALITY_TOL:
        return rounded
    return _highs_map(graph, scores, integral=True)


def _highs_map(graph: FactorGraph, scores: np.ndarray, integral: bool) -> np.ndarray:
    r""":math:`\operatorname*{argmax}_p \langle s, p \rangle` over the local polytope with HiGHS.

    ``integral=False``: the LP, by dual simplex (a vertex of the local polytope).
    ``integral=True``: the integer program (branch and cut, zero optimality gap), whose
    feasible points are exactly the vertices :math:`Z`; the result is rounded to 0/1.
    """
    local = graph.local_polytope()
    upper = np.zeros(graph.size)
    upper[local.coordinates] = 1.0
    constraints = []
    if local.b_ub.size:
        constraints.append(optimize.LinearConstraint(local.a_ub, -np.inf, local.b_ub))
    if local.b_eq.size:
        constraints.append(optimize.LinearConstraint(local.a_eq, local.b_eq, local.b_eq))
    # HiGHS' optimality tolerances are absolute (e.g. a MIP gap of 1e-6): solve at a large scale.
    peak = float(np.max(np.abs(scores), initial=0.0))
    # scores / peak first: _HIGHS_SCALE / peak overflows for subnormal scores
    cost = -(scores / peak) * _HIGHS_SCALE if peak > 0 else -scores
    if integral:
        result = optimize.milp(
            cost,
            integrality=np.ones(graph.size),
            bounds=optimize.Bounds(0.0, upper),
            constraints=constraints,
            options={"mip_rel_gap": 0.0},
        )
    else:
        result = optimize.linprog(
            cost,
            A_ub=local.a_ub if local.b_ub.size else None,
            b_ub=local.b_ub if local.b_ub.size else None,
            A_eq=local.a_eq if local.b_eq.size else None,
            b_eq=local.b_eq if local.b_eq.size else None,
            bounds=np.stack([np.zeros(graph.size), upper], axis=1),
            method="highs-ds",
        )
    if result.status == 2:
        raise ValueError("no assignment satisfies every factor of this factor graph (HiGHS: infeasible)")
    if not result.success:
        raise RuntimeError(f"HiGHS failed on the MAP of the factor graph: {result.message}")
    point = np.asarray(result.x, dtype=np.float64)
    return np.round(point) if integral else point


def local_polytope_constraints(graph: FactorGraph, var: cp.Expression) -> list[cp.Constraint]:
    """cvxpy constraints of ``graph``'s local polytope on ``var`` (shaped like one instance).

    The constraints are written in sparse matrix form on the C-order flattening of ``var``.
    """
    import cvxpy as cp

    if tuple(var.shape) != graph.event_shape:
        raise ValueError(f"var has shape {tuple(var.shape)}, the factor graph {graph.event_shape}")
    local = graph.local_polytope()
    flat = cp.reshape(var, (graph.size,), order="C")
    constraints = []
    if local.coordinates.size:
        constraints += [flat[local.coordinates] >= 0, flat[local.coordinates] <= 1]
    if local.fixed.size:
        constraints.append(flat[local.fixed] == 0)
    if local.b_ub.size:
        constraints.append(local.a_ub @ flat <= local.b_ub)
    if local.b_eq.size:
        constraints.append(local.a_eq @ flat == local.b_eq)
    return constraints


def is_ad3_backed(polytope: Polytope) -> bool:
    """Whether ``polytope`` solves its MAP (or LP-MAP) with ad3 through ``ad3_map_one``."""
    return isinstance(polytope, (FactorGraphPolytope, LocalPolytope))

