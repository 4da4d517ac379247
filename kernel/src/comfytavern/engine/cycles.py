"""Cycle detection of a prepared graph (Kahn's algorithm), naming the nodes on the cycles."""

from __future__ import annotations

from collections import deque

from comfytavern.engine.plan import PNode

__all__ = ["cyclic_nodes"]


def cyclic_nodes(nodes: list[PNode]) -> list[str]:
    """Ids of the nodes on a dependency cycle, in node order; empty when there is none.

    Nodes that merely sit downstream of a cycle are trimmed: they wait on it, they are not on it.
    """
    indegree = [p.n_in for p in nodes]
    ready = [i for i, d in enumerate(indegree) if d == 0]  # a stack: only the count matters
    seen = 0
    while ready:
        p = nodes[ready.pop()]
        seen += 1
        for t in p.value_out:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
        for t in p.stream_out:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    if seen == len(nodes):
        return []
    remaining = {i for i, d in enumerate(indegree) if d > 0}
    # Drop nodes with no successor inside the remaining set until only cycles are left.
    out_deg = {i: sum(1 for t in (*nodes[i].value_out, *nodes[i].stream_out) if t in remaining) for i in remaining}
    preds: dict[int, list[int]] = {i: [] for i in remaining}
    for i in remaining:
        for t in (*nodes[i].value_out, *nodes[i].stream_out):
            if t in remaining:
                preds[t].append(i)
    sinks = deque(i for i, d in out_deg.items() if d == 0)
    while sinks:
        i = sinks.popleft()
        remaining.discard(i)
        for s in preds[i]:
            if s in remaining:
                out_deg[s] -= 1
                if out_deg[s] == 0:
                    sinks.append(s)
    return [nodes[i].id for i in sorted(remaining)]
