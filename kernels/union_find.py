"""Union-find over the entity graph of orders (users, cards, devices, addresses, emails joined
by the orders that used them together), with per-component tallies kept at the root. Layout:
parent int64 [nodes] (a root is its own parent); stats float64 [nodes, columns], valid at roots."""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(nogil=True, cache=True)
def find(parent: np.ndarray, node: int) -> int:
    """The root of `node`, halving the path on the way (amortised near O(1))."""
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


@nb.njit(nogil=True, cache=True)
def union_groups(parent, stats, nodes, group_start, group_end) -> None:
    """Join the nodes of each group nodes[group_start[g]:group_end[g]] (an order's entities)
    into one component, the smaller under the larger (column 0 counts nodes), tallies added."""
    for g in range(group_start.shape[0]):
        first = group_start[g]
        if first >= group_end[g]:
            continue
        root = find(parent, nodes[first])
        for k in range(first + 1, group_end[g]):
            other = find(parent, nodes[k])
            if other == root:
                continue
            if stats[other, 0] > stats[root, 0]:
                root, other = other, root
            parent[other] = root
            for c in range(stats.shape[1]):
                stats[root, c] += stats[other, c]


@nb.njit(nogil=True, cache=True)
def add_at_roots(parent, stats, nodes, column, amounts) -> None:
    """stats[root(nodes[k]), column] += amounts[k]."""
    for k in range(nodes.shape[0]):
        stats[find(parent, nodes[k]), column] += amounts[k]


@nb.njit(nogil=True, cache=True)
def group_tallies(parent, stats, nodes, group_start, group_end, out) -> None:
    """For each group (a pending order's known entities), the tallies of the component it
    would form: the sum over the distinct roots its nodes belong to now. out [groups, columns]."""
    roots = np.empty(16, np.int64)
    for g in range(group_start.shape[0]):
        for c in range(out.shape[1]):
            out[g, c] = 0.0
        seen = 0
        for k in range(group_start[g], group_end[g]):
            root = find(parent, nodes[k])
            repeat = False
            for j in range(seen):
                if roots[j] == root:
                    repeat = True
                    break
            if repeat:
                continue
            if seen < roots.shape[0]:
                roots[seen] = root
                seen += 1
            for c in range(out.shape[1]):
                out[g, c] += stats[root, c]


def prepare() -> None:
    """Compile the kernels for the types the graph uses (before serving)."""
    parent, stats, i64 = np.zeros(1, np.int64), np.ones((1, 2)), np.zeros(1, np.int64)
    union_groups(parent, stats, i64, i64, i64 + 1)
    add_at_roots(parent, stats, i64, 1, np.ones(1))
    group_tallies(parent, stats, i64, i64, i64 + 1, np.zeros((1, 2)))
