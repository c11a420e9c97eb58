r"""A factor graph laid out for batched ADMM: factor copies in blocks, and each block's subproblem.

AD3 (Martins et al. 2015) keeps, for every factor :math:`f`, a copy :math:`q_f` of the
coordinates it touches. :class:`FactorBlocks` lays those copies side by side in one vector of
``n_copies`` entries (``owner[c]`` is the flat entry of the instance that copy ``c`` belongs
to), grouped in *blocks* of factors with the same subproblem, so that one subproblem
:math:`q_f = \Pi_{M_f}(y_f)` (the Euclidean projection onto the factor's marginal polytope
:math:`M_f`) is solved for every factor of a block, and of every instance of the batch, by a few
tensor operations.

Logic factors reduce to two closed forms on *literals* (a variable, or its complement
:math:`1 - z` where negated; :math:`v \mapsto 1 - v` is an isometry, so projecting literals and
mapping back is the projection):

- ``one_of``: :math:`\{\ell \ge 0, \sum \ell = 1\}`, the simplex (sort-based threshold);
- ``at_most_one`` and ``budget`` :math:`b`: :math:`\{0 \le \ell \le 1, \sum \ell \le b\}`: the clip
  :math:`\mathrm{clip}(y, 0, 1)` when it fits, else :math:`\mathrm{clip}(y - \tau, 0, 1)` with
  :math:`\sum = b` (for :math:`b = 1` the simplex projection; :func:`~spigot.solvers.project_budget`
  otherwise);
- ``at_least_one`` over :math:`k` literals is at most :math:`k - 1` complemented literals.

A multi-variable's states get a ``one_of`` block. Pair and dense factors have no such closed
form: their subproblem is solved by Wolfe's active-set method
(:class:`~spigot.solvers.active_set.ActiveSetState`) with the factor's own MAP (the best of its
few configurations) as oracle, warm-started at the factor's previous active set, one factor at
a time on the CPU (as AD3 does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spigot.polytopes.factors import DenseFactor, FactorGraph, LogicFactor, PairFactor
from spigot.solvers.active_set import ActiveSet, ActiveSetState
from spigot.projections import project_budget

#: The configurations of a pair factor over (z_a, z_b, w = z_a z_b).
PAIR_VERTICES = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=np.float64)
#: Wolfe's method stops a factor's subproblem at this certificate (times max(1, |y - q|_1)).
_FACTOR_TOL = 1e-13
#: A factor's subproblem gets at most this many MAP calls per ADMM iteration.
_FACTOR_MAX_ITER = 100


@dataclass
class Block:
    """Factors with one subproblem, their copies at ``start:stop`` (``count`` factors of ``size``).

    Attributes
    ----------
    kind
        ``"simplex"`` (sum of literals = 1), ``"budget"`` (sum of literals <= ``budget``,
        each in [0, 1]) or ``"hull"`` (the convex hull of ``vertices``).
    flip
        ``(count, size)`` booleans, the negated literals (``None`` when none is).
    vertices
        ``(V, size)`` configurations of a ``"hull"`` block.
    """

    kind: str
    start: int
    count: int
    size: int
    budget: int = 1
    flip: np.ndarray | None = None
    vertices: np.ndarray | None = None

    @property
    def stop(self) -> int:
        return self.start + self.count * self.size


@dataclass
class FactorBlocks:
    """The copies of a factor graph's factors, in blocks (see the module).

    Attributes
    ----------
    size
        Entries of one instance (the factor graph's ``size``).
    owner
        ``(n_copies,)`` flat entry of every copy.
    coordinates
        ``(size,)`` booleans: the entries that are variables or factor outputs (the others are 0).
    blocks
        The blocks, in copy order.
    """

    size: int
    owner: np.ndarray
    coordinates: np.ndarray
    blocks: list[Block]

    @property
    def n_copies(self) -> int:
        return int(self.owner.size)

    @property
    def closed_form(self) -> bool:
        """Whether every block has a closed-form subproblem (no per-factor loop)."""
        return all(block.kind != "hull" for block in self.blocks)

    @property
    def plain_at_most_one(self) -> bool:
        """Whether every factor is an un-negated at-most-one or one-of factor.

        Fixing some of their entries at 0 then restricts the factor to the others, which is how
        a padded instance is solved inside the full-shape graph (see
        :attr:`~spigot.polytopes.FactorGraphPolytope.pads_by_fixing`).
        """
        return all(
            block.kind == "simplex" or (block.kind == "budget" and block.budget == 1)
            for block in self.blocks
        ) and all(block.flip is None for block in self.blocks)


    def kernel_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Block starts, counts, sizes and kinds (0 at-most-one, 1 one-of) for the compiled kernel."""
        return (
            np.array([b.start for b in self.blocks], dtype=np.int64),
            np.array([b.count for b in self.blocks], dtype=np.int64),
            np.array([b.size for b in self.blocks], dtype=np.int64),
            np.array([int(b.kind == "simplex") for b in self.blocks], dtype=np.int64),
        )


def factor_blocks(graph: FactorGraph) -> FactorBlocks:
    """Group the factors (and multi-variables) of ``graph`` into blocks of copies."""
    entries = np.array(graph.variable_entries, dtype=np.int64)
    groups: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}
    vertices_of: dict[tuple, np.ndarray] = {}
    for factor in graph.factors:
        if isinstance(factor, LogicFactor):
            cols = entries[list(factor.variables)]
            flip = np.array(factor.negated, dtype=bool)
            if factor.kind == "one-of":
                key = ("simplex", cols.size, 1)
            elif factor.kind == "at-least-one":
                key, flip = ("budget", cols.size, cols.size - 1), ~flip
            else:
                key = ("budget", cols.size, factor.budget)
            groups.setdefault(key, []).append((cols, flip))
        elif isinstance(factor, PairFactor):
            key = ("hull", "pair")
            cols = np.array([entries[factor.first], entries[factor.second], factor.output])
            vertices_of[key] = PAIR_VERTICES
            groups.setdefault(key, []).append((cols, np.zeros(3, dtype=bool)))
        elif isinstance(factor, DenseFactor):
            states = [graph.multi_variables[m] for m in factor.multi_variables]
            sizes = tuple(len(s) for s in states)
            key = ("hull", "dense", sizes)
            vertices_of[key] = _dense_vertices(sizes)
            cols = np.concatenate([entries[list(s)] for s in states] + [np.array(factor.outputs)])
            groups.setdefault(key, []).append((cols, np.zeros(cols.size, dtype=bool)))
    for states in graph.multi_variables:
        cols = entries[list(states)]
        groups.setdefault(("simplex", cols.size, 1), []).append((cols, np.zeros(cols.size, dtype=bool)))

    blocks, owners, start = [], [], 0
    for key, members in groups.items():
        cols = np.stack([c for c, _ in members])
        flips = np.stack([f for _, f in members])
        kind = key[0]
        block = Block(
            kind=kind,
            start=start,
            count=len(members),
            size=cols.shape[1],
            budget=key[2] if kind == "budget" else 1,
            flip=flips if flips.any() else None,
            vertices=vertices_of.get(key),
        )
        blocks.append(block)
        owners.append(cols.ravel())
        start = block.stop
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    coordinates = np.zeros(graph.size, dtype=bool)
    coordinates[graph.local_polytope().coordinates] = True
    return FactorBlocks(graph.size, owner.astype(np.int64), coordinates, blocks)


