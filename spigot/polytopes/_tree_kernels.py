r"""Compiled MAP oracles for tree polytopes: Chu-Liu-Edmonds/Tarjan, Eisner, maximum spanning tree.

All kernels work on float64 score matrices ``scores[h, m]`` (arc ``h -> m``) of one instance and
return head arrays ``heads[m]`` (``heads[0] = -1``); the batched entry points loop over the batch
inside compiled code and write 0/1 vertices into a preallocated output, so that no Python loop
runs per instance. The batch loop is serial on purpose: one tree of 50 words takes about 15
microseconds, less than it costs to wake a thread pool (numba's OpenMP layer next to torch's
measured 10-90 ms per call on this 2-core machine).

Maximum arborescence (dense Tarjan, :math:`O(M^2)` for ``M`` nodes)
-----------------------------------------------------------------
The contraction phase of Tarjan's algorithm (1977, with the correction of Camerini, Fratta and
Maffioli 1979) in the path-growing form of Gabow, Galil, Spencer and Tarjan (1986): starting
from any node, repeatedly pick the best arc entering the current super-node ``a``; if it comes
from a super-node not yet on the path, the path grows, otherwise the arcs chosen along the
path close a cycle, which is contracted into a new super-node. Entering weights of the new
super-node are :math:`w'(u \to C) = \max_{x \in C} w(u \to x) - w(\mathrm{in}(x))`, kept as one
dense row per super-node (a new super-node takes over the row of one of its members, so ``M``
rows suffice); each contraction costs :math:`O(|C| M)` and the whole phase :math:`O(M^2)` (at
most ``2M - 1`` super-nodes, one scan of ``M`` sources each). On a complete
digraph the phase ends with every node in one super-node.

The contraction phase does not depend on the root (Zwick's lecture notes on directed MSTs):
the *expansion* phase turns it into a maximum arborescence rooted at any node ``r`` in
:math:`O(M)`, by dismantling the super-nodes on the path from ``r`` to the top and, for every
super-node set loose on the way, letting its chosen entering arc decide the head of that arc's
target. Hence:

- **multi-root** trees: contract the complete graph on nodes ``0..n`` (arcs into the root get an
  arbitrary weight, they are never used) and expand from 0;
- **single-root** trees (exactly one child of the root), exactly: contract the complete graph
  on the words ``1..n`` once and keep the word ``r`` maximising :math:`s_{0r} + W_r`, where
  :math:`W_r` is the weight of the maximum arborescence of the words rooted at ``r``; every
  single-root tree is the arc ``0 -> r`` plus such an arborescence, so this is the optimum.
  :math:`W_r` needs no expansion: the expansion from ``r`` uses the chosen entering arc of
  every super-node except ``r`` and its ancestors, and an arc's original weight is its
  adjusted weight plus the chosen weights of the super-nodes below it that it overrides, so
  :math:`W_r = \sum_c w'(\mathrm{in}(c)) - \sum_{c \ni r} w'(\mathrm{in}(c))`, the second sum
  over ``r``'s path to the top. One expansion for the best ``r`` follows; the total is
  :math:`O(n^2)`.

Eisner (1996), :math:`O(n^3)`
----------------------------
Charts over positions ``0..n``: complete spans ``Cr[s, t]`` (head ``s``) and ``Cl[s, t]``
(head ``t``), incomplete spans ``Ir[s, t]`` (arc ``s -> t``) and ``Il[s, t]`` (arc
``t -> s``; impossible for ``s = 0``, the root is never a modifier). Multi-root trees score
``Cr[0, n]``; single-root trees are :math:`\max_m s_{0m} + Cl[1, m] + Cr[m, n]`, whose spans
never touch position 0.

Maximum spanning tree
---------------------
Prim's algorithm on the dense graph, :math:`O(n^2)`.
"""

from __future__ import annotations

import numba
import numpy as np

_NEG_INF = -np.inf

# Chart and back-pointer codes for Eisner's algorithm.
_CR, _CL, _IR, _IL = 0, 1, 2, 3


