r"""The Jacobian of a projection onto at-most-one constraints, from its active constraints, certified by KKT.

For a factor graph of at-most-one factors whose local polytope is :math:`\mathrm{conv}(Z)`
(:attr:`~spigot.polytopes.FactorGraphPolytope.local_polytope_is_integral`, e.g.
:class:`~spigot.polytopes.SemanticGraph`) the polytope is

.. math:: P = \{p : p \ge 0,\ a_f^\top p \le 1 \text{ for every factor } f\},

:math:`a_f` the 0/1 indicator of the coordinates of factor :math:`f` (every coordinate in at
least one factor; entries that are not coordinates are 0). The projection :math:`p^\star =
\Pi_P(x)` satisfies the KKT conditions :math:`x - p^\star = \sum_{f \in T} \mu_f a_f - \nu`
with :math:`\mu_f \ge 0` on the tight factors :math:`T` (:math:`a_f^\top p^\star = 1`) and
:math:`\nu_i \ge 0` on the zero coordinates :math:`Z`. Where they hold *strictly* (every
:math:`\mu_f > 0`, :math:`\nu_i > 0`, :math:`p^\star_i > 0` off :math:`Z` and :math:`a_f^\top
p^\star < 1` off :math:`T`), near :math:`x` the projection is the projection onto the affine
set :math:`\{p_Z = 0,\ a_f^\top p = 1\ (f \in T)\}`, and its Jacobian is the orthogonal
projector onto the directions :math:`\{d : d_Z = 0,\ B d = 0\}`, :math:`B` the rows
:math:`a_f, f \in T` restricted to the support :math:`S`:

.. math:: J g = g_S - B^\top (B B^\top)^{+} B\, g_S \text{ on } S, \qquad 0 \text{ on } Z.

:math:`B B^\top` is block diagonal over the connected components of the tight factors linked
by shared support coordinates (within one head for a semantic graph); every block is solved
densely by least squares (the pseudo-inverse handles dependent rows, e.g. a coordinate alone
in two tight factors).

:func:`constraint_face` reads :math:`Z` and :math:`T` from an *approximate* projection (ADMM's,
which carries no active set), recomputes the point exactly on that face,
:math:`p_S = x_S - B^\top \mu` with :math:`\mu = (B B^\top)^{+} (B x_S - \mathbf 1)`, and
certifies it by the strict KKT conditions above (margins relative to :math:`\max(1,
\|x\|_\infty)`). It returns ``None`` when they fail (an ADMM point too far from the face, or a
degenerate projection where :math:`\Pi_P` has a kink); the caller then falls back to the
active-set method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spigot._lazy import LazyModule
from spigot.polytopes.factor_graph import FactorGraphPolytope
from spigot.solvers.ad3_qp import factor_blocks_of

optimize = LazyModule("scipy.optimize")
sparse = LazyModule("scipy.sparse")

#: A coordinate of the approximate projection at most this is read as 0, a factor sum at least
#: 1 minus this as tight.
IDENTIFY_TOL = 1e-6
#: Strict KKT margins of the certified face, relative to max(1, |x|_inf).
MARGIN = 1e-9
#: The margin when the multipliers come from the LP (above its feasibility tolerance).
LP_MARGIN = 1e-6


def applies(polytope: object) -> bool:
    """Whether :func:`constraint_face` handles ``polytope``: a factor graph of at-most-one factors equal to its local polytope."""
    return isinstance(polytope, FactorGraphPolytope) and polytope.local_polytope_is_integral


def _factor_rows(polytope: FactorGraphPolytope, shape: tuple[int, ...]) -> np.ndarray | None:
    """``(F, width)`` flat coordinates of every factor (``-1`` pads short rows), or ``None`` if not all at-most-one."""
    blocks = factor_blocks_of(polytope, shape)
    if not all(b.kind == "budget" and b.budget == 1 and b.flip is None for b in blocks.blocks):
        return None
    width = max((b.size for b in blocks.blocks), default=1)
    rows = []
    for b in blocks.blocks:
        members = blocks.owner[b.start : b.stop].reshape(b.count, b.size)
        rows.append(np.pad(members, ((0, 0), (0, width - b.size)), constant_values=-1))
    rows = np.concatenate(rows) if rows else np.zeros((0, 1), dtype=np.int64)
    covered = np.zeros(blocks.size, dtype=bool)
    covered[rows[rows >= 0]] = True
    if not np.array_equal(covered, blocks.coordinates):
        return None  # a coordinate in no factor has an upper bound of its own
    return rows


@dataclass(frozen=True)
class ConstraintFace:
    """A certified face: its support, and per component of tight factors the rows and coordinates of ``B``."""

    size: int
    support: np.ndarray
    components: tuple[tuple[np.ndarray, np.ndarray], ...]

    def project(self, g: np.ndarray) -> np.ndarray:
        """The Jacobian (the projector onto the face's directions) applied to a flat ``g``."""
        out = np.where(self.support, g, 0.0)
        for matrix, columns in self.components:
            gs = out[columns]
            out[columns] = gs - matrix.T @ np.linalg.lstsq(matrix @ matrix.T, matrix @ gs, rcond=None)[0]
        return out


def constraint_face(polytope: FactorGraphPolytope, x: np.ndarray, p: np.ndarray) -> ConstraintFace | None:
    """The face of the projection of one unpadded instance ``x`` read from an approximate projection ``p``.

    Returns ``None`` when the polytope is not one of at-most-one factors or the face fails its
    strict KKT certificate (see the module).
    """
    rows = _factor_rows(polytope, x.shape)
    if rows is None:
        return None
    xf, pf = x.ravel(), p.ravel()
    coordinates = factor_blocks_of(polytope, x.shape).coordinates
    support = coordinates & (pf > IDENTIFY_TOL)
    padded = np.append(pf, 0.0)  # index -1 reads 0
    tight = padded[rows].sum(axis=1) >= 1.0 - IDENTIFY_TOL
    on_support = np.where(rows >= 0, np.append(support, False)[rows], False)
    tight_rows = rows[tight]
    tight_support = on_support[tight]
    # components of tight factors linked by shared support coordinates (union-find on coordinates)
    parent = np.arange(xf.size)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for row, keep in zip(tight_rows, tight_support):
        members = row[keep]
        for j in members[1:]:
            a, b = find(int(members[0])), find(int(j))
            if a != b:
                parent[b] = a
    groups: dict[int, list[int]] = {}
    for f, (row, keep) in enumerate(zip(tight_rows, tight_support)):
        members = row[keep]
        if not members.size:
            return None  # a tight factor with no support coordinate: its sum is 0, not 1
        groups.setdefault(find(int(members[0])), []).append(f)
    point = np.where(support, xf, 0.0)
    multipliers = np.zeros(len(tight_rows))
    components = []
    for factors in groups.values():
        columns = np.unique(np.concatenate([tight_rows[f][tight_support[f]] for f in factors]))
        index = {int(c): k for k, c in enumerate(columns)}
        matrix = np.zeros((len(factors), columns.size))
        for r, f in enumerate(factors):
            for c in tight_rows[f][tight_support[f]]:
                matrix[r, index[int(c)]] = 1.0
        mu = np.linalg.lstsq(matrix @ matrix.T, matrix @ xf[columns] - 1.0, rcond=None)[0]
        point[columns] = xf[columns] - matrix.T @ mu
        multipliers[factors] = mu
        components.append((matrix, columns))
    # strict KKT: primal feasibility off the identified constraints, positive multipliers on them
    margin = MARGIN * max(1.0, float(np.abs(xf).max(initial=0.0)))
    sums = np.append(point, 0.0)[rows].sum(axis=1)
    zero = coordinates & ~support
    primal = (
        np.all(point[support] > margin)
        and np.all(np.abs(sums[tight] - 1.0) <= margin)
        and np.all(sums[~tight] < 1.0 - margin)
    )
    if not primal:
        return None
    if not (np.all(multipliers > margin) and np.all(_pushed(tight_rows, multipliers, xf.size)[zero] - xf[zero] > margin)):
        # dependent tight rows leave the multipliers free along the null space of B^T: ask
        # whether some multipliers satisfy the conditions strictly (an LP)
        if not _strict_multipliers_exist(tight_rows, support, zero, xf, point, LP_MARGIN * margin / MARGIN):
            return None
    return ConstraintFace(xf.size, support, tuple(components))


def _pushed(tight_rows: np.ndarray, multipliers: np.ndarray, size: int) -> np.ndarray:
    r""":math:`\sum_{f \in T \ni i} \mu_f` for every flat entry ``i``."""
    out = np.zeros(size)
    np.add.at(out, tight_rows[tight_rows >= 0], np.repeat(multipliers, (tight_rows >= 0).sum(axis=1)))
    return out


def _strict_multipliers_exist(
    tight_rows: np.ndarray, support: np.ndarray, zero: np.ndarray, x: np.ndarray, point: np.ndarray, margin: float
) -> bool:
    r"""Whether multipliers :math:`\mu` with :math:`B^\top \mu = x_S - p_S`, :math:`\mu > ` ``margin`` and
    :math:`\nu_Z = A_Z^\top \mu - x_Z >` ``margin`` exist: maximise the smallest slack :math:`t` (HiGHS)."""
    n_tight = len(tight_rows)
    factor = np.repeat(np.arange(n_tight), (tight_rows >= 0).sum(axis=1))
    entry = tight_rows[tight_rows >= 0]
    incidence = sparse.csr_matrix((np.ones(entry.size), (entry, factor)), shape=(x.size, n_tight))
    covered = np.asarray(incidence.sum(axis=1)).ravel() > 0
    equal_rows = np.flatnonzero(support & covered)
    zero_rows = np.flatnonzero(zero)
    t_column = sparse.csr_matrix(np.ones((n_tight + zero_rows.size, 1)))
    upper = sparse.vstack([-sparse.identity(n_tight, format="csr"), -incidence[zero_rows]])
    result = optimize.linprog(
        c=np.append(np.zeros(n_tight), -1.0),
        A_ub=sparse.hstack([upper, t_column]),
        b_ub=np.append(np.zeros(n_tight), -x[zero_rows]),
        A_eq=sparse.hstack([incidence[equal_rows], sparse.csr_matrix((equal_rows.size, 1))]),
        b_eq=x[equal_rows] - point[equal_rows],
        bounds=[(None, None)] * n_tight + [(None, 1.0)],
        method="highs",
    )
    return bool(result.status == 0 and -result.fun > margin)