def _dense_vertices(sizes: tuple[int, ...]) -> np.ndarray:
    """Configurations of a dense factor: one-hot states of each multi-variable, then the joint one-hot."""
    joint = np.indices(sizes).reshape(len(sizes), -1).T  # (configurations, multi-variables)
    count = len(joint)
    parts = [np.eye(n)[joint[:, j]] for j, n in enumerate(sizes)]
    return np.concatenate(parts + [np.eye(count)], axis=1)


# ----------------------------------------------------------------------------- closed forms
def project_at_most_one(y: torch.Tensor) -> torch.Tensor:
    r"""Rows of ``y`` projected onto :math:`\{q \ge 0, \sum q \le 1\}`; ``-inf`` entries give 0.

    :math:`\max(y, 0)` when it sums to at most 1, else the simplex projection.
    """
    clipped = y.clamp(min=0.0)
    fits = clipped.sum(dim=-1, keepdim=True) <= 1.0
    return torch.where(fits, clipped, project_simplex_rows(y))


def project_simplex_rows(y: torch.Tensor) -> torch.Tensor:
    r"""Rows of ``y`` projected onto the simplex: :math:`(y - \tau)_+` with the sort-based :math:`\tau`.

    ``-inf`` entries give 0 (a row needs one finite entry).
    """
    u = torch.sort(y, dim=-1, descending=True).values
    excess = u.cumsum(dim=-1) - 1.0
    ranks = torch.arange(1, y.shape[-1] + 1, device=y.device, dtype=y.dtype)
    support = (u * ranks > excess).sum(dim=-1, keepdim=True).clamp(min=1)
    tau = excess.gather(-1, support - 1) / support
    return (y - tau).clamp(min=0.0)


