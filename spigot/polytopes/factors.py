r"""Factor graphs over the entries of one instance: binary variables, factors, their local polytope.

A :class:`FactorGraph` describes a structure the way ad3's ``PFactorGraph`` does, but as plain
data that knows nothing of ad3: some entries of an instance (an array of the instance's event
shape) are **binary variables**, some are the **outputs** of factors that carry their own
coordinates (the "additional posteriors" of pair and dense factors), and the remaining entries
are not coordinates at all (fixed at 0, their scores ignored). A vertex :math:`z` is an
assignment of the variables that satisfies every factor, with each output set to the indicator
of its configuration; the score of a vertex is :math:`\langle s, z \rangle` over all entries.

Factors (each maps one to one onto an ad3 factor):

=================  =================================================  ============================
method             vertices allow                                     ad3
=================  =================================================  ============================
``one_of``         exactly one literal on                             ``XOR``
``at_most_one``    at most one literal on                             ``ATMOSTONE``
``at_least_one``   at least one literal on                            ``OR``
``budget``         at most ``budget`` literals on                     ``create_factor_budget``
``pair``           any; output :math:`w = z_a z_b`                    ``create_factor_pair``
``dense``          any joint state of its multi-variables; one        ``create_factor_dense``
                   output per joint state (C order), its indicator
=================  =================================================  ============================

A *literal* is a variable or, where ``negated`` is set, its complement :math:`1 - z_i`. A
*multi-variable* (:meth:`FactorGraph.multi_variable`) groups binary variables that are the
one-hot states of one discrete variable; exactly one of them is on.

The **local polytope** (:meth:`FactorGraph.local_polytope`) keeps every coordinate in
:math:`[0, 1]`, fixes non-coordinates at 0, and imposes each factor's own marginal polytope:

- one-of, at-most-one, at-least-one, budget on literals :math:`\ell_i`:
  :math:`\sum_i \ell_i = 1`, :math:`\le 1`, :math:`\ge 1`, :math:`\le b`;
- pair :math:`(z_a, z_b, w)`: :math:`w \le z_a`, :math:`w \le z_b`, :math:`z_a + z_b - w \le 1`;
- dense with outputs :math:`\mu_c \ge 0`: for every multi-variable :math:`j` and state
  :math:`t`, :math:`\sum_{c : c_j = t} \mu_c = z_{j,t}`; every multi-variable sums to 1.

It contains :math:`\mathrm{conv}(Z)` and equals it when the factor graph is a tree or the
constraint matrix is totally unimodular (as for semantic graphs).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from spigot._lazy import LazyModule

sp = LazyModule("scipy.sparse")

Index = int | Sequence[int]

#: Largest number of candidate assignments :meth:`FactorGraph.vertices` walks through.
MAX_ENUMERATION = 2**20

_UNUSED, _VARIABLE, _OUTPUT = 0, 1, 2


@dataclass(frozen=True)
class LogicFactor:
    """A one-of, at-most-one, at-least-one or budget factor over literals of binary variables.

    Attributes
    ----------
    kind
        ``"one-of"``, ``"at-most-one"``, ``"at-least-one"`` or ``"budget"``.
    variables
        Variable ids (distinct).
    negated
        Per variable, whether the literal is its complement.
    budget
        The budget of a ``"budget"`` factor (1 for the others).
    """

    kind: str
    variables: tuple[int, ...]
    negated: tuple[bool, ...]
    budget: int = 1

    def literal_sum_row(self) -> tuple[np.ndarray, np.ndarray, float]:
        r"""``(variables, coefficients, offset)`` with :math:`\sum_i \ell_i = \mathrm{offset} + c^\top z`."""
        signs = np.where(self.negated, -1.0, 1.0)
        return np.array(self.variables), signs, float(sum(self.negated))

    def satisfied(self, assignment: np.ndarray) -> np.ndarray:
        """Which rows of a ``(K, n_variables)`` 0/1 assignment matrix satisfy the factor."""
        literals = assignment[:, list(self.variables)].astype(np.int64)
        negated = np.array(self.negated, dtype=bool)
        literals[:, negated] = 1 - literals[:, negated]
        on = literals.sum(axis=1)
        if self.kind == "one-of":
            return on == 1
        if self.kind == "at-least-one":
            return on >= 1
        return on <= self.budget


@dataclass(frozen=True)
class PairFactor:
    """A pair factor: its output entry holds :math:`z_a z_b` (both variables on)."""

    first: int
    second: int
    output: int


@dataclass(frozen=True)
class DenseFactor:
    """A dense factor over multi-variables: one output entry per joint state, in C order."""

    multi_variables: tuple[int, ...]
    outputs: tuple[int, ...]


Factor = LogicFactor | PairFactor | DenseFactor


@dataclass(frozen=True)
class LocalPolytopeConstraints:
    r"""The local polytope in matrix form, over the flattened entries of one instance.

    :math:`\{p : p_{\mathrm{fixed}} = 0,\ 0 \le p_{\mathrm{coordinates}} \le 1,\
    A_{ub}\, p \le b_{ub},\ A_{eq}\, p = b_{eq}\}`.
    """

    coordinates: np.ndarray
    fixed: np.ndarray
    a_ub: sp.csr_matrix
    b_ub: np.ndarray
    a_eq: sp.csr_matrix
    b_eq: np.ndarray

    def violation(self, p: np.ndarray) -> float:
        """Largest violation of any constraint by the flat point ``p`` (0 when feasible)."""
        parts = [0.0]
        if self.coordinates.size:
            values = p[self.coordinates]
            parts += [float(np.max(-values)), float(np.max(values - 1.0))]
        if self.fixed.size:
            parts.append(float(np.max(np.abs(p[self.fixed]))))
        if self.b_ub.size:
            parts.append(float(np.max(self.a_ub @ p - self.b_ub)))
        if self.b_eq.size:
            parts.append(float(np.max(np.abs(self.a_eq @ p - self.b_eq))))
        return max(parts)


class _Rows:
    """Accumulates sparse constraint rows ``coefficients @ p (<= or ==) bound``."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.bounds: list[float] = []

    def add(self, cols: np.ndarray, vals: np.ndarray, bound: float) -> None:
        self.rows.append(np.full(len(cols), len(self.bounds)))
        self.cols.append(np.asarray(cols, dtype=np.int64))
        self.vals.append(np.asarray(vals, dtype=np.float64))
        self.bounds.append(bound)

    def matrix(self, size: int) -> tuple[sp.csr_matrix, np.ndarray]:
        if not self.bounds:
            return sp.csr_matrix((0, size)), np.zeros(0)
        data = (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols)))
        return sp.csr_matrix(data, shape=(len(self.bounds), size)), np.array(self.bounds)