# ----------------------------------------------------------------------------- Tarjan / CLE
@numba.njit(cache=True)
def _contract(weights, into_first, parent, in_src, in_tgt, in_weight, members, member_start, member_count):
    """Contraction phase on the complete digraph ``weights[u, v]`` (arc ``u -> v``), ``M >= 2``.

    ``weights`` may be any float array view (it is read once, into float64 work arrays); with
    ``into_first`` False the arcs into node 0 weigh 0 whatever ``weights`` holds there (they
    are never part of a tree rooted at 0, and a huge stand-in could overflow the adjusted
    weights).

    Fills, for every super-node ``c`` (original nodes are ``0..M-1``, contracted ones follow):
    ``parent[c]`` (the super-node it was contracted into, -1 for the top), ``in_src[c]`` and
    ``in_tgt[c]`` (the original endpoints of its chosen entering arc, -1 for the top),
    ``in_weight[c]`` (that arc's adjusted weight at the time it was chosen, 0 for the top) and its
    members ``members[member_start[c] : member_start[c] + member_count[c]]``.
    Returns the number of super-nodes.
    """
    m = weights.shape[0]
    size = 2 * m - 1
    # entering[row[c], u]: adjusted weight of the best arc u -> c (-inf for u inside c, so that
    # choosing c's entering arc is a plain maximum over its row); target: its endpoint inside c,
    # filled when c is contracted (an original node's arcs all end at itself).
    # A contracted super-node takes over the row of its first member, so M rows suffice.
    entering = np.empty((m, m))
    target = np.empty((m, m), dtype=np.int32)
    row = np.empty(size, dtype=np.int64)
    for u in range(m):
        source_row = weights[u]
        for v in range(m):
            entering[v, u] = source_row[v]
    for v in range(m):
        row[v] = v
    if not into_first:
        for u in range(m):
            entering[0, u] = 0.0
    for v in range(m):
        entering[v, v] = _NEG_INF  # a super-node's own members weigh -inf in its row: never chosen
    comp = np.arange(m)  # current super-node of each original node
    in_cycle = np.zeros(size, dtype=np.bool_)
    for c in range(size):
        parent[c] = -1
        in_src[c] = -1
        in_tgt[c] = -1
        in_weight[c] = 0.0
    next_id = m
    alive = m
    cursor = 0
    a = 0
    while True:
        best = _NEG_INF
        source = -1
        ra = row[a]
        weights_a = entering[ra]
        for u in range(m):  # every finite entry is an arc from outside `a`
            if weights_a[u] > best:
                best = weights_a[u]
                source = u
        in_src[a] = source
        in_tgt[a] = a if a < m else target[ra, source]  # an original node's arcs all end at itself
        in_weight[a] = best
        b = comp[source]
        if in_src[b] < 0:  # b is not on the path yet: grow the path
            a = b
            continue
        # the chosen arcs close a cycle through a: contract it into c
        c = next_id
        next_id += 1
        member_start[c] = cursor
        x = a
        while True:
            members[cursor] = x
            cursor += 1
            parent[x] = c
            in_cycle[x] = True
            x = comp[in_src[x]]
            if x == a:
                break
        member_count[c] = cursor - member_start[c]
        first = members[member_start[c]]
        rc = row[first]
        row[c] = rc
        shift = in_weight[first]
        for u in range(m):
            entering[rc, u] -= shift
        if first < m:  # the row of an original node gets its targets now
            for u in range(m):
                target[rc, u] = first
        for j in range(member_start[c] + 1, cursor):
            x = members[j]
            rx = row[x]
            shift = in_weight[x]
            if x < m:
                for u in range(m):
                    value = entering[rx, u] - shift
                    if value > entering[rc, u]:
                        entering[rc, u] = value
                        target[rc, u] = x
            else:
                for u in range(m):
                    value = entering[rx, u] - shift
                    if value > entering[rc, u]:
                        entering[rc, u] = value
                        target[rc, u] = target[rx, u]
        for u in range(m):
            if in_cycle[comp[u]]:
                comp[u] = c
                entering[rc, u] = _NEG_INF
        alive -= member_count[c] - 1
        if alive == 1:
            return next_id
        a = c


@numba.njit(cache=True)
def _expand(root, m, total, parent, in_src, in_tgt, members, member_start, member_count, heads, stack):
    """Expansion phase: ``heads[v]`` of the maximum arborescence rooted at ``root`` (``heads[root] = -1``)."""
    loose = parent[:total].copy()
    for v in range(m):
        heads[v] = in_src[v]
    top = 0
    node = root
    while True:  # dismantle the super-nodes above `node`
        while loose[node] >= 0:
            above = loose[node]
            for j in range(member_start[above], member_start[above] + member_count[above]):
                x = members[j]
                if x != node:
                    loose[x] = -1
                    if x >= m:
                        stack[top] = x
                        top += 1
            node = above
        if top == 0:
            break
        top -= 1
        c = stack[top]
        heads[in_tgt[c]] = in_src[c]
        node = in_tgt[c]
    heads[root] = -1