def project_block(block: Block, y: torch.Tensor, flip: torch.Tensor | None) -> torch.Tensor:
    """The closed-form subproblem of a ``simplex`` or ``budget`` block on ``y`` ``(B, count, size)``."""
    literals = y if flip is None else torch.where(flip, 1.0 - y, y)
    if block.kind == "simplex":
        out = project_simplex_rows(literals)
    elif block.budget == 0:
        out = torch.zeros_like(literals)
    elif block.budget >= block.size:
        out = literals.clamp(0.0, 1.0)
    elif block.budget == 1:
        out = project_at_most_one(literals).clamp(max=1.0)
    else:
        out = project_budget(literals, block.budget, at_most=True, validate=False)
    return out if flip is None else torch.where(flip, 1.0 - out, out)


# ----------------------------------------------------------------------------- hull blocks
class HullSubproblems:
    """Wolfe's active set for every factor (and instance) of a ``hull`` block, kept between calls.

    The oracle of a factor is its MAP, the best of its configurations ``block.vertices``.
    """

    def __init__(self, block: Block, batch: int) -> None:
        self.block = block
        self.states: list[list[tuple[np.ndarray, np.ndarray] | None]] = [
            [None] * block.count for _ in range(batch)
        ]

    def project(self, y: torch.Tensor) -> torch.Tensor:
        """Project every factor copy of ``y`` ``(B, count, size)`` onto its factor's hull (CPU, float64)."""
        values = y.detach().cpu().numpy().astype(np.float64)
        out = np.empty_like(values)
        vertices = self.block.vertices
        for b in range(values.shape[0]):
            for f in range(values.shape[1]):
                out[b, f], self.states[b][f] = _hull_projection(vertices, values[b, f], self.states[b][f])
        return torch.from_numpy(out).to(device=y.device, dtype=y.dtype)


def _hull_projection(
    vertices: np.ndarray, y: np.ndarray, start: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Projection of ``y`` onto conv(``vertices``) by Wolfe's method; returns it and its active set."""
    state = ActiveSetState(y, capacity=max(4, len(vertices)))
    if start is None:
        state.add(vertices[np.argmax(vertices @ y)], 1.0)
    else:
        for v, w in zip(*start):
            state.add(v, w)
        state.active_weights[:] /= state.active_weights.sum()
        ActiveSet._minor_cycles(state)
    p = state.point
    for _ in range(_FACTOR_MAX_ITER):
        residual = y - p
        v = vertices[np.argmax(vertices @ residual)]
        if residual @ (v - p) <= _FACTOR_TOL * max(1.0, float(np.abs(residual).sum())):
            break
        if state.index(v) >= 0 or not state.add(v):
            break
        ActiveSet._minor_cycles(state)
        p = state.point
    return p, (state.active.copy(), state.active_weights.copy())