class FactorGraph:
    """Binary variables on the entries of one instance and the factors that constrain them.

    Build it by calling the factor methods with entry indices (a tuple of ints, one per event
    axis, or a flat int in C order); an entry becomes a binary variable the first time a factor
    (or :meth:`variables`) uses it. Entries used by no factor are not coordinates: vertices are
    0 there. Call :meth:`freeze` when done (the polytope does so); a frozen graph cannot change.

    Parameters
    ----------
    event_shape
        The shape of one (unpadded) instance.
    """

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        self.event_shape = tuple(int(n) for n in event_shape)
        self.size = int(np.prod(self.event_shape))
        self.variable_entries: list[int] = []
        self.factors: list[Factor] = []
        self.multi_variables: list[tuple[int, ...]] = []
        self._role = np.zeros(self.size, dtype=np.int8)
        self._variable_of = np.full(self.size, -1, dtype=np.int64)
        self._multi_of: dict[int, int] = {}
        self._frozen = False
        self._local: LocalPolytopeConstraints | None = None
        self._free: np.ndarray | None = None

    # ------------------------------------------------------------------ entries and variables
    def entry(self, index: Index) -> int:
        """The flat (C-order) position of ``index``, checked against the event shape."""
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            flat = int(index)
            if not 0 <= flat < self.size:
                raise ValueError(f"entry {flat} is out of range for event shape {self.event_shape}")
            return flat
        index = tuple(index)
        if len(index) != len(self.event_shape) or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index
        ):
            raise ValueError(
                f"index {index!r} must be a flat int or a tuple of {len(self.event_shape)} ints "
                f"for event shape {self.event_shape}"
            )
        if not all(0 <= i < n for i, n in zip(index, self.event_shape)):
            raise ValueError(f"index {index} is out of range for event shape {self.event_shape}")
        return int(np.ravel_multi_index(index, self.event_shape))

    def variable(self, index: Index) -> int:
        """The id of the binary variable at ``index``, declaring it on first use."""
        self._check_open()
        flat = self.entry(index)
        if self._role[flat] == _OUTPUT:
            raise ValueError(f"entry {index!r} is a factor output; it cannot also be a variable")
        if self._role[flat] == _UNUSED:
            self._role[flat] = _VARIABLE
            self._variable_of[flat] = len(self.variable_entries)
            self.variable_entries.append(flat)
        return int(self._variable_of[flat])

    def variables(self, indices: Iterable[Index]) -> list[int]:
        """Declare (or look up) the binary variables at ``indices``; free ones take any value."""
        return [self.variable(i) for i in indices]

    @property
    def n_variables(self) -> int:
        """Number of binary variables."""
        return len(self.variable_entries)

    # ------------------------------------------------------------------ factors
    def one_of(self, indices: Iterable[Index], negated: Sequence[bool] | None = None) -> None:
        """Exactly one literal on (ad3 ``XOR``)."""
        self._logic("one-of", indices, negated, 1)

    def at_most_one(self, indices: Iterable[Index], negated: Sequence[bool] | None = None) -> None:
        """At most one literal on (ad3 ``ATMOSTONE``)."""
        self._logic("at-most-one", indices, negated, 1)

    def at_least_one(self, indices: Iterable[Index], negated: Sequence[bool] | None = None) -> None:
        """At least one literal on (ad3 ``OR``)."""
        self._logic("at-least-one", indices, negated, 1)

    def budget(
        self, indices: Iterable[Index], budget: int, negated: Sequence[bool] | None = None
    ) -> None:
        """At most ``budget`` literals on (ad3 budget factor)."""
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
            raise ValueError(f"budget must be a non-negative integer, got {budget!r}")
        self._logic("budget", indices, negated, int(budget))

    def pair(self, first: Index, second: Index, output: Index) -> None:
        """A pair factor; the entry ``output`` holds :math:`z_{first} z_{second}`."""
        a, b = self.variable(first), self.variable(second)
        if a == b:
            raise ValueError(f"a pair factor needs two different variables, got {first!r} twice")
        self.factors.append(PairFactor(a, b, self._output(output)))

    def multi_variable(self, indices: Iterable[Index]) -> int:
        """Group binary variables as the one-hot states of one discrete variable; returns its id.

        Exactly one state is on at every vertex. A binary variable belongs to at most one
        multi-variable; grouping the same states again returns the same id.
        """
        states = tuple(self.variables(indices))
        if len(states) < 1 or len(set(states)) != len(states):
            raise ValueError("a multi-variable needs at least one state and distinct entries")
        owners = {self._multi_of.get(v) for v in states}
        if owners == {None}:
            self.multi_variables.append(states)
            for v in states:
                self._multi_of[v] = len(self.multi_variables) - 1
            return len(self.multi_variables) - 1
        if len(owners) == 1 and self.multi_variables[owners.pop()] == states:
            return self._multi_of[states[0]]
        raise ValueError("a binary variable can belong to only one multi-variable")

    def dense(self, multi_variables: Sequence[int], outputs: Iterable[Index]) -> None:
        """A dense factor over ``multi_variables`` (ids from :meth:`multi_variable`).

        ``outputs`` lists one entry per joint state, in C order (the last multi-variable's state
        changes fastest); each holds the indicator of its joint state.
        """
        self._check_open()
        ids = tuple(int(m) for m in multi_variables)
        if not ids or any(not 0 <= m < len(self.multi_variables) for m in ids):
            raise ValueError(f"multi_variables must be ids from multi_variable(), got {multi_variables!r}")
        if len(set(ids)) != len(ids):
            raise ValueError("a dense factor cannot use a multi-variable twice")
        outs = tuple(self._output(o) for o in outputs)
        expected = int(np.prod([len(self.multi_variables[m]) for m in ids]))
        if len(outs) != expected:
            raise ValueError(
                f"a dense factor over states {[len(self.multi_variables[m]) for m in ids]} needs "
                f"{expected} outputs (one per joint state), got {len(outs)}"
            )
        self.factors.append(DenseFactor(ids, outs))

    def _logic(
        self, kind: str, indices: Iterable[Index], negated: Sequence[bool] | None, budget: int
    ) -> None:
        ids = tuple(self.variables(indices))
        if not ids:
            raise ValueError(f"a {kind} factor needs at least one variable")
        if len(set(ids)) != len(ids):
            raise ValueError(f"a {kind} factor cannot use the same entry twice")
        flags = (False,) * len(ids) if negated is None else tuple(bool(f) for f in negated)
        if len(flags) != len(ids):
            raise ValueError(f"negated must have one flag per variable ({len(ids)}), got {len(flags)}")
        self.factors.append(LogicFactor(kind, ids, flags, budget))

    def _output(self, index: Index) -> int:
        self._check_open()
        flat = self.entry(index)
        if self._role[flat] != _UNUSED:
            raise ValueError(f"entry {index!r} is already a variable or an output; outputs need their own entry")
        self._role[flat] = _OUTPUT
        return flat

    def _check_open(self) -> None:
        if self._frozen:
            raise RuntimeError("this FactorGraph is frozen; build a new one to change it")

    # ------------------------------------------------------------------ derived views
    def freeze(self) -> FactorGraph:
        """Forbid further changes (the description is then shared and cached); returns self."""
        self._frozen = True
        return self

    @property
    def free_variables(self) -> np.ndarray:
        """Ids of variables that no factor and no multi-variable constrains."""
        if self._free is not None:
            return self._free
        used = np.zeros(self.n_variables, dtype=bool)
        for factor in self.factors:
            if isinstance(factor, LogicFactor):
                used[list(factor.variables)] = True
            elif isinstance(factor, PairFactor):
                used[[factor.first, factor.second]] = True
        for states in self.multi_variables:
            used[list(states)] = True
        free = np.flatnonzero(~used)
        if self._frozen:
            self._free = free
        return free

    def local_polytope(self) -> LocalPolytopeConstraints:
        """The local polytope's constraints over the flat entries (computed once when frozen)."""
        if self._local is not None:
            return self._local
        entries = np.array(self.variable_entries, dtype=np.int64)
        ub, eq = _Rows(), _Rows()
        for factor in self.factors:
            if isinstance(factor, LogicFactor):
                variables, signs, offset = factor.literal_sum_row()
                cols = entries[variables]
                if factor.kind == "one-of":
                    eq.add(cols, signs, 1.0 - offset)
                elif factor.kind == "at-least-one":
                    ub.add(cols, -signs, offset - 1.0)
                else:
                    ub.add(cols, signs, factor.budget - offset)
            elif isinstance(factor, PairFactor):
                a, b, w = entries[factor.first], entries[factor.second], factor.output
                ub.add(np.array([w, a]), np.array([1.0, -1.0]), 0.0)
                ub.add(np.array([w, b]), np.array([1.0, -1.0]), 0.0)
                ub.add(np.array([a, b, w]), np.array([1.0, 1.0, -1.0]), 1.0)
            else:
                self._dense_rows(factor, entries, eq)
        for states in self.multi_variables:
            eq.add(entries[list(states)], np.ones(len(states)), 1.0)
        a_ub, b_ub = ub.matrix(self.size)
        a_eq, b_eq = eq.matrix(self.size)
        local = LocalPolytopeConstraints(
            coordinates=np.flatnonzero(self._role != _UNUSED),
            fixed=np.flatnonzero(self._role == _UNUSED),
            a_ub=a_ub,
            b_ub=b_ub,
            a_eq=a_eq,
            b_eq=b_eq,
        )
        if self._frozen:
            self._local = local
        return local

    def _dense_rows(self, factor: DenseFactor, entries: np.ndarray, eq: _Rows) -> None:
        sizes = [len(self.multi_variables[m]) for m in factor.multi_variables]
        joint = np.indices(sizes).reshape(len(sizes), -1)  # joint[j, c] = state of j in config c
        outputs = np.array(factor.outputs)
        for j, m in enumerate(factor.multi_variables):
            for state, variable in enumerate(self.multi_variables[m]):
                cols = np.append(outputs[joint[j] == state], entries[variable])
                vals = np.append(np.ones(int(np.sum(joint[j] == state))), -1.0)
                eq.add(cols, vals, 0.0)

    def vertices(self) -> np.ndarray:
        """All vertices, as a ``(V, *event_shape)`` 0/1 array (brute force, tiny graphs only).

        Raises
        ------
        ValueError
            When there are more than :data:`MAX_ENUMERATION` assignments to try, or none is
            feasible.
        """
        assignment = self._candidate_assignments()
        keep = np.ones(len(assignment), dtype=bool)
        for factor in self.factors:
            if isinstance(factor, LogicFactor):
                keep &= factor.satisfied(assignment)
        assignment = assignment[keep]
        if not len(assignment):
            raise ValueError("no assignment satisfies every factor of this factor graph")
        out = np.zeros((len(assignment), self.size))
        out[:, self.variable_entries] = assignment
        for factor in self.factors:
            if isinstance(factor, PairFactor):
                out[:, factor.output] = assignment[:, factor.first] * assignment[:, factor.second]
            elif isinstance(factor, DenseFactor):
                states = [assignment[:, list(self.multi_variables[m])].argmax(axis=1) for m in factor.multi_variables]
                sizes = [len(self.multi_variables[m]) for m in factor.multi_variables]
                config = np.ravel_multi_index(states, sizes)
                out[np.arange(len(out)), np.array(factor.outputs)[config]] = 1.0
        return out.reshape(-1, *self.event_shape)

    def _candidate_assignments(self) -> np.ndarray:
        """Every assignment with one state per multi-variable and any value elsewhere."""
        in_multi = set(self._multi_of)
        singles = [v for v in range(self.n_variables) if v not in in_multi]
        sizes = [len(states) for states in self.multi_variables]
        count = 2 ** len(singles) * int(np.prod(sizes))
        if count > MAX_ENUMERATION:
            raise ValueError(
                f"this factor graph has {count} candidate assignments, more than the "
                f"{MAX_ENUMERATION} that vertices() walks through"
            )
        bits = (np.arange(2 ** len(singles))[:, None] >> np.arange(len(singles))) & 1
        rows = []
        for choice in itertools.product(*(range(k) for k in sizes)):
            block = np.zeros((len(bits), self.n_variables), dtype=np.int8)
            block[:, singles] = bits
            for states, state in zip(self.multi_variables, choice):
                block[:, states[state]] = 1
            rows.append(block)
        return np.concatenate(rows)

    def __repr__(self) -> str:
        return (
            f"FactorGraph(event_shape={self.event_shape}, variables={self.n_variables}, "
            f"factors={len(self.factors)}, multi_variables={len(self.multi_variables)})"
        )