@numba.njit(cache=True)
def _contraction(weights, into_first):
    """Run the contraction phase on ``weights`` (``M >= 2`` nodes) in freshly allocated arrays.

    Returns ``(total, parent, in_src, in_tgt, in_weight, members, member_start, member_count)``
    as filled by :func:`_contract`.
    """
    count = 2 * weights.shape[0] - 1
    parent = np.empty(count, dtype=np.int64)
    in_src = np.empty(count, dtype=np.int64)
    in_tgt = np.empty(count, dtype=np.int64)
    in_weight = np.empty(count)
    members = np.empty(count, dtype=np.int64)
    member_start = np.zeros(count, dtype=np.int64)
    member_count = np.zeros(count, dtype=np.int64)
    total = _contract(weights, into_first, parent, in_src, in_tgt, in_weight, members, member_start, member_count)
    return total, parent, in_src, in_tgt, in_weight, members, member_start, member_count


@numba.njit(cache=True)
def arborescence_heads(scores, single_root, heads):
    """Heads of the maximum arborescence of ``scores[h, m]`` (nodes ``0..n``, root 0) into ``heads``.

    ``scores`` may be a float32 or float64 view; column 0 and the diagonal are never read as arcs.
    """
    size = scores.shape[0]
    heads[0] = -1
    if size == 2:
        heads[1] = 0
        return
    if not single_root:
        # arcs into the root weigh 0: never part of the result
        total, parent, in_src, in_tgt, _, members, start, count = _contraction(scores, False)
        stack = np.empty(2 * size - 1, dtype=np.int64)
        _expand(0, size, total, parent, in_src, in_tgt, members, start, count, heads, stack)
        return
    m = size - 1  # the words 1..n become nodes 0..n-1
    total, parent, in_src, in_tgt, in_weight, members, start, count = _contraction(scores[1:, 1:], True)
    overall = 0.0
    for c in range(total):
        overall += in_weight[c]
    best_root = 0
    best_score = _NEG_INF
    for r in range(m):
        score = scores[0, r + 1] + overall  # minus the adjusted weights on r's path to the top
        node = r
        while node >= 0:
            score -= in_weight[node]
            node = parent[node]
        if score > best_score:
            best_score = score
            best_root = r
    local = np.empty(m, dtype=np.int64)
    stack = np.empty(2 * m - 1, dtype=np.int64)
    _expand(best_root, m, total, parent, in_src, in_tgt, members, start, count, local, stack)
    for v in range(m):
        heads[v + 1] = local[v] + 1
    heads[best_root + 1] = 0


# ----------------------------------------------------------------------------- Eisner
@numba.njit(cache=True)
def projective_heads(scores, single_root, heads):
    """Heads of the maximum projective tree of ``scores[h, m]`` (nodes ``0..n``, root 0)."""
    size = scores.shape[0]
    n = size - 1
    chart = np.full((4, size, size), _NEG_INF)
    split = np.zeros((4, size, size), dtype=np.int64)
    for s in range(size):
        chart[_CR, s, s] = 0.0
        chart[_CL, s, s] = 0.0
    for width in range(1, size):
        for s in range(size - width):
            t = s + width
            best = _NEG_INF
            arg = s
            for r in range(s, t):
                value = chart[_CR, s, r] + chart[_CL, r + 1, t]
                if value > best:
                    best = value
                    arg = r
            chart[_IR, s, t] = best + scores[s, t]
            split[_IR, s, t] = arg
            if s > 0:
                chart[_IL, s, t] = best + scores[t, s]
                split[_IL, s, t] = arg
            best = _NEG_INF
            arg = s + 1
            for r in range(s + 1, t + 1):
                value = chart[_IR, s, r] + chart[_CR, r, t]
                if value > best:
                    best = value
                    arg = r
            chart[_CR, s, t] = best
            split[_CR, s, t] = arg
            best = _NEG_INF
            arg = s
            for r in range(s, t):
                value = chart[_CL, s, r] + chart[_IL, r, t]
                if value > best:
                    best = value
                    arg = r
            chart[_CL, s, t] = best
            split[_CL, s, t] = arg
    heads[0] = -1
    # stack of (chart, s, t) items still to read back
    stack = np.empty((3 * size + 3, 3), dtype=np.int64)
    top = 0
    if single_root:
        best = _NEG_INF
        child = 1
        for m in range(1, size):
            value = scores[0, m] + chart[_CL, 1, m] + chart[_CR, m, n]
            if value > best:
                best = value
                child = m
        heads[child] = 0
        stack[0, 0], stack[0, 1], stack[0, 2] = _CL, 1, child
        stack[1, 0], stack[1, 1], stack[1, 2] = _CR, child, n
        top = 2
    else:
        stack[0, 0], stack[0, 1], stack[0, 2] = _CR, 0, n
        top = 1
    while top > 0:
        top -= 1
        kind, s, t = stack[top, 0], stack[top, 1], stack[top, 2]
        if s == t:
            continue
        r = split[kind, s, t]
        if kind == _IR or kind == _IL:
            if kind == _IR:
                heads[t] = s
            else:
                heads[s] = t
            stack[top, 0], stack[top, 1], stack[top, 2] = _CR, s, r
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = _CL, r + 1, t
        elif kind == _CR:
            stack[top, 0], stack[top, 1], stack[top, 2] = _IR, s, r
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = _CR, r, t
        else:
            stack[top, 0], stack[top, 1], stack[top, 2] = _CL, s, r
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = _IL, r, t
        top += 2


