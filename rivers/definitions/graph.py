"""The asset graph: validation, order, and selection closure."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ("find_cycle", "topological_order")


def find_cycle(upstream: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one cycle as ``[a, b, ..., a]``, or None when the graph is acyclic."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(upstream, WHITE)
    for root in sorted(upstream):
        if color[root] != WHITE:
            continue
        # Iterative DFS keeping the path, so deep chains do not hit the recursion limit.
        path: list[str] = [root]
        stack = [iter(sorted(upstream[root]))]
        color[root] = GREY
        while stack:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                color[path.pop()] = BLACK
                continue
            if color.get(node, BLACK) == GREY:
                start = path.index(node)
                # Report in dependency direction: each entry feeds the next.
                return list(reversed([*path[start:], node]))
            if color.get(node) == WHITE:
                color[node] = GREY
                path.append(node)
                stack.append(iter(sorted(upstream[node])))
    return None


def topological_order(upstream: Mapping[str, Iterable[str]]) -> list[str]:
    """Return the nodes so that each comes after all of its upstream nodes.

    Ties keep the mapping's order, so definitions order is respected.
    """
    remaining = {node: set(deps) for node, deps in upstream.items()}
    downstream: dict[str, list[str]] = {node: [] for node in upstream}
    for node, deps in remaining.items():
        for dep in deps:
            downstream[dep].append(node)
    ready = [node for node, deps in remaining.items() if not deps]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in downstream[node]:
            remaining[child].discard(node)
            if not remaining[child]:
                ready.append(child)
    if len(order) != len(remaining):
        raise ValueError("the graph has a cycle")
    return order
