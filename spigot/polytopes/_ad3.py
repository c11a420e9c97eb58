"""MAP and LP-MAP of a :class:`~spigot.polytopes.factors.FactorGraph` with ad3, imported lazily.

ad3 is an optional dependency built by the project's install step; nothing here imports it
until a solve is requested, so ``import spigot`` works without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from spigot.polytopes.factors import DenseFactor, FactorGraph, LogicFactor, PairFactor

INSTALL_HINT = "run `make install` (scripts/install.sh), which builds ad3 2.2.1 into .venv/"

#: ad3's solver status codes ("unsolved": stopped at the iteration limit).
INTEGRAL, FRACTIONAL, _INFEASIBLE, UNSOLVED = 0, 1, 2, 3

_AD3_LOGIC = {"one-of": "XOR", "at-most-one": "ATMOSTONE", "at-least-one": "OR"}

#: Posteriors farther than this from {0, 1} make an "integral" exact MAP an error.
_INTEGRALITY_TOL = 1e-6


def require_ad3() -> ModuleType:
    """Import and return ``ad3.factor_graph``, or raise an ImportError naming the install step."""
    try:
        from ad3 import factor_graph
    except ImportError as err:
        raise ImportError(
            f"this feature needs the optional package ad3, which is not importable ({err}); "
            f"{INSTALL_HINT}"
        ) from err
    return factor_graph


@dataclass(frozen=True)
class Ad3Options:
    """Settings of ad3's ADMM solver.

    Attributes
    ----------
    max_iter
        ``set_max_iterations_ad3``: ADMM iterations per solve.
    tol
        ``set_residual_threshold_ad3``: primal and dual residual at which ADMM stops.
    """

    max_iter: int = 1000
    tol: float = 1e-12


def solve_exact(graph: FactorGraph, scores: np.ndarray, options: Ad3Options = Ad3Options()) -> np.ndarray:
    r"""The MAP :math:`\operatorname*{argmax}_{z \in Z} \langle s, z \rangle` by ad3's ``solve_exact_map_ad3``.

    Branch and bound on top of AD3's LP-MAP: fast when the LP is integral and well separated,
    but it may take long, or give up, on degenerate scores (many ties, as at a projection's
    residual).

    Parameters
    ----------
    graph
        The factor graph of the instance.
    scores
        Flat float64 scores, one per entry of the instance.

    Returns
    -------
    Flat 0/1 float64 vertex, 0 on every entry that is not a coordinate.

    Raises
    ------
    ValueError
        No assignment satisfies every factor.
    RuntimeError
        ad3 stopped without an integral solution.
    """
    point, status = _solve(graph, scores, True, options)
    if status == _INFEASIBLE:
        raise ValueError("no assignment satisfies every factor of this factor graph (ad3: infeasible)")
    rounded = np.round(point)
    if status != INTEGRAL or np.max(np.abs(point - rounded), initial=0.0) > _INTEGRALITY_TOL:
        raise RuntimeError(
            f"ad3's exact MAP stopped without an integral solution (status {status}); the scores "
            "may be degenerate: use the polytope's map() instead"
        )
    return rounded


def solve_lp(
    graph: FactorGraph, scores: np.ndarray, options: Ad3Options = Ad3Options()
) -> tuple[np.ndarray, int]:
    r"""ad3's ``solve_lp_map_ad3``: a maximiser of :math:`\langle s, p \rangle` over the local polytope.

    AD3 is an ADMM method: it stops at its residual threshold (``INTEGRAL`` or ``FRACTIONAL``
    solution) or, on LPs whose optimum is degenerate, at its iteration limit (``UNSOLVED``:
    the point is then only approximate, possibly slightly infeasible).

    Returns
    -------
    The flat point (rounded to 0/1 when ``INTEGRAL``: a vertex of :math:`Z` maximising the LP,
    hence an exact MAP to ad3's tolerance) and the status.

    Raises
    ------
    ValueError
        The local polytope is empty.
    """
    point, status = _solve(graph, scores, False, options)
    if status == _INFEASIBLE:
        raise ValueError("no assignment satisfies every factor of this factor graph (ad3: infeasible)")
    rounded = np.round(point)
    if status == INTEGRAL:
        if np.max(np.abs(point - rounded), initial=0.0) <= _INTEGRALITY_TOL:
            return rounded, INTEGRAL
        return point, FRACTIONAL
    return point, status


def _solve(graph: FactorGraph, scores: np.ndarray, exact: bool, options: Ad3Options) -> tuple[np.ndarray, int]:
    """Build the ad3 graph, solve it, and map posteriors back onto the flat entries."""
    point = np.zeros(graph.size)
    entries = np.array(graph.variable_entries, dtype=np.int64)
    free = graph.free_variables
    point[entries[free]] = scores[entries[free]] > 0  # no factor: the sign decides
    if not graph.factors and not graph.multi_variables:
        return point, INTEGRAL
    fg = require_ad3()
    # The argmax is scale-invariant and ad3's residual threshold is absolute: solve at unit scale.
    scale = float(np.max(np.abs(scores), initial=0.0))
    scores = scores / scale if scale > 0 else scores
    pgraph = fg.PFactorGraph()
    pgraph.set_verbosity(0)
    binaries, multis, order = _declare_variables(pgraph, graph, scores, free)
    outputs = _declare_factors(pgraph, graph, scores, binaries, multis)
    pgraph.fix_multi_variables_without_factors()
    pgraph.set_max_iterations_ad3(options.max_iter)
    pgraph.set_residual_threshold_ad3(options.tol)
    if exact:
        _, posteriors, additional, status = pgraph.solve_exact_map_ad3()
    else:
        _, posteriors, additional, status = pgraph.solve_lp_map_ad3()
    if status != _INFEASIBLE:
        point[entries[order]] = posteriors
        point[outputs] = additional
    return point, status


def _declare_variables(
    pgraph, graph: FactorGraph, scores: np.ndarray, free: np.ndarray
) -> tuple[list, list, np.ndarray]:
    """Create ad3 variables, multi-variables first.

    Returns the binary handle of every variable (``None`` for free ones), the handle of every
    multi-variable, and the variable ids in ad3's posterior order (its creation order).
    """
    entries = graph.variable_entries
    binaries: list = [None] * graph.n_variables
    multis: list = []
    order: list[int] = []
    for states in graph.multi_variables:
        multi = pgraph.create_multi_variable(len(states))
        for k, variable in enumerate(states):
            multi.set_log_potential(k, float(scores[entries[variable]]))
            binaries[variable] = multi.get_state(k)
            order.append(variable)
        multis.append(multi)
    skip = set(free.tolist())
    for variable in range(graph.n_variables):
        if binaries[variable] is not None or variable in skip:
            continue
        handle = pgraph.create_binary_variable()
        handle.set_log_potential(float(scores[entries[variable]]))
        binaries[variable] = handle
        order.append(variable)
    return binaries, multis, np.array(order, dtype=np.int64)


def _declare_factors(
    pgraph, graph: FactorGraph, scores: np.ndarray, binaries: list, multis: list
) -> np.ndarray:
    """Create ad3 factors in order; returns the entries of their additional posteriors."""
    outputs: list[int] = []
    for factor in graph.factors:
        if isinstance(factor, LogicFactor):
            variables = [binaries[v] for v in factor.variables]
            negated = list(factor.negated)
            if factor.kind == "budget":
                pgraph.create_factor_budget(variables, factor.budget, negated)
            else:
                pgraph.create_factor_logic(_AD3_LOGIC[factor.kind], variables, negated)
        elif isinstance(factor, PairFactor):
            pair = [binaries[factor.first], binaries[factor.second]]
            pgraph.create_factor_pair(pair, float(scores[factor.output]))
            outputs.append(factor.output)
        elif isinstance(factor, DenseFactor):
            bound = [multis[m] for m in factor.multi_variables]
            pgraph.create_factor_dense(bound, [float(scores[o]) for o in factor.outputs])
            outputs.extend(factor.outputs)
    return np.array(outputs, dtype=np.int64)