# ----------------------------------------------------------------------------- compiled oracles
# The oracles of :mod:`spigot.polytopes._support_oracle` (flat scores -> the positions of the
# vertex's ones), ``params = (n + 1, single_root)``; each is compiled for that signature at its
# first use as an oracle, so that a run that never asks for one does not compile it.
@numba.njit(cache=True)
def _arc_positions(heads):
    """The flat positions ``h * (n+1) + m`` of the arcs of the tree ``heads``."""
    size = heads.shape[0]
    support = np.empty(size - 1, dtype=np.int64)
    for m in range(1, size):
        support[m - 1] = heads[m] * size + m
    return support


@numba.njit(cache=True)
def arborescence_support(scores, params):
    """The maximum arborescence (Tarjan) of the flat scores as the positions of its arcs."""
    size = params[0]
    heads = np.empty(size, dtype=np.int64)
    arborescence_heads(scores.reshape((size, size)), params[1] != 0, heads)
    return _arc_positions(heads)


@numba.njit(cache=True)
def projective_support(scores, params):
    """The maximum projective tree (Eisner) of the flat scores as the positions of its arcs."""
    size = params[0]
    heads = np.empty(size, dtype=np.int64)
    projective_heads(scores.reshape((size, size)), params[1] != 0, heads)
    return _arc_positions(heads)


# ----------------------------------------------------------------------------- Prim
@numba.njit(cache=True)
def spanning_tree_parents(scores, parents):
    """Maximum spanning tree of the undirected graph ``scores[i, j]`` (``i < j``), as parents from node 0."""
    size = scores.shape[0]
    parents[0] = -1
    if size == 1:
        return
    best = np.full(size, _NEG_INF)
    link = np.zeros(size, dtype=np.int64)
    done = np.zeros(size, dtype=np.bool_)
    done[0] = True
    for v in range(1, size):
        best[v] = scores[0, v]
    for _ in range(size - 1):
        pick = -1
        for v in range(size):
            if not done[v] and (pick < 0 or best[v] > best[pick]):
                pick = v
        done[pick] = True
        parents[pick] = link[pick]
        for v in range(size):
            if not done[v]:
                value = scores[pick, v] if pick < v else scores[v, pick]
                if value > best[v]:
                    best[v] = value
                    link[v] = pick


# ----------------------------------------------------------------------------- batched entry points
@numba.njit(cache=True)
def dependency_vertices(scores, lengths, single_root, projective, out):
    """Write the MAP tree of every instance ``scores[b, :n_b+1, :n_b+1]`` as a 0/1 matrix into ``out``.

    ``scores`` is float32 or float64 (the kernels read it in place and compute in float64).
    """
    for b in range(scores.shape[0]):
        size = lengths[b] + 1
        heads = np.empty(size, dtype=np.int64)
        block = scores[b, :size, :size]
        if projective:
            projective_heads(block, single_root, heads)
        else:
            arborescence_heads(block, single_root, heads)
        for m in range(1, size):
            out[b, heads[m], m] = 1.0


@numba.njit(cache=True)
def spanning_tree_vertices(scores, lengths, out):
    """Write the maximum spanning tree of every instance (``lengths`` nodes) into ``out`` (upper triangle)."""
    for b in range(scores.shape[0]):
        size = lengths[b]
        parents = np.empty(size, dtype=np.int64)
        block = np.ascontiguousarray(scores[b, :size, :size])
        spanning_tree_parents(block, parents)
        for v in range(1, size):
            u = parents[v]
            if u < v:
                out[b, u, v] = 1.0
            else:
                out[b, v, u] = 1.0


@numba.njit(cache=True)
def head_selection_vertices(scores, lengths, out):
    """Write each word's best head ``argmax_{h != m, h <= n_b} scores[b, h, m]`` into ``out``."""
    for b in range(scores.shape[0]):
        size = lengths[b] + 1
        for m in range(1, size):
            best = 0
            for h in range(1, size):
                if h != m and scores[b, h, m] > scores[b, best, m]:
                    best = h
            out[b, best, m] = 1.0
